"""Showing deeper filters through the image patches that drive them most."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import nn

from ..convs import SamePadConv2d, same_padding
from ..data import DataLike, as_batches
from ..errors import CarlibError
from ..graph import LayerPlan, analyze
from .activations import mask_point_activations

__all__ = ["receptive_field", "top_patches", "Patch"]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def receptive_field(model: nn.Module, layer: str | LayerPlan,
                    input_size: int | None = None) -> tuple[int, int, int]:
    """Receptive field of one unit of ``layer`` in input pixels (sequential chains).

    Args:
        model: the network.
        layer: alias or module path of a convolution.
        input_size: the input's height (= width); needed when a
            :class:`~carlib.convs.SamePadConv2d` precedes the unit, whose padding before the
            input depends on the size of what it convolves.

    Returns:
        ``(size, stride, padding)``: output unit ``(i, j)`` sees input rows
        ``i * stride - padding`` to ``i * stride - padding + size - 1`` (same for columns).

    Example:
        >>> from torchvision.models import alexnet
        >>> receptive_field(alexnet(), "conv1")
        (11, 4, 2)
    """
    plan = analyze(model, layer)
    if plan.gm is None:
        raise ValueError("receptive_field needs a model that torch.fx can trace")
    mods = dict(plan.gm.named_modules())
    size, jump, pad, n = 1, 1, 0, input_size
    for node in plan.prefix:
        if node.op != "call_module":
            continue
        m = mods[node.target]
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(m.kernel_size)[0]
            s = _pair(m.stride)[0]
            d = _pair(getattr(m, "dilation", 1))[0]
            if isinstance(m, SamePadConv2d):
                if n is None:
                    raise CarlibError(f"{node.target} pads as TensorFlow's 'SAME', by its input's size: "
                                      f"pass input_size= to receptive_field")
                p, after = same_padding(n, k, s, d)
            elif isinstance(m.padding, str):  # "valid" or "same" (stride 1; PyTorch: smaller half first)
                total = 0 if m.padding == "valid" else (k - 1) * d
                p, after = total // 2, total - total // 2
            else:
                p = after = _pair(m.padding)[0]
            if n is not None:
                extent = (k - 1) * d + 1
                ceil = bool(getattr(m, "ceil_mode", False))
                n = (-(-(n + p + after - extent) // s) if ceil else (n + p + after - extent) // s) + 1
            pad += p * jump
            size += (k - 1) * d * jump
            jump *= s
    return size, jump, pad


@dataclass
class Patch:
    """One receptive-field crop: the image it comes from, where, and the response."""

    filter: int
    image: int
    y: int
    x: int
    value: float
    pixels: np.ndarray  # uint8 (size, size, 3), zero outside the image


@torch.no_grad()
def top_patches(model: nn.Module, layer: "str | LayerPlan", data: DataLike, filters: Iterable[int], *,
                n: int = 9, batch_size: int = 256) -> dict[int, list[Patch]]:
    """The ``n`` image patches that drive each filter most (one per image, at its peak).

    Args:
        model: the network.
        layer: alias or module path, or its :class:`~carlib.graph.LayerPlan`.
        data: a carlib dataset, in memory or decoded from files (the crops are taken from its
            uint8 pixels as the model sees them).
        filters: which filters.
        n: patches per filter.
        batch_size: images per forward pass.

    Returns:
        ``{filter: [Patch, ...]}``, strongest first (ties: lower image index).
    """
    if not hasattr(data, "pixels"):
        raise CarlibError("image patches need a carlib dataset (its pixels), not a pair of tensors; "
                          "use carlib.load_dataset")
    ks = list(filters)
    plan = analyze(model, layer)
    peak_val, peak_pos = [], []
    for x, _ in as_batches(data, batch_size):
        a = mask_point_activations(model, plan, x)[:, ks]
        flat = a.flatten(2)
        v, p = flat.max(dim=2)
        peak_val.append(v)
        peak_pos.append(p)
        width = a.shape[3]
    vals, poss = torch.cat(peak_val), torch.cat(peak_pos)
    size, jump, pad = receptive_field(model, plan, int(data.image_size[0]))
    orders = [torch.argsort(vals[:, j], descending=True, stable=True)[:n].tolist() for j in range(len(ks))]
    shown = sorted({img for order in orders for img in order})  # each image decoded once
    pixels = dict(zip(shown, data.pixels(shown)))
    h, w = next(iter(pixels.values())).shape[:2]
    out: dict[int, list[Patch]] = {}
    for j, (k, order) in enumerate(zip(ks, orders)):
        patches = []
        for img in order:
            pos = int(poss[img, j])
            y, x = divmod(pos, width)
            top, left = y * jump - pad, x * jump - pad
            crop = np.zeros((size, size, 3), dtype=np.uint8)
            y0, y1 = max(0, top), min(h, top + size)
            x0, x1 = max(0, left), min(w, left + size)
            crop[y0 - top : y1 - top, x0 - left : x1 - left] = pixels[img][y0:y1, x0:x1]
            patches.append(Patch(k, img, y, x, float(vals[img, j]), crop))
        out[k] = patches
    return out
