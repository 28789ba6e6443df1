"""Color versus shape selectivity of filters, made quantitative.

Two indices, both in [0, 1] for typical filters (1: purely chromatic, 0: blind to color):

* :func:`color_index_weights` (first layer only, from the RGB weights): the share of the
  filter's energy in its chromatic part, i.e. after removing the per-pixel mean over R, G, B.
  A filter whose three color planes are identical (a luminance edge) scores 0; a pure
  color-opponent blob scores 1.
* :func:`color_index_responses` (any layer, from responses): ``1 - r_gray / r_color``, where
  ``r_color`` is the filter's mean peak response to its top images and ``r_gray`` its mean
  peak response to the grayscale versions of the same images.

A filter is called *color-selective* when its index is at least a threshold (0.5 by default:
more than half of the filter's weight energy, or of its response, comes from color). The
counts are reported as a function of the threshold (:func:`threshold_sweep`).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data import DataLike, as_batches
from ..graph import LayerPlan, analyze
from .activations import mask_point_activations

__all__ = ["COLOR_THRESHOLD", "MIN_WEIGHT_KERNEL", "color_index_weights", "color_index_responses",
           "weights_index_applies", "hypergeom_enrichment", "threshold_sweep"]

COLOR_THRESHOLD = 0.5
#: smallest kernel side for which the weight index is used as a filter's label
MIN_WEIGHT_KERNEL = 5


def color_index_weights(conv: nn.Conv2d) -> np.ndarray:
    """Chromatic energy share of each filter of an RGB convolution.

    Args:
        conv: a convolution with 3 input channels (a first layer).

    Returns:
        ``(filters,)`` array: ``||W - mean_RGB(W)||^2 / ||W||^2``, in [0, 1].

    Example:
        >>> c = nn.Conv2d(3, 2, 3)
        >>> with torch.no_grad():
        ...     c.weight[0] = 1.0; c.weight[1] = 0; c.weight[1, 0] = 1.0
        >>> np.round(color_index_weights(c), 3).tolist()
        [0.0, 0.667]
    """
    w = conv.weight.detach().double().cpu()
    if w.shape[1] != 3:
        raise ValueError("color_index_weights needs a convolution with 3 (RGB) input channels")
    chroma = w - w.mean(dim=1, keepdim=True)
    energy = w.pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-30)
    return (chroma.pow(2).sum(dim=(1, 2, 3)) / energy).numpy()


def _to_gray(pixels: np.ndarray) -> np.ndarray:
    g = (pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return np.repeat(np.clip(np.rint(g), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def weights_index_applies(conv: nn.Conv2d) -> bool:
    """Whether a filter's color label may be read from its weights (:func:`color_index_weights`).

    Only for a first layer (3 input channels, not grouped) with kernels of at least
    :data:`MIN_WEIGHT_KERNEL` pixels a side: a 3x3 filter has nine weights per color plane and
    is followed by BatchNorm, so its chromatic energy share says little about what it responds
    to; such layers are labeled by :func:`color_index_responses`.

    Example:
        >>> weights_index_applies(nn.Conv2d(3, 8, 11)), weights_index_applies(nn.Conv2d(3, 8, 3))
        (True, False)
    """
    return (conv.in_channels == 3 and conv.groups == 1
            and min(conv.kernel_size) >= MIN_WEIGHT_KERNEL)


@torch.no_grad()
def color_index_responses(model: nn.Module, layer: str | LayerPlan, data: DataLike, *, top_n: int = 20,
                          batch_size: int = 256, filters: Iterable[int] | None = None) -> pd.DataFrame:
    """Response-based color index of each filter.

    For each filter, its ``top_n`` images (largest spatial peak of its feature map after BN and
    activation) are shown again in grayscale (ITU-R 601 luma of the 8-bit pixels, replicated to
    R, G and B).

    Args:
        model: the network.
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        data: a carlib dataset (in memory, or decoded from files as ImageNet is).
        top_n: top images per filter.
        batch_size: images per forward pass.
        filters: only these filters (default all).

    Returns:
        A DataFrame ``filter, r_color, r_gray, color_index``.

    Example:
        >>> color_index_responses(load_model(), "conv1", load_dataset(per_class=1))  # doctest: +SKIP
    """
    plan = analyze(model, layer)
    peaks = [mask_point_activations(model, plan, x).amax(dim=(2, 3))
             for x, _ in as_batches(data, batch_size)]
    peaks_t = torch.cat(peaks)  # (N, C)
    ks = list(range(peaks_t.shape[1])) if filters is None else list(filters)
    rows = []
    for k in ks:
        top = torch.argsort(peaks_t[:, k], descending=True, stable=True)[:top_n].numpy()
        top = np.sort(top)
        gray = data.normalize(_to_gray(data.pixels(top)))
        r_gray = mask_point_activations(model, plan, gray)[:, k].amax(dim=(1, 2))
        r_color = peaks_t[top, k]
        rc, rg = float(r_color.mean()), float(r_gray.mean())
        rows.append({"filter": k, "r_color": rc, "r_gray": rg,
                     "color_index": 1.0 - rg / rc if rc > 0 else 0.0})
    return pd.DataFrame(rows)


def hypergeom_enrichment(k: int, n_draw: int, n_color: int, n_total: int) -> dict:
    """How surprising ``k`` color filters among ``n_draw`` pruned filters are.

    Args:
        k: color-selective filters among the drawn (pruned) ones.
        n_draw: filters drawn (e.g. the top 20 pruned).
        n_color: color-selective filters in the whole layer.
        n_total: filters in the layer.

    Returns:
        ``{"expected": n_draw * n_color / n_total, "p_greater": P(X >= k),
        "p_less": P(X <= k)}`` under drawing without replacement (hypergeometric).

    Example:
        >>> round(hypergeom_enrichment(5, 10, 10, 20)["expected"], 1)
        5.0
    """
    from scipy.stats import hypergeom

    rv = hypergeom(n_total, n_color, n_draw)
    return {"expected": n_draw * n_color / n_total, "p_greater": float(rv.sf(k - 1)),
            "p_less": float(rv.cdf(k))}


def threshold_sweep(index: pd.Series | np.ndarray, pruned: Iterable[int],
                    thresholds: Iterable[float] = np.round(np.arange(0.1, 0.95, 0.05), 2)) -> pd.DataFrame:
    """Color counts among ``pruned`` filters, base rates and p-values as the threshold moves.

    Args:
        index: the color index of every filter of the layer (position = filter index).
        pruned: the pruned filters (e.g. the top 20 in pruning order).
        thresholds: thresholds to try.

    Returns:
        A DataFrame ``threshold, color_in_pruned, n_pruned, color_in_layer, n_layer, expected,
        p_greater``.
    """
    idx = np.asarray(index, dtype=float)
    pruned = list(pruned)
    rows = []
    for t in thresholds:
        color = idx >= t
        k = int(color[pruned].sum())
        e = hypergeom_enrichment(k, len(pruned), int(color.sum()), len(idx))
        rows.append({"threshold": float(t), "color_in_pruned": k, "n_pruned": len(pruned),
                     "color_in_layer": int(color.sum()), "n_layer": len(idx),
                     "expected": e["expected"], "p_greater": e["p_greater"]})
    return pd.DataFrame(rows)
