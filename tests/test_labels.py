"""carlib.analysis.labels: color / edge-or-shape / noise-or-texture, each against random filters."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn

from carlib.errors import CarlibError
from carlib.analysis import labels
from carlib.analysis.labels import (chromatic_null_quantile, filter_labels, labels_from_responses,
                                    labels_from_weights, spectral_measures, white_noise_quantiles)
from carlib.analysis.selectivity import color_index_weights
from carlib.data import ImageDataset

K = 11
Y, X = np.mgrid[-(K // 2):K // 2 + 1, -(K // 2):K // 2 + 1].astype(float)


def gabor(theta: float, period: float = 4.0, sigma: float = 2.5) -> np.ndarray:
    u = X * np.cos(theta) + Y * np.sin(theta)
    return np.cos(2 * np.pi * u / period) * np.exp(-(X ** 2 + Y ** 2) / (2 * sigma ** 2))


BLOB = np.exp(-(X ** 2 + Y ** 2) / (2 * 2.5 ** 2))
CHECKER = (-1.0) ** (X + Y)


def conv_with(planes: list[np.ndarray]) -> nn.Conv2d:
    """An RGB convolution whose filters are the given ``(3, K, K)`` arrays."""
    c = nn.Conv2d(3, len(planes), K)
    with torch.no_grad():
        c.weight.copy_(torch.tensor(np.stack(planes), dtype=torch.float32))
    return c


def gray(plane: np.ndarray) -> np.ndarray:
    return np.stack([plane] * 3)


def test_docstring_examples():
    assert doctest.testmod(labels).failed == 0


def test_chromatic_null_matches_random_isotropic_filters():
    torch.manual_seed(0)
    c = nn.Conv2d(3, 4000, K)
    with torch.no_grad():
        c.weight.normal_()
    idx = color_index_weights(c)
    assert np.mean(idx) == pytest.approx(2 / 3, abs=0.005)  # why 0.5 called them color
    assert np.quantile(idx, 0.95) == pytest.approx(chromatic_null_quantile((3, K, K)), abs=0.005)
    lab = labels_from_weights(c)["label"]
    assert 0.03 < np.mean(lab == "color") < 0.07  # the 5 % the null allows


def test_planted_filters_get_their_labels():
    rng = np.random.default_rng(0)
    rg = np.stack([BLOB, -BLOB, 0 * BLOB])
    planes = ([gray(gabor(t)) for t in np.linspace(0, np.pi, 6, endpoint=False)]
              + [rg, np.stack([gabor(0.3), -gabor(0.3), 0 * BLOB])]
              + [gray(CHECKER), gray(BLOB)]
              + [gray(rng.standard_normal((K, K))) for _ in range(200)])
    t = labels_from_weights(conv_with(planes))
    lab = t["label"].tolist()
    assert lab[:6] == ["edge-or-shape"] * 6  # oriented luminance Gabors, any orientation
    assert lab[6:8] == ["color"] * 2  # a red-green blob, a red-green Gabor
    assert lab[8] == "noise-or-texture"  # a checkerboard: no orientation, no low frequencies
    assert lab[9] == "edge-or-shape"  # a smooth luminance blob: low frequencies
    noise = np.array(lab[10:])
    assert np.mean(noise == "noise-or-texture") >= 0.88 and not (noise == "color").any()
    assert t.attrs["source"] == "weights" and (t["color_null"] == chromatic_null_quantile((3, K, K))).all()


def test_spectral_measures_extremes_and_noise_quantiles():
    o, lo = spectral_measures(np.stack([gabor(0.0), CHECKER, BLOB, np.zeros((K, K))]))
    assert o[0] > 0.8 and o[1] < 0.01 and o[2] < 0.01 and o[3] == 0.0
    assert lo[1] < 0.01 and lo[2] > 0.95 and lo[3] == 0.0
    qo, ql = white_noise_quantiles(K, K)
    assert 0 < qo < 0.5 and 0 < ql < 0.5 and white_noise_quantiles(K, K) == (qo, ql)


def _planted_net(k: int = 9) -> nn.Module:
    y, x = np.mgrid[-(k // 2):k // 2 + 1, -(k // 2):k // 2 + 1].astype(float)
    env = np.exp(-(x ** 2 + y ** 2) / (2 * 2.0 ** 2))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, k, padding=k // 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        w = net[0].weight
        net[0].bias.zero_()
        w[0] = torch.tensor(np.cos(2 * np.pi * x / 4) * env).float().expand(3, k, k)
        w[1] = 0
        w[1, 0], w[1, 1] = torch.tensor(env).float(), -torch.tensor(env).float()
        w[2] = torch.tensor((-1.0) ** (x + y)).float().expand(3, k, k) / 3
    return net.eval()


def _smooth_images() -> ImageDataset:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (24, 6, 6, 3)).astype(np.uint8)
    imgs = np.repeat(np.repeat(small, 4, 1), 4, 2)  # 24x24, smooth
    return ImageDataset("t", "val", imgs, np.arange(24) % 3, ["a", "b", "c"], ["a", "b", "c"])


def test_response_labels_of_planted_filters():
    t = labels_from_responses(_planted_net(), "conv1", _smooth_images(), top_n=4, null_filters=32)
    assert t["label"].tolist()[:3] == ["edge-or-shape", "color", "noise-or-texture"]
    assert t.attrs["source"] == "responses" and len(t) == 16
    # the other 13 filters are random: most are neither colour nor oriented beyond the null
    assert np.mean(t["label"][3:] == "noise-or-texture") >= 0.5


def test_filter_labels_picks_the_source():
    net = _planted_net(k=3)
    with pytest.raises(CarlibError, match="data="):
        filter_labels(net, "conv1")
    big = nn.Sequential(conv_with([gray(gabor(0.0))]), nn.ReLU())
    assert filter_labels(big, "conv1").attrs["source"] == "weights"
