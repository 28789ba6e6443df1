"""How reproducible CAR and its top-k selections are: replicates and split-half reliability.

* Replicates (several greedy selections, one per disjoint image subset or bootstrap sample):
  :func:`topk_frequency` (how often each filter is among the first ``k``), :func:`pairwise_jaccard`
  (overlaps, against :func:`~carlib.analysis.stats.jaccard_chance`), :func:`replicate_color_counts`
  (color filters among the first ``k`` of each replicate; mean with a t interval over replicates).
  :func:`stratified_split` deals the images into disjoint 1-per-class (or n-per-class) sets.
* Split-half reliability of CAR: :func:`split_half` compares CAR measured on two disjoint image
  halves (Spearman with intervals and a permutation p, Spearman-Brown reliability of the whole,
  overlap of the ``k`` lowest-CAR filters against its hypergeometric chance). The halves come
  from per-image correctness (:func:`split_half_images`: :func:`car_on_images` on
  :func:`stratified_halves`) or from a per-class CAR table split by classes (:func:`class_halves`).

Ties in CAR are broken by the lower filter index, as in the greedy loop, except in the
split-half overlap (:func:`split_half`), where they are broken at random in each half.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import CarlibError
from .selectivity import hypergeom_enrichment
from .stats import LEVEL, jaccard_chance, spearman_brown, spearman_test, wilson_interval

__all__ = ["topk_frequency", "pairwise_jaccard", "replicate_color_counts", "lowest_k",
           "car_on_images", "stratified_split", "stratified_halves", "class_halves", "split_half",
           "split_half_images"]


def _tops(selections: Sequence[Sequence[int]], k: int) -> list[list[int]]:
    tops = [[int(f) for f in s[:k]] for s in selections]
    if len(tops) < 2 or any(len(t) < k for t in tops):
        raise CarlibError(f"got {len(tops)} selections of {min(map(len, tops), default=0)} or more filters; "
                          f"pass at least 2 selections of at least k={k} filters (or a smaller k)")
    return tops


def topk_frequency(selections: Sequence[Sequence[int]], n_filters: int, k: int = 20,
                   level: float = LEVEL) -> pd.DataFrame:
    """How often each filter is among the first ``k`` of a selection, over the replicates.

    Args:
        selections: one pruning order per replicate (only the first ``k`` count).
        n_filters: filters in the layer.
        k: top size.
        level: coverage of the Wilson interval.

    Returns:
        One row per filter, most frequent first (ties: lower index): ``filter, in_top, replicates,
        share, low, high, chance`` (``chance = k / n_filters``, the share for a random selection).

    Example:
        >>> t = topk_frequency([[3, 1, 0], [3, 2, 1]], 5, k=2)
        >>> t[["filter", "in_top"]].head(2).values.tolist()
        [[3, 2], [1, 1]]
    """
    tops = _tops(selections, k)
    counts = np.zeros(n_filters, dtype=int)
    for t in tops:
        counts[t] += 1
    r = len(tops)
    ci = [wilson_interval(int(c), r, level) for c in counts]
    df = pd.DataFrame({"filter": np.arange(n_filters), "in_top": counts, "replicates": r,
                       "share": counts / r, "low": [c[0] for c in ci], "high": [c[1] for c in ci],
                       "chance": k / n_filters})
    return df.sort_values(["in_top", "filter"], ascending=[False, True], kind="stable").reset_index(drop=True)


def pairwise_jaccard(selections: Sequence[Sequence[int]], n_filters: int, k: int = 20) -> pd.DataFrame:
    """Overlap of the first ``k`` filters of every pair of replicates.

    Args:
        selections: one pruning order per replicate.
        n_filters: filters in the layer.
        k: top size.

    Returns:
        ``a, b, shared, jaccard, p_greater`` (hypergeometric P(shared >= observed) for two
        independent random k-subsets); ``attrs``: ``chance_jaccard``, ``chance_shared``
        (``k * k / n_filters``), ``mean_jaccard``, ``mean_shared``, ``k``, ``n_filters``.

    Example:
        >>> t = pairwise_jaccard([[0, 1, 2], [0, 1, 3]], 8, k=2)
        >>> float(t.loc[0, "jaccard"]), t.attrs["chance_shared"]
        (1.0, 0.5)
    """
    tops = _tops(selections, k)
    rows = []
    for (i, a), (j, b) in combinations(enumerate(tops), 2):
        shared = len(set(a) & set(b))
        rows.append({"a": i, "b": j, "shared": shared, "jaccard": shared / (2 * k - shared),
                     "p_greater": hypergeom_enrichment(shared, k, k, n_filters)["p_greater"]})
    df = pd.DataFrame(rows)
    df.attrs.update({"chance_jaccard": jaccard_chance(k, n_filters), "chance_shared": k * k / n_filters,
                     "mean_jaccard": float(df["jaccard"].mean()), "mean_shared": float(df["shared"].mean()),
                     "k": k, "n_filters": n_filters})
    return df


def replicate_color_counts(selections: Sequence[Sequence[int]], is_color: np.ndarray, k: int = 20,
                           level: float = LEVEL) -> dict:
    """Color filters among the first ``k`` of each replicate, and their mean with an interval.

    Args:
        selections: one pruning order per replicate.
        is_color: boolean label of every filter of the layer (position = filter).
        k: top size.
        level: coverage.

    Returns:
        ``{"counts": per replicate, "replicates", "k", "mean", "low", "high", "min", "max",
        "expected"}``: ``low, high`` is the t interval of the mean count over replicates (the
        count a selection on another image set of the same size would give on average);
        ``expected = k * colour filters / filters`` is the count of a random selection.

    Example:
        >>> r = replicate_color_counts([[0, 1], [0, 2], [1, 2]], np.array([1, 1, 0, 0], bool), k=2)
        >>> r["counts"], r["expected"]
        ([2, 1, 1], 1.0)
    """
    tops = _tops(selections, k)
    color = np.asarray(is_color, dtype=bool)
    counts = [int(color[t].sum()) for t in tops]
    r, mean = len(counts), float(np.mean(counts))
    half = float(sps.t.ppf(0.5 + level / 2, r - 1) * np.std(counts, ddof=1) / np.sqrt(r))
    return {"counts": counts, "replicates": r, "k": k, "mean": mean, "low": mean - half,
            "high": mean + half, "min": min(counts), "max": max(counts),
            "expected": k * float(color.sum()) / len(color)}


def _car_array(car: pd.DataFrame | np.ndarray) -> np.ndarray:
    if isinstance(car, pd.DataFrame):
        return car.sort_values("filter")["car"].to_numpy(dtype=float)
    return np.asarray(car, dtype=float)


def lowest_k(car: pd.DataFrame | np.ndarray, k: int, seed: int | None = None) -> list[int]:
    """The ``k`` filters with the lowest CAR.

    Args:
        car: a CAR table (``filter, car``) or the CAR of every filter (position = filter).
        k: how many.
        seed: ``None``: ties broken by the lower filter index (the first ``k`` a one-shot CAR
            order prunes); else ties broken in a random order drawn with this seed.

    Returns:
        Filter indices, lowest CAR first.

    Example:
        >>> lowest_k(np.array([0.2, 0.0, 0.0, 0.1]), 3)
        [1, 2, 3]
    """
    c = _car_array(car)
    tie = np.arange(len(c)) if seed is None else np.random.default_rng(seed).permutation(len(c))
    return [int(i) for i in np.lexsort((tie, c))[:k]]


def car_on_images(base_correct: np.ndarray, pruned_correct: np.ndarray, images: np.ndarray) -> np.ndarray:
    """CAR of every filter on a subset of the images, from per-image correctness.

    Args:
        base_correct: ``(N,)`` whether the unpruned network classifies each image correctly.
        pruned_correct: ``(filters, N)`` the same with each filter pruned.
        images: indices (or a boolean mask) of the images to use.

    Returns:
        ``(filters,)``: ``acc(network) - acc(network without filter i)`` on those images.

    Example:
        >>> car_on_images(np.array([1, 1, 0, 1]), np.array([[1, 0, 0, 1], [1, 1, 1, 1]]), [0, 1])
        array([0.5, 0. ])
    """
    base = np.asarray(base_correct, dtype=float)[images]
    pruned = np.asarray(pruned_correct, dtype=float)[:, images]
    if base.size == 0:
        raise CarlibError("car_on_images got no images; pass the indices (or mask) of at least one image")
    return base.mean() - pruned.mean(axis=1)


def stratified_split(labels: np.ndarray, parts: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Split images into ``parts`` disjoint subsets with each class divided as evenly as possible
    (the replicates' image sets, or the two halves of a split-half).

    Each class's images are shuffled and dealt in turn; the subset that gets a class's first
    image continues from where the previous class stopped, so the subsets differ in size by at
    most one image.

    Args:
        labels: ``(N,)`` class of each image.
        parts: number of subsets (10 images per class and ``parts=10``: ten 1-per-class sets).
        seed: random seed.

    Returns:
        ``parts`` sorted index arrays.

    Example:
        >>> [len(p) for p in stratified_split(np.array([0, 0, 1, 1, 1, 2]), 3)]
        [2, 2, 2]
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(parts)]
    start = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        for j, i in enumerate(idx):
            out[(j + start) % parts].append(int(i))
        start = (start + len(idx)) % parts
    return [np.sort(np.array(o, dtype=np.int64)) for o in out]


def stratified_halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stratified_split` in two.

    Args:
        labels: ``(N,)`` class of each image.
        seed: random seed.

    Returns:
        Two sorted index arrays.

    Example:
        >>> a, b = stratified_halves(np.array([0, 0, 1, 1, 1, 2]))
        >>> len(a), len(b), len(np.intersect1d(a, b))
        (3, 3, 0)
    """
    a, b = stratified_split(labels, 2, seed)
    return a, b


