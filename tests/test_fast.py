"""carlib.engine.fast on graphs beyond chains: residual additions, concatenations, grouped and
depthwise consumers, torchvision's ResNet-18 and MobileNetV2. Every count is the naive
reference's, and the fast path is really the one that ran."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from carlib import car_index, car_index_naive, greedy_prune, greedy_prune_naive
from carlib.convs import SamePadConv2d
from carlib.engine import Engine
from carlib.graph import analyze

from conftest import randomize_bn, self_labeled


class Block(nn.Module):
    """A residual block: conv-BN-ReLU-conv-BN, plus the input (or a 1x1 projection of it)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    """conv1 -> BN -> ReLU -> maxpool -> block (skip add of the maxpool output) -> block with a
    projection -> pool -> linear."""

    def __init__(self, classes: int = 6):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.layer1 = Block(8, 8)
        self.layer2 = Block(8, 12, stride=2)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def separable(groups: int = 8, same_pad: bool = False) -> nn.Sequential:
    """conv -> BN -> ReLU6 -> grouped (depthwise for 8 groups) conv -> BN -> ReLU6 -> pointwise
    -> BN -> conv -> pool -> linear."""
    torch.manual_seed(0)
    grouped = (SamePadConv2d(8, 8, 3, stride=2, groups=groups) if same_pad
               else nn.Conv2d(8, 8, 3, padding=1, groups=groups, bias=False))
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        grouped, nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 10, 1, bias=False), nn.BatchNorm2d(10),
        nn.Conv2d(10, 10, 3, padding=1),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(40, 6))


