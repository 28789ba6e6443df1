"""carlib.car: the fast engine against the naive reference (same CAR values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from carlib import car_index, car_index_naive
from carlib.errors import CarlibError

from conftest import requires_tiny


def _same(fast: pd.DataFrame, naive: pd.DataFrame) -> None:
    assert list(fast["filter"]) == list(naive["filter"])
    np.testing.assert_array_equal(fast["accuracy"].to_numpy(), naive["accuracy"].to_numpy())
    np.testing.assert_array_equal(fast["car"].to_numpy(), naive["car"].to_numpy())
    assert fast.attrs["base_accuracy"] == naive.attrs["base_accuracy"]


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3"])
@pytest.mark.parametrize("method", ["fast", "masked"])
def test_bn_net_matches_naive(bn_net, layer, method):
    model, x, y = bn_net
    if method == "fast" and layer == "conv3":
        method = "auto"
    fast = car_index(model, layer, (x, y), progress=False, method=method, batch_size=40)
    naive = car_index_naive(model, layer, (x, y), batch_size=32)
    _same(fast, naive)
    assert (naive["car"] != 0).any(), "the test data must make some filters matter"


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv5"])
def test_alexnet_matches_naive(tv_alexnet, layer):
    model, x, y = tv_alexnet
    filters = range(64) if layer == "conv1" else range(0, 256 if layer == "conv5" else 192, 8)
    fast = car_index(model, layer, (x, y), progress=False, batch_size=20, filters=filters)
    assert fast.attrs["method"] == "fast"
    naive = car_index_naive(model, layer, (x, y), filters=filters)
    _same(fast, naive)
    assert (naive["car"] != 0).any()


def test_top5_matches_naive(tv_alexnet):
    model, x, y = tv_alexnet
    _same(car_index(model, "conv2", (x, y), topk=5, progress=False, filters=range(0, 192, 12)),
          car_index_naive(model, "conv2", (x, y), topk=5, filters=range(0, 192, 12)))


def test_per_class_agrees_with_overall(bn_net):
    model, x, y = bn_net
    overall = car_index(model, "conv2", (x, y), progress=False)
    long = car_index(model, "conv2", (x, y), per_class=True, progress=False)
    assert list(long.columns) == ["filter", "class", "n", "accuracy", "car"]
    n_total = long.groupby("filter")["n"].sum()
    assert (n_total == len(y)).all()
    correct = (long["accuracy"] * long["n"]).groupby(long["filter"]).sum() / n_total
    np.testing.assert_allclose(correct.to_numpy(), overall["accuracy"].to_numpy(), atol=1e-12)
    naive = car_index_naive(model, "conv2", (x, y), per_class=True)
    np.testing.assert_array_equal(long.to_numpy(), naive.to_numpy())


def test_filter_subset_and_errors(bn_net):
    model, x, y = bn_net
    sub = car_index(model, "conv1", (x, y), filters=[5, 2], progress=False)
    assert list(sub["filter"]) == [2, 5]
    with pytest.raises(CarlibError, match="out of range"):
        car_index(model, "conv1", (x, y), filters=[8], progress=False)
    with pytest.raises(ValueError, match="conv1=features.0"):
        car_index(model, "conv9", (x, y), progress=False)
    with pytest.raises(CarlibError, match="do not match"):
        car_index(model, "conv1", (x, y[:-1]), progress=False)


@pytest.mark.parametrize("layer, method", [("conv2", "fast"), ("conv3", "masked")])
def test_skip_connection_model_matches_naive(layer, method):
    """conv2 of ResNet-18 feeds a convolution (fast path; the block's addition reads the block
    input); conv3's BatchNorm feeds the addition directly (no consumer: masked path)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    x = torch.randn(12, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(1)
    fast = car_index(model, layer, (x, y), progress=False, filters=range(8))
    assert fast.attrs["method"] == method
    _same(fast, car_index_naive(model, layer, (x, y), filters=range(8)))


@requires_tiny
@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_default_network_on_tiny_imagenet(tiny_val_slice, layer):
    from carlib import load_model

    model = load_model("alexnet-tiny")
    filters = range(64) if layer == "conv1" else range(0, 192, 6)
    fast = car_index(model, layer, tiny_val_slice, filters=filters, progress=False)
    naive = car_index_naive(model, layer, tiny_val_slice, filters=filters)
    _same(fast, naive)
    assert fast.attrs["base_accuracy"] > 0.2  # a trained network, not chance (0.005)


def test_car_relative_to_a_pruned_network(bn_net):
    model, x, y = bn_net
    fast = car_index(model, "conv2", (x, y), pruned=[3, 5], progress=False)
    assert 3 not in set(fast["filter"]) and len(fast) == 10
    _same(fast, car_index_naive(model, "conv2", (x, y), pruned=[3, 5]))
