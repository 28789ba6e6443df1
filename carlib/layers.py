"""Naming layers: module paths (``features.0``) and aliases (``conv1``, ``conv2``, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pandas as pd
from torch import nn

from .errors import CarlibError

__all__ = ["ConvLayer", "conv_layers", "resolve_layer", "layer_table", "check_filters"]


@dataclass(frozen=True)
class ConvLayer:
    """A convolution of a model: its alias (``conv3``), module path and filter count."""

    alias: str
    path: str
    module: nn.Conv2d

    @property
    def filters(self) -> int:
        return int(self.module.out_channels)


def conv_layers(model: nn.Module) -> list[ConvLayer]:
    """Every ``Conv2d`` of ``model`` in registration order, aliased ``conv1``, ``conv2``, ...

    Args:
        model: any module.

    Returns:
        A list of :class:`ConvLayer`.

    Example:
        >>> from torchvision.models import alexnet
        >>> [(c.alias, c.path, c.filters) for c in conv_layers(alexnet())][:2]
        [('conv1', 'features.0', 64), ('conv2', 'features.3', 192)]
    """
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return [ConvLayer(f"conv{i + 1}", n, m) for i, (n, m) in enumerate(convs)]


def resolve_layer(model: nn.Module, layer: str) -> ConvLayer:
    """Find a convolution by module path or alias.

    Args:
        model: the network.
        layer: a module path from ``model.named_modules()`` (e.g. ``features.0``) or an alias
            ``convN`` (the N-th ``Conv2d`` in registration order).

    Returns:
        The :class:`ConvLayer`.

    Raises:
        CarlibError (a ``ValueError``): unknown name or not a convolution; the message lists
        the convolution layers with their aliases.

    Example:
        >>> from torchvision.models import alexnet
        >>> resolve_layer(alexnet(), "conv2").path
        'features.3'
    """
    convs = conv_layers(model)
    for c in convs:
        if layer in (c.alias, c.path):
            return c
    listing = ", ".join(f"{c.alias}={c.path} ({c.filters})" for c in convs) or "none"
    raise CarlibError(
        f"unknown layer {layer!r}: not a convolution of this model; "
        f"use an alias or module path of one of: {listing}"
    )


def layer_table(model: nn.Module) -> pd.DataFrame:
    """The convolution layers as a table: ``alias``, ``path``, ``filters``, ``kernel``, ``in_channels``."""
    return pd.DataFrame(
        [{"alias": c.alias, "path": c.path, "filters": c.filters,
          "kernel": "x".join(map(str, c.module.kernel_size)), "in_channels": c.module.in_channels}
         for c in conv_layers(model)]
    )


def check_filters(filters: Iterable[int], n: int, layer: str) -> list[int]:
    """Validate filter indices against a layer of ``n`` filters.

    Args:
        filters: indices (any iterable of integers).
        n: the layer's filter count.
        layer: the layer's name, for the message.

    Returns:
        The indices sorted, without duplicates.

    Raises:
        CarlibError: an index outside ``0..n-1``.

    Example:
        >>> check_filters([3, 1, 3], 8, "conv1")
        [1, 3]
    """
    out = sorted({int(f) for f in filters})
    bad = [f for f in out if f < 0 or f >= n]
    if bad:
        raise CarlibError(
            f"filter index {bad[0]} is out of range for {layer}, which has {n} filters; "
            f"use indices 0..{n - 1}"
        )
    return out
