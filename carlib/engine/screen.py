"""The checked-bf16 screen: bf16 where it cannot change a count, fp32 everywhere else.

The layers after the pruned layer's consumers run in bf16 (the module that produces the
logits in fp32), and every (image, filter) pair whose decision bf16 cannot settle is
recomputed in fp32. What CAR counts is whether a pair is correct (its label among the
``topk`` largest logits), so a pair is accepted from bf16 only when its label's logit is more
than ``2 * safety * err`` away from the ``topk``-th largest of the other logits
(:func:`~carlib.engine.correct.decision_margin`), where ``err`` is the largest
bf16-vs-fp32 logit difference seen so far (measured on the unpruned network's images in every
batch and on every recomputed pair). Two logits more than ``2 * s * err`` apart keep their
order unless one of them is off by more than ``s`` times the largest error ever observed, so
the accepted decisions are fp32's (``s = safety``, 4 by default). :attr:`CheckedBf16.stats`
says how many pairs were recomputed and how close any error came to the safety margin.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.fx as fx
from torch import nn

from ..graph import LayerPlan, run_nodes
from .correct import decision_margin, tally

__all__ = ["CheckedBf16", "Fp32Input"]

Env = dict[fx.Node, torch.Tensor]


class Fp32Input(nn.Module):
    """Runs a module in fp32 on an input cast up from bf16 (the logits layer of the screen)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float())


def _bf16_suffix(plan: LayerPlan) -> "torch.fx.GraphModule":
    """A bf16 copy of the layers after the consumer; the module that produces the logits
    (the last module with parameters) stays fp32 and receives fp32 inputs."""
    gm = copy.deepcopy(plan.gm)
    mods = [n.target for n in plan.suffix if n.op == "call_module"]
    last = next((t for t in reversed(mods)
                 if any(True for _ in gm.get_submodule(t).parameters())), None)
    for t in mods:
        if t != last:
            gm.get_submodule(t).to(torch.bfloat16)
    if last is not None:
        gm.set_submodule(last, Fp32Input(gm.get_submodule(last)))
    return gm


class CheckedBf16:
    """The screen of one engine (see the module docstring).

    Args:
        plan: the layer's plan (fast path).
        exact: the fp32 suffix: what it reads (consumer outputs, cut values) -> logits.
        memory_format: the memory format of the fast path for a tensor like the argument.
        topk: the accuracy rule.
        safety: the safety factor ``s``.

    Example:
        >>> screen = CheckedBf16(plan, fast.suffix, fast.memory_format, 1, 4.0)  # doctest: +SKIP
    """

    def __init__(self, plan: LayerPlan, exact: Callable[[Env], torch.Tensor],
                 memory_format: Callable[[torch.Tensor], torch.memory_format], topk: int,
                 safety: float):
        self.plan = plan
        self.exact = exact
        self.memory_format = memory_format
        self.topk = topk
        self.safety = float(safety)
        self.low_gm = _bf16_suffix(plan)
        # rows left undecided: (fp32 inputs, bf16 logits, labels, slots, err when screened)
        self.pending: list[tuple[Env, torch.Tensor, torch.Tensor, torch.Tensor, float]] = []
        #: ``pairs`` evaluated through the screen, ``recomputed`` in fp32, ``err`` (largest
        #: bf16-vs-fp32 logit difference seen), ``worst_ratio`` (largest difference on a
        #: recomputed row over the ``err`` in force when it was screened: the safety margin
        #: holds while this stays below ``safety``).
        self.stats = {"pairs": 0, "recomputed": 0, "err": 0.0, "worst_ratio": 0.0}

    def low(self, env: Env) -> torch.Tensor:
        """The logits from the bf16 suffix, as fp32 (``env``: what the suffix reads)."""
        low = {k: v.to(torch.bfloat16, memory_format=self.memory_format(v)) for k, v in env.items()}
        return run_nodes(self.low_gm, self.plan.suffix, low, keep=set()).float()

    def calibrate(self, env: Env, exact: torch.Tensor) -> bool:
        """Update ``err`` from rows computed both ways (the unpruned network's batch).

        Returns:
            False when the suffix cannot run in bf16 (the caller then stays in fp32).
        """
        try:
            low = self.low(env)
        except (RuntimeError, TypeError):
            return False
        self.stats["err"] = max(self.stats["err"], float((low - exact).abs().max()))
        return True

    def add(self, table: torch.Tensor, env: Env, labels: torch.Tensor,
            slots: torch.Tensor) -> None:
        """Add the rows bf16 settles to ``table[slot, label]``; keep the others for :meth:`flush`,
        which recomputes them in batches as large as a pass (a few rows at a time cost about
        30 % more per row on a 2-core CPU)."""
        low = self.low(env)
        st = self.stats
        if low.shape[1] > self.topk:
            # "not above" rather than "at most": a NaN margin is recomputed too
            sure = decision_margin(low, labels, self.topk) > 2.0 * self.safety * st["err"]
        else:
            sure = torch.zeros(low.shape[0], dtype=torch.bool, device=low.device)
        st["pairs"] += low.shape[0]
        table += tally(low[sure], labels[sure], slots[sure], table.shape, self.topk)
        idx = (~sure).nonzero().squeeze(1)
        if idx.numel():
            self.pending.append(({k: v[idx] for k, v in env.items()}, low[idx], labels[idx],
                                 slots[idx], st["err"]))
            if sum(len(r[1]) for r in self.pending) >= low.shape[0]:
                self.flush(table)

    def flush(self, table: torch.Tensor) -> None:
        """Recompute the undecided rows in fp32 and add them to ``table``; their bf16 errors
        raise ``err`` for the rows screened after them."""
        if not self.pending:
            return
        chunks, self.pending = self.pending, []
        exact = self.exact({k: torch.cat([c[0][k] for c in chunks]) for k in chunks[0][0]})
        st = self.stats
        start = 0
        for _, low, _, _, err in chunks:
            diff = float((exact[start : start + len(low)] - low).abs().max())
            if err > 0:
                st["worst_ratio"] = max(st["worst_ratio"], diff / err)
            st["err"] = max(st["err"], diff)
            start += len(low)
        st["recomputed"] += len(exact)
        labels = torch.cat([c[2] for c in chunks])
        slots = torch.cat([c[3] for c in chunks])
        table += tally(exact, labels, slots, table.shape, self.topk)

    def summary(self) -> dict:
        """``screen_recomputed`` (share of the pairs recomputed in fp32) and
        ``screen_worst_ratio``; empty before any pair was screened."""
        st = self.stats
        if not st["pairs"]:
            return {}
        return {"screen_recomputed": round(st["recomputed"] / st["pairs"], 4),
                "screen_worst_ratio": round(st["worst_ratio"], 3)}
