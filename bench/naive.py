"""The naive CAR reference the benchmark times carlib against.

The definition written out: a forward hook (:func:`carlib.mask_filters`) zeroes filter ``k`` at
the mask point (after the convolution's BatchNorm and activation), the full network runs over
all images in batches of 256, top-1 by argmax, once per filter plus once for the unpruned
network. :func:`car_values` turns its counts into the accuracies and CAR values that
:func:`carlib.car.car_table` reports, for an exact comparison.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from carlib.masking import mask_filters

__all__ = ["NAIVE_BATCH", "naive_correct", "naive_car", "car_values", "self_labels",
           "evenly_spaced"]

#: Images per forward pass of the naive loop.
NAIVE_BATCH = 256


@torch.no_grad()
def naive_correct(model: torch.nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor,
                  pruned: Sequence[int]) -> int:
    """Top-1 correct images of ``model`` with the ``pruned`` filters of ``layer`` zeroed.

    Args:
        model: the network (evaluation mode).
        layer: alias or module path of the convolution.
        x: images, on the model's device; y: their labels.
        pruned: filters zeroed at the mask point.

    Returns:
        The number of images whose argmax equals their label.

    Example:
        >>> naive_correct(model, "conv1", x, y, [3])  # doctest: +SKIP
        1234
    """
    correct = 0
    with mask_filters(model, layer, list(pruned)):
        for i in range(0, x.shape[0], NAIVE_BATCH):
            logits = model(x[i : i + NAIVE_BATCH])
            correct += int((logits.argmax(dim=1) == y[i : i + NAIVE_BATCH]).sum())
    return correct


def naive_car(model: torch.nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor,
              filters: Iterable[int], pruned: Sequence[int] = ()) -> tuple[int, dict[int, int]]:
    """The naive CAR loop: one full pass for the network and one per filter.

    Args:
        model: the network; layer: the convolution; x, y: images and labels.
        filters: the filters to remove, one at a time, on top of ``pruned``.
        pruned: filters already removed.

    Returns:
        ``(correct of the network, {filter: correct with it removed too})``.

    Example:
        >>> base, correct = naive_car(model, "conv1", x, y, [0, 1])  # doctest: +SKIP
    """
    pruned = list(pruned)
    base = naive_correct(model, layer, x, y, pruned)
    return base, {k: naive_correct(model, layer, x, y, pruned + [k]) for k in filters}


def car_values(base: int, correct: dict[int, int], n: int) -> dict[int, tuple[float, float]]:
    """``(accuracy, car)`` per filter, computed as :func:`carlib.car.car_table` computes them.

    Args:
        base: correct images of the network; correct: per filter, with it removed.
        n: images evaluated.

    Returns:
        ``{filter: (accuracy, base accuracy - accuracy)}``.

    Example:
        >>> car_values(8, {0: 6}, 10)
        {0: (0.6, 0.20000000000000007)}
    """
    base_acc = float(base) / n
    return {k: (float(c) / n, base_acc - float(c) / n) for k, c in correct.items()}


@torch.no_grad()
def self_labels(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own top-1 predictions for ``x`` (in batches of :data:`NAIVE_BATCH`): labels
    under which the unpruned network is 100 % accurate, for the random-input workloads.

    Example:
        >>> m = torch.nn.Linear(4, 3)
        >>> bool((m(torch.ones(2, 4)).argmax(1) == self_labels(m, torch.ones(2, 4))).all())
        True
    """
    return torch.cat([model(x[i : i + NAIVE_BATCH]).argmax(1)
                      for i in range(0, len(x), NAIVE_BATCH)])


def evenly_spaced(n_total: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n_total)`` (all of them when ``k`` is 0 or too big).

    Example:
        >>> evenly_spaced(64, 4)
        [0, 21, 42, 63]
    """
    if k <= 0 or k >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, k)})
