"""Baseline pruning orders and accuracy-versus-pruned curves for any order.

The companion paper compares CAR with other filter-pruning schemes at half the filters. The
baselines here: random orders (several seeds) and the L1 norm of the filter weights (smallest
first, Li et al. 2017). :func:`order_curve` also traces the one-shot CAR order (filters
sorted by their CAR on the unpruned network), a cheap stand-in for greedy beyond its depth.
Every other criterion (L2, BatchNorm-folded norms, mean activation, APoZ, Taylor) is in
:mod:`carlib.importance`; curves with intervals and paired tests in :mod:`carlib.compare`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .data import DataLike
from .engine import Engine
from .graph import LayerPlan
from .importance import order_by_score, random_order, score_table, weight_norms

__all__ = ["l1_order", "random_order", "car_order", "order_curve", "prefix_correct"]


def l1_order(model: nn.Module, layer: "str | LayerPlan") -> list[int]:
    """Filters by ascending L1 norm of their weights (ties: lower index first): the ``l1``
    criterion of :mod:`carlib.importance`.

    Example:
        >>> from torchvision.models import alexnet
        >>> len(l1_order(alexnet(), "conv1"))
        64
    """
    return order_by_score(score_table(weight_norms(model, layer, 1)))


def car_order(car: pd.DataFrame) -> list[int]:
    """Filters by ascending CAR (one-shot; ties: lower index first).

    Example:
        >>> car_order(pd.DataFrame({"filter": [0, 1, 2], "car": [0.1, -0.2, 0.1]}))
        [1, 0, 2]
    """
    return order_by_score(car, "car")


def prefix_correct(engine: Engine, order: Sequence[int], depth: int) -> tuple[np.ndarray, int]:
    """Correct images with the first 0, 1, ..., ``depth`` filters of ``order`` pruned.

    Args:
        engine: an :class:`carlib.engine.Engine` of the layer and images.
        order: filter indices in pruning order.
        depth: how many to prune.

    Returns:
        ``(correct int64 (depth + 1,), images)``.

    Example:
        >>> correct, n = prefix_correct(Engine(model, "conv1", val), [3, 1], 2)  # doctest: +SKIP
    """
    correct, counts = engine.evaluate_prefixes([int(f) for f in order[:depth]])
    return correct.sum(dim=1).numpy(), int(counts.sum())


def order_curve(model: nn.Module, layer: "str | LayerPlan", data: DataLike, order: Sequence[int], depth: int,
                *, device: str | torch.device | None = None, topk: int = 1,
                engine: Engine | None = None, precision: str = "auto") -> pd.DataFrame:
    """Accuracy after pruning the first 1..``depth`` filters of ``order``.

    Args:
        model, layer, data, device, topk, precision: as :func:`carlib.car_index`.
        order: filter indices in pruning order.
        depth: how many to prune.
        engine: reuse an :class:`carlib.engine.Engine` (and its activation cache).

    Returns:
        A DataFrame ``n_pruned`` (0..depth), ``filter`` (pruned at that point; -1 at 0),
        ``accuracy``.
    """
    eng = engine or Engine(model, layer, data, device=device, topk=topk, precision=precision)
    correct, n = prefix_correct(eng, order, depth)
    acc = correct.astype(np.float64) / float(n)
    return pd.DataFrame({"n_pruned": np.arange(depth + 1),
                         "filter": [-1] + [int(f) for f in order[:depth]], "accuracy": acc})
