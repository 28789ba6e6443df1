"""Each filter's mean peak response per class, read at the layer's mask point (the map itself
comes from the core, :func:`carlib.activations.mask_point_activations`, re-exported here)."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ..activations import mask_point_activations
from ..data import DataLike, as_batches
from ..graph import LayerPlan, analyze

__all__ = ["mask_point_activations", "class_mean_activations"]


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
