"""What counts as a correct classification: the one place that states the top-k rule.

An image is *correct* when its label is among the ``topk`` largest logits; for ``topk=1``
that is the argmax, ties going to the lower class index. CAR is a difference of such
counts. :func:`decision_margin` says how far a row is from changing that decision, which
is what the checked-bf16 screen relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["correct_rows", "count_correct", "tally", "decision_margin", "Counts"]


def correct_rows(logits: torch.Tensor, labels: torch.Tensor, topk: int = 1) -> torch.Tensor:
    """Whether each row's label is among its ``topk`` largest logits.

    Args:
        logits: ``(N, classes)``.
        labels: ``(N,)``.
        topk: 1 (argmax, ties to the lower class index) or k.

    Returns:
        A bool tensor ``(N,)``.

    Example:
        >>> correct_rows(torch.tensor([[1.0, 1.0], [0.0, 2.0]]), torch.tensor([1, 1]))
        tensor([False,  True])
    """
    if topk == 1:
        return logits.argmax(dim=1) == labels
    return (logits.topk(topk, dim=1).indices == labels[:, None]).any(dim=1)


def tally(logits: torch.Tensor, labels: torch.Tensor, slots: torch.Tensor,
          shape: tuple[int, int], topk: int = 1) -> torch.Tensor:
    """Correct rows counted into an int64 table ``(table rows, classes)`` on the CPU.

    Args:
        logits: ``(N, classes)``.
        labels: ``(N,)``.
        slots: the table row of each logits row ``(N,)``.
        shape: ``(table rows, classes)``.
        topk: as :func:`correct_rows`.

    Returns:
        int64 ``shape``: ``table[s, c]`` = correct rows with slot ``s`` and label ``c``.

    Example:
        >>> tally(torch.tensor([[2.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 1]),
        ...       torch.tensor([0, 1]), (2, 2))
        tensor([[1, 0],
                [0, 1]])
    """
    ok = correct_rows(logits, labels, topk)
    flat = torch.bincount((slots * shape[1] + labels)[ok], minlength=shape[0] * shape[1])
    return flat.view(shape).cpu()


def count_correct(logits: torch.Tensor, labels: torch.Tensor, groups: int, num_classes: int,
                  topk: int = 1) -> torch.Tensor:
    """Correct predictions per (group, class) for ``groups`` stacked copies of a batch.

    Args:
        logits: ``(groups * N, classes)``, group-major (the N images of group 0 first).
        labels: ``(N,)``.
        groups: number of stacked networks.
        num_classes: width of the count table.
        topk: 1 (argmax, ties to the lower class index) or k (label among the k largest).

    Returns:
        int64 ``(groups, num_classes)``.

    Example:
        >>> logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0], [3.0, 1.0]])
        >>> count_correct(logits, torch.tensor([0, 1]), 2, 2)  # rows: g0i0, g0i1, g1i0, g1i1
        tensor([[1, 1],
                [1, 0]])
    """
    g = torch.arange(groups, device=labels.device).repeat_interleave(labels.shape[0])
    return tally(logits, labels.repeat(groups), g, (groups, num_classes), topk)


def decision_margin(logits: torch.Tensor, labels: torch.Tensor, topk: int = 1) -> torch.Tensor:
    """How far each row is from changing whether it counts as correct.

    A row is correct when its label's logit is above the ``topk``-th largest of the other
    logits; the margin is the distance between the two. If every logit moves by less than
    half the margin, the row's correct/incorrect decision (what CAR counts) cannot change,
    whichever class comes first. Incorrect rows whose two best (wrong) classes are close
    therefore have a large margin, unlike the gap between the two best logits.

    Args:
        logits: ``(N, classes)`` with ``classes > topk``.
        labels: ``(N,)``.
        topk: 1 or k.

    Returns:
        ``(N,)`` non-negative margins (NaN where a logit is NaN).

    Example:
        >>> decision_margin(torch.tensor([[3.0, 1.0, 2.5]]), torch.tensor([1]))
        tensor([2.])
    """
    lab = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    kth = others.topk(topk, dim=1).values[:, topk - 1]
    return (lab - kth).abs()


@dataclass
class Counts:
    """The tables one evaluation fills: correct images per class of the current network
    (``base``), of each evaluated network (``rows``), and images per class (``images``).

    Example:
        >>> c = Counts.zeros(2, 3)
        >>> c.add_base(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([1]), 1)
        >>> c.base.tolist(), c.images.tolist()
        ([0, 1, 0], [0, 1, 0])
    """

    base: torch.Tensor
    rows: torch.Tensor
    images: torch.Tensor

    @classmethod
    def zeros(cls, n_rows: int, classes: int, *, base_is_row0: bool = False) -> "Counts":
        """Empty int64 tables; with ``base_is_row0`` the base is a view of ``rows[0]``."""
        rows = torch.zeros(n_rows, classes, dtype=torch.long)
        base = rows[0] if base_is_row0 else torch.zeros(classes, dtype=torch.long)
        return cls(base, rows, torch.zeros(classes, dtype=torch.long))

    def add_base(self, logits: torch.Tensor, labels: torch.Tensor, topk: int) -> None:
        """Count a batch of the current network: its correct images and all its images."""
        classes = self.images.shape[0]
        self.base += count_correct(logits, labels, 1, classes, topk)[0]
        self.images += torch.bincount(labels.cpu(), minlength=classes)
