"""Comparing pruning orders: curves with Wilson intervals, and paired (McNemar) tests.

Two orders pruned to the same depth are evaluated on the *same* images, so the fair test of
"order A keeps more images right than order B" is paired: only the discordant images count,
``b`` (right with A, wrong with B) and ``c`` (wrong with A, right with B), and under the null
hypothesis each discordant image goes either way with probability 1/2. :func:`mcnemar` is the
exact test (two-sided binomial p-value on ``b`` of ``b + c``). The per-image correctness comes
from the engine (:meth:`carlib.engine.Engine.correct_images`), the curves from
:func:`carlib.baselines.order_curve`'s counts; intervals are Wilson score intervals (scipy).

Example:
    >>> from carlib.importance import importance_order
    >>> orders = {"l1": importance_order("l1", model, "conv1"),             # doctest: +SKIP
    ...           "car": importance_order("car", model, "conv1", search)}   # doctest: +SKIP
    >>> curves = order_curves(model, "conv1", test, orders, depth=32)      # doctest: +SKIP
    >>> paired = paired_correct(model, "conv1", test, orders, depth=32)    # doctest: +SKIP
    >>> mcnemar(paired["car"], paired["l1"])["p_value"]                   # doctest: +SKIP
"""

from __future__ import annotations

from fractions import Fraction
from math import comb
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .baselines import prefix_correct
from .data import DataLike
from .engine import Engine
from .errors import CarlibError
from .graph import LayerPlan

__all__ = ["curve_points", "mcnemar", "wilson_interval", "paired_correct", "order_curves"]