class CatNet(nn.Module):
    """conv1 -> ReLU feeds a convolution and, with that convolution's output, a concatenation."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.branch = nn.Conv2d(8, 6, 3, padding=1)
        self.mix = nn.Conv2d(14, 10, 3, padding=1)
        self.fc = nn.Linear(10 * 4, 6)

    def forward(self, x):
        a = self.relu(self.conv1(x))
        b = torch.cat([a, torch.relu(self.branch(a))], dim=1)
        y = nn.functional.adaptive_avg_pool2d(torch.relu(self.mix(b)), 2)
        return self.fc(torch.flatten(y, 1))


def _data(model: nn.Module, n: int = 48, size: int = 16, seed: int = 0):
    """Random inputs labeled mostly by the model itself; the BatchNorms get random affine terms
    and the statistics of these inputs (so that activations neither vanish nor saturate and
    pruning a filter changes some answers)."""
    torch.manual_seed(seed)
    randomize_bn(model, seed)
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: the statistics of x
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    return model, x, self_labeled(model, x, keep=0.8, seed=seed) % classes


def _same_as_naive(model, layer, x, y, filters=None, **kw):
    fast = car_index(model, layer, (x, y), per_class=True, progress=False, filters=filters,
                     precision="fp32", **kw)
    assert fast.attrs["method"] == "fast", analyze(model, layer).fast_reason
    naive = car_index_naive(model, layer, (x, y), per_class=True, filters=filters, **kw)
    np.testing.assert_array_equal(fast.to_numpy(), naive.to_numpy())
    assert fast.attrs["base_accuracy"] == naive.attrs["base_accuracy"]
    assert (naive["car"] != 0).any(), "the test data must make some filters matter"
    return fast


@pytest.mark.parametrize("layer", ["conv1", "layer1.conv1", "layer1.conv2", "layer2.conv1"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_residual_net_matches_naive(layer, channels_last):
    torch.manual_seed(0)
    model, x, y = _data(TinyResNet())
    plan = analyze(model, layer)
    if layer == "layer1.conv2":  # its mask point (BN) feeds the addition: no consumer
        assert not plan.fast and "no convolution or linear layer" in plan.fast_reason
        return
    assert plan.fast and (plan.prune_reason is not None) == (layer == "conv1")
    eng = Engine(model, layer, (x, y), channels_last=channels_last, precision="fp32")
    # channels-last only where a convolution follows the consumers
    assert eng.method == "fast" and eng.channels_last == (channels_last and layer != "layer2.conv1")
    n = plan.layer.filters
    base, cand, images = eng.evaluate([], list(range(n)))
    naive = car_index_naive(model, layer, (x, y), per_class=True)
    acc = naive["accuracy"].to_numpy().reshape(n, -1) * naive["n"].to_numpy().reshape(n, -1)
    assert (cand[:, images > 0].numpy() == acc.round()).all()
    assert (naive["car"] != 0).any(), "the test data must make some filters matter"
    if channels_last and layer == "conv1":
        _same_as_naive(model, layer, x, y)


def test_batchnorms_after_the_consumers_are_folded_on_a_private_copy():
    model, x, y = _data(TinyResNet())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for channels_last in (True, False):
        eng = Engine(model, "conv1", (x, y), channels_last=channels_last, precision="fp32")
        # layer1: bn1 after the consumer, bn2; layer2: bn1, bn2, the projection's BN
        assert eng.folded_norms == 5
        eng.evaluate([], list(range(8)))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert Engine(model, "layer2.conv1", (x, y), precision="fp32").folded_norms == 1  # its bn2


def test_residual_net_plan_and_pruned_state():
    model, x, y = _data(TinyResNet())
    plan = analyze(model, "conv1")
    assert [c.target for c in plan.consumers] == ["layer1.conv1"]
    assert [n.name for n in plan.cut] == ["pool"] and plan.zeroed[plan.cut[0]] is False
    assert any(n.name == "add" for n in plan.suffix)  # the skip addition reads the zeroed pool
    plan = analyze(model, "layer2.conv1")  # the projection does not depend on the pruned layer
    assert "layer2.down.0" in [n.target for n in plan.front]
    # CAR relative to a network pruned already, and the greedy loop
    _same_as_naive(model, "conv1", x, y, pruned=[2, 5])
    steps = greedy_prune(model, "conv1", (x, y), n_remove=2, progress=False, precision="fp32")
    naive = greedy_prune_naive(model, "conv1", (x, y), n_remove=2)
    assert steps.attrs["method"] == "fast"
    assert list(steps["filter"]) == list(naive["filter"])
    np.testing.assert_array_equal(steps["accuracy"].to_numpy(), naive["accuracy"].to_numpy())


@pytest.mark.parametrize("groups", [8, 2])
def test_grouped_and_depthwise_consumers_match_naive(groups):
    model, x, y = _data(separable(groups), seed=1)
    plan = analyze(model, "conv1")
    assert plan.consumer == "3" and plan.fast and "grouped" in plan.prune_reason
    _same_as_naive(model, "conv1", x, y)
    steps = greedy_prune(model, "conv1", (x, y), n_remove=2, progress=False, precision="fp32")
    naive = greedy_prune_naive(model, "conv1", (x, y), n_remove=2)
    assert steps.attrs["method"] == "fast" and list(steps["filter"]) == list(naive["filter"])


def test_same_padded_depthwise_consumer_matches_naive():
    model, x, y = _data(separable(8, same_pad=True), size=15)
    _same_as_naive(model, "conv1", x, y)


def test_concatenation_reader_matches_naive():
    model, x, y = _data(CatNet())
    plan = analyze(model, "conv1")
    assert [c.target for c in plan.consumers] == ["branch"] and plan.mask_node in plan.cut
    _same_as_naive(model, "conv1", x, y)


@pytest.mark.parametrize("layer", ["conv1", "3"])
def test_prefix_curves_beyond_chains(layer):
    model, x, y = _data(separable(8))
    order = [5, 0, 3, 7]
    fast = Engine(model, "0" if layer == "conv1" else layer, (x, y), precision="fp32")
    masked = Engine(model, "0" if layer == "conv1" else layer, (x, y), method="masked")
    a, b = fast.evaluate_prefixes(order), masked.evaluate_prefixes(order)
    assert fast.method == "fast" and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(set(a[0].sum(dim=1).tolist())) > 1


def test_checked_bf16_on_a_residual_net_matches_naive():
    model, x, y = _data(TinyResNet(), n=24)
    ks = [0, 3, 6]
    eng = Engine(model, "conv1", (x, y), precision="bf16-checked")
    base, cand, _ = eng.evaluate([1], ks)
    naive = car_index_naive(model, "conv1", (x, y), filters=ks, pruned=[1])
    assert (cand.sum(dim=1).numpy() == (naive["accuracy"].to_numpy() * len(y)).round()).all()
    assert eng.screen_stats["pairs"] == len(ks) * len(y)


def _torchvision(name: str):
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)
    return _data(model, n=16, size=32)


def test_torchvision_resnet18_conv1_matches_naive():
    model, x, y = _torchvision("resnet18")
    plan = analyze(model, "conv1")
    assert plan.fast and plan.prune_reason is not None
    assert [c.target for c in plan.consumers] == ["layer1.0.conv1"]
    _same_as_naive(model, "conv1", x, y, filters=range(0, 64, 8))


def test_torchvision_mobilenet_v2_conv1_matches_naive():
    model, x, y = _torchvision("mobilenet_v2")
    plan = analyze(model, "features.0.0")
    assert plan.fast and plan.consumer == "features.1.conv.0.0" and "grouped" in plan.prune_reason
    _same_as_naive(model, "features.0.0", x, y, filters=range(0, 32, 4))
