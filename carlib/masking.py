"""Masking filters: zero a filter's output map after its normalization and activation.

This is the definition of *pruning a filter* that every other part of carlib is held to
(the naive reference in :mod:`carlib.reference` implements it again, on its own): the filter's feature map,
taken after the BatchNorm and activation that directly follow its convolution, is zero for
every consumer. Zeroing the convolution output in front of a BatchNorm would be wrong: the
BatchNorm shift would make the channel non-zero again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn

from .graph import LayerPlan, analyze
from .layers import check_filters

__all__ = ["mask_filters", "FilterMask"]


class FilterMask:
    """A forward hook that multiplies a layer's output (the mask point) by a channel mask.

    ``mask`` may be ``(C,)`` (the same for every image) or ``(B, C)`` (one row per image of
    the batch, used to evaluate several pruned networks in one pass).
    """

    def __init__(self, model: nn.Module, plan: LayerPlan):
        self.plan = plan
        self.module = model.get_submodule(plan.mask_module)
        self.mask: torch.Tensor | None = None
        self.handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return output
        m = self.mask.to(device=output.device, dtype=output.dtype)
        shape = (m.shape[0] if m.ndim == 2 else 1, output.shape[1]) + (1,) * (output.ndim - 2)
        return output * m.reshape(shape)

    def remove(self) -> None:
        self.handle.remove()


@contextmanager
def mask_filters(model: nn.Module, layer: str | LayerPlan, filters: Iterable[int]) -> Iterator[nn.Module]:
    """Temporarily prune ``filters`` of ``layer`` by masking (see the module docstring).

    Args:
        model: the network (left unchanged after the ``with`` block).
        layer: alias (``conv1``), module path, or its :class:`~carlib.graph.LayerPlan`.
        filters: filter indices to prune.

    Returns:
        A context manager yielding ``model`` with the mask hook installed.

    Example:
        >>> from torchvision.models import alexnet
        >>> m = alexnet().eval()
        >>> with mask_filters(m, "conv1", [0, 5]):
        ...     y = m(torch.zeros(1, 3, 224, 224))
    """
    plan = analyze(model, layer)
    idx = check_filters(filters, plan.layer.filters, layer if isinstance(layer, str) else plan.layer.alias)
    hook = FilterMask(model, plan)
    mask = torch.ones(plan.layer.filters)
    mask[idx] = 0.0
    hook.mask = mask
    try:
        yield model
    finally:
        hook.remove()