def mcnemar(a: Sequence[bool] | np.ndarray | pd.Series, b: Sequence[bool] | np.ndarray | pd.Series) -> dict:
    """Exact McNemar test of two classifiers' per-image correctness on the same images.

    Args:
        a: whether network A classifies each image correctly.
        b: the same for network B, image by image.

    Returns:
        ``n`` (images), ``a_correct``, ``b_correct``, ``b`` (A right, B wrong), ``c`` (A wrong,
        B right) and ``p_value``: ``min(1, 2 P(X <= min(b, c)))`` for ``X ~ Binomial(b + c,
        1/2)`` (1 when there is no discordant image), computed exactly.

    Raises:
        CarlibError: the two lists differ in length.

    Example:
        >>> r = mcnemar([1, 1, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1, 1])
        >>> r["b"], r["c"], round(r["p_value"], 4)
        (1, 2, 1.0)
    """
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise CarlibError(f"the two correctness lists must have one entry per image each, got "
                          f"shapes {x.shape} and {y.shape}")
    nb, nc = int((x & ~y).sum()), int((~x & y).sum())
    n = nb + nc
    tail = Fraction(sum(comb(n, i) for i in range(min(nb, nc) + 1)), 2 ** n)
    return {"n": int(x.size), "a_correct": int(x.sum()), "b_correct": int(y.sum()), "b": nb,
            "c": nc, "p_value": float(min(Fraction(1), 2 * tail))}


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (scipy's).

    Args:
        correct: successes.
        n: trials (at least 1).
        confidence: the confidence level.

    Returns:
        ``(low, high)``.

    Example:
        >>> [round(v, 3) for v in wilson_interval(37, 50)]
        [0.604, 0.841]
    """
    from scipy.stats import binomtest  # scipy.stats takes seconds to import: only when used

    if n < 1:
        raise CarlibError("an interval needs at least one image; pass a dataset with images")
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _engine(model, layer, data, engine, options) -> Engine:
    return engine or Engine(model, layer, data, **options)


def paired_correct(model: nn.Module, layer: str | LayerPlan, data: DataLike,
                   orders: Mapping[str, Sequence[int]], depth: int, *,
                   engine: Engine | None = None, **options) -> pd.DataFrame:
    """Per-image correctness of the networks pruned to ``depth`` filters by each order.

    Args:
        model: the network (not modified).
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        data: the images (the same for every order: the comparison is paired).
        orders: name -> pruning order (e.g. :func:`carlib.importance.importance_order`).
        depth: filters pruned (e.g. half the layer).
        engine: reuse an :class:`~carlib.engine.Engine` of ``model``, ``layer`` and ``data``.
        options: :class:`~carlib.engine.Engine`'s options (``device``, ``topk`` ...).

    Returns:
        One row per image in dataset order: ``image``, ``label``, then one bool column per
        order (``attrs["depth"]`` is ``depth``).

    Raises:
        CarlibError: an order shorter than ``depth``, or bad model, layer or data.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
        >>> x, y = torch.zeros(3, 3, 8, 8), torch.tensor([0, 1, 0])
        >>> paired_correct(net, "conv1", (x, y), {"a": [0, 1], "b": [2, 3]}, 1).columns.tolist()
        ['image', 'label', 'a', 'b']
    """
    if depth < 0:
        raise CarlibError(f"depth must be at least 0, got {depth}")
    if {"image", "label"} & set(orders):
        raise CarlibError("'image' and 'label' name the table's first columns; name the orders otherwise")
    short = [k for k, o in orders.items() if len(o) < depth]
    if short:
        raise CarlibError(f"order {short[0]!r} has fewer than {depth} filters; use a depth within "
                          "every order")
    eng = _engine(model, layer, data, engine, options)
    ok = eng.correct_images([list(o[:depth]) for o in orders.values()])
    out = pd.DataFrame({"image": np.arange(eng.n_images), "label": eng.labels.cpu().numpy()})
    for i, name in enumerate(orders):
        out[name] = ok[i].numpy()
    out.attrs["depth"] = int(depth)
    return out


def curve_points(depth: int, points: int | None) -> list[int] | None:
    """``points`` evenly spaced depths after 0 up to ``depth`` (rounded, with 0 and ``depth``),
    or ``None`` (every depth) when ``points`` is ``None``.

    Example:
        >>> curve_points(32, 4)
        [0, 8, 16, 24, 32]
    """
    if points is None:
        return None
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise CarlibError(f"points must be a positive integer or None, got {points!r}")
    return sorted({int(round(depth * i / points)) for i in range(points + 1)})


def order_curves(model: nn.Module, layer: str | LayerPlan, data: DataLike,
                 orders: Mapping[str, Sequence[int]], depth: int, *, confidence: float = 0.95,
                 points: Sequence[int] | None = None, engine: Engine | None = None,
                 memo: dict | None = None, **options) -> pd.DataFrame:
    """Accuracy after pruning the first 0..``depth`` filters of each order, with intervals.

    Args:
        model, layer, data, engine, options: as :func:`paired_correct`.
        orders: name -> pruning order.
        depth: the deepest point (orders shorter than that stop at their length).
        confidence: the level of the Wilson intervals.
        points: evaluate only at these depths (e.g. :func:`curve_points`; 0 and an order's
            last depth are always included), one pass each instead of every prefix
            (``None``: every depth).
        memo: with ``points``, a dict of the correct counts already known on ``engine``'s images,
            by the set of filters pruned; filled as counts come (pass the same dict to calls on
            the same engine so that, e.g., the unpruned point is evaluated once).

    Returns:
        A tidy table: ``criterion, n_pruned, filter`` (pruned at that point, -1 at 0),
        ``correct, n_images, accuracy, low, high``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
        >>> x, y = torch.zeros(3, 3, 8, 8), torch.tensor([0, 1, 0])
        >>> order_curves(net, "conv1", (x, y), {"a": [0, 1, 2, 3]}, 2).shape
        (3, 8)
        >>> order_curves(net, "conv1", (x, y), {"a": [0, 1, 2, 3]}, 3, points=[2])["n_pruned"].tolist()
        [0, 2, 3]
    """
    eng = _engine(model, layer, data, engine, options)
    rows = []
    done: dict[tuple[int, ...], int] = {} if memo is None else memo

    def at(prefix: list[int]) -> int:
        key = tuple(sorted(prefix))
        if key not in done:
            base, _, counts = eng.evaluate(list(prefix), [])
            done[key] = int(base.sum())
        return done[key]

    for name, order in orders.items():
        d = min(depth, len(order))
        if points is None:
            correct, n = prefix_correct(eng, order, d)
            ks = list(range(d + 1))
        else:
            ks = sorted({0, d} | {int(k) for k in points if 0 <= int(k) <= d})
            correct = {k: at([int(f) for f in order[:k]]) for k in ks}
            n = eng.n_images
        for k in ks:
            lo, hi = wilson_interval(int(correct[k]), n, confidence)
            rows.append({"criterion": name, "n_pruned": k, "filter": int(order[k - 1]) if k else -1,
                         "correct": int(correct[k]), "n_images": n, "accuracy": int(correct[k]) / n,
                         "low": lo, "high": hi})
    return pd.DataFrame(rows, columns=["criterion", "n_pruned", "filter", "correct", "n_images",
                                       "accuracy", "low", "high"])
