"""Statistical primitives the claims are tested with: intervals, rank correlations, rank tests.

Every function is deterministic (a fixed ``seed`` drives the permutations and bootstrap
resamples), returns its sample size beside the estimate, and states its null:

* :func:`wilson_interval`: a binomial proportion's Wilson score interval.
* :func:`spearman_test`: Spearman's rho with a permutation p-value (null: the two variables are
  exchangeable, i.e. independent), a Fisher-z interval (standard error ``sqrt(1.06 / (n - 3))``,
  Fieller, Hartley & Pearson 1957) and a bootstrap percentile interval (pairs resampled).
* :func:`rank_biserial_test`: Mann-Whitney U of two groups, the rank-biserial effect
  ``r = 2 U / (n1 n2) - 1 = P(X > Y) - P(X < Y)``, the Hodges-Lehmann shift (median of all
  differences), permutation p-values (null: group labels exchangeable) and bootstrap intervals
  (resampled within each group).
* :func:`jaccard_chance`: the expected Jaccard overlap of two independent uniform k-subsets.
* :func:`spearman_brown`: the reliability of the whole from that of two halves.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from ..compare import wilson_interval as core_wilson
from ..errors import CarlibError

__all__ = ["LEVEL", "wilson_interval", "paired_difference_interval", "spearman_test",
           "rank_biserial_test", "jaccard_chance", "spearman_brown"]

#: coverage of every interval
LEVEL = 0.95


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (:func:`carlib.compare.wilson_interval`;
    here ``n = 0``, an empty cell of a table, gives ``(nan, nan)``).

    Args:
        k: successes.
        n: trials.
        level: coverage.

    Returns:
        ``(low, high)``, fractions.

    Example:
        >>> [round(v, 3) for v in wilson_interval(17, 20)]
        [0.64, 0.948]
    """
    if n == 0:
        return float("nan"), float("nan")
    return core_wilson(k, n, level)


