"""Baseline pruning orders and accuracy-versus-pruned curves for any order.

The companion paper compares CAR with other filter-pruning schemes at half the filters. The
baselines here: random orders (several seeds) and the L1 norm of the filter weights (smallest
first, Li et al. 2017). :func:`order_curve` also traces the one-shot CAR order (filters
sorted by their CAR on the unpruned network), a cheap stand-in for greedy beyond its depth.
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
from .layers import resolve_layer

__all__ = ["l1_order", "random_order", "car_order", "order_curve"]


def l1_order(model: nn.Module, layer: str) -> list[int]:
    """Filters by ascending L1 norm of their weights (ties: lower index first).

    Example:
        >>> from torchvision.models import alexnet
        >>> len(l1_order(alexnet(), "conv1"))
        64
    """
    w = resolve_layer(model, layer).module.weight.detach().abs().sum(dim=(1, 2, 3)).double().cpu()
    return [int(i) for i in np.lexsort((np.arange(len(w)), w.numpy()))]


def random_order(n: int, seed: int) -> list[int]:
    """A random permutation of ``range(n)`` from ``numpy.random.default_rng(seed)``."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def car_order(car: pd.DataFrame) -> list[int]:
    """Filters by ascending CAR (one-shot; ties: lower index first)."""
    return [int(f) for f in car.sort_values(["car", "filter"], kind="stable")["filter"]]


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
    correct, counts = eng.evaluate_prefixes([int(f) for f in order[:depth]])
    acc = (correct.sum(dim=1).double() / float(counts.sum())).numpy()
    return pd.DataFrame({"n_pruned": np.arange(depth + 1),
                         "filter": [-1] + [int(f) for f in order[:depth]], "accuracy": acc})
