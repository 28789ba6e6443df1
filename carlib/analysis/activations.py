"""A layer's feature maps at its mask point (after the BatchNorm and activation that follow it),
and each filter's mean peak response per class."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ..data import DataLike, as_batches
from ..engine import eval_mode
from ..graph import LayerPlan, analyze, run_nodes

__all__ = ["mask_point_activations", "class_mean_activations"]


@torch.no_grad()
def mask_point_activations(model: nn.Module, layer: str | LayerPlan, x: torch.Tensor) -> torch.Tensor:
    """The layer's output after its normalization and activation, for a batch ``x``.

    Only the layers up to that point run when the model can be traced; otherwise the whole
    model runs with a hook at the mask point. The model runs in eval mode and is left in the
    mode it had.

    Args:
        model: the network.
        layer: alias, module path, or the layer's :class:`~carlib.graph.LayerPlan` (pass the
            plan when calling batch after batch: the graph is then traced once).
        x: normalized images ``(N, C, H, W)``.

    Returns:
        ``(N, filters, H', W')``.

    Example:
        >>> from torchvision.models import alexnet
        >>> mask_point_activations(alexnet(), "conv1", torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 64, 55, 55])
    """
    plan = analyze(model, layer)
    with eval_mode(model):
        if plan.gm is not None and plan.mask_node is not None:
            placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
            return run_nodes(plan.gm, plan.prefix, {placeholder: x}).detach().clone()
        out: dict[str, torch.Tensor] = {}
        h = model.get_submodule(plan.mask_module).register_forward_hook(
            lambda m, i, o: out.__setitem__("a", o.detach().clone()))
        try:
            model(x)
        finally:
            h.remove()
        return out["a"]


@torch.no_grad()
def class_mean_activations(model: nn.Module, layer: str | LayerPlan, data: DataLike,
                           batch_size: int = 256) -> pd.DataFrame:
    """Each filter's mean response to each class: the spatial peak of its map at the mask point
    (as :func:`~carlib.analysis.selectivity.color_index_responses` reads responses), averaged
    over the class's images.

    Args:
        model: the network.
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        data: a carlib dataset.
        batch_size: images per forward pass.

    Returns:
        A filter x class DataFrame (index ``filter``, columns the classes present).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 1, 2])
        >>> class_mean_activations(net, "conv1", (x, y)).shape
        (4, 3)
    """
    plan = analyze(model, layer)
    peaks, labels = [], []
    for x, y in as_batches(data, batch_size):
        peaks.append(mask_point_activations(model, plan, x).amax(dim=(2, 3)).double())
        labels.append(torch.as_tensor(y))
    p, lab = torch.cat(peaks).numpy(), torch.cat(labels).numpy()
    df = pd.DataFrame(p).groupby(lab).mean().T
    df.index.name = "filter"
    return df
