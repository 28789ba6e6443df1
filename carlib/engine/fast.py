"""The fast path: many pruned networks from one pass in front of the pruned layer's consumer.

For sequential chains such as AlexNet and VGG (see :mod:`carlib.graph`): the input of the
pruned layer's consumer is computed once per image (and cached across greedy steps when it
fits ``cache_bytes``). The consumer is linear in its input channels, so its output with filter
*k* pruned is its output for the current network minus filter *k*'s contribution alone, which
costs 1/C of the consumer. Only the layers after the consumer run once per (image, filter)
pair, with many filters folded into the batch dimension, in fp32 or through the checked-bf16
screen (:mod:`carlib.engine.screen`).
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..convs import SamePadConv2d
from ..data import as_batches
from ..graph import LayerPlan, analyze, run_nodes
from .correct import Counts, tally
from .run import Run
from .screen import CheckedBf16

__all__ = ["FastPath"]

CountTables = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _slots(first: int, g: int, n: int, device: torch.device) -> torch.Tensor:
    """Table rows of an image-major batch of ``n`` images x ``g`` networks (``first`` ...)."""
    return torch.arange(first, first + g, device=device).repeat(n)


def _suffix_is_conv(plan: LayerPlan) -> bool:
    """Whether a convolution follows the consumer (channels-last pays only there)."""
    return any(n.op == "call_module" and isinstance(plan.gm.get_submodule(n.target), nn.Conv2d)
               for n in plan.suffix)


class FastPath:
    """Counts of correct images for sets of pruned filters, by the consumer trick.

    Args:
        run: the engine's settings (``run.plan.fast`` must hold).
        cache_bytes: cache the consumer inputs of all images when they fit.
        group_bytes: activation memory per suffix pass that sets the pairs per pass
            (``run.pair_batch`` overrides it).
        channels_last: run the consumer and the layers after it channels-last (on a private
            copy of the model) when a convolution follows the consumer.
        screen_safety: use the checked-bf16 screen with this safety factor (``None``: fp32).

    Example:
        >>> fast = FastPath(Run(analyze(model, "conv1"), val, torch.device("cpu"), 256, 1,
        ...                     lambda c: c), 0, 256 << 20, True, None)  # doctest: +SKIP
    """

    def __init__(self, run: Run, cache_bytes: int, group_bytes: int, channels_last: bool,
                 screen_safety: float | None):
        plan = run.plan
        self.channels_last = bool(channels_last and _suffix_is_conv(plan))
        if self.channels_last:
            # a private copy: the caller's model keeps its memory format. The consumer too: its
            # input, output and every pruned copy of its output then stay channels-last, so no
            # pass reorders memory
            plan = analyze(copy.deepcopy(plan.model), plan.layer.path)
            for node in [plan.consumer_node, *plan.suffix]:
                if node.op == "call_module":
                    plan.gm.get_submodule(node.target).to(memory_format=torch.channels_last)
        self.run = run
        self.plan = plan
        self.topk = run.topk
        self.cache_bytes = cache_bytes
        self.group_bytes = group_bytes
        self.n_filters = plan.layer.filters
        self.consumer: nn.Module = plan.gm.get_submodule(plan.consumer)
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.screen = (CheckedBf16(plan, self.suffix, self.memory_format, run.topk, screen_safety)
                       if screen_safety is not None else None)

    # ------------------------------------------------------------------ counting
    def evaluate(self, removed: list[int], candidates: list[int], progress=None) -> CountTables:
        """``(base, per_candidate, n)`` as :meth:`carlib.engine.Engine.evaluate`."""
        if self.screen is not None:
            self.screen.pending = []  # nothing left over from an interrupted call
        cons = self.consumer
        counts = None
        for p, y in self._consumer_inputs():
            n = y.shape[0]
            z = cons(self._zero(p, removed))
            logits = self.suffix(z.clone())  # the suffix may start with an in-place ReLU
            self._calibrate(z, logits)
            if counts is None:
                counts = Counts.zeros(len(candidates), self.run.classes(logits.shape[1]))
            counts.add_base(logits, y, self.topk)
            g = self._group_size(n, z)
            for i in range(0, len(candidates), g):
                ks = candidates[i : i + g]
                self._add(counts.rows, self._without_each(p, z, ks), y.repeat_interleave(len(ks)),
                          _slots(i, len(ks), n, y.device))
                if progress is not None:
                    progress.update(len(ks) * n)
        self._flush(counts.rows)
        return counts.base, counts.rows, counts.images

    def evaluate_prefixes(self, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct counts per class with the first 0, 1, ..., ``len(order)`` filters pruned.

        The consumer output for ``order[:k]`` is the unpruned output minus the running sum of
        the first ``k`` filters' contributions, so a whole pruning curve costs one suffix pass
        per point and no pass in front of the consumer.
        """
        if self.screen is not None:
            self.screen.pending = []
        cons = self.consumer
        counts = None
        for p, y in self._consumer_inputs():
            n = y.shape[0]
            z = cons(p)
            if counts is None:
                counts = Counts.zeros(len(order) + 1, self.run.classes(self.suffix(z[:1].clone()).shape[1]),
                                      base_is_row0=True)
            logits = self.suffix(z.clone())
            self._calibrate(z, logits)
            counts.add_base(logits, y, self.topk)
            g = self._group_size(n, z)
            running = None
            for i in range(0, len(order), g):
                ks = list(order[i : i + g])
                c = self._contributions(p, ks).cumsum(dim=1)
                if running is not None:
                    c += running.unsqueeze(1)
                running = c[:, -1]
                self._add(counts.rows, self._pruned(z, c), y.repeat_interleave(len(ks)),
                          _slots(1 + i, len(ks), n, y.device))
        self._flush(counts.rows)
        return counts.rows, counts.images

    def _add(self, table: torch.Tensor, zk: torch.Tensor, labels: torch.Tensor,
             slots: torch.Tensor) -> None:
        """Count the correct rows of the consumer outputs ``zk`` into ``table[slot, label]``."""
        if self.screen is None:
            table += tally(self.suffix(zk), labels, slots, table.shape, self.topk)
        else:
            self.screen.add(table, zk, labels, slots)

    def _flush(self, table: torch.Tensor) -> None:
        if self.screen is not None:
            self.screen.flush(table)

    def _calibrate(self, z: torch.Tensor, logits: torch.Tensor) -> None:
        if self.screen is not None and not self.screen.calibrate(z, logits):
            self.screen = None  # a suffix that cannot run in bf16: stay in fp32

    # ------------------------------------------------------------------ tensors
    def _consumer_inputs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(consumer input, labels) per image batch, from the cache when it exists."""
        if self._cache is not None:
            yield from self._cache
            return
        plan = self.plan
        placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
        nodes = plan.prefix + plan.between
        keep: list[tuple[torch.Tensor, torch.Tensor]] = []
        total = 0
        for x, y in as_batches(self.run.data, self.run.batch_size, device=self.run.device):
            p = self._fmt(run_nodes(plan.gm, nodes, {placeholder: x}))
            total += p.numel() * p.element_size()
            if total <= self.cache_bytes:
                keep.append((p, y))
            yield p, y
        if total <= self.cache_bytes:
            self._cache = keep

    def memory_format(self, t: torch.Tensor) -> torch.memory_format:
        """The memory format for a tensor shaped like ``t`` (channels-last for 4-D tensors when
        :attr:`channels_last`)."""
        if self.channels_last and t.dim() == 4:
            return torch.channels_last
        return torch.contiguous_format

    def _fmt(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in the fast path's memory format (unchanged unless that is channels-last)."""
        fmt = self.memory_format(t)
        return t.contiguous(memory_format=fmt) if fmt == torch.channels_last else t

    def suffix(self, z: torch.Tensor) -> torch.Tensor:
        """The layers after the consumer, in fp32: consumer output -> logits."""
        plan = self.plan
        return run_nodes(plan.gm, plan.suffix, {plan.consumer_node: self._fmt(z)})

    def _zero(self, p: torch.Tensor, removed: list[int]) -> torch.Tensor:
        if not removed:
            return p
        p = p.clone()
        if self.plan.flatten:
            p.view(p.shape[0], self.n_filters, -1)[:, removed] = 0
        else:
            p[:, removed] = 0
        return p

    def _contributions(self, p: torch.Tensor, ks: list[int]) -> torch.Tensor:
        """Each candidate channel's contribution to the consumer output: ``(N, G, ...)``
        (image-major; channels-last like the consumer output when :attr:`channels_last`)."""
        cons = self.consumer
        g = len(ks)
        if self.plan.flatten:
            x = p.view(p.shape[0], self.n_filters, -1)[:, ks]  # (N, G, S)
            w = cons.weight.view(cons.out_features, self.n_filters, -1)[:, ks]  # (O, G, S)
            return torch.einsum("ngs,ogs->ngo", x, w)
        x = self._fmt(self._padded(p[:, ks]))  # (N, G, H, W)
        w = cons.weight[:, ks]  # (O, G, kh, kw)
        wg = w.transpose(0, 1).reshape(g * cons.out_channels, 1, *w.shape[2:])
        out = F.conv2d(x, wg, None, cons.stride, cons.padding, cons.dilation, groups=g)
        return out.unflatten(1, (g, cons.out_channels))

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded as the consumer pads its input itself (a
        :class:`~carlib.convs.SamePadConv2d`); other consumers pad by their ``padding``."""
        return self.consumer.pad_input(x) if isinstance(self.consumer, SamePadConv2d) else x

    def _pairs_buffer(self, z: torch.Tensor, g: int) -> torch.Tensor:
        return torch.empty((z.shape[0] * g, *z.shape[1:]), dtype=z.dtype, device=z.device,
                           memory_format=self.memory_format(z))

    def _pruned(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The consumer output ``z`` minus each contribution of ``c`` (``(N, G, ...)``), as one
        image-major batch ``(N * G, ...)`` in the suffix's memory format, written in one pass."""
        n, g = c.shape[:2]
        zk = self._pairs_buffer(z, g)
        torch.sub(z.unsqueeze(1), c, out=zk.unflatten(0, (n, g)))
        return zk

    def _without_each(self, p: torch.Tensor, z: torch.Tensor, ks: list[int]) -> torch.Tensor:
        """The consumer output ``z`` with each filter of ``ks`` pruned in turn: ``(N * G, ...)``,
        image-major, in the suffix's memory format.

        For a convolution consumer (numeric padding) each filter's contribution is an im2col
        matrix product subtracted from ``z`` by the same call (``baddbmm``): one pass over the
        output instead of a single-input-channel convolution and a subtraction (measured in
        ``bench/README.md``; identical values).
        """
        cons = self.consumer
        if self.plan.flatten or isinstance(cons.padding, str):
            return self._pruned(z, self._contributions(p, ks))
        n, g = z.shape[0], len(ks)
        o, (kh, kw) = cons.out_channels, cons.kernel_size
        zk = self._pairs_buffer(z, g)
        out = zk.unflatten(0, (n, g))
        cols = F.unfold(self._padded(p[:, ks]), cons.kernel_size, cons.dilation, cons.padding, cons.stride)
        cols = cols.view(n, g, kh * kw, -1)  # (N, G, kh*kw, L)
        w = cons.weight[:, ks].reshape(o, g, kh * kw)
        if self.channels_last:  # rows are (position, channel): z - cols^T @ w^T
            z3 = z.permute(0, 2, 3, 1).view(n, -1, o)
            for j in range(g):
                torch.baddbmm(z3, cols[:, j].transpose(1, 2), w[:, j].t().expand(n, -1, -1),
                              alpha=-1, out=out[:, j].permute(0, 2, 3, 1).view(n, -1, o))
        else:  # rows are (channel, position): z - w @ cols
            z3 = z.view(n, o, -1)
            for j in range(g):
                torch.baddbmm(z3, w[:, j].expand(n, -1, -1), cols[:, j], alpha=-1,
                              out=out[:, j].view(n, o, -1))
        return zk

    def _group_size(self, n: int, z: torch.Tensor) -> int:
        """Candidates per suffix pass: ``pair_batch`` if given; on a CPU about 256 (image,
        filter) pairs, where oneDNN runs fastest (measured, bench/README.md); on a GPU as many
        as ``group_bytes`` of activations allow."""
        if self.run.pair_batch:
            self.pairs_per_pass = max(1, self.run.pair_batch // n) * n
            return self.pairs_per_pass // n
        per_image = z[0].numel() * 4 * 3  # consumer output and a few suffix activations
        g = max(1, min(256, self.group_bytes // max(1, n * per_image)))
        if self.run.device.type == "cpu":
            g = min(g, max(1, 256 // n))
        self.pairs_per_pass = g * n  # read by the engine's out-of-memory retry
        return g
