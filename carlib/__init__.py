"""carlib: filter importance by classification accuracy reduction (CAR).

A reproduction of Abbasi-Asl & Yu, *Interpreting Convolutional Neural Networks Through
Compression* (2017): the CAR index of every filter (overall and per class), the greedy
structural pruning loop, physically smaller networks, and selectivity analysis.

Example:
    >>> import carlib
    >>> model = carlib.load_model("alexnet-tiny")                      # doctest: +SKIP
    >>> val = carlib.load_dataset("tiny-imagenet", "val", per_class=10)  # doctest: +SKIP
    >>> car = carlib.car_index(model, "conv1", val)                     # doctest: +SKIP
    >>> steps = carlib.greedy_prune(model, "conv1", val, n_remove=20)   # doctest: +SKIP
    >>> small = carlib.prune_filters(model, "conv1", steps["filter"])   # doctest: +SKIP
"""

from .car import car_index
from .datasets import FolderDataset, ImageDataset, as_batches, load_dataset
from .errors import CarlibError, CheckpointError, DataNotFoundError
from .greedy import greedy_prune
from .io import read_table, write_table
from .layers import conv_layers, layer_table, resolve_layer
from .masking import mask_filters
from .models import AlexNetTiny, load_model
from .paths import figures_dir, results_dir
from .profiles import PROFILES, Profile, get_profile
from .pruning import count, prune_filters
from .reference import car_index_naive, greedy_prune_naive
from . import baselines, patches, selectivity  # noqa: E402  (submodules used as carlib.patches...)

__version__ = "0.1.0"

__all__ = [
    "car_index", "greedy_prune", "prune_filters", "count", "mask_filters",
    "load_dataset", "load_model", "as_batches", "ImageDataset", "FolderDataset", "AlexNetTiny",
    "conv_layers", "layer_table", "resolve_layer",
    "car_index_naive", "greedy_prune_naive",
    "Profile", "PROFILES", "get_profile", "results_dir", "figures_dir",
    "read_table", "write_table",
    "CarlibError", "DataNotFoundError", "CheckpointError", "__version__",
]
