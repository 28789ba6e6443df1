"""carlib.analysis.reliability: replicate selections and split-half reliability of CAR."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from carlib.errors import CarlibError
from carlib.analysis import reliability
from carlib.analysis.reliability import (car_on_images, class_halves, lowest_k, pairwise_jaccard,
                                         replicate_color_counts, split_half, split_half_images,
                                         stratified_halves, stratified_split, topk_frequency)
from carlib.analysis.stats import jaccard_chance


def test_docstring_examples():
    assert doctest.testmod(reliability).failed == 0


def _random_selections(r: int, n: int, k: int, seed: int, stable: int = 0) -> list[list[int]]:
    """``r`` selections of ``k`` of ``n`` filters; the first ``stable`` filters in every one."""
    rng = np.random.default_rng(seed)
    return [list(range(stable)) + [int(f) for f in rng.permutation(np.arange(stable, n))[:k - stable]]
            for _ in range(r)]


def test_topk_frequency_finds_the_stable_filters():
    sel = _random_selections(10, 64, 20, seed=0, stable=8)
    t = topk_frequency(sel, 64, k=20)
    assert t["filter"].head(8).tolist() == list(range(8)) and (t["in_top"].head(8) == 10).all()
    assert t["in_top"].sum() == 200 and (t["replicates"] == 10).all() and len(t) == 64
    assert (t["low"] <= t["share"]).all() and (t["share"] <= t["high"]).all()
    assert t["chance"].iloc[0] == pytest.approx(20 / 64)
    with pytest.raises(CarlibError):
        topk_frequency([sel[0]], 64)


def test_pairwise_jaccard_random_selections_sit_at_chance():
    t = pairwise_jaccard(_random_selections(30, 64, 20, seed=1), 64, k=20)
    assert len(t) == 30 * 29 // 2
    assert t.attrs["chance_jaccard"] == pytest.approx(jaccard_chance(20, 64))
    assert t.attrs["mean_jaccard"] == pytest.approx(t.attrs["chance_jaccard"], abs=0.02)
    assert t.attrs["mean_shared"] == pytest.approx(20 * 20 / 64, abs=0.3)
    assert np.mean(t["p_greater"] < 0.05) < 0.1


def test_pairwise_jaccard_identical_selections_are_significant():
    t = pairwise_jaccard([list(range(20))] * 3, 64, k=20)
    assert (t["jaccard"] == 1.0).all() and (t["shared"] == 20).all() and (t["p_greater"] < 1e-10).all()


def test_replicate_color_counts_interval_covers_the_expected_count():
    color = np.zeros(64, dtype=bool)
    color[:16] = True  # expected count of a random 20-subset: 5
    r = replicate_color_counts(_random_selections(40, 64, 20, seed=2), color, k=20)
    assert r["replicates"] == 40 and r["expected"] == 5.0 and len(r["counts"]) == 40
    assert r["low"] < 5.0 < r["high"] and r["min"] <= r["mean"] <= r["max"]


def test_lowest_k_breaks_ties_by_the_lower_filter():
    assert lowest_k(pd.DataFrame({"filter": [2, 0, 1], "car": [0.0, 0.0, -0.1]}), 2) == [1, 0]


def _planted_correctness(n_images: int, drop: np.ndarray, seed: int):
    """Per-image correctness: the network is right on about 60 % of the images; pruning filter
    i loses each right image with probability ``drop[i]`` (so CAR_i = 0.6 drop_i on average)."""
    rng = np.random.default_rng(seed)
    base = rng.random(n_images) < 0.6
    pruned = base[None, :] & (rng.random((len(drop), n_images)) >= drop[:, None])
    labels = np.arange(n_images) % 50
    return base, pruned, labels


def test_car_on_images_and_halves():
    base, pruned, labels = _planted_correctness(1000, np.linspace(0, 0.2, 16), seed=3)
    np.testing.assert_allclose(car_on_images(base, pruned, np.arange(1000)),
                               base.mean() - pruned.mean(axis=1))
    with pytest.raises(CarlibError, match="no images"):
        car_on_images(base, pruned, [])
    a, b = stratified_halves(labels, seed=0)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 1000
    assert all(abs(np.sum(labels[a] == c) - np.sum(labels[b] == c)) <= 1 for c in range(50))
    odd = np.array([0, 0, 0, 1, 1, 1, 2])
    h = stratified_halves(odd)
    assert abs(len(h[0]) - len(h[1])) <= 1 and sorted(np.concatenate(h)) == list(range(7))
    assert [x.tolist() for x in stratified_halves(labels, 5)] == [x.tolist() for x in stratified_halves(labels, 5)]


def test_stratified_split_deals_one_image_per_class_to_each_part():
    labels = np.repeat(np.arange(20), 10)
    parts = stratified_split(labels, 10, seed=3)
    assert all(sorted(labels[p].tolist()) == list(range(20)) for p in parts)
    assert sorted(np.concatenate(parts).tolist()) == list(range(200))


def test_split_half_images_is_split_half_on_the_stratified_halves():
    base, pruned, labels = _planted_correctness(600, np.linspace(0, 0.3, 24), seed=8)
    r = split_half_images(base, pruned, labels, seed=2, k=6, n_perm=499, n_boot=100)
    a, b = stratified_halves(labels, seed=2)
    want = split_half(car_on_images(base, pruned, a), car_on_images(base, pruned, b), seed=2, k=6,
                      n_perm=499, n_boot=100)
    assert r["n_images"] == (300, 300) and {k: r[k] for k in want} == want


def test_class_halves_equal_car_on_the_halves_images():
    base, pruned, labels = _planted_correctness(400, np.linspace(0, 0.3, 6), seed=4)
    rows = []
    for f in range(6):
        for c in range(50):
            m = labels == c
            rows.append({"filter": f, "class": c, "n": int(m.sum()),
                         "car": base[m].mean() - pruned[f, m].mean()})
    h1, h2 = class_halves(pd.DataFrame(rows), seed=1)
    classes = np.random.default_rng(1).permutation(np.arange(50))
    for h, part in ((h1, classes[:25]), (h2, classes[25:])):
        imgs = np.flatnonzero(np.isin(labels, part))
        np.testing.assert_allclose(h["car"], car_on_images(base, pruned, imgs), atol=1e-12)
        assert (h["n_images"] == len(imgs)).all()


def test_split_half_detects_a_reliable_car():
    drop = np.random.default_rng(5).uniform(0, 0.3, 64)  # real differences between filters
    base, pruned, labels = _planted_correctness(2000, drop, seed=6)
    a, b = stratified_halves(labels, seed=0)
    r = split_half(car_on_images(base, pruned, a), car_on_images(base, pruned, b), k=20,
                   n_perm=1999, n_boot=500)
    assert r["n_filters"] == 64 and r["rho"] > 0.8 and r["p"] == pytest.approx(1 / 2000)
    assert r["fisher_low"] < r["rho"] < r["fisher_high"] and r["boot_low"] < r["rho"] < r["boot_high"]
    assert r["reliability"] == pytest.approx(2 * r["rho"] / (1 + r["rho"]))
    assert r["reliability_low"] < r["reliability"] < r["reliability_high"]
    assert r["expected_shared"] == pytest.approx(400 / 64)
    assert r["shared_lowest"] >= 14 and r["p_shared"] < 1e-4


def test_split_half_of_equal_filters_is_not_reliable():
    base, pruned, labels = _planted_correctness(2000, np.full(64, 0.1), seed=7)
    a, b = stratified_halves(labels, seed=0)
    r = split_half(car_on_images(base, pruned, a), car_on_images(base, pruned, b), k=20,
                   n_perm=1999, n_boot=500)
    assert r["p"] > 0.05 and r["fisher_low"] < 0 < r["fisher_high"] and r["p_shared"] > 0.05
    with pytest.raises(CarlibError):
        split_half(np.zeros(4), np.zeros(5))


def test_split_half_overlap_does_not_count_ties_as_agreement():
    """Two unrelated halves where most filters have CAR exactly 0: breaking the ties by the
    filter index would put the same low-index filters in both bottom sets."""
    rng = np.random.default_rng(9)
    a, b = np.zeros(64), np.zeros(64)
    a[rng.permutation(64)[:10]] = 0.01
    b[rng.permutation(64)[:10]] = 0.01
    assert len(set(lowest_k(a, 20)) & set(lowest_k(b, 20))) >= 15  # index ties: spurious overlap
    r = split_half(a, b, k=20, n_perm=999, n_boot=100)
    assert r["p_shared"] > 0.05
    assert lowest_k(a, 20, seed=1) != lowest_k(a, 20, seed=2)  # random tie orders differ
