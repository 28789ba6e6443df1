"""What the engine's paths share: the layer, the images and how to count them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..data import DataLike
from ..graph import LayerPlan

__all__ = ["Run"]


@dataclass
class Run:
    """The settings of one :class:`~carlib.engine.Engine`, handed to its path.

    Attributes:
        plan: the layer's plan.
        data: the images.
        device: where to compute.
        batch_size: images per batch in front of the pruned layer's consumer.
        topk: the accuracy rule (:mod:`carlib.engine.correct`).
        classes: called with the model's output width before anything is counted; checks the
            labels against it and returns it.
        pair_batch: (image, filter) pairs per forward pass (``None``: the path's default).

    Example:
        >>> run = Run(plan, val, torch.device("cpu"), 256, 1, lambda c: c, None)  # doctest: +SKIP
    """

    plan: LayerPlan
    data: DataLike
    device: torch.device
    batch_size: int
    topk: int
    classes: Callable[[int], int]
    pair_batch: int | None = None
