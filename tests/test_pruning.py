"""carlib.pruning: the physically smaller network equals the masked one."""

from __future__ import annotations

import pytest
import torch

from carlib import count, mask_filters, prune_filters
from carlib.errors import CarlibError


def _check(model, layer, filters, x):
    with torch.no_grad(), mask_filters(model, layer, filters):
        want = model(x)
    small = prune_filters(model, layer, filters)
    with torch.no_grad():
        got = small(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    return small


@pytest.mark.parametrize("layer,filters", [("conv1", [0, 3, 7]), ("conv2", [1, 2, 11]),
                                           ("conv3", [0, 9])])
def test_bn_net(bn_net, layer, filters):
    model, x, _ = bn_net
    small = _check(model, layer, filters, x)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_bn_net_removes_bn_entries(bn_net):
    model, x, _ = bn_net
    small = prune_filters(model, "conv1", [0, 1])
    assert small.features[0].out_channels == 6
    assert small.features[1].num_features == 6
    assert small.features[4].in_channels == 6
    assert model.features[0].out_channels == 8  # the original is untouched


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv5"])
def test_torchvision_alexnet(tv_alexnet, layer):
    model, x, _ = tv_alexnet
    small = _check(model, layer, list(range(0, 64, 3)), x[:8])
    if layer == "conv5":
        assert small.classifier[1].in_features == (256 - 22) * 36


def test_vgg_bn():
    from torchvision.models import vgg11_bn

    torch.manual_seed(0)
    model = vgg11_bn(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    _check(model, "conv1", [0, 5, 9], x)
    _check(model, "conv8", [3, 4], x)


def test_alexnet_tiny_count():
    from carlib import AlexNetTiny

    model = AlexNetTiny().eval()
    x = torch.randn(3, 3, 64, 64)
    small = _check(model, "conv1", range(32), x)
    before, after = count(model, (3, 64, 64)), count(small, (3, 64, 64))
    assert after["params"] < before["params"] and after["macs"] < before["macs"]
    table = count(model, (3, 64, 64), per_layer=True)
    assert table["macs"].sum() == before["macs"]
    conv1 = table.iloc[0]
    assert conv1["macs"] == 22 * 22 * 64 * 3 * 11 * 11


def test_errors(bn_net):
    model, _, _ = bn_net
    with pytest.raises(CarlibError, match="keep at least one"):
        prune_filters(model, "conv1", range(8))
    # graphs carlib does not rewrite itself (residual sums, ...): tests/test_graph_pruning.py


def test_sequential_chains_record_what_was_removed(bn_net):
    model, _, _ = bn_net
    rec = prune_filters(model, "conv2", [3, 1]).pruning_record
    assert (rec.method, rec.layer, rec.filters, rec.coupled) == ("carlib", "features.4", [1, 3], False)
    assert rec.masked == rec.removed == {"features.4": [1, 3]} and rec.folded == {}
