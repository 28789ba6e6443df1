"""carlib.analysis.selectivity: color indices and enrichment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from carlib.analysis.activations import mask_point_activations
from carlib.analysis.selectivity import (color_index_responses, color_index_weights,
                                         hypergeom_enrichment, threshold_sweep,
                                         weights_index_applies)

from conftest import uint8_dataset


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


def test_weights_label_only_large_rgb_kernels():
    # AlexNet's 11x11 first layer: weights; MobileNetV2's 3x3 first layer, deeper layers: responses
    assert weights_index_applies(nn.Conv2d(3, 64, 11, stride=4))
    assert weights_index_applies(nn.Conv2d(3, 8, 5))
    assert not weights_index_applies(nn.Conv2d(3, 32, 3, stride=2))
    assert not weights_index_applies(nn.Conv2d(64, 192, 5))
    assert not weights_index_applies(nn.Conv2d(3, 3, 7, groups=3))


def test_hypergeometric_and_sweep():
    e = hypergeom_enrichment(20, 20, 20, 64)
    assert e["expected"] == pytest.approx(20 * 20 / 64) and e["p_greater"] < 1e-10
    assert hypergeom_enrichment(0, 20, 20, 64)["p_greater"] == pytest.approx(1.0)
    idx = np.linspace(0, 1, 10)
    s = threshold_sweep(idx, [9, 8, 7], thresholds=[0.5, 0.95])
    assert s["color_in_pruned"].tolist() == [3, 1] and s["color_in_layer"].tolist() == [5, 1]


def test_activations_and_response_index(bn_net):
    model, x, _ = bn_net
    with torch.no_grad():
        want = model.features[:3](x[:5])
    torch.testing.assert_close(mask_point_activations(model, "conv1", x[:5]), want)
    ds = uint8_dataset()
    r = color_index_responses(model, "conv1", ds, top_n=4)
    assert list(r.columns) == ["filter", "r_color", "r_gray", "color_index"] and len(r) == 8
    assert np.isfinite(r["color_index"]).all()


def test_response_index_of_images_decoded_from_files(bn_net, tmp_path):
    """Images read from files (as ImageNet is) get the same index as the same pixels in memory:
    the grayscale versions are made from the 8-bit pixels behind the normalized tensors."""
    from conftest import folder_copy

    model, _, _ = bn_net
    ds = uint8_dataset()
    folder = folder_copy(ds, tmp_path)
    mem = color_index_responses(model, "conv1", ds, top_n=4)
    files = color_index_responses(model, "conv1", folder, top_n=4, batch_size=5)
    assert files["filter"].tolist() == mem["filter"].tolist()
    np.testing.assert_allclose(files[["r_color", "r_gray", "color_index"]],
                               mem[["r_color", "r_gray", "color_index"]], rtol=1e-5, atol=1e-6)
    assert (mem["color_index"].abs() > 1e-3).any()  # grayscale changes the responses
