"""carlib.masking: pruning means a zero feature map after BN and activation."""

from __future__ import annotations

import torch

from carlib import mask_filters
from carlib.graph import analyze


def test_mask_point_is_after_bn_and_relu(bn_net):
    model, x, _ = bn_net
    plan = analyze(model, "conv1")
    assert plan.norm == "features.1" and plan.mask_module == "features.2"
    seen = {}
    h = model.features[2].register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    with torch.no_grad(), mask_filters(model, "conv1", [3]):
        model(x[:4])
    h.remove()
    # the hook registered first sees the unmasked output; recompute what the consumer gets
    with torch.no_grad(), mask_filters(model, "conv1", [3]):
        feats = model.features[:4](x[:4])
    assert torch.count_nonzero(feats[:, 3]) == 0
    assert torch.count_nonzero(feats[:, 2]) > 0


def test_zeroing_conv_output_before_bn_is_not_pruning(bn_net):
    model, x, _ = bn_net
    with torch.no_grad():
        w = model.features[0].weight[3].clone()
        b = model.features[0].bias[3].clone()
        model.features[0].weight[3] = 0
        model.features[0].bias[3] = 0
        after_bn = model.features[:3](x[:4])
        model.features[0].weight[3] = w
        model.features[0].bias[3] = b
    # the BN shift makes the "deleted" filter's map non-zero again
    assert torch.count_nonzero(after_bn[:, 3]) > 0


def test_alexnet_masking_equals_deleting_weights(tv_alexnet):
    model, x, _ = tv_alexnet
    with torch.no_grad(), mask_filters(model, "conv2", [1, 7]):
        masked = model(x[:4])
    with torch.no_grad():
        conv = model.features[3]
        conv.weight[[1, 7]] = 0
        conv.bias[[1, 7]] = 0
        deleted = model(x[:4])
    torch.testing.assert_close(masked, deleted)


def test_mask_is_removed_afterwards(bn_net):
    model, x, _ = bn_net
    with torch.no_grad():
        before = model(x[:4])
        with mask_filters(model, "conv2", range(12)):
            pass
        torch.testing.assert_close(model(x[:4]), before)
