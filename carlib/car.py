"""The CAR index: classification accuracy reduction when one filter is pruned.

``CAR(i) = acc(network) - acc(network without filter i)`` and, per class,
``CAR_c(i) = acc_c(network) - acc_c(network without filter i)``.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd
import torch
from torch import nn

from . import distributed
from .data import DataLike
from .engine import Engine
from .graph import LayerPlan
from .layers import check_filters

__all__ = ["car_index", "car_table", "overall_from_per_class"]


def car_table(base: torch.Tensor, cand: torch.Tensor, counts: torch.Tensor, filters: list[int],
              per_class: bool) -> pd.DataFrame:
    """Build the CAR table from correct counts.

    Args:
        base: correct images per class of the unpruned network, ``(classes,)``.
        cand: correct images per class with each filter pruned, ``(filters, classes)``.
        counts: images per class, ``(classes,)``.
        filters: the filter index of each row of ``cand``.
        per_class: return the long per-class table instead of the overall one.

    Returns:
        ``filter, accuracy, car`` (overall) or ``filter, class, n, accuracy, car`` (per class).
        ``df.attrs["base_accuracy"]`` holds the unpruned accuracy, ``df.attrs["n_images"]``
        the image count.
    """
    n_total = int(counts.sum())
    base_acc = float(base.sum()) / n_total
    if not per_class:
        acc = cand.sum(dim=1).double() / n_total
        df = pd.DataFrame({"filter": filters, "accuracy": acc.numpy(),
                           "car": base_acc - acc.numpy()})
    else:
        classes = torch.nonzero(counts).flatten()
        n = counts[classes].double()
        acc = cand[:, classes].double() / n
        base_c = base[classes].double() / n
        rows = len(filters) * len(classes)
        df = pd.DataFrame({
            "filter": torch.tensor(filters).repeat_interleave(len(classes)).numpy(),
            "class": classes.repeat(len(filters)).numpy(),
            "n": counts[classes].repeat(len(filters)).numpy(),
            "accuracy": acc.reshape(rows).numpy(),
            "car": (base_c[None, :] - acc).reshape(rows).numpy(),
        })
    df.attrs["base_accuracy"] = base_acc
    df.attrs["n_images"] = n_total
    return df


def overall_from_per_class(long: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a per-class CAR table to the overall one.

    Args:
        long: ``filter, class, n, accuracy, car`` (:func:`car_index` with ``per_class=True``).

    Returns:
        ``filter, accuracy, car`` over all the images, as :func:`car_index` gives it.

    Example:
        >>> long = pd.DataFrame({"filter": [0, 0], "class": [0, 1], "n": [2, 2],
        ...                      "accuracy": [0.5, 1.0], "car": [0.5, 0.0]})
        >>> overall_from_per_class(long).round(2).to_dict("list")
        {'filter': [0], 'accuracy': [0.75], 'car': [0.25]}
    """
    correct = (long["accuracy"] * long["n"]).round()
    g = pd.DataFrame({"filter": long["filter"], "correct": correct, "n": long["n"],
                      "base": (long["accuracy"] + long["car"]) * long["n"]}).groupby("filter").sum()
    acc = g["correct"] / g["n"]
    base = g["base"].round() / g["n"]
    return pd.DataFrame({"filter": g.index.to_numpy(), "accuracy": acc.to_numpy(),
                         "car": (base - acc).to_numpy()})


def car_index(
    model: nn.Module,
    layer: str | LayerPlan,
    data: DataLike,
    *,
    per_class: bool = False,
    filters: Iterable[int] | None = None,
    topk: int = 1,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    method: str = "auto",
    pair_batch: int | None = None,
    pruned: Iterable[int] = (),
    precision: str = "auto",
) -> pd.DataFrame:
    """The CAR index of every filter of ``layer`` (overall, or per class).

    Args:
        model: the network (any ``nn.Module``; use :func:`carlib.load_model` for names),
            evaluated in eval mode whatever its mode; every submodule is left in the mode it
            had.
        layer: alias (``conv1``), module path (``features.0``) or a
            :class:`~carlib.graph.LayerPlan` of ``model``.
        data: a carlib dataset or a pair ``(images, labels)`` of tensors: normalized, finite
            float32 images ``(N, C, H, W)`` of a size the model takes, integer labels.
        per_class: also split by class (a long table, one row per filter and class).
        filters: only these filters (default: all).
        topk: 1 for top-1 accuracy, 5 for top-5.
        batch_size: images per batch in front of the pruned layer (a positive integer; default
            :func:`carlib.engine.default_batch_size`: 256 on a CPU, 16 at 224x224, 1024 on a GPU).
        device: ``"cpu"`` (default) or ``"cuda"``.
        progress: show a progress bar (rank 0's images, under a process group).
        method: ``"auto"``, ``"fast"`` or ``"masked"`` (see :mod:`carlib.engine`).
        pair_batch: (image, filter) pairs per forward pass after the consumer.
        pruned: filters already pruned; CAR is then relative to that network (as in one step
            of the greedy loop), and the other filters are evaluated.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16-checked"``: how the layers after the
            pruned layer's consumer compute; every choice gives fp32's CAR values (see
            :mod:`carlib.engine`). ``"auto"`` uses checked bf16 on CPUs with AMX-BF16 or
            AVX512-BF16.

    Under an initialised ``torch.distributed`` process group every rank calls this with the
    same arguments; each counts its block of the images (:mod:`carlib.distributed`) and every
    rank returns the table a single process returns.

    Returns:
        A DataFrame with ``filter``, ``accuracy`` (with that filter pruned) and ``car`` (base
        accuracy minus that, a fraction); with ``per_class=True`` the columns ``filter``,
        ``class``, ``n``, ``accuracy``, ``car``. ``attrs["base_accuracy"]`` is the accuracy of
        the unpruned network; on a GPU ``attrs["peak_gpu_memory_bytes"]`` the peak memory
        allocated, and after out-of-memory retries ``attrs["oom_retries"]`` and the
        ``attrs["pair_batch"]`` that fitted.

    Raises:
        CarlibError: bad arguments or data (see ``data``), one line naming the fix.

    Example:
        >>> from carlib import load_model, load_dataset
        >>> df = car_index(load_model(), "conv1", load_dataset("tiny-imagenet", per_class=2))  # doctest: +SKIP
        >>> df.sort_values("car").head(3)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    engine = Engine(model, layer, data, device=device, batch_size=batch_size, topk=topk,
                    method=method, pair_batch=pair_batch, cache_bytes=0, precision=precision)
    name = engine.plan.layer.alias if isinstance(layer, LayerPlan) else layer
    removed = check_filters(pruned, engine.n_filters, name)
    ks = check_filters(filters, engine.n_filters, name) if filters is not None else [
        k for k in range(engine.n_filters) if k not in removed]
    with tqdm(total=len(ks) * engine.n_local, desc=f"CAR {name}", unit="img", unit_scale=True,
              disable=not (progress and distributed.is_writer()), mininterval=1.0) as bar:
        base, cand, counts = engine.evaluate(removed, ks, bar)
    df = car_table(base, cand, counts, ks, per_class)
    df.attrs.update({"layer": engine.plan.layer.path, "topk": topk, "method": engine.method,
                     "pruned": removed, "precision": engine.precision,
                     **engine.screen_summary(),
                     **engine.memory_summary()})
    return df
