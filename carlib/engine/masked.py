"""The masked path: the whole network per pruned set, several sets folded into one batch.

For any model the fast path does not cover (e.g. a pruned map that reaches no consumer):
each image is repeated once per candidate filter and the layer's output is multiplied by a
per-row channel mask (:class:`carlib.masking.FilterMask`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import as_batches
from ..masking import FilterMask
from .correct import Counts, correct_rows, count_correct
from .run import Run

__all__ = ["MaskedPath"]


class MaskedPath:
    """Counts of correct images for sets of pruned filters, one full forward pass each.

    Args:
        model: the network (on ``run.device``).
        run: the engine's settings (``run.pair_batch``: rows per forward pass, default
            ``run.batch_size``).

    Example:
        >>> path = MaskedPath(model, Run(plan, val, torch.device("cpu"), 256, 1, lambda c: c))  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, run: Run):
        self.model = model
        self.run = run

    def evaluate(self, removed: list[int], candidates: list[int], progress=None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(base, per_candidate, n)`` as :meth:`carlib.engine.Engine.evaluate`."""
        run = self.run
        hook = FilterMask(self.model, run.plan)
        try:
            counts = None
            for x, y in as_batches(run.data, run.batch_size, device=run.device):
                n = y.shape[0]
                m0 = torch.ones(run.plan.layer.filters, device=run.device)
                m0[removed] = 0
                hook.mask = m0
                logits = self.model(x)
                if counts is None:
                    counts = Counts.zeros(len(candidates), run.classes(logits.shape[1]))
                counts.add_base(logits, y, run.topk)
                g = max(1, (run.pair_batch or run.batch_size) // n)
                for i in range(0, len(candidates), g):
                    ks = candidates[i : i + g]
                    mask = m0.repeat(len(ks), 1)
                    mask[torch.arange(len(ks)), torch.tensor(ks)] = 0
                    hook.mask = mask.repeat_interleave(n, dim=0)
                    xs = x.repeat(len(ks), *([1] * (x.ndim - 1)))
                    counts.rows[i : i + len(ks)] += count_correct(
                        self.model(xs), y, len(ks), counts.images.shape[0], run.topk)
                    if progress is not None:
                        progress.update(len(ks) * n)
            return counts.base, counts.rows, counts.images
        finally:
            hook.remove()

    def correct_images(self, removed_sets: list[list[int]]) -> torch.Tensor:
        """Whether each image is correct with each set of filters pruned: bool
        ``(len(removed_sets), images)``, one masked forward pass per set and batch."""
        run = self.run
        hook = FilterMask(self.model, run.plan)
        try:
            rows = []
            for x, y in as_batches(run.data, run.batch_size, device=run.device):
                outs = []
                for removed in removed_sets:
                    mask = torch.ones(run.plan.layer.filters, device=run.device)
                    mask[list(removed)] = 0
                    hook.mask = mask
                    logits = self.model(x)
                    run.classes(logits.shape[1])
                    outs.append(correct_rows(logits, y, run.topk).cpu())
                rows.append(torch.stack(outs) if outs else torch.zeros(0, y.shape[0], dtype=torch.bool))
            return torch.cat(rows, dim=1)
        finally:
            hook.remove()