def paired_difference_interval(b: int, c: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wald interval of the difference of two paired proportions, ``(b - c) / n``, where ``b``
    images are right only under the first condition and ``c`` only under the second (the
    discordant pairs of McNemar's test): ``se = sqrt(b + c - (b - c)**2 / n) / n``.

    Args:
        b, c: discordant counts.
        n: images.
        level: coverage.

    Returns:
        ``(low, high)``, fractions.

    Example:
        >>> [round(v, 3) for v in paired_difference_interval(30, 10, 200)]
        [0.04, 0.16]
    """
    if n <= 0:
        raise CarlibError(f"n must be positive, got {n}")
    d = (b - c) / n
    se = float(np.sqrt(max(b + c - (b - c) ** 2 / n, 0.0))) / n
    z = float(sps.norm.ppf(0.5 + level / 2))
    return d - z * se, d + z * se


def _rank_rows(a: np.ndarray) -> np.ndarray:
    return sps.rankdata(a, axis=-1)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation (nan where a row is constant)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), np.nan)


def spearman_test(x: np.ndarray, y: np.ndarray, *, n_perm: int = 10_000, n_boot: int = 2_000,
                  seed: int = 0, level: float = LEVEL) -> dict:
    """Spearman's rank correlation with a permutation p-value and two intervals.

    Args:
        x, y: paired samples (same length n >= 4; ties get average ranks).
        n_perm: permutations of ``y`` for the p-value.
        n_boot: bootstrap resamples of the pairs for the percentile interval.
        seed: random seed.
        level: coverage of the intervals.

    Returns:
        ``{"rho", "n", "p", "p_greater", "p_less", "fisher_low", "fisher_high", "boot_low",
        "boot_high"}``: ``p`` two-sided (``|rho_perm| >= |rho|``), ``p_greater`` for a positive
        and ``p_less`` for a negative association, all as ``(1 + hits) / (1 + n_perm)``.

    Example:
        >>> r = spearman_test(np.arange(30.0), np.arange(30.0) ** 2, n_perm=999, n_boot=200)
        >>> r["rho"], r["n"], r["p"] <= 0.001
        (1.0, 30, True)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 4:
        raise CarlibError(f"spearman_test got samples of shapes {x.shape} and {y.shape}; "
                          "pass two 1-D samples of the same length, at least 4")
    n = len(x)
    rx, ry = _rank_rows(x), _rank_rows(y)
    rho = float(_pearson_rows(rx, ry))
    rng = np.random.default_rng(seed)
    perm = rng.permuted(np.broadcast_to(ry, (n_perm, n)), axis=1)
    null = _pearson_rows(np.broadcast_to(rx, (n_perm, n)), perm)
    eps = 1e-12
    out = {"rho": rho, "n": n,
           "p": float((1 + np.sum(np.abs(null) >= abs(rho) - eps)) / (1 + n_perm)),
           "p_greater": float((1 + np.sum(null >= rho - eps)) / (1 + n_perm)),
           "p_less": float((1 + np.sum(null <= rho + eps)) / (1 + n_perm))}
    z, se, q = np.arctanh(np.clip(rho, -0.999999, 0.999999)), np.sqrt(1.06 / max(n - 3, 1)), sps.norm.ppf(0.5 + level / 2)
    out["fisher_low"], out["fisher_high"] = float(np.tanh(z - q * se)), float(np.tanh(z + q * se))
    idx = rng.integers(0, n, (n_boot, n))
    boot = _pearson_rows(_rank_rows(x[idx]), _rank_rows(y[idx]))
    lo, hi = np.nanquantile(boot, [(1 - level) / 2, (1 + level) / 2])
    out["boot_low"], out["boot_high"] = float(lo), float(hi)
    return out


def rank_biserial_test(a: np.ndarray, b: np.ndarray, *, n_perm: int = 10_000, n_boot: int = 2_000,
                       seed: int = 0, level: float = LEVEL) -> dict:
    """Mann-Whitney U test of group ``a`` against group ``b``, with effect sizes and intervals.

    Args:
        a, b: the two samples (e.g. the color index of the top-k pruned filters, and of the rest).
        n_perm: permutations of the group labels.
        n_boot: bootstrap resamples (within each group).
        seed: random seed.
        level: coverage of the intervals.

    Returns:
        ``{"n_a", "n_b", "u", "rank_biserial", "rb_low", "rb_high", "hodges_lehmann", "hl_low",
        "hl_high", "p", "p_greater", "p_less"}``: ``u`` counts pairs with ``a > b`` (ties 1/2);
        ``p_greater`` is the permutation p for ``a`` tending to be larger, ``p`` two-sided.

    Example:
        >>> r = rank_biserial_test(np.arange(10.0) + 10, np.arange(10.0), n_perm=999, n_boot=200)
        >>> r["rank_biserial"], r["hodges_lehmann"], r["p_greater"] <= 0.001
        (1.0, 10.0, True)
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) < 1 or len(b) < 1:
        raise CarlibError(f"rank_biserial_test got groups of {len(a)} and {len(b)} values; pass two non-empty groups")
    na, nb = len(a), len(b)

    def u_of(ranks_a: np.ndarray) -> np.ndarray:
        return ranks_a.sum(-1) - na * (na + 1) / 2

    pooled = np.concatenate([a, b])
    ranks = sps.rankdata(pooled)
    u = float(u_of(ranks[:na]))
    rng = np.random.default_rng(seed)
    perm = rng.permuted(np.broadcast_to(ranks, (n_perm, na + nb)), axis=1)[:, :na]
    null, centre, eps = u_of(perm), na * nb / 2, 1e-9
    out = {"n_a": na, "n_b": nb, "u": u, "rank_biserial": 2 * u / (na * nb) - 1,
           "p": float((1 + np.sum(np.abs(null - centre) >= abs(u - centre) - eps)) / (1 + n_perm)),
           "p_greater": float((1 + np.sum(null >= u - eps)) / (1 + n_perm)),
           "p_less": float((1 + np.sum(null <= u + eps)) / (1 + n_perm)),
           "hodges_lehmann": float(np.median(np.subtract.outer(a, b)))}
    ia, ib = rng.integers(0, na, (n_boot, na)), rng.integers(0, nb, (n_boot, nb))
    ra, hl = np.empty(n_boot), np.empty(n_boot)
    step = max(1, 2_000_000 // (na * nb))  # resamples per chunk
    for s in range(0, n_boot, step):
        d = (a[ia[s:s + step]][:, :, None] - b[ib[s:s + step]][:, None, :]).reshape(-1, na * nb)
        ra[s:s + step] = (np.sum(d > 0, 1) - np.sum(d < 0, 1)) / (na * nb)
        hl[s:s + step] = np.median(d, axis=1)
    qs = [(1 - level) / 2, (1 + level) / 2]
    out["rb_low"], out["rb_high"] = (float(v) for v in np.quantile(ra, qs))
    out["hl_low"], out["hl_high"] = (float(v) for v in np.quantile(hl, qs))
    return out


def jaccard_chance(k: int, n: int) -> float:
    """Expected Jaccard overlap ``|A & B| / |A | B|`` of two independent uniform ``k``-subsets
    of ``n`` items (the overlap is hypergeometric).

    Args:
        k: subset size.
        n: items.

    Returns:
        The expectation (``k * k / n`` shared items on average).

    Example:
        >>> round(jaccard_chance(20, 64), 3), jaccard_chance(5, 5)
        (0.188, 1.0)
    """
    i = np.arange(max(0, 2 * k - n), k + 1)
    pmf = sps.hypergeom(n, k, k).pmf(i)
    return float(np.sum(pmf * i / (2 * k - i)))


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a measure ``factor`` times as long as one whose reliability is ``r``
    (split-half: the full set is twice a half).

    Args:
        r: reliability (correlation) of the part.
        factor: length ratio.

    Returns:
        ``factor * r / (1 + (factor - 1) * r)``; 0 for ``r <= 0``: a reliability is a share of
        variance, and halves that do not agree positively measure nothing in common.

    Example:
        >>> round(spearman_brown(0.36), 3), spearman_brown(-0.03)
        (0.529, 0.0)
    """
    return float(factor * r / (1 + (factor - 1) * r)) if r > 0 else 0.0
