"""carlib.selectivity and carlib.patches: color indices, enrichment, receptive-field crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from carlib.patches import receptive_field, top_patches
from carlib.selectivity import (color_index_responses, color_index_weights, hypergeom_enrichment,
                                mask_point_activations, threshold_sweep)


def test_color_index_weights_extremes():
    c = nn.Conv2d(3, 3, 3)
    with torch.no_grad():
        c.weight[0] = torch.randn(1, 3, 3)            # same in R, G, B: luminance only
        c.weight[1] = 0
        c.weight[1, 0], c.weight[1, 1] = 1.0, -1.0     # red-green opponent: chromatic only
        c.weight[2] = torch.randn(3, 3, 3)
    idx = color_index_weights(c)
    assert idx[0] == pytest.approx(0, abs=1e-12) and idx[1] == pytest.approx(1)
    assert 0 < idx[2] < 1


def test_hypergeometric_and_sweep():
    e = hypergeom_enrichment(20, 20, 20, 64)
    assert e["expected"] == pytest.approx(20 * 20 / 64) and e["p_greater"] < 1e-10
    assert hypergeom_enrichment(0, 20, 20, 64)["p_greater"] == pytest.approx(1.0)
    idx = np.linspace(0, 1, 10)
    s = threshold_sweep(idx, [9, 8, 7], thresholds=[0.5, 0.95])
    assert s["color_in_pruned"].tolist() == [3, 1] and s["color_in_layer"].tolist() == [5, 1]


def _dataset():
    from carlib.datasets import ImageDataset

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    imgs[0, :, :, 0] = 255  # one strongly red image
    return ImageDataset("t", "val", imgs, np.arange(12) % 3, ["a", "b", "c"], ["a", "b", "c"])


def test_activations_and_response_index(bn_net):
    model, x, _ = bn_net
    with torch.no_grad():
        want = model.features[:3](x[:5])
    torch.testing.assert_close(mask_point_activations(model, "conv1", x[:5]), want)
    ds = _dataset()
    r = color_index_responses(model, "conv1", ds, top_n=4)
    assert list(r.columns) == ["filter", "r_color", "r_gray", "color_index"] and len(r) == 8
    assert np.isfinite(r["color_index"]).all()


def test_patches_are_receptive_field_crops(bn_net):
    model, _, _ = bn_net
    assert receptive_field(model, "conv1") == (3, 1, 1)
    assert receptive_field(model, "conv2") == (8, 2, 3)
    ds = _dataset()
    out = top_patches(model, "conv1", ds, [0, 3], n=2)
    for f, ps in out.items():
        assert len(ps) == 2 and ps[0].value >= ps[1].value
        p = ps[0]
        top, left = p.y - 1, p.x - 1
        for dy in range(3):
            for dx in range(3):
                yy, xx = top + dy, left + dx
                expect = ds.images[p.image, yy, xx] if 0 <= yy < 32 and 0 <= xx < 32 else 0
                assert (p.pixels[dy, dx] == expect).all()
