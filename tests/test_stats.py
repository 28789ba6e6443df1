"""carlib.analysis.stats: intervals cover the truth, planted effects are detected, nulls are not."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import stats as sps

from carlib.errors import CarlibError
from carlib.analysis import stats
from carlib.analysis.stats import (jaccard_chance, rank_biserial_test, spearman_brown, spearman_test,
                                   wilson_interval)


def test_docstring_examples():
    assert doctest.testmod(stats).failed == 0


def test_wilson_interval_known_values_and_edges():
    lo, hi = wilson_interval(17, 20)
    assert (round(lo, 4), round(hi, 4)) == (0.6396, 0.9476)  # textbook values
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert all(np.isnan(wilson_interval(0, 0)))


def _bivariate(n: int, r: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(n)
    return x, r * x + np.sqrt(1 - r * r) * rng.standard_normal(n)


def test_spearman_planted_correlation_is_detected_and_covered():
    x, y = _bivariate(200, 0.6, np.random.default_rng(1))
    r = spearman_test(x, y, n_perm=1999, n_boot=500)
    truth = 6 / np.pi * np.arcsin(0.6 / 2)  # population Spearman of a bivariate normal
    assert r["n"] == 200 and r["rho"] == pytest.approx(sps.spearmanr(x, y).statistic)
    assert r["p"] == pytest.approx(1 / 2000) and r["p_greater"] == pytest.approx(1 / 2000)
    assert r["p_less"] == pytest.approx(1.0)
    assert r["fisher_low"] < truth < r["fisher_high"] and r["boot_low"] < truth < r["boot_high"]


def test_spearman_null_is_calibrated():
    """Independent samples: the permutation p is below 0.05 about 5 % of the time, and the
    Fisher interval covers the true 0 about 95 % of the time."""
    rng = np.random.default_rng(2)
    res = [spearman_test(rng.standard_normal(30), rng.standard_normal(30), n_perm=199, n_boot=10,
                         seed=i) for i in range(300)]
    reject = np.mean([r["p"] < 0.05 for r in res])
    cover = np.mean([r["fisher_low"] < 0 < r["fisher_high"] for r in res])
    assert 0.02 <= reject <= 0.09 and 0.91 <= cover <= 0.98


def test_spearman_permutation_p_agrees_with_the_t_approximation():
    x, y = _bivariate(60, 0.25, np.random.default_rng(3))
    r = spearman_test(x, y, n_perm=20_000, n_boot=10)
    assert r["p"] == pytest.approx(sps.spearmanr(x, y).pvalue, abs=0.01)


def test_spearman_is_deterministic_and_refuses_bad_input():
    x, y = _bivariate(20, 0.3, np.random.default_rng(4))
    assert spearman_test(x, y, n_perm=99, n_boot=50) == spearman_test(x, y, n_perm=99, n_boot=50)
    with pytest.raises(CarlibError):
        spearman_test(x, y[:-1])


def test_rank_biserial_planted_shift_is_detected_and_covered():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(60) + 1.0, rng.standard_normal(60)
    r = rank_biserial_test(a, b, n_perm=1999, n_boot=1000)
    assert r["u"] == pytest.approx(sps.mannwhitneyu(a, b).statistic)
    assert r["p_greater"] <= 0.001 and r["p"] <= 0.002 and r["p_less"] > 0.99
    truth_rb = 2 * sps.norm.cdf(1 / np.sqrt(2)) - 1  # P(X > Y) - P(X < Y)
    assert r["rb_low"] < truth_rb < r["rb_high"] and r["hl_low"] < 1.0 < r["hl_high"]
    assert r["n_a"] == 60 and r["n_b"] == 60


def test_rank_biserial_null_is_calibrated():
    """Same distribution in both groups: p < 0.05 about 5 % of the time, the intervals cover
    the true effect 0 about 95 % of the time."""
    rng = np.random.default_rng(6)
    res = [rank_biserial_test(rng.standard_normal(20), rng.standard_normal(44), n_perm=199,
                              n_boot=200, seed=i) for i in range(200)]
    reject = np.mean([r["p"] < 0.05 for r in res])
    cover_rb = np.mean([r["rb_low"] <= 0 <= r["rb_high"] for r in res])
    cover_hl = np.mean([r["hl_low"] <= 0 <= r["hl_high"] for r in res])
    assert 0.015 <= reject <= 0.1 and 0.88 <= cover_rb <= 0.99 and 0.88 <= cover_hl <= 0.99


def test_rank_biserial_refuses_an_empty_group():
    with pytest.raises(CarlibError, match="non-empty"):
        rank_biserial_test(np.arange(3.0), np.array([]))


def test_jaccard_chance_matches_simulation():
    rng = np.random.default_rng(7)
    a, b = (rng.random((20_000, 64)).argsort(1) < 20 for _ in range(2))  # random 20-subsets
    shared = (a & b).sum(1)
    assert jaccard_chance(20, 64) == pytest.approx(np.mean(shared / (40 - shared)), abs=0.003)
    assert jaccard_chance(20, 20) == 1.0


def test_spearman_brown():
    assert spearman_brown(0.0) == 0.0 and spearman_brown(1.0) == 1.0
    assert spearman_brown(0.5) == pytest.approx(2 / 3) and spearman_brown(0.1) == pytest.approx(0.2 / 1.1)
    assert spearman_brown(-0.2) == spearman_brown(-1.0) == 0.0  # halves that disagree: no reliability


def test_paired_difference_interval_covers_the_truth():
    from carlib.analysis.stats import paired_difference_interval

    rng = np.random.default_rng(0)
    n, covered = 400, 0
    for _ in range(400):  # two correlated classifiers, 0.55 and 0.50 correct: the truth is +0.05
        u = rng.random(n)
        a, b = u < 0.55, (u < 0.45) | ((u > 0.6) & (u < 0.65))
        bb, cc = int((a & ~b).sum()), int((~a & b).sum())
        lo, hi = paired_difference_interval(bb, cc, n)
        assert lo <= (bb - cc) / n <= hi
        covered += lo <= 0.05 <= hi
    assert 0.92 <= covered / 400 <= 0.98
    assert paired_difference_interval(0, 0, 10) == (0.0, 0.0)
    with pytest.raises(CarlibError, match="n must be positive"):
        paired_difference_interval(1, 0, 0)
