"""The naive reference every fast path is held to.

Prune one filter with a forward hook, run the whole network over every image, repeat for the
next filter. Slow on purpose and obviously right: :func:`car_index_naive` is what the tests
compare :func:`carlib.car_index` against, and what ``make bench`` times.
"""

from __future__ import annotations

import copy
from typing import Iterable

import pandas as pd
import torch
from torch import nn

from .car import car_table
from .datasets import DataLike, as_batches
from .engine import count_correct, resolve_device, strict_fp32
from .graph import analyze
from .masking import FilterMask, check_filters

__all__ = ["car_index_naive", "greedy_prune_naive", "accuracy_counts_naive"]


@torch.no_grad()
def accuracy_counts_naive(model: nn.Module, layer: str, data: DataLike, pruned: Iterable[int],
                          *, batch_size: int = 256, topk: int = 1,
                          device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct images per class and images per class of ``model`` with ``pruned`` masked.

    Returns:
        ``(correct (classes,), counts (classes,))`` as int64 tensors.
    """
    dev = resolve_device(device)
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != dev:
        model = copy.deepcopy(model).to(dev)  # the caller's model stays where it is
    plan = analyze(model, layer)
    idx = check_filters(pruned, plan.layer.filters, layer)
    hook = FilterMask(model, plan)
    mask = torch.ones(plan.layer.filters)
    mask[idx] = 0
    hook.mask = mask
    was = model.training
    model.eval()
    correct = counts = None
    try:
        with strict_fp32(dev):
            for x, y in as_batches(data, batch_size, device=dev):
                logits = model(x)
                if correct is None:
                    c = logits.shape[1]
                    correct = torch.zeros(c, dtype=torch.long)
                    counts = torch.zeros(c, dtype=torch.long)
                correct += count_correct(logits, y, 1, logits.shape[1], topk)[0]
                counts += torch.bincount(y.cpu(), minlength=logits.shape[1])
    finally:
        hook.remove()
        model.train(was)
    return correct, counts


def car_index_naive(model: nn.Module, layer: str, data: DataLike, *, per_class: bool = False,
                    filters: Iterable[int] | None = None, batch_size: int = 256, topk: int = 1,
                    device: str | torch.device | None = None, pruned: Iterable[int] = ()) -> pd.DataFrame:
    """CAR the naive way: one full pass over the data per filter (same table as car_index).

    Args:
        pruned: filters pruned in every evaluated network (CAR relative to that network).
        Other arguments as :func:`carlib.car_index`.

    Example:
        >>> from torchvision.models import alexnet
        >>> x, y = torch.randn(4, 3, 64, 64), torch.arange(4)
        >>> car_index_naive(alexnet(), "conv1", (x, y), filters=[0]).shape
        (1, 3)
    """
    n = analyze(model, layer).layer.filters
    pruned = list(pruned)
    ks = check_filters(filters, n, layer) if filters is not None else [
        k for k in range(n) if k not in pruned]
    base, counts = accuracy_counts_naive(model, layer, data, pruned, batch_size=batch_size,
                                         topk=topk, device=device)
    cand = torch.stack([accuracy_counts_naive(model, layer, data, pruned + [k],
                                              batch_size=batch_size, topk=topk, device=device)[0]
                        for k in ks])
    return car_table(base, cand, counts, ks, per_class)


def greedy_prune_naive(model: nn.Module, layer: str, data: DataLike, *, n_remove: int,
                       batch_size: int = 256, topk: int = 1,
                       device: str | torch.device | None = None) -> pd.DataFrame:
    """The paper's greedy loop, naively: recompute every CAR with full passes at each step."""
    n = analyze(model, layer).layer.filters
    removed: list[int] = []
    rows = []
    for step in range(1, n_remove + 1):
        remaining = [k for k in range(n) if k not in removed]
        df = car_index_naive(model, layer, data, filters=remaining, batch_size=batch_size,
                             topk=topk, device=device, pruned=removed)
        best = df.sort_values(["car", "filter"], kind="stable").iloc[0]
        removed.append(int(best["filter"]))
        rows.append({"step": step, "filter": int(best["filter"]), "car": float(best["car"]),
                     "accuracy": float(best["accuracy"])})
    return pd.DataFrame(rows)
