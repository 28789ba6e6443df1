"""carlib.engine.screen: checked bf16 gives fp32's counts, and recomputes what it must."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from carlib import car_index_naive, greedy_prune
from carlib.data import num_images
from carlib.engine import Engine

from conftest import requires_tiny


def _counts(naive, n):
    return (naive["accuracy"].to_numpy() * n).round().astype(int)


@pytest.mark.parametrize("layer, topk", [("conv1", 1), ("conv1", 5), ("conv2", 1), ("conv5", 5)])
def test_bf16_checked_matches_naive_alexnet(tv_alexnet, layer, topk):
    model, x, y = tv_alexnet
    n = {"conv1": 64, "conv2": 192, "conv5": 256}[layer]
    ks = list(range(0, n, n // 8))  # 8 filters: bf16 is slow on CPUs without AMX/AVX512-BF16
    naive = car_index_naive(model, layer, (x, y), filters=ks, pruned=[3], topk=topk)
    eng = Engine(model, layer, (x, y), precision="bf16-checked", topk=topk)
    base, cand, _ = eng.evaluate([3], ks)
    assert (cand.sum(dim=1).numpy() == _counts(naive, len(y))).all()
    assert eng.screen_stats["pairs"] == len(ks) * len(y)
    assert eng.screen_stats["worst_ratio"] < eng.screen_safety


@requires_tiny
@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_bf16_checked_screens_and_matches_naive_default_network(tiny_val_slice, layer):
    """On the trained network most pairs are settled in bf16 (so the screen does work), the
    rest are recomputed, and every count equals the naive fp32 loop's. Where bf16 is fast
    (AMX or AVX512-BF16) the test also shows that the network in pure bf16 (no check) changes
    some counts, i.e. that the check is what keeps the numbers exact."""
    from carlib import load_model
    from carlib.engine import fast_bf16

    model = load_model("alexnet-tiny")
    data = tiny_val_slice.subset(np.arange(60))
    ks = list(range(0, 64, 8)) if layer == "conv1" else list(range(0, 192, 24))
    naive = car_index_naive(model, layer, data, filters=ks)
    n = num_images(data)
    eng = Engine(model, layer, data, precision="bf16-checked")
    base, cand, _ = eng.evaluate([], ks)
    assert (cand.sum(dim=1).numpy() == _counts(naive, n)).all()
    assert int(base.sum()) == round(naive.attrs["base_accuracy"] * n)
    st = eng.screen_stats
    assert st["pairs"] == len(ks) * n and 0 < st["recomputed"] < 0.5 * st["pairs"], st
    assert 0 < st["err"] and st["worst_ratio"] < eng.screen_safety, st
    if layer == "conv1" and fast_bf16("cpu"):
        x, y = tiny_val_slice.tensors()
        raw = car_index_naive(copy.deepcopy(model).to(torch.bfloat16), layer,
                              (x.to(torch.bfloat16), y))
        full = car_index_naive(model, layer, tiny_val_slice)
        assert (raw["accuracy"].to_numpy() != full["accuracy"].to_numpy()).any(), \
            "pure bf16 agreed everywhere: this test no longer shows what the check is for"


def test_bf16_checked_greedy_and_curves_match_fp32(bn_net):
    from carlib import greedy_prune_naive
    from carlib.baselines import order_curve

    model, x, y = bn_net
    naive = greedy_prune_naive(model, "conv2", (x, y), n_remove=4)
    checked = greedy_prune(model, "conv2", (x, y), n_remove=4, progress=False,
                           precision="bf16-checked")
    assert list(checked["filter"]) == list(naive["filter"])
    assert (checked["accuracy"].to_numpy() == naive["accuracy"].to_numpy()).all()
    order = [5, 0, 3, 7, 1]
    a = order_curve(model, "conv2", (x, y), order, 5, precision="bf16-checked")
    b = order_curve(model, "conv2", (x, y), order, 5, precision="fp32")
    assert (a["accuracy"].to_numpy() == b["accuracy"].to_numpy()).all()


def test_an_interrupted_evaluation_leaves_nothing_behind(bn_net):
    """Rows waiting for their fp32 recomputation belong to one call: after a call interrupted
    before recomputing them, the next call's counts are still the naive ones."""
    model, x, y = bn_net

    class Stop(Exception):
        pass

    def interrupted(table):
        raise Stop

    # a huge safety factor sends every pair to the fp32 recomputation queue
    eng = Engine(model, "conv2", (x, y), precision="bf16-checked", screen_safety=1e9)
    screen = eng._path.screen
    screen.flush = interrupted
    with pytest.raises(Stop):
        eng.evaluate([], [0, 1, 2, 3])
    assert screen.pending, "the test needs rows left waiting when the call was interrupted"
    del screen.flush  # the class's method again
    base, cand, _ = eng.evaluate([], [0, 1, 2])
    naive = car_index_naive(model, "conv2", (x, y), filters=[0, 1, 2])
    assert (cand.sum(dim=1).numpy() == _counts(naive, len(y))).all()
    assert int(base.sum()) == round(naive.attrs["base_accuracy"] * len(y))
