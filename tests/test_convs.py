"""carlib.convs: TensorFlow "SAME" padding, seen by the graph analysis as one convolution,
handled by the fast path and by structural pruning; other Conv2d subclasses are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from carlib import car_index, car_index_naive, mask_filters, prune_filters
from carlib.convs import SamePadConv2d, is_rewritable_conv, same_padding
from carlib.errors import CarlibError
from carlib.graph import analyze, trace
from carlib.layers import conv_layers

from conftest import fit, prototype_data, randomize_bn


class PadNet(nn.Module):
    """SAME conv (stride 2) -> BN -> ReLU -> SAME conv (stride 2) -> ReLU -> conv -> ReLU -> pool -> linear."""

    def __init__(self, conv3: type[nn.Conv2d] = nn.Conv2d):
        super().__init__()
        self.features = nn.Sequential(
            SamePadConv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
            SamePadConv2d(8, 12, 3, stride=2), nn.ReLU(),
            conv3(12, 10, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Linear(40, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class ScaledConv2d(nn.Conv2d):
    """A Conv2d subclass carlib does not know (its forward doubles the output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


@pytest.fixture(scope="module")
def pad_net():
    torch.manual_seed(0)
    x, y = prototype_data(96, 7, 16, seed=3)
    model = fit(randomize_bn(PadNet()), x, y)
    return model, x, y


def test_same_padding_is_tensorflows():
    assert same_padding(224, 3, 2) == (0, 1)  # even input: bottom/right only
    assert same_padding(15, 3, 2) == (1, 1)
    assert same_padding(56, 3, 1) == (1, 1) and same_padding(7, 1, 1) == (0, 0)
    assert same_padding(10, 5, 3) == (2, 2) and same_padding(11, 4, 2) == (1, 2)
    torch.manual_seed(0)
    conv = SamePadConv2d(3, 4, 3, stride=2)
    for size in (16, 15):
        x = torch.randn(2, 3, size, size)
        pad = (0, 1, 0, 1) if size % 2 == 0 else (1, 1, 1, 1)
        ref = F.conv2d(F.pad(x, pad), conv.weight, conv.bias, 2)
        torch.testing.assert_close(conv(x), ref, rtol=0, atol=0)
        assert conv(x).shape[-1] == -(-size // 2)
    with pytest.raises(ValueError, match="padding=0"):
        SamePadConv2d(3, 4, 3, padding=1)
    plain = nn.Conv2d(3, 4, 3, 2, 1)
    same = SamePadConv2d.from_conv(plain)
    assert same.padding == (0, 0) and torch.equal(same.weight, plain.weight)
    assert not torch.equal(same(torch.randn(1, 3, 8, 8)), torch.zeros(1))


def test_the_graph_keeps_conv2d_subclasses_as_one_node(pad_net):
    model, _, _ = pad_net
    gm = trace(model)
    calls = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert calls[:4] == ["features.0", "features.1", "features.2", "features.3"]
    assert not any(n.op == "call_function" and n.target is F.pad for n in gm.graph.nodes)
    assert [c.path for c in conv_layers(model)] == ["features.0", "features.3", "features.5"]
    p1, p2 = analyze(model, "conv1"), analyze(model, "conv2")
    assert (p1.mask_module, p1.consumer, p1.fast, p1.prune_reason) == ("features.2", "features.3", True, None)
    assert (p2.mask_module, p2.consumer, p2.fast, p2.prune_reason) == ("features.4", "features.5", True, None)


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_fast_path_with_a_same_padded_consumer_or_layer_matches_naive(pad_net, layer):
    model, x, y = pad_net
    fast = car_index(model, layer, (x, y), method="fast", progress=False, batch_size=40,
                     precision="fp32")
    assert fast.attrs["method"] == "fast"
    naive = car_index_naive(model, layer, (x, y), batch_size=32)
    np.testing.assert_array_equal(fast["accuracy"].to_numpy(), naive["accuracy"].to_numpy())
    assert (naive["car"] != 0).any(), "the test data must make some filters matter"


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_pruning_keeps_same_padding(pad_net, layer):
    model, x, _ = pad_net
    drop = [1, 4, 6]
    small = prune_filters(model, layer, drop)
    path = {"conv1": "features.0", "conv2": "features.3"}[layer]
    assert type(small.get_submodule(path)) is SamePadConv2d
    assert type(small.features[3]) is SamePadConv2d
    with mask_filters(model, layer, drop):
        ref = model(x)
    torch.testing.assert_close(small(x), ref, rtol=1e-4, atol=1e-5)


def test_unknown_conv2d_subclasses_are_masked_but_not_rewritten(pad_net):
    model, x, y = pad_net
    other = PadNet(conv3=ScaledConv2d)
    other.load_state_dict(model.state_dict())
    other.eval()
    assert not is_rewritable_conv(other.features[5]) and is_rewritable_conv(other.features[3])
    plan = analyze(other, "conv2")  # its consumer is the unknown subclass
    assert not plan.fast and "ScaledConv2d" in plan.fast_reason
    with pytest.raises(CarlibError, match="ScaledConv2d, a Conv2d subclass carlib cannot rewrite"):
        prune_filters(other, "conv2", [0])
    plan3 = analyze(other, "conv3")  # the unknown subclass is the pruned layer
    assert plan3.mask_module == "features.6" and plan3.fast
    with pytest.raises(CarlibError, match="cannot rebuild"):
        prune_filters(other, "conv3", [0])
    masked = car_index(other, "conv2", (x, y), progress=False)
    assert masked.attrs["method"] == "masked"
    np.testing.assert_array_equal(masked["accuracy"].to_numpy(),
                                  car_index_naive(other, "conv2", (x, y))["accuracy"].to_numpy())
