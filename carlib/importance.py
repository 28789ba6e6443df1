"""Filter-importance criteria behind one interface, and the pruning orders they give.

A *criterion* is a callable ``criterion(model, layer, data=None, **options)`` returning a score
table: one row per filter of ``layer``, columns ``filter`` and ``score``, where a *lower*
score means *less important*. Its order (:func:`order_by_score`) prunes the lowest score first,
ties to the lower filter index, so every order is a deterministic permutation of all filters
(Torch-Pruning's importances play the same role for groups of layers). :data:`CRITERIA` names
them:

========================  ===========================================================  ========
name                      score (lowest pruned first)                                   data
========================  ===========================================================  ========
``random``                position in ``numpy.random.default_rng(seed).permutation``    no
``l1``, ``l2``            L1 / L2 norm of the filter's weights as the model holds them  no
``l1-folded``,            the same of the weights with the BatchNorm that follows the   no
``l2-folded``             convolution folded in (only where one follows)
``mean_activation``       mean of the filter's map at the mask point                    yes
``apoz``                  ``1 - APoZ`` (Hu et al. 2016)                                 yes
``taylor``                first-order Taylor criterion (Molchanov et al. 2017)          yes
``car``                   one-shot CAR (:func:`carlib.car_index`, or ``car=`` a table)  yes
``greedy``                the step at which greedy CAR prunes it (``steps=`` a table)   yes
========================  ===========================================================  ========

The activation criteria are defined in :mod:`carlib.activations`.

**BatchNorm folding.** For a convolution followed by a BatchNorm (eval mode), the network
computes what the convolution with weights ``w_f * s_f`` computes, ``s_f = gamma_f /
sqrt(var_f + eps)`` (:func:`bn_scale`), so the folded norm of filter *f* is its unfolded norm
times ``|s_f|``: the two readings rank filters differently wherever ``|s_f|`` varies across the
layer. A network saved with its BatchNorms already folded (``alexnet-tiny``: trained with
BatchNorm, saved with it folded into the convolutions, the BatchNorm statistics not kept) holds
only the folded weights: there ``l1`` *is* the folded reading and the unfolded one cannot be
recovered, so ``l1-folded`` refuses a layer no BatchNorm follows.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .activations import apoz_scores, mean_activation_scores, taylor_scores
from .car import car_index
from .data import DataLike
from .errors import CarlibError
from .graph import LayerPlan, analyze
from .greedy import greedy_prune
from .nodes import NORM_MODULES

__all__ = ["Criterion", "CRITERIA", "score_table", "order_by_score", "importance",
           "importance_order", "bn_scale", "weight_norms", "random_order"]


class Criterion(Protocol):
    """What every entry of :data:`CRITERIA` is: ``(model, layer, data=None, **options)`` ->
    a score table (:func:`score_table`)."""

    def __call__(self, model: nn.Module, layer: str | LayerPlan, data: DataLike | None = None,
                 **options: Any) -> pd.DataFrame: ...


def score_table(scores: Sequence[float] | np.ndarray | torch.Tensor) -> pd.DataFrame:
    """A score table: ``filter`` (0..n-1) and ``score`` (float64), one row per filter.

    Args:
        scores: one score per filter, in filter order.

    Returns:
        The DataFrame.

    Raises:
        CarlibError: a score that is NaN.

    Example:
        >>> score_table([0.5, 0.25]).to_dict("list")
        {'filter': [0, 1], 'score': [0.5, 0.25]}
    """
    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores,
                   dtype=np.float64).reshape(-1)
    if np.isnan(s).any():
        raise CarlibError(f"filter {int(np.flatnonzero(np.isnan(s))[0])} has a NaN score; check the "
                          "model and data for non-finite values")
    return pd.DataFrame({"filter": np.arange(len(s)), "score": s})


def order_by_score(table: pd.DataFrame, column: str = "score") -> list[int]:
    """The pruning order of a score table: lowest ``column`` first, ties to the lower filter.

    Args:
        table: a table with ``filter`` and ``column`` (a score table, a CAR table ...).
        column: the score column.

    Returns:
        The filters in pruning order.

    Example:
        >>> order_by_score(score_table([0.1, 0.0, 0.1, -0.2]))
        [3, 1, 0, 2]
    """
    f = table["filter"].to_numpy()
    return [int(f[i]) for i in np.lexsort((f, table[column].to_numpy(dtype=np.float64)))]


def random_order(n: int, seed: int) -> list[int]:
    """A random permutation of ``range(n)`` from ``numpy.random.default_rng(seed)``.

    Args:
        n: filters.
        seed: the seed.

    Returns:
        The permutation, as a list.

    Example:
        >>> sorted(random_order(4, 0)) == [0, 1, 2, 3], random_order(4, 0) == random_order(4, 0)
        (True, True)
    """
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def bn_scale(model: nn.Module, layer: str | LayerPlan) -> np.ndarray:
    """The per-filter factor ``gamma_f / sqrt(var_f + eps)`` of the BatchNorm after ``layer``.

    Args:
        model: the network.
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.

    Returns:
        float64 ``(filters,)`` (``gamma = 1`` for a BatchNorm without affine terms).

    Raises:
        CarlibError: no BatchNorm with running statistics directly follows the convolution.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[1].weight.copy_(torch.tensor([2.0, -1.0])), net[1].running_var.fill_(4.0)
        >>> bn_scale(net, "conv1").round(4)
        array([ 1. , -0.5])
    """
    plan = analyze(model, layer)
    bn = model.get_submodule(plan.norm) if plan.norm else None
    if not isinstance(bn, NORM_MODULES) or bn.running_var is None:
        raise CarlibError(f"no BatchNorm with running statistics follows {plan.layer.alias} "
                          f"({plan.layer.path}): its weights are what it computes with; use 'l1' or 'l2'")
    var = bn.running_var.detach().double().cpu()
    gamma = bn.weight.detach().double().cpu() if bn.weight is not None else torch.ones_like(var)
    return (gamma / torch.sqrt(var + bn.eps)).numpy()


def weight_norms(model: nn.Module, layer: str | LayerPlan, p: int = 1, *,
                 folded: bool = False) -> np.ndarray:
    """The L``p`` norm of each filter's weights (``p`` = 1 or 2), as held or BatchNorm-folded.

    Args:
        model: the network.
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        p: 1 or 2.
        folded: multiply by ``|bn_scale|`` (:func:`bn_scale`): the norm of the folded weights.

    Returns:
        float64 ``(filters,)``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([-3.0, 4.0]).view(2, 1, 1, 1))
        >>> weight_norms(net, "conv1", 1)
        array([3., 4.])
    """
    if p not in (1, 2):
        raise CarlibError(f"p must be 1 or 2, got {p!r}")
    plan = analyze(model, layer)
    w = plan.layer.module.weight.detach().cpu().flatten(1)  # summed in the weights' dtype
    out = (w.abs().sum(dim=1) if p == 1 else w.pow(2).sum(dim=1).sqrt()).double().numpy()
    return out * np.abs(bn_scale(model, plan)) if folded else out


#: options meant for other criteria, dropped before calling car_index / greedy_prune
_OTHERS = ("seed", "car", "steps")


def _needs(data: DataLike | None, name: str) -> DataLike:
    if data is None:
        raise CarlibError(f"the {name!r} criterion needs images: pass data=(images, labels) or a dataset")
    return data


def _random(model, layer, data=None, *, seed: int = 0, **_: Any) -> pd.DataFrame:
    n = analyze(model, layer).layer.filters
    pos = np.empty(n)
    pos[random_order(n, seed)] = np.arange(n)
    return score_table(pos)


def _norm(p: int, folded: bool) -> Criterion:
    def criterion(model, layer, data=None, **_: Any) -> pd.DataFrame:
        return score_table(weight_norms(model, layer, p, folded=folded))
    return criterion


def _activation(fn: Callable[..., np.ndarray], name: str) -> Criterion:
    def criterion(model, layer, data=None, *, batch_size: int = 256, device=None, **_: Any) -> pd.DataFrame:
        return score_table(fn(model, layer, _needs(data, name), batch_size=batch_size, device=device))
    return criterion


def _car(model, layer, data=None, *, car: pd.DataFrame | None = None, **options: Any) -> pd.DataFrame:
    kw = {k: v for k, v in options.items() if k not in _OTHERS}
    table = car if car is not None else car_index(model, layer, _needs(data, "car"), **kw)
    n = analyze(model, layer).layer.filters
    if sorted(int(f) for f in table["filter"]) != list(range(n)):
        raise CarlibError(f"the CAR table does not cover the {n} filters of the layer once each; "
                          "pass the table of car_index(model, layer, data) over all filters")
    return score_table(table.sort_values("filter")["car"].to_numpy())


def _greedy(model, layer, data=None, *, steps: pd.DataFrame | None = None,
            **options: Any) -> pd.DataFrame:
    n = analyze(model, layer).layer.filters
    if steps is None:
        kw = {k: v for k, v in options.items() if k not in _OTHERS}
        kw.setdefault("n_remove", n - 1)
        steps = greedy_prune(model, layer, _needs(data, "greedy"), **kw)
    filters = [int(f) for f in steps.sort_values("step")["filter"]]
    if len(set(filters)) != len(filters) or any(f < 0 or f >= n for f in filters):
        raise CarlibError(f"the greedy table prunes a filter twice or one outside 0..{n - 1}; "
                          "pass the table greedy_prune returned for this layer")
    step = np.full(n, float(len(filters) + 1))  # never pruned by the table: after it, by index
    step[filters] = np.arange(1, len(filters) + 1)
    return score_table(step)


#: Every criterion by name (see the module docstring).
CRITERIA: dict[str, Criterion] = {
    "random": _random,
    "l1": _norm(1, False), "l2": _norm(2, False),
    "l1-folded": _norm(1, True), "l2-folded": _norm(2, True),
    "mean_activation": _activation(mean_activation_scores, "mean_activation"),
    "apoz": _activation(apoz_scores, "apoz"),
    "taylor": _activation(taylor_scores, "taylor"),
    "car": _car,
    "greedy": _greedy,
}


def importance(criterion: str | Criterion, model: nn.Module, layer: str | LayerPlan,
               data: DataLike | None = None, **options: Any) -> pd.DataFrame:
    """The score table of ``layer``'s filters by one criterion.

    Args:
        criterion: a name of :data:`CRITERIA` or any :class:`Criterion`.
        model: the network (not modified).
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        data: images for the data-driven criteria (``None`` for the weight criteria).
        options: the criterion's: ``seed`` (random), ``batch_size`` and ``device``
            (activation criteria), ``car=`` a CAR table or :func:`carlib.car_index`'s options
            (car), ``steps=`` a greedy table or :func:`carlib.greedy_prune`'s options (greedy,
            by default to all but one filter; filters the table does not prune follow it, by
            index). A criterion ignores the options of the others, so one set of options can
            serve them all.

    Returns:
        ``filter, score`` (lowest pruned first); ``attrs["criterion"]`` names it.

    Raises:
        CarlibError: an unknown name, a criterion that needs data without it, a folded reading
        where no BatchNorm follows the layer, a table that does not fit the layer.

    Example:
        >>> from torchvision.models import alexnet
        >>> importance("l2", alexnet(), "conv1").shape
        (64, 2)
    """
    fn = CRITERIA.get(criterion) if isinstance(criterion, str) else criterion
    if fn is None:
        raise CarlibError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    table = fn(model, layer, data, **options)
    n = analyze(model, layer).layer.filters
    if list(table.columns[:2]) != ["filter", "score"] or sorted(table["filter"]) != list(range(n)):
        raise CarlibError(f"criterion {criterion!r} did not return one score per filter (columns "
                          f"filter, score; filters 0..{n - 1}); build its table with score_table")
    table.attrs["criterion"] = criterion if isinstance(criterion, str) else getattr(fn, "__name__", "custom")
    return table


def importance_order(criterion: str | Criterion, model: nn.Module, layer: str | LayerPlan,
                     data: DataLike | None = None, **options: Any) -> list[int]:
    """The pruning order of a criterion: :func:`order_by_score` of :func:`importance`.

    Args:
        criterion, model, layer, data, options: as :func:`importance`.

    Returns:
        Every filter of ``layer`` once, the one to prune first first.

    Example:
        >>> from torchvision.models import alexnet
        >>> importance_order("random", alexnet(), "conv2", seed=1) == random_order(192, 1)
        True
    """
    return order_by_score(importance(criterion, model, layer, data, **options))
