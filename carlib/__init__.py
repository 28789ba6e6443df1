"""carlib: filter importance by classification accuracy reduction (CAR).

A reproduction of Abbasi-Asl & Yu, *Interpreting Convolutional Neural Networks Through
Compression* (2017): the CAR index of every filter (overall and per class), the greedy
structural pruning loop, physically smaller networks, and selectivity analysis.

The core API is imported here; the analysis layer (:mod:`carlib.analysis`: profiles,
studies, selectivity, patches, plotting) is loaded on first use of one of its names, so
``import carlib`` does not import it.

Example:
    >>> import carlib
    >>> model = carlib.load_model("alexnet-tiny")                      # doctest: +SKIP
    >>> val = carlib.load_dataset("tiny-imagenet", "val", per_class=10)  # doctest: +SKIP
    >>> car = carlib.car_index(model, "conv1", val)                     # doctest: +SKIP
    >>> steps = carlib.greedy_prune(model, "conv1", val, n_remove=20)   # doctest: +SKIP
    >>> small = carlib.prune_filters(model, "conv1", steps["filter"])   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from . import baselines, compare, importance
from .car import car_index
from .data import FolderDataset, ImageDataset, as_batches, load_dataset
from .errors import CarlibError, CheckpointError, DataNotFoundError
from .greedy import greedy_prune
from .layers import conv_layers, layer_table, resolve_layer
from .masking import mask_filters
from .models import AlexNetTiny, load_model
from .paths import figures_dir, results_dir
from .pruning import count, prune_filters
from .reference import car_index_naive, greedy_prune_naive
from .tables import read_table, write_table

__version__ = "0.1.0"

# names of the analysis layer, loaded on first access: name -> module
_LAZY = {"Profile": "carlib.analysis.profiles", "PROFILES": "carlib.analysis.profiles",
         "get_profile": "carlib.analysis.profiles", "Study": "carlib.analysis.study",
         "patches": "carlib.analysis.patches", "selectivity": "carlib.analysis.selectivity",
         "plotting": "carlib.analysis.plotting", "analysis": "carlib.analysis"}

__all__ = [
    "car_index", "greedy_prune", "prune_filters", "count", "mask_filters",
    "load_dataset", "load_model", "as_batches", "ImageDataset", "FolderDataset", "AlexNetTiny",
    "conv_layers", "layer_table", "resolve_layer",
    "car_index_naive", "greedy_prune_naive", "baselines", "importance", "compare",
    "Profile", "PROFILES", "get_profile", "Study", "results_dir", "figures_dir",
    "read_table", "write_table",
    "CarlibError", "DataNotFoundError", "CheckpointError", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith("." + name) else getattr(module, name)
    raise AttributeError(f"module 'carlib' has no attribute {name!r}")
