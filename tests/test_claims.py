"""carlib.analysis.claims: the interpretation claims as tests, on data where the truth is known."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from carlib.errors import CarlibError
from carlib.analysis import claims
from carlib.analysis.claims import (car_color_correlation, class_importance_test, example_filters,
                                    pooled_enrichment, pruned_vs_rest)
from carlib.analysis.selectivity import hypergeom_enrichment


def test_docstring_examples():
    assert doctest.testmod(claims).failed == 0


def test_car_color_correlation_planted_and_null():
    rng = np.random.default_rng(0)
    color = rng.random(64)
    car = pd.DataFrame({"filter": np.arange(64)[::-1], "car": (-color + 0.3 * rng.standard_normal(64))[::-1]})
    r = car_color_correlation(car, pd.DataFrame({"filter": np.arange(64), "color_index": color}),
                              n_perm=1999, n_boot=300)
    assert r["rho"] < -0.5 and r["p_less"] == pytest.approx(1 / 2000) and r["boot_high"] < 0
    null = car_color_correlation(rng.random(64), color, n_perm=1999, n_boot=300)
    assert null["p"] > 0.05 and null["fisher_low"] < 0 < null["fisher_high"] and null["n"] == 64


def test_pruned_vs_rest_planted_and_null():
    rng = np.random.default_rng(1)
    color = rng.random(64)
    top = list(np.argsort(-color)[:20])  # the 20 most colored are pruned
    r = pruned_vs_rest(color, top, n_perm=1999, n_boot=300)
    assert r["n_a"] == 20 and r["n_b"] == 44 and r["rank_biserial"] == 1.0
    assert r["p_greater"] == pytest.approx(1 / 2000) and r["rb_low"] > 0 and r["hl_low"] > 0
    null = pruned_vs_rest(color, list(rng.permutation(64)[:20]), n_perm=1999, n_boot=300)
    assert null["p"] > 0.05 and null["rb_low"] < 0 < null["rb_high"]
    with pytest.raises(CarlibError):
        pruned_vs_rest(color, list(range(64)))


def test_pooled_enrichment_exact_law():
    color = np.zeros(64, dtype=bool)
    color[:20] = True
    one = pooled_enrichment([[0, 1, 2, 30, 40]], color, k=5, n_perm=20_000)
    want = hypergeom_enrichment(3, 5, 20, 64)["p_greater"]
    assert one["p_independent"] == pytest.approx(want) and one["p_greater"] == pytest.approx(want, abs=0.01)
    # the law for independent replicates is the sum of hypergeometric counts: check it by simulation
    rng = np.random.default_rng(2)
    sims = (rng.random((20_000, 3, 64)).argsort(2)[:, :, :5] < 20).sum((1, 2))
    sel = [[0, 1, 2, 30, 40], [0, 1, 50, 51, 52], [3, 4, 5, 6, 60]]
    r = pooled_enrichment(sel, color, k=5)
    assert r["pooled"] == 9 and r["slots"] == 15 and r["expected"] == pytest.approx(15 * 20 / 64)
    assert r["p_independent"] == pytest.approx(np.mean(sims >= 9), abs=0.01)
    assert r["p_fisher"] == pytest.approx(sps.combine_pvalues(r["p_each"]).pvalue)
    with pytest.raises(CarlibError, match="k=5"):
        pooled_enrichment([[0, 1, 2]], color, k=5)


def test_pooled_enrichment_does_not_count_repeated_selections_as_evidence():
    """Ten copies of one selection carry the evidence of one: the label permutation says so,
    the independence law does not."""
    color = np.zeros(64, dtype=bool)
    color[:20] = True
    sel = [0, 1, 2, 3, 4, 5, 6, 7] + list(range(30, 42))  # 8 color of 20, 6.25 expected
    single = hypergeom_enrichment(8, 20, 20, 64)["p_greater"]
    r = pooled_enrichment([sel] * 10, color, n_perm=20_000)
    assert r["p_greater"] == pytest.approx(single, abs=0.01) and r["p_independent"] < single / 10


def test_pooled_enrichment_planted_and_null():
    color = np.zeros(64, dtype=bool)
    color[:20] = True
    rng = np.random.default_rng(3)
    planted = [list(rng.permutation(20)[:12]) + list(20 + rng.permutation(44)[:8]) for _ in range(5)]
    r = pooled_enrichment(planted, color)
    assert r["pooled"] == 60 and r["p_greater"] < 1e-3 and r["p_independent"] < 1e-6 and r["p_fisher"] < 1e-4
    null = pooled_enrichment([list(rng.permutation(64)[:20]) for _ in range(5)], color)
    assert null["p_greater"] > 0.05 and null["p_independent"] > 0.05


def _class_tables(filters: int, classes: int, sigma: float, seed: int, shuffle: bool = False):
    rng = np.random.default_rng(seed)
    act = rng.standard_normal((filters, classes))
    car = act + sigma * rng.standard_normal((filters, classes))
    if shuffle:  # CAR profiles unrelated to the filter's own activations
        car = rng.standard_normal((filters, classes))
    long = pd.DataFrame({"filter": np.repeat(np.arange(filters), classes),
                         "class": np.tile(np.arange(classes), filters), "car": car.ravel()})
    return long, pd.DataFrame(act)


def test_class_importance_planted_signal_is_detected_and_covered():
    long, act = _class_tables(60, 40, sigma=1.0, seed=4)
    r = class_importance_test(long, act, n_perm=999, n_boot=500)
    # E[sample Spearman] for a bivariate normal with r = 1/sqrt(2) and n = 40 (Moran 1948)
    rr, n = 1 / np.sqrt(2), 40
    truth = 6 / (np.pi * (n + 1)) * (np.arcsin(rr) + (n - 2) * np.arcsin(rr / 2))
    assert r["low"] < truth < r["high"] and r["p"] == pytest.approx(1 / 1000)
    assert abs(r["null_mean"]) < 0.05 and r["n_filters"] == 60 and r["n_classes"] == 40
    assert r["zero_share"] == 0.0 and r["n_values"] == 2400 and len(r["per_filter"]) == 60


def test_class_importance_null_and_zero_counts():
    long, act = _class_tables(60, 40, sigma=1.0, seed=5, shuffle=True)
    long.loc[long["filter"] == 7, "car"] = 0.0  # one filter never matters: constant profile
    long.loc[long.index[5:100:3], "car"] = 0.0  # scattered zeros, no other profile constant
    r = class_importance_test(long, act, n_perm=999, n_boot=300)
    assert r["p"] > 0.05 and r["low"] < 0 < r["high"]
    assert r["n_constant"] == 1 and r["n_filters"] == 59
    assert r["zero_share"] == pytest.approx(np.mean(long.sort_values(["filter", "class"])["car"] == 0))
    assert np.isnan(r["per_filter"].set_index("filter").loc[7, "rho"])
    assert r["per_filter"].set_index("filter").loc[7, "nonzero"] == 0


def test_example_filters_rule():
    long, act = _class_tables(10, 8, sigma=0.5, seed=6)
    test = class_importance_test(long, act, n_perm=99, n_boot=50)
    car = pd.DataFrame({"filter": np.arange(10), "car": [0.1, 0.5, 0.5, 0.0, 0.2, 0, 0, 0, 0, 0.3]})
    t = example_filters(car, test, k=3)
    assert t["filter"].tolist() == [1, 2, 9] and t["car"].tolist() == [0.5, 0.5, 0.3]
    assert t["rho"].tolist() == test["per_filter"].set_index("filter").loc[[1, 2, 9], "rho"].tolist()
