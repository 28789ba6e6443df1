"""A layer's feature maps at its mask point (kept here for the analysis layer's imports; the
function lives in the core, :mod:`carlib.activations`)."""

from __future__ import annotations

from ..activations import mask_point_activations

__all__ = ["mask_point_activations"]
