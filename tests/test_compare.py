"""carlib.compare: McNemar's exact test, per-image correctness against the naive reference,
curves with Wilson intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from carlib.baselines import order_curve, random_order
from carlib.compare import mcnemar, order_curves, paired_correct, wilson_interval
from carlib.engine import Engine
from carlib.errors import CarlibError
from carlib.reference import accuracy_counts_naive


def test_mcnemar_by_hand():
    # 14 images: 2 right with both, 6 right with A only (b), 6 right with B only (c)
    a = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1]
    b = [1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    r = mcnemar(a, b)
    assert (r["n"], r["a_correct"], r["b_correct"], r["b"], r["c"]) == (14, 8, 8, 6, 6)
    assert r["p_value"] == 1.0
    r = mcnemar([1] * 7 + [0], [0] * 6 + [1, 1])  # b = 6, c = 1: p = 2 * (1 + 7) / 2**7
    assert (r["b"], r["c"], r["p_value"]) == (6, 1, 0.125)
    assert mcnemar([1, 0], [1, 0])["p_value"] == 1.0  # no discordant image
    with pytest.raises(CarlibError, match="one entry per image"):
        mcnemar([1, 0], [1])


@pytest.mark.parametrize("b", range(0, 13, 3))
def test_mcnemar_equals_scipy_exact_binomial(b):
    for c in range(0, 25):
        x = np.array([True] * b + [False] * c + [True] * 3 + [False] * 2)
        y = np.array([False] * b + [True] * c + [True] * 3 + [False] * 2)
        want = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
        assert mcnemar(x, y)["p_value"] == pytest.approx(want, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("method", ["fast", "masked"])
def test_paired_correctness_is_the_naive_per_image_correctness(bn_net, method):
    model, x, y = bn_net
    x, y = x[:20], y[:20]
    orders = {"a": random_order(12, 0), "b": random_order(12, 1)}
    eng = Engine(model, "conv2", (x, y), method=method, batch_size=8)
    paired = paired_correct(model, "conv2", (x, y), orders, 6, engine=eng)
    assert list(paired.columns) == ["image", "label", "a", "b"] and paired.attrs["depth"] == 6
    assert paired["label"].tolist() == y.tolist()
    for name, order in orders.items():
        want = [bool(accuracy_counts_naive(model, "conv2", (x[i : i + 1], y[i : i + 1]), order[:6])[0].sum())
                for i in range(len(y))]
        assert paired[name].tolist() == want
        # the same networks as the curve's point at that depth
        curve = order_curve(model, "conv2", (x, y), order, 6, engine=eng)
        assert paired[name].sum() == round(curve["accuracy"].iloc[6] * len(y))
    assert (paired["a"] != paired["b"]).any()  # the test sees two different networks
    with pytest.raises(CarlibError, match="fewer than 6"):
        paired_correct(model, "conv2", (x, y), {"short": [0, 1]}, 6, engine=eng)


def _wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return mid - half, mid + half


def test_order_curves_have_wilson_intervals(bn_net):
    model, x, y = bn_net
    orders = {"a": random_order(12, 0), "short": [3, 1]}
    curves = order_curves(model, "conv2", (x, y), orders, 4)
    assert list(curves.columns) == ["criterion", "n_pruned", "filter", "correct", "n_images",
                                    "accuracy", "low", "high"]
    assert curves.groupby("criterion")["n_pruned"].max().to_dict() == {"a": 4, "short": 2}
    a = curves[curves["criterion"] == "a"]
    ref = order_curve(model, "conv2", (x, y), orders["a"], 4)
    np.testing.assert_array_equal(a["accuracy"].to_numpy(), ref["accuracy"].to_numpy())
    assert a["filter"].tolist() == ref["filter"].tolist()
    assert (curves["n_images"] == len(y)).all()
    assert ((curves["low"] <= curves["accuracy"]) & (curves["accuracy"] <= curves["high"])).all()
    for _, row in curves.iterrows():
        np.testing.assert_allclose((row["low"], row["high"]), _wilson_by_hand(row["correct"], len(y)),
                                   rtol=1e-9)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(CarlibError, match="at least one image"):
        wilson_interval(0, 0)


def test_curves_at_points_agree_with_every_depth():
    import torch
    from torch import nn

    from carlib.compare import curve_points

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 3)).eval()
    x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 3, (40,))
    orders = {"a": [5, 0, 3, 1, 2], "b": [1, 2]}
    every = order_curves(net, "conv1", (x, y), orders, 4)
    some = order_curves(net, "conv1", (x, y), orders, 4, points=curve_points(4, 2))
    assert some.groupby("criterion")["n_pruned"].apply(list).to_dict() == {"a": [0, 2, 4], "b": [0, 2]}
    merged = some.merge(every, on=["criterion", "n_pruned"], suffixes=("", "_every"))
    assert len(merged) == len(some) and (merged["correct"] == merged["correct_every"]).all()
    assert (merged["filter"] == merged["filter_every"]).all()
    # a memo shared across calls on one engine: each set of pruned filters evaluated once
    from carlib.engine import Engine

    eng = Engine(net, "conv1", (x, y))
    calls = []
    real = eng.evaluate
    eng.evaluate = lambda *a, **k: calls.append(sorted(a[0])) or real(*a, **k)
    memo: dict = {}
    one_by_one = pd.concat([order_curves(net, "conv1", (x, y), {k: v}, 4, points=[2], engine=eng, memo=memo)
                            for k, v in orders.items()], ignore_index=True)
    pd.testing.assert_frame_equal(one_by_one, order_curves(net, "conv1", (x, y), orders, 4, points=[2]))
    assert calls == [[], [0, 5], [0, 1, 3, 5], [1, 2]]  # "b" reuses the unpruned count of "a"
    assert curve_points(96, 4) == [0, 24, 48, 72, 96] and curve_points(3, 2) == [0, 2, 3]
    assert curve_points(8, None) is None
    with pytest.raises(CarlibError, match="points must be a positive integer"):
        curve_points(8, 0)