def class_halves(per_class: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CAR of every filter on two disjoint halves of the classes, from a per-class CAR table.

    The classes are shuffled and cut in two; a half's CAR is the image-weighted mean of its
    classes' ``CAR_c`` (exactly the CAR on that half's images). Use it when each class has a
    single image, or when only the per-class table is at hand.

    Args:
        per_class: ``filter, class, n, car`` (:func:`carlib.car_index` with ``per_class=True``).
        seed: random seed.

    Returns:
        Two ``filter, car, n_images`` tables.

    Example:
        >>> t = pd.DataFrame({"filter": [0, 0, 1, 1], "class": [0, 1, 0, 1], "n": 2,
        ...                   "car": [0.5, 0.0, 0.0, 0.5]})
        >>> [h["car"].tolist() for h in class_halves(t)]
        [[0.5, 0.0], [0.0, 0.5]]
    """
    classes = np.sort(per_class["class"].unique())
    order = np.random.default_rng(seed).permutation(classes)
    out = []
    for part in (order[: len(order) // 2], order[len(order) // 2:]):
        t = per_class[per_class["class"].isin(part)]
        g = (t["car"] * t["n"]).groupby(t["filter"]).sum() / t.groupby("filter")["n"].sum()
        out.append(pd.DataFrame({"filter": g.index.to_numpy(), "car": g.to_numpy(),
                                 "n_images": int(t.groupby("filter")["n"].sum().iloc[0])}))
    return out[0], out[1]


def split_half(car_a: pd.DataFrame | np.ndarray, car_b: pd.DataFrame | np.ndarray, *, k: int = 20,
               n_perm: int = 10_000, n_boot: int = 2_000, seed: int = 0, level: float = LEVEL) -> dict:
    """Split-half reliability of CAR: do two disjoint image halves rank the filters alike?

    Args:
        car_a, car_b: CAR of every filter on each half (tables ``filter, car`` or arrays).
        k: the bottom set compared (the filters a one-shot CAR order prunes first).
        n_perm, n_boot: permutations and bootstrap resamples of :func:`spearman_test`.
        seed: random seed.
        level: coverage.

    Returns:
        ``{"n_filters", "rho", "p", "fisher_low", "fisher_high", "boot_low", "boot_high",
        "reliability", "reliability_low", "reliability_high", "k", "shared_lowest",
        "expected_shared", "p_shared"}``: ``rho`` is Spearman over filters with its two-sided
        permutation p (null: no association); ``reliability`` is its Spearman-Brown correction
        ``2 rho / (1 + rho)`` (the reliability of CAR on both halves together), its interval the
        Fisher interval so transformed; ``shared_lowest`` counts filters among the ``k`` lowest
        CAR of both halves (ties in each half broken in a random order, seeded ``seed`` and
        ``seed + 1``), against ``k * k / n`` expected for unrelated halves, with the
        hypergeometric ``p_shared = P(X >= shared_lowest)``.

    Example:
        >>> a = np.arange(40.0); b = a + np.random.default_rng(0).normal(0, 5, 40)
        >>> r = split_half(a, b, k=10, n_perm=999, n_boot=200)
        >>> r["rho"] > 0.9, r["p"] <= 0.001, r["shared_lowest"] >= 7
        (True, True, True)
    """
    a, b = _car_array(car_a), _car_array(car_b)
    if a.shape != b.shape:
        raise CarlibError(f"the halves have the CAR of {len(a)} and {len(b)} filters; pass the CAR of the same filters")
    t = spearman_test(a, b, n_perm=n_perm, n_boot=n_boot, seed=seed, level=level)
    n = len(a)
    # ties broken at random, independently in each half: breaking them by the filter index
    # would make two halves with many equal CARs (e.g. 0) agree for no reason in the data
    shared = len(set(lowest_k(a, k, seed=seed)) & set(lowest_k(b, k, seed=seed + 1)))
    e = hypergeom_enrichment(shared, k, k, n)
    return {"n_filters": n, "rho": t["rho"], "p": t["p"], "fisher_low": t["fisher_low"],
            "fisher_high": t["fisher_high"], "boot_low": t["boot_low"], "boot_high": t["boot_high"],
            "reliability": spearman_brown(t["rho"]), "reliability_low": spearman_brown(t["fisher_low"]),
            "reliability_high": spearman_brown(t["fisher_high"]), "k": k, "shared_lowest": shared,
            "expected_shared": e["expected"], "p_shared": e["p_greater"]}


def split_half_images(base_correct: np.ndarray, pruned_correct: np.ndarray, labels: np.ndarray, *,
                      seed: int = 0, **kwargs: object) -> dict:
    """:func:`split_half` of CAR on two stratified halves of the images (:func:`stratified_halves`),
    from per-image correctness.

    Args:
        base_correct: ``(N,)`` whether the unpruned network is right on each image.
        pruned_correct: ``(filters, N)`` the same with each filter pruned alone.
        labels: ``(N,)`` class of each image.
        seed: seed of the split (and of the test).
        **kwargs: ``k``, ``n_perm``, ``n_boot``, ``level`` of :func:`split_half`.

    Returns:
        :func:`split_half`'s dict and ``n_images``: the two halves' sizes.

    Example:
        >>> rng = np.random.default_rng(0); base = rng.random(400) < 0.6
        >>> pruned = base & (rng.random((30, 400)) >= np.linspace(0, 0.5, 30)[:, None])
        >>> r = split_half_images(base, pruned, np.arange(400) % 20, k=5, n_perm=999, n_boot=100)
        >>> r["n_images"], r["rho"] > 0.7
        ((200, 200), True)
    """
    a, b = stratified_halves(labels, seed)
    r = split_half(car_on_images(base_correct, pruned_correct, a),
                   car_on_images(base_correct, pruned_correct, b), seed=seed, **kwargs)
    r["n_images"] = (len(a), len(b))
    return r
