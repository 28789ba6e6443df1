"""Structural pruning: a physically smaller network, and counting its cost."""

from __future__ import annotations

import copy
from typing import Iterable

import pandas as pd
import torch
from torch import nn

from .convs import SamePadConv2d
from .errors import CarlibError
from .graph import LayerPlan, analyze
from .layers import check_filters

__all__ = ["prune_filters", "count"]


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """An ungrouped convolution of ``conv``'s class and shape with other channel counts
    (``nn.Conv2d`` or :class:`~carlib.convs.SamePadConv2d`: :mod:`carlib.graph` refuses
    other subclasses)."""
    cls = SamePadConv2d if isinstance(conv, SamePadConv2d) else nn.Conv2d
    return cls(in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
               1, conv.bias is not None, conv.padding_mode, device=conv.weight.device,
               dtype=conv.weight.dtype)


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, new)


@torch.no_grad()
def prune_filters(model: nn.Module, layer: str | LayerPlan, filters: Iterable[int]) -> nn.Module:
    """A physically smaller copy of ``model`` with ``filters`` of ``layer`` removed.

    The convolution loses those output channels, its BatchNorm (if any) those entries, and
    its consumer (the next convolution, or the first linear layer after flattening) the
    matching input channels or features. The copy computes exactly what the masked model
    computes (:func:`carlib.mask_filters`), up to float rounding.

    Args:
        model: the network (not modified).
        layer: alias or module path of the convolution, or its :class:`~carlib.graph.LayerPlan`.
        filters: filter indices to remove (at least one filter must remain).

    Returns:
        The pruned copy, in the mode ``model`` was in.

    Raises:
        CarlibError: unknown layer, bad indices, all filters removed, or a graph carlib
        cannot rewrite (skip connections, grouped consumers, ...).

    Example:
        >>> from torchvision.models import alexnet
        >>> small = prune_filters(alexnet(), "conv1", range(32))
        >>> small.features[0].out_channels, small.features[3].in_channels
        (32, 32)
    """
    plan = analyze(model, layer)
    n = plan.layer.filters
    layer = layer if isinstance(layer, str) else plan.layer.alias
    drop = check_filters(filters, n, layer)
    keep = [k for k in range(n) if k not in set(drop)]
    if not keep:
        raise CarlibError(f"cannot remove all {n} filters of {layer}; keep at least one")
    if plan.prune_reason is not None:
        raise CarlibError(f"cannot rewrite the graph after {layer}: {plan.prune_reason}; "
                          "use carlib.mask_filters for this model")
    out = copy.deepcopy(model)
    idx = torch.tensor(keep)
    conv: nn.Conv2d = out.get_submodule(plan.layer.path)
    if conv.groups != 1:
        raise CarlibError(f"{layer} is a grouped convolution; carlib cannot remove its filters")
    new = _conv_like(conv, conv.in_channels, len(keep))
    new.weight.copy_(conv.weight[idx])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[idx])
    new.train(conv.training)
    _set_module(out, plan.layer.path, new)
    if plan.norm is not None:
        bn: nn.BatchNorm2d = out.get_submodule(plan.norm)
        nb = nn.BatchNorm2d(len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                            device=conv.weight.device, dtype=conv.weight.dtype)
        if bn.affine:
            nb.weight.copy_(bn.weight[idx])
            nb.bias.copy_(bn.bias[idx])
        if bn.track_running_stats:
            nb.running_mean.copy_(bn.running_mean[idx])
            nb.running_var.copy_(bn.running_var[idx])
            nb.num_batches_tracked.copy_(bn.num_batches_tracked)
        nb.train(bn.training)
        _set_module(out, plan.norm, nb)
    cons = out.get_submodule(plan.consumer)
    if isinstance(cons, nn.Conv2d):
        nc = _conv_like(cons, len(keep), cons.out_channels)
        nc.weight.copy_(cons.weight[:, idx])
    else:
        if cons.in_features % n:
            raise CarlibError(f"{plan.consumer} has {cons.in_features} input features, not a "
                              f"multiple of the {n} filters of {layer}; carlib cannot rewrite it")
        s = cons.in_features // n
        feat = (idx[:, None] * s + torch.arange(s)[None, :]).reshape(-1)
        nc = nn.Linear(len(keep) * s, cons.out_features, cons.bias is not None,
                       device=cons.weight.device, dtype=cons.weight.dtype)
        nc.weight.copy_(cons.weight[:, feat])
    if cons.bias is not None:
        nc.bias.copy_(cons.bias)
    nc.train(cons.training)
    _set_module(out, plan.consumer, nc)
    return out


def count(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), *,
          per_layer: bool = False) -> dict | pd.DataFrame:
    """Parameters and multiply-accumulates (MACs) of one forward pass of one image.

    MACs are counted for convolutions and linear layers (the rest is negligible).

    Args:
        model: the network.
        input_size: ``(C, H, W)`` of one input image.
        per_layer: return a table with one row per convolution / linear layer instead.

    Returns:
        ``{"params": int, "macs": int}`` or a DataFrame ``layer, kind, params, macs``.

    Example:
        >>> from torchvision.models import alexnet
        >>> count(alexnet())["params"]
        61100840
    """
    rows: list[dict] = []
    hooks = []

    def make_hook(name: str):
        def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            if isinstance(m, nn.Conv2d):
                k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                macs = out[0].numel() * k
                kind = "conv"
            else:
                macs = out[0].numel() * m.in_features
                kind = "linear"
            rows.append({"layer": name, "kind": kind,
                         "params": sum(p.numel() for p in m.parameters(recurse=False)),
                         "macs": int(macs)})
        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(make_hook(name)))
    was = model.training
    model.eval()
    try:
        p = next(iter(model.parameters()), None)
        x = torch.zeros((1,) + tuple(input_size), device=p.device if p is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    if per_layer:
        return pd.DataFrame(rows, columns=["layer", "kind", "params", "macs"])
    return {"params": sum(p.numel() for p in model.parameters()),
            "macs": sum(r["macs"] for r in rows)}
