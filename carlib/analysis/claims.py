"""The paper's two interpretation claims as tests against stated nulls, without thresholds where
possible.

Claim 1 (color-selective filters are pruned first, i.e. have low CAR):

* :func:`car_color_correlation`: Spearman(CAR, color index) over all filters of a layer
  (:func:`~carlib.analysis.stats.spearman_test`; the claim predicts a negative rho, tested by
  ``p_less``).
* :func:`pruned_vs_rest`: Mann-Whitney U of the color index of the top-``k`` pruned filters
  against the rest (:func:`~carlib.analysis.stats.rank_biserial_test`; the claim predicts
  ``p_greater`` small).
* :func:`pooled_enrichment`: the enrichment over replicate selections: the color count pooled
  over the replicates against the color labels permuted over the filters (primary; valid when
  replicates pick the same filters), beside the exact law for independent replicates (the
  convolution of their hypergeometric laws) and Fisher's combination of per-replicate p-values.

Claim 2 (a filter is important for the classes whose features it selects):
:func:`class_importance_test`, per filter Spearman over classes between ``CAR_c`` and the
filter's class-mean activation, averaged over filters, against pairing each filter's CAR
profile with another filter's activation profile (a random cyclic derangement of the filters).
:func:`example_filters` chooses notebook 05's examples by a stated rule.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import CarlibError
from .selectivity import hypergeom_enrichment
from .stats import LEVEL, rank_biserial_test, spearman_test
from .summaries import most_important

__all__ = ["car_color_correlation", "pruned_vs_rest", "pooled_enrichment", "class_importance_test",
           "example_filters"]


def _by_filter(table: pd.DataFrame | np.ndarray, column: str) -> np.ndarray:
    if isinstance(table, pd.DataFrame):
        return table.sort_values("filter")[column].to_numpy(dtype=float)
    return np.asarray(table, dtype=float)


def car_color_correlation(car: pd.DataFrame | np.ndarray, color_index: pd.DataFrame | np.ndarray,
                          **kwargs: object) -> dict:
    """Spearman correlation of CAR and the color index over every filter of a layer.

    Args:
        car: ``filter, car`` table or array (position = filter).
        color_index: ``filter, color_index`` table or array.
        **kwargs: ``n_perm``, ``n_boot``, ``seed``, ``level`` of :func:`spearman_test`.

    Returns:
        :func:`~carlib.analysis.stats.spearman_test`'s dict (``p_less``: the claim's direction).

    Example:
        >>> r = car_color_correlation(np.arange(20.0), -np.arange(20.0), n_perm=999, n_boot=100)
        >>> r["rho"], r["p_less"] <= 0.001
        (-1.0, True)
    """
    return spearman_test(_by_filter(car, "car"), _by_filter(color_index, "color_index"), **kwargs)


def pruned_vs_rest(color_index: pd.DataFrame | np.ndarray, pruned: Sequence[int], **kwargs: object) -> dict:
    """Is the color index higher among the pruned filters than among the others?

    Args:
        color_index: ``filter, color_index`` table or array (position = filter).
        pruned: the top-``k`` pruned filters.
        **kwargs: ``n_perm``, ``n_boot``, ``seed``, ``level`` of :func:`rank_biserial_test`.

    Returns:
        :func:`~carlib.analysis.stats.rank_biserial_test`'s dict, group ``a`` the pruned
        (``p_greater``: the claim's direction).

    Example:
        >>> r = pruned_vs_rest(np.arange(10.0), [9, 8, 7], n_perm=999, n_boot=100)
        >>> r["rank_biserial"], r["n_a"], r["n_b"]
        (1.0, 3, 7)
    """
    idx = _by_filter(color_index, "color_index")
    mask = np.zeros(len(idx), dtype=bool)
    mask[list(pruned)] = True
    if mask.all() or not mask.any():
        raise CarlibError(f"{int(mask.sum())} of {len(mask)} filters pruned; pass some pruned filters and leave some")
    return rank_biserial_test(idx[mask], idx[~mask], **kwargs)


def pooled_enrichment(selections: Sequence[Sequence[int]], is_color: np.ndarray, k: int = 20, *,
                      n_perm: int = 10_000, seed: int = 0) -> dict:
    """Color filters among the top ``k`` of several replicate selections, tested together.

    The statistic is the color count pooled over the replicates. Its null (primary,
    ``p_greater``): the color labels permuted over the layer's filters, the selections kept,
    which stays valid when the replicates pick the same filters again (they do: the replicates
    share the network). ``p_independent`` is the exact law if the replicates were independent
    uniform ``k``-subsets (the convolution of their hypergeometric laws), too small when they
    overlap more than chance; ``p_fisher`` is Fisher's combination of the per-replicate
    hypergeometric p-values, with the same caveat.

    Args:
        selections: one pruning order per replicate (the first ``k`` count).
        is_color: boolean label of every filter of the layer.
        k: top size.
        n_perm: label permutations.
        seed: random seed.

    Returns:
        ``{"replicates", "k", "pooled", "slots", "expected", "p_greater", "p_independent",
        "p_fisher", "p_each"}``: ``pooled`` color filters in ``slots = replicates * k`` slots,
        ``expected`` under the null, the p-values of ``P(S >= pooled)``.

    Example:
        >>> r = pooled_enrichment([[0, 1], [0, 1]], np.array([1, 1, 0, 0, 0, 0], bool), k=2, n_perm=999)
        >>> r["pooled"], round(r["p_independent"], 5), round(r["p_greater"], 2)
        (4, 0.00444, 0.07)
    """
    color = np.asarray(is_color, dtype=bool)
    n, m = len(color), int(color.sum())
    if not len(selections) or any(len(s) < k for s in selections):
        raise CarlibError(f"pass at least one selection of at least k={k} filters (or a smaller k)")
    times = np.zeros(n)
    for s in selections:
        times[[int(f) for f in s[:k]]] += 1
    counts = [int(color[[int(f) for f in s[:k]]].sum()) for s in selections]
    pooled = sum(counts)
    null = np.random.default_rng(seed).permuted(np.broadcast_to(color, (n_perm, n)), axis=1) @ times
    pmf = sps.hypergeom(n, m, k).pmf(np.arange(k + 1))
    total = np.array([1.0])
    for _ in counts:
        total = np.convolve(total, pmf)
    each = [hypergeom_enrichment(c, k, m, n)["p_greater"] for c in counts]
    return {"replicates": len(counts), "k": k, "pooled": pooled, "slots": len(counts) * k,
            "expected": len(counts) * k * m / n,
            "p_greater": float((1 + np.sum(null >= pooled - 1e-9)) / (1 + n_perm)),
            "p_independent": float(min(1.0, total[pooled:].sum())),
            "p_fisher": float(sps.combine_pvalues(each, method="fisher").pvalue), "p_each": each}


def _profiles(per_class: pd.DataFrame, activation: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    car = per_class.pivot(index="filter", columns="class", values="car").sort_index()
    act = activation.loc[car.index, car.columns] if isinstance(activation, pd.DataFrame) else activation
    return car.to_numpy(float), np.asarray(act, dtype=float), car.index.to_numpy()


def class_importance_test(per_class: pd.DataFrame, activation: pd.DataFrame, *, n_perm: int = 10_000,
                          n_boot: int = 2_000, seed: int = 0, level: float = LEVEL) -> dict:
    """Does a filter matter most for the classes that drive it most?

    Statistic: for each filter, Spearman over classes between its ``CAR_c`` and its class-mean
    activation; averaged over the filters whose CAR profile is not constant. Null: each
    filter's CAR profile paired with another filter's activation profile (the filters put in
    a random cycle, each paired with the next), which keeps both sets of profiles and breaks
    only the filter identity; one-sided permutation p (``null >= observed``). Interval:
    bootstrap percentile of the mean over filters.

    Args:
        per_class: ``filter, class, car`` (``carlib.car_index(..., per_class=True)``).
        activation: filter x class table (index filters, columns classes) of class-mean
            activations (:func:`~carlib.analysis.activations.class_mean_activations`).
        n_perm, n_boot: permutations and bootstrap resamples.
        seed: random seed.
        level: coverage.

    Returns:
        ``{"mean_rho", "low", "high", "excess", "p", "null_mean", "n_filters", "n_constant",
        "n_classes", "zero_share", "n_values", "per_filter"}``: ``excess = mean_rho - null_mean``
        (what the filter's identity adds to the profile all filters share: a class the network
        gets right more often has more to lose, and some classes drive most filters harder);
        ``zero_share`` is the share of the
        ``n_values`` per-class CAR values exactly 0 (many zeros: too few images per class);
        ``per_filter`` a ``filter, rho, nonzero`` table (nan rho for constant profiles).

    Example:
        >>> rng = np.random.default_rng(0); act = rng.random((6, 8))
        >>> pc = pd.DataFrame([(f, c, act[f, c]) for f in range(6) for c in range(8)],
        ...                   columns=["filter", "class", "car"])
        >>> r = class_importance_test(pc, pd.DataFrame(act), n_perm=999, n_boot=100)
        >>> r["mean_rho"], r["p"] < 0.01
        (1.0, True)
    """
    car, act, filters = _profiles(per_class, activation)
    f, c = car.shape
    rc, ra = sps.rankdata(car, axis=1), sps.rankdata(act, axis=1)
    rc, ra = rc - rc.mean(1, keepdims=True), ra - ra.mean(1, keepdims=True)
    nc, na = np.sqrt((rc * rc).sum(1)), np.sqrt((ra * ra).sum(1))
    ok = (nc > 0) & (na > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (rc @ ra.T) / np.outer(np.where(nc > 0, nc, 1), np.where(na > 0, na, 1))
    corr[~ok, :] = np.nan
    corr[:, ~ok] = np.nan
    rho = np.diag(corr)
    obs = float(np.nanmean(rho))
    rng = np.random.default_rng(seed)
    null = np.empty(n_perm)
    for i in range(n_perm):
        cycle = rng.permutation(f)
        null[i] = np.nanmean(corr[cycle, np.roll(cycle, -1)])
    boot = np.array([np.nanmean(rho[ok][rng.integers(0, ok.sum(), ok.sum())]) for _ in range(n_boot)])
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"mean_rho": obs, "low": float(lo), "high": float(hi), "excess": obs - float(null.mean()),
            "p": float((1 + np.sum(null >= obs - 1e-12)) / (1 + n_perm)), "null_mean": float(null.mean()),
            "n_filters": int(ok.sum()), "n_constant": int((~ok).sum()), "n_classes": c,
            "zero_share": float(np.mean(car == 0)), "n_values": int(car.size),
            "per_filter": pd.DataFrame({"filter": filters, "rho": rho, "nonzero": (car != 0).sum(1)})}


def example_filters(car: pd.DataFrame, test: dict, k: int = 3) -> pd.DataFrame:
    """The filters notebook 05 shows, by rule: the ``k`` with the highest overall CAR
    (:func:`~carlib.analysis.summaries.most_important`; ties: the lower filter index), whose
    per-class CAR is the least often 0, with their own class-importance Spearman.

    Args:
        car: ``filter, car`` (overall).
        test: :func:`class_importance_test` of the same layer.
        k: how many.

    Returns:
        ``filter, car, rho, nonzero`` (classes with ``CAR_c != 0``), highest CAR first.

    Example:
        >>> t = {"per_filter": pd.DataFrame({"filter": [0, 1, 2], "rho": [0.1, 0.5, 0.2],
        ...                                  "nonzero": [3, 9, 4]})}
        >>> example_filters(pd.DataFrame({"filter": [0, 1, 2], "car": [0.1, 0.3, 0.1]}), t, 2)["filter"].tolist()
        [1, 0]
    """
    top = most_important(car, k)
    per = test["per_filter"].set_index("filter").loc[top, ["rho", "nonzero"]]
    overall = car.set_index("filter").loc[top, "car"]
    return pd.DataFrame({"filter": top, "car": overall.to_numpy(), "rho": per["rho"].to_numpy(),
                         "nonzero": per["nonzero"].to_numpy()})
