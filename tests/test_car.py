"""carlib.car: the fast engine against the naive reference (same CAR values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from carlib import car_index, car_index_naive
from carlib.car import overall_from_per_class
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
    filters = range(0, 64, 2) if layer == "conv1" else range(0, 256 if layer == "conv5" else 192, 8)
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
    # the per-class table aggregates back to the overall one
    agg = overall_from_per_class(long)
    assert list(agg.columns) == ["filter", "accuracy", "car"]
    np.testing.assert_allclose(agg.to_numpy(), overall.to_numpy(), atol=1e-12)


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
    filters = range(0, 64, 8) if layer == "conv1" else range(0, 192, 24)  # the naive loop is slow
    fast = car_index(model, layer, tiny_val_slice, filters=filters, progress=False)
    naive = car_index_naive(model, layer, tiny_val_slice, filters=filters)
    _same(fast, naive)
    assert fast.attrs["base_accuracy"] > 0.2  # a trained network, not chance (0.005)


def test_car_relative_to_a_pruned_network(bn_net):
    model, x, y = bn_net
    fast = car_index(model, "conv2", (x, y), pruned=[3, 5], progress=False)
    assert 3 not in set(fast["filter"]) and len(fast) == 10
    _same(fast, car_index_naive(model, "conv2", (x, y), pruned=[3, 5]))


def _mixed_modes(model):
    """Put ``model`` in train mode with some submodules in eval mode; return every mode."""
    model.train()
    model.features[1].eval()  # one BatchNorm in eval mode, the other in train mode
    return {name: m.training for name, m in model.named_modules()}


@pytest.mark.parametrize("method", ["fast", "masked"])
def test_a_model_in_train_mode_is_evaluated_in_eval_mode_and_left_as_it_was(bn_net, method):
    model, x, y = bn_net
    expected = car_index(model, "conv1", (x, y), progress=False, method=method)
    modes = _mixed_modes(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        got = car_index(model, "conv1", (x, y), progress=False, method=method)
        _same(got, expected)
        assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def _bad_inputs(x, y):
    nan, inf = x.clone(), x.clone()
    nan[3, 1, 2, 2] = float("nan")
    inf[5, 0, 0, 0] = float("inf")
    return {
        "uint8": ((x * 40 + 128).clamp(0, 255).to(torch.uint8), y, "uint8"),
        "nhwc": (x.permute(0, 2, 3, 1).contiguous(), y, "channels-last"),
        "one-channel": (x[:, :1].contiguous(), y, "3 input channels"),
        "float64": (x.double(), y, "float64"),
        "nan": (nan, y, "NaN or infinite"),
        "inf": (inf, y, "NaN or infinite"),
        "float-labels": (x, y.float() + 0.5, "integer class indices"),
        "bool-labels": (x, y > 2, "integer class indices"),
    }


@pytest.mark.parametrize("case", ["uint8", "nhwc", "one-channel", "float64", "nan", "inf",
                                  "float-labels", "bool-labels"])
@pytest.mark.parametrize("method", ["fast", "masked"])
def test_bad_tensors_are_a_clear_error(bn_net, case, method):
    model, x, y = bn_net
    xs, ys, needle = _bad_inputs(x[:24], y[:24])[case]
    with pytest.raises(CarlibError, match=needle) as err:
        car_index(model, "conv1", (xs, ys), progress=False, method=method)
    assert "\n" not in str(err.value)


def test_images_of_the_wrong_size_for_the_model_are_a_clear_error():
    from carlib import AlexNetTiny

    model = AlexNetTiny(num_classes=5).eval()  # a fixed-size classifier: 64x64 inputs only
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    with pytest.raises(CarlibError, match=r"cannot classify images of shape \(3, 32, 32\)") as err:
        car_index(model, "conv1", (x, y), progress=False, filters=[0])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [0, -3, True, 2.0])
def test_bad_batch_size_is_refused(bn_net, bad):
    model, x, y = bn_net
    with pytest.raises(CarlibError, match="batch_size"):
        car_index(model, "conv1", (x, y), progress=False, batch_size=bad)
