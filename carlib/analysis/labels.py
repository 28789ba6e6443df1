"""Three-class filter labels, each criterion calibrated against random filters.

Every filter gets one label, decided in this order:

1. ``"color"``: its color index (:mod:`~carlib.analysis.selectivity`) exceeds the ``q``
   quantile (0.95) of the index of random filters. From weights, the random filters are
   isotropic Gaussian of the same shape, whose chromatic energy share is exactly
   ``Beta((C - 1) h w / 2, h w / 2)`` (mean ``(C - 1) / C``: 2/3 for RGB; 0.723 is the 95th
   percentile for 11x11): :func:`chromatic_null_quantile`. From responses, they are the
   layer's own filters with their weights replaced by Gaussian ones of the same norm.
2. ``"edge-or-shape"``: the luminance power spectrum has spatial structure: its orientation
   concentration ``O = |sum P e^{2i theta}| / sum P`` (over frequencies ``0 < |f| <= 1/2``
   cycles/pixel; 1 for a single orientation, 0 for none or for two orthogonal ones as in a
   checkerboard) or its low-frequency share ``L = sum_{|f| <= 1/4} P / sum P`` (DC included;
   smooth blobs) exceeds the ``1 - (1 - q) / 2`` quantile (0.975, Bonferroni over the two) of
   the same measure for white noise.
3. ``"noise-or-texture"``: neither.

From weights (:func:`labels_from_weights`) the luminance is the mean over the input channels
and ``P`` its Fourier power (zero-padded to ``4 x`` the kernel). From responses
(:func:`labels_from_responses`, for small kernels and deeper layers) ``P(theta, f)`` is the
squared response to grayscale gratings (peak over space, mean over 4 phases, minus the
response to uniform gray, clipped at 0; 8 orientations, :data:`GRATING_FREQUENCIES`), ``O``
taken over the orientations at the filter's preferred frequency (the largest summed power),
``L`` the share of all the power at ``f <= 1/16`` cycles/pixel.
:func:`filter_labels` picks the source by :func:`~carlib.analysis.selectivity.weights_index_applies`.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps
from torch import nn

from ..data import DataLike, FolderDataset
from ..errors import CarlibError
from ..graph import LayerPlan, analyze
from ..layers import resolve_layer
from .activations import mask_point_activations
from .selectivity import color_index_responses, color_index_weights, weights_index_applies

__all__ = ["LABELS", "QUANTILE", "GRATING_FREQUENCIES", "chromatic_null_quantile",
           "spectral_measures", "white_noise_quantiles", "labels_from_weights",
           "grating_measures", "labels_from_responses", "filter_labels"]

LABELS = ("color", "edge-or-shape", "noise-or-texture")
#: quantile of the random filters' measure a filter must exceed
QUANTILE = 0.95
#: spatial frequencies of the grating probe (cycles per image pixel)
GRATING_FREQUENCIES = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 0.4)
_ORIENTATIONS = 8
_PHASES = 4


def chromatic_null_quantile(shape: tuple[int, int, int], q: float = QUANTILE) -> float:
    """Quantile of :func:`color_index_weights` for isotropic Gaussian filters of ``shape``.

    Args:
        shape: ``(channels, height, width)`` of one filter.
        q: quantile.

    Returns:
        The ``q`` quantile of ``Beta((C - 1) h w / 2, h w / 2)``.

    Example:
        >>> round(chromatic_null_quantile((3, 11, 11)), 3)
        0.723
    """
    c, h, w = shape
    return float(sps.beta.ppf(q, (c - 1) * h * w / 2, h * w / 2))


def _label(color: np.ndarray, color_null: float, o: np.ndarray, o_null: float, low: np.ndarray,
           low_null: float) -> list[str]:
    return [LABELS[0] if c > color_null else LABELS[1] if (a > o_null or b > low_null) else LABELS[2]
            for c, a, b in zip(color, o, low)]


def _measures(power: np.ndarray, theta: np.ndarray, oriented: np.ndarray, low: np.ndarray):
    """``O`` and ``L`` of power spectra ``(F, ...)`` over a frequency grid."""
    p = power.reshape(len(power), -1)
    po = p[:, oriented.ravel()]
    tot_o = po.sum(1)
    res = np.abs((po * np.exp(2j * theta.ravel()[oriented.ravel()])).sum(1))
    tot = p.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        o = np.where(tot_o > 0, res / np.where(tot_o > 0, tot_o, 1), 0.0)
        lo = np.where(tot > 0, p[:, low.ravel()].sum(1) / np.where(tot > 0, tot, 1), 0.0)
    return o, lo


def spectral_measures(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orientation concentration ``O`` and low-frequency share ``L`` of 2-D filters.

    Args:
        planes: ``(F, h, w)`` luminance planes.

    Returns:
        ``(O, L)``, each ``(F,)`` in [0, 1].

    Example:
        >>> y, x = np.mgrid[-5:6, -5:6]
        >>> o, l = spectral_measures(np.stack([np.cos(2 * np.pi * x / 4) * np.exp(-(x**2 + y**2) / 18)]))
        >>> bool(o[0] > 0.8), bool(l[0] < 0.5)
        (True, True)
    """
    planes = np.asarray(planes, dtype=float)
    size = max(32, 4 * max(planes.shape[1:]))
    power = np.abs(np.fft.fft2(planes, s=(size, size))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    rad = np.hypot(fy, fx)
    return _measures(power, np.arctan2(fy, fx), (rad > 0) & (rad <= 0.5), rad <= 0.25)


def white_noise_quantiles(h: int, w: int, q: float = 1 - (1 - QUANTILE) / 2, n: int = 4000,
                          seed: int = 0) -> tuple[float, float]:
    """The ``q`` quantiles of :func:`spectral_measures` for white-noise ``h x w`` planes.

    Args:
        h, w: plane size.
        q: quantile.
        n: noise planes.
        seed: random seed.

    Returns:
        ``(O quantile, L quantile)``.

    Example:
        >>> o, l = white_noise_quantiles(11, 11)
        >>> bool(0 < o < 0.5), bool(0 < l < 0.5)
        (True, True)
    """
    noise = np.random.default_rng(seed).standard_normal((n, h, w))
    o, lo = spectral_measures(noise)
    return float(np.quantile(o, q)), float(np.quantile(lo, q))


def labels_from_weights(conv: nn.Conv2d, q: float = QUANTILE) -> pd.DataFrame:
    """Three-class labels of a first layer's filters from their RGB weights.

    Args:
        conv: a convolution with 3 input channels.
        q: quantile of the random filters' measures to exceed (color: ``q``; each spatial
            measure: ``1 - (1 - q) / 2``).

    Returns:
        ``filter, color_index, color_null, orientation, orientation_null, low_freq,
        low_freq_null, label``; ``attrs["source"] = "weights"``.

    Example:
        >>> c = nn.Conv2d(3, 1, 11)
        >>> with torch.no_grad():
        ...     c.weight[0] = torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1)
        >>> labels_from_weights(c)["label"].tolist()
        ['color']
    """
    color = color_index_weights(conv)
    w = conv.weight.detach().double().cpu().numpy()
    o, lo = spectral_measures(w.mean(axis=1))
    c_null = chromatic_null_quantile(tuple(w.shape[1:]), q)
    o_null, l_null = white_noise_quantiles(w.shape[2], w.shape[3], 1 - (1 - q) / 2)
    df = pd.DataFrame({"filter": np.arange(len(color)), "color_index": color, "color_null": c_null,
                       "orientation": o, "orientation_null": o_null, "low_freq": lo,
                       "low_freq_null": l_null,
                       "label": _label(color, c_null, o, o_null, lo, l_null)})
    df.attrs["source"] = "weights"
    return df


def _gratings(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 gray gratings ``(O * Fq * Ph + 1, H, W, 3)`` (the last one uniform gray), their
    orientations and frequencies."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(float)
    thetas = np.arange(_ORIENTATIONS) * np.pi / _ORIENTATIONS
    imgs, th, fq = [], [], []
    for t in thetas:
        for f in GRATING_FREQUENCIES:
            for ph in np.arange(_PHASES) * 2 * np.pi / _PHASES:
                imgs.append(128 + 100 * np.cos(2 * np.pi * f * (x * np.cos(t) + y * np.sin(t)) + ph))
                th.append(t)
                fq.append(f)
    imgs.append(np.full((h, w), 128.0))
    g = np.clip(np.rint(np.stack(imgs)), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1), np.array(th), np.array(fq)


@torch.no_grad()
def grating_measures(model: nn.Module, layer: str | LayerPlan, data: DataLike,
                     batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``O`` and ``L`` of every filter of a layer from its responses to grayscale gratings.

    Args:
        model: the network.
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        data: a carlib dataset (for the image size and normalization).
        batch_size: images per forward pass.

    Returns:
        ``(O, L)``, each ``(filters,)``.

    Example:
        >>> grating_measures(load_model(), "conv2", load_dataset(per_class=1))  # doctest: +SKIP
    """
    plan = analyze(model, layer)
    imgs, th, fq = _gratings(data.image_size)
    x = data.normalize(imgs)
    peaks = torch.cat([mask_point_activations(model, plan, x[i:i + batch_size]).amax(dim=(2, 3))
                       for i in range(0, len(x), batch_size)]).double().numpy()  # (images, F)
    resp = peaks[:-1].reshape(_ORIENTATIONS * len(GRATING_FREQUENCIES), _PHASES, -1).mean(1)
    power = np.clip(resp - peaks[-1], 0, None).T ** 2  # (F, orientation x frequency)
    theta, freq = th.reshape(-1, _PHASES)[:, 0], fq.reshape(-1, _PHASES)[:, 0]
    _, low = _measures(power, theta, np.ones_like(theta, bool), freq <= 1 / 16)
    by_f = power.reshape(len(power), _ORIENTATIONS, len(GRATING_FREQUENCIES))  # orientation-major
    best = np.argmax(by_f.sum(1), axis=1)  # the preferred frequency (ties: the lowest)
    tuning = by_f[np.arange(len(power)), :, best]  # (F, orientations)
    o, _ = _measures(tuning, theta.reshape(_ORIENTATIONS, -1)[:, 0], np.ones(_ORIENTATIONS, bool),
                     np.ones(_ORIENTATIONS, bool))
    return o, low


def _random_copy(model: nn.Module, path: str, seed: int) -> nn.Module:
    """A copy of ``model`` whose layer ``path`` has Gaussian weights with each filter's norm."""
    null = copy.deepcopy(model)
    conv = resolve_layer(null, path).module
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = conv.weight
        r = torch.randn(w.shape, generator=g, dtype=torch.float64)
        norm = w.detach().double().flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1).clamp_min(1e-30)
        w.copy_((r * norm.view(-1, *[1] * (w.dim() - 1))).to(w.dtype))
    return null


def labels_from_responses(model: nn.Module, layer: str | LayerPlan, data: DataLike, *,
                          q: float = QUANTILE, top_n: int = 20, seed: int = 0, null_filters: int = 200,
                          color: pd.DataFrame | None = None) -> pd.DataFrame:
    """Three-class labels of any layer's filters from their responses.

    The nulls are the same measures of copies of the model whose layer has Gaussian weights
    (seeds ``seed, seed + 1, ...``, each filter keeping its norm and bias; as many copies as
    give at least ``null_filters`` random filters): the color threshold is the ``q`` quantile
    of their response color index, the spatial ones the ``1 - (1 - q) / 2`` quantiles of their
    grating ``O`` and ``L``.

    Args:
        model: the network.
        layer: alias or module path.
        data: the images of :func:`~carlib.analysis.selectivity.color_index_responses`.
        q: quantile.
        top_n: top images per filter for the color index.
        seed: seed of the first random copy.
        null_filters: random filters at least in the nulls.
        color: a precomputed ``color_index_responses`` table of ``model`` (saves its pass).

    Returns:
        The columns of :func:`labels_from_weights`; ``attrs["source"] = "responses"``.

    Example:
        >>> labels_from_responses(load_model(), "conv2", load_dataset(per_class=1))  # doctest: +SKIP
    """
    conv = layer.layer if isinstance(layer, LayerPlan) else resolve_layer(model, layer)
    path = conv.path
    if isinstance(data, FolderDataset) and data.memo is None:
        data = data.memoized()  # every copy sees the same photos: decode them once
    if color is None:
        color = color_index_responses(model, path, data, top_n=top_n)
    ci = color.sort_values("filter")["color_index"].to_numpy(float)
    o, lo = grating_measures(model, path, data)
    nulls: list[list[np.ndarray]] = [[], [], []]
    for i in range(-(-null_filters // conv.filters)):
        null = _random_copy(model, path, seed + i)
        nulls[0].append(color_index_responses(null, path, data, top_n=top_n)["color_index"].to_numpy(float))
        for j, m in enumerate(grating_measures(null, path, data), start=1):
            nulls[j].append(m)
    qs = 1 - (1 - q) / 2
    c_null = float(np.quantile(np.concatenate(nulls[0]), q))
    o_null, l_null = (float(np.quantile(np.concatenate(v), qs)) for v in nulls[1:])
    df = pd.DataFrame({"filter": np.arange(len(ci)), "color_index": ci, "color_null": c_null,
                       "orientation": o, "orientation_null": o_null, "low_freq": lo,
                       "low_freq_null": l_null, "label": _label(ci, c_null, o, o_null, lo, l_null)})
    df.attrs["source"] = "responses"
    return df


def filter_labels(model: nn.Module, layer: str, data: DataLike | None = None, **kwargs: object) -> pd.DataFrame:
    """Three-class labels of a layer: from the weights where
    :func:`~carlib.analysis.selectivity.weights_index_applies`, else from responses.

    Args:
        model: the network.
        layer: alias or module path.
        data: images (needed for the responses).
        **kwargs: passed to :func:`labels_from_weights` (``q``) or :func:`labels_from_responses`.

    Returns:
        :func:`labels_from_weights` or :func:`labels_from_responses`.

    Example:
        >>> filter_labels(load_model(), "conv1")["label"].value_counts()  # doctest: +SKIP
    """
    conv = resolve_layer(model, layer).module
    if weights_index_applies(conv):
        return labels_from_weights(conv, q=float(kwargs.get("q", QUANTILE)))
    if data is None:
        raise CarlibError(f"{layer}: its filters are labeled from responses; pass the images (data=)")
    return labels_from_responses(model, layer, data, **kwargs)
