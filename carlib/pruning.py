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
from .graph_pruning import PruneRecord, prune_coupled
from .layers import check_filters

__all__ = ["prune_filters", "count", "PruneRecord"]


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


def prune_filters(model: nn.Module, layer: str | LayerPlan, filters: Iterable[int], *,
                  coupled: bool = False, input_size: tuple[int, ...] = (3, 224, 224)) -> nn.Module:
    """A physically smaller copy of ``model`` with ``filters`` of ``layer`` removed.

    In a sequential chain carlib rewrites the graph itself: the convolution loses those output
    channels, its BatchNorm (if any) those entries, and its consumer (the next convolution, or
    the first linear layer after flattening) the matching input channels or features. Any
    other graph (residual sums, depthwise convolutions, concatenations) is pruned with
    Torch-Pruning (:mod:`carlib.graph_pruning`): coupled channels go together, constant
    channels are folded into the next layer's bias, and the result is checked on probe images
    of ``input_size``. Either way the copy computes, in eval mode, what the masked model
    computes (:func:`carlib.mask_filters`) up to float rounding, where the masked filters are
    ``small.pruning_record.masked``: the requested ones, plus, with ``coupled=True``, the
    filters of other convolutions removed with them.

    Args:
        model: the network (not modified).
        layer: alias or module path of the convolution, or its :class:`~carlib.graph.LayerPlan`.
        filters: filter indices to remove (at least one filter must remain).
        coupled: allow removing the same channels of convolutions coupled with ``layer`` (a
            residual sum); without it such a removal is refused.
        input_size: ``(C, H, W)`` of one input image, for graphs pruned with Torch-Pruning.

    Returns:
        The pruned copy, in the mode ``model`` was in. Its ``pruning_record`` attribute (a
        :class:`PruneRecord`) says which filters of which convolutions were removed together.

    Raises:
        CarlibError: unknown layer, bad indices, all filters removed, coupled filters without
        ``coupled=True``, or a graph neither carlib nor Torch-Pruning can rewrite exactly.

    Example:
        >>> from torchvision.models import alexnet
        >>> small = prune_filters(alexnet(), "conv1", range(32))
        >>> small.features[0].out_channels, small.features[3].in_channels
        (32, 32)
        >>> small.pruning_record.masked["features.0"][:3]
        [0, 1, 2]
    """
    plan = analyze(model, layer)
    n = plan.layer.filters
    layer = layer if isinstance(layer, str) else plan.layer.alias
    drop = check_filters(filters, n, layer)
    keep = [k for k in range(n) if k not in set(drop)]
    if not keep:
        raise CarlibError(f"cannot remove all {n} filters of {layer}; keep at least one")
    if plan.prune_reason is not None or plan.layer.module.groups != 1:
        return prune_coupled(model, plan, drop, coupled=coupled, input_size=input_size)
    with torch.no_grad():
        out = _rewrite_chain(model, plan, keep, n)
    drop = sorted(int(k) for k in drop)
    out.pruning_record = PruneRecord(plan.layer.path, drop, {plan.layer.path: drop},
                                     {plan.layer.path: drop})
    return out


def _rewrite_chain(model: nn.Module, plan: LayerPlan, keep: list[int], n: int) -> nn.Module:
    """carlib's own rewrite of a sequential chain: layer, its BatchNorm, its consumer."""
    layer = plan.layer.alias
    out = copy.deepcopy(model)
    idx = torch.tensor(keep)
    conv: nn.Conv2d = out.get_submodule(plan.layer.path)
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
