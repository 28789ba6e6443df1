"""The fast path: many pruned networks from one pass in front of the pruned layer's consumers.

It applies to any traceable network whose pruned layer reaches at least one consumer
(:mod:`carlib.graph`): AlexNet and VGG chains, residual networks, MobileNetV2's depthwise
convolutions. What the network computes in front of the consumers (the *cut* values: their
inputs and whatever the layers after them read from before) is computed once per image, and
cached across greedy steps when it fits ``cache_bytes``. Each consumer's output with filter *k*
pruned comes from its unpruned output by its rule (:mod:`carlib.engine.consumers`): minus
filter *k*'s contribution alone for a ``groups=1`` convolution or a ``Linear`` (1/C of the
consumer), the group's outputs recomputed for a grouped convolution (for a depthwise one: the
bias). Only the layers after the consumers (the *suffix*, any graph) run once per (image,
filter) pair, with many filters folded into the batch dimension, on the pruned consumer outputs
and on the cut values they read (those carrying the pruned channels with channel *k* zeroed),
in fp32 or through the checked-bf16 screen (:mod:`carlib.engine.screen`). On a private copy of
the model, the suffix runs channels-last (CPU) and with its eval-mode BatchNorms folded into the
convolutions before them.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.fx as fx
from torch import nn

from ..data import as_batches
from ..errors import CarlibError
from ..graph import LayerPlan, analyze, run_nodes
from .consumers import LinearConsumer, consumer_rule
from .correct import Counts, correct_rows, tally
from .run import Run
from .screen import CheckedBf16

__all__ = ["FastPath"]

CountTables = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Env = dict[fx.Node, torch.Tensor]


def _slots(first: int, g: int, n: int, device: torch.device) -> torch.Tensor:
    """Table rows of an image-major batch of ``n`` images x ``g`` networks (``first`` ...)."""
    return torch.arange(first, first + g, device=device).repeat(n)


def _foldable_norms(plan: LayerPlan) -> list[tuple[fx.Node, fx.Node]]:
    """``(conv, norm)`` node pairs where an eval-mode ``BatchNorm2d`` of the suffix reads only a
    ``Conv2d`` (of the suffix, or a consumer) that nothing else reads, each module called once
    in the graph: the norm can be folded into the convolution's weights, one memory pass fewer
    per (image, filter) pair. A folded consumer's rule then uses the folded weights:
    ``norm(conv(x) - c_k) = folded(x) - scale * c_k``."""
    calls: dict[str, int] = {}
    for n in plan.gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    convs = set(plan.suffix) | set(plan.consumers)
    pairs = []
    for n in plan.suffix:
        if n.op != "call_module" or calls[n.target] != 1 or len(n.all_input_nodes) != 1:
            continue
        norm, (conv,) = plan.gm.get_submodule(n.target), n.all_input_nodes
        if not (isinstance(norm, nn.BatchNorm2d) and not norm.training
                and norm.running_mean is not None and conv in convs
                and conv.op == "call_module" and calls[conv.target] == 1
                and len(conv.users) == 1 and len(n.args) == 1 and not n.kwargs):
            continue
        module = plan.gm.get_submodule(conv.target)
        if type(module) is nn.Conv2d and not module.training:  # a subclass may compute otherwise
            pairs.append((conv, n))
    return pairs


def _fold_norms(plan: LayerPlan) -> None:
    """Fold the suffix's foldable BatchNorms into their convolutions (:func:`_foldable_norms`),
    in place: call it on a private copy of the model only."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for conv, norm in _foldable_norms(plan):
        fused = fuse_conv_bn_eval(plan.gm.get_submodule(conv.target), plan.gm.get_submodule(norm.target))
        plan.gm.set_submodule(conv.target, fused)
        plan.gm.set_submodule(norm.target, nn.Identity())


def _suffix_is_conv(plan: LayerPlan) -> bool:
    """Whether a convolution follows the consumers (channels-last pays only there)."""
    return any(n.op == "call_module" and isinstance(plan.gm.get_submodule(n.target), nn.Conv2d)
               for n in plan.suffix)


class FastPath:
    """Counts of correct images for sets of pruned filters, by the consumer rules.

    Args:
        run: the engine's settings (``run.plan.fast`` must hold).
        cache_bytes: cache the cut values of all images when they fit.
        group_bytes: activation memory per suffix pass that sets the pairs per pass
            (``run.pair_batch`` overrides it).
        channels_last: run the consumers and the layers after them channels-last (on a private
            copy of the model) when a convolution follows the consumers.
        screen_safety: use the checked-bf16 screen with this safety factor (``None``: fp32).

    Example:
        >>> fast = FastPath(Run(analyze(model, "conv1"), val, torch.device("cpu"), 256, 1,
        ...                     lambda c: c), 0, 256 << 20, True, None)  # doctest: +SKIP
    """

    def __init__(self, run: Run, cache_bytes: int, group_bytes: int, channels_last: bool,
                 screen_safety: float | None):
        plan = run.plan
        self.channels_last = bool(channels_last and _suffix_is_conv(plan))
        #: BatchNorms of the suffix folded into the convolutions before them
        self.folded_norms = len(_foldable_norms(plan))
        if self.channels_last or self.folded_norms:
            # a private copy: the caller's model keeps its memory format and its BatchNorms
            plan = analyze(copy.deepcopy(plan.model), plan.layer.path)
            _fold_norms(plan)
        if self.channels_last:
            # the consumers too: their inputs, outputs and every pruned copy of them then stay
            # channels-last, so no pass reorders memory
            for node in [*plan.consumers, *plan.suffix]:
                if node.op == "call_module":
                    plan.gm.get_submodule(node.target).to(memory_format=torch.channels_last)
        self.run = run
        self.plan = plan
        self.topk = run.topk
        self.cache_bytes = cache_bytes
        self.group_bytes = group_bytes
        self.n_filters = plan.layer.filters
        self.rules = {c: consumer_rule(plan.gm.get_submodule(c.target),
                                       plan.zeroed[c.all_input_nodes[0]], self.n_filters,
                                       self.channels_last)
                      for c in plan.consumers}
        read = {i for n in plan.suffix for i in n.all_input_nodes}
        #: the cut values the suffix reads besides the consumer outputs
        self.reads = [n for n in plan.cut if n in read]
        #: one linear consumer and nothing else read after it (AlexNet, VGG): pruning curves
        #: by running sums of contributions
        self.chain = (len(self.rules) == 1 and not self.reads
                      and isinstance(next(iter(self.rules.values())), LinearConsumer))
        self._cache: list[tuple[Env, torch.Tensor]] | None = None
        self.screen = (CheckedBf16(plan, self.suffix, self.memory_format, run.topk, screen_safety)
                       if screen_safety is not None else None)

    # ------------------------------------------------------------------ counting
    def evaluate(self, removed: list[int], candidates: list[int], progress=None) -> CountTables:
        """``(base, per_candidate, n)`` as :meth:`carlib.engine.Engine.evaluate`."""
        if self.screen is not None:
            self.screen.pending = []  # nothing left over from an interrupted call
        counts = None
        for cut, y in self._cut_values():
            n = y.shape[0]
            vals = self._pruned_inputs(cut, removed)
            env = self._outputs(vals)
            logits = self.suffix(self._copy(env))  # the suffix may start with an in-place ReLU
            self._calibrate(env, logits)
            if counts is None:
                counts = Counts.zeros(len(candidates), self.run.classes(logits.shape[1]))
            counts.add_base(logits, y, self.topk)
            g = self._group_size(n, env)
            for i in range(0, len(candidates), g):
                ks = candidates[i : i + g]
                self._add(counts.rows, self._without_each(vals, env, ks),
                          y.repeat_interleave(len(ks)), _slots(i, len(ks), n, y.device))
                if progress is not None:
                    progress.update(len(ks) * n)
        self._flush(counts.rows)
        return counts.base, counts.rows, counts.images

    def evaluate_prefixes(self, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct counts per class with the first 0, 1, ..., ``len(order)`` filters pruned.

        For a chain (one linear consumer, nothing else read after it) the consumer output for
        ``order[:k]`` is the unpruned output minus the running sum of the first ``k`` filters'
        contributions, so a whole pruning curve costs one suffix pass per point and no pass in
        front of the consumer; otherwise each point runs the consumers and the suffix once.
        """
        if self.screen is not None:
            self.screen.pending = []
        counts = None
        for cut, y in self._cut_values():
            n = y.shape[0]
            env = self._outputs(cut)
            if counts is None:
                first = {k: v[:1] for k, v in env.items()}
                counts = Counts.zeros(len(order) + 1, self.run.classes(self.suffix(self._copy(first)).shape[1]),
                                      base_is_row0=True)
            logits = self.suffix(self._copy(env))
            self._calibrate(env, logits)
            counts.add_base(logits, y, self.topk)
            if not self.chain:
                for k in range(1, len(order) + 1):
                    pruned = self._outputs(self._pruned_inputs(cut, list(order[:k])))
                    self._add(counts.rows, self._copy(pruned), y, torch.full_like(y, k))
                continue
            (node, rule), = self.rules.items()
            p, z = cut[node.all_input_nodes[0]], env[node]
            g = self._group_size(n, env)
            running = None
            for i in range(0, len(order), g):
                ks = list(order[i : i + g])
                c = rule.contributions(p, ks).cumsum(dim=1)
                if running is not None:
                    c += running.unsqueeze(1)
                running = c[:, -1]
                zk = self._pairs_buffer(z, len(ks))
                torch.sub(z.unsqueeze(1), c, out=zk.unflatten(0, (n, len(ks))))
                self._add(counts.rows, {node: zk}, y.repeat_interleave(len(ks)),
                          _slots(1 + i, len(ks), n, y.device))
        self._flush(counts.rows)
        return counts.rows, counts.images

    def correct_images(self, removed_sets: list[list[int]]) -> torch.Tensor:
        """Whether each image is correct with each set of filters pruned: bool
        ``(len(removed_sets), images)``, computed as :meth:`evaluate` computes its base (the
        cut values with the filters zeroed, the consumers and the suffix in fp32)."""
        rows = []
        for cut, y in self._cut_values():
            outs = []
            for removed in removed_sets:
                logits = self.suffix(self._copy(self._outputs(self._pruned_inputs(cut, list(removed)))))
                self.run.classes(logits.shape[1])
                outs.append(correct_rows(logits, y, self.topk).cpu())
            rows.append(torch.stack(outs) if outs else torch.zeros(0, y.shape[0], dtype=torch.bool))
        return torch.cat(rows, dim=1)

    def _add(self, table: torch.Tensor, env: Env, labels: torch.Tensor,
             slots: torch.Tensor) -> None:
        """Count the correct rows of the suffix on ``env`` into ``table[slot, label]``."""
        if self.screen is None:
            table += tally(self.suffix(env), labels, slots, table.shape, self.topk)
        else:
            self.screen.add(table, env, labels, slots)

    def _flush(self, table: torch.Tensor) -> None:
        if self.screen is not None:
            self.screen.flush(table)

    def _calibrate(self, env: Env, logits: torch.Tensor) -> None:
        if self.screen is not None and not self.screen.calibrate(env, logits):
            self.screen = None  # a suffix that cannot run in bf16: stay in fp32

    # ------------------------------------------------------------------ tensors
    def _cut_values(self) -> Iterator[tuple[Env, torch.Tensor]]:
        """(cut values, labels) per image batch, from the cache when it exists."""
        if self._cache is not None:
            yield from self._cache
            return
        plan = self.plan
        placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
        keep = set(plan.cut)
        kept: list[tuple[Env, torch.Tensor]] = []
        total = 0
        for x, y in as_batches(self.run.data, self.run.batch_size, device=self.run.device):
            env = {placeholder: x}
            run_nodes(plan.gm, plan.front, env, keep=keep)
            cut = {}
            for node in plan.cut:
                v = env[node]
                if not (isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == x.shape[0]):
                    raise CarlibError(f"the layers after {plan.layer.alias} read {node.name}, which is "
                                      "not a batch of images; use method='masked'")
                cut[node] = self._fmt(v)
                total += v.numel() * v.element_size()
            if total <= self.cache_bytes:
                kept.append((cut, y))
            yield cut, y
        if total <= self.cache_bytes:
            self._cache = kept

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

    def suffix(self, env: Env) -> torch.Tensor:
        """The layers after the consumers, in fp32: consumer outputs and cut values -> logits."""
        plan = self.plan
        return run_nodes(plan.gm, plan.suffix, {k: self._fmt(v) for k, v in env.items()}, keep=set())

    @staticmethod
    def _copy(env: Env) -> Env:
        return {k: v.clone() for k, v in env.items()}

    def _zero(self, t: torch.Tensor, ks: list[int], flat: bool) -> torch.Tensor:
        """A copy of ``t`` with channels ``ks`` zeroed (``t`` itself when there are none)."""
        if not ks:
            return t
        t = t.clone()
        if flat:
            t.view(t.shape[0], self.n_filters, -1)[:, ks] = 0
        else:
            t[:, ks] = 0
        return t

    def _pruned_inputs(self, cut: Env, removed: list[int]) -> Env:
        """The cut values with the filters ``removed`` pruned."""
        zeroed = self.plan.zeroed
        return {n: self._zero(v, removed, zeroed[n]) if n in zeroed else v for n, v in cut.items()}

    def _outputs(self, vals: Env) -> Env:
        """What the suffix reads, for the cut values ``vals``: each consumer's output and the
        cut values it reads."""
        env = {c: rule.module(vals[c.all_input_nodes[0]]) for c, rule in self.rules.items()}
        env.update({n: vals[n] for n in self.reads})
        return env

    def _pairs_buffer(self, t: torch.Tensor, g: int) -> torch.Tensor:
        return torch.empty((t.shape[0] * g, *t.shape[1:]), dtype=t.dtype, device=t.device,
                           memory_format=self.memory_format(t))

    def _without_each(self, vals: Env, env: Env, ks: list[int]) -> Env:
        """What the suffix reads with each filter of ``ks`` pruned in turn: every tensor of
        ``env`` as an image-major batch ``(N * G, ...)`` in the suffix's memory format."""
        n, g = next(iter(env.values())).shape[0], len(ks)
        out: Env = {}
        for c, rule in self.rules.items():
            zk = self._pairs_buffer(env[c], g)
            rule.without_each(vals[c.all_input_nodes[0]], env[c], ks, zk.unflatten(0, (n, g)))
            out[c] = zk
        for node in self.reads:
            v = env[node]
            rep = self._pairs_buffer(v, g)
            view = rep.unflatten(0, (n, g))
            view.copy_(v.unsqueeze(1).expand_as(view))
            if node in self.plan.zeroed:
                for j, k in enumerate(ks):
                    if self.plan.zeroed[node]:
                        view[:, j].unflatten(1, (self.n_filters, -1))[:, k] = 0
                    else:
                        view[:, j, k] = 0
            out[node] = rep
        return out

    def _group_size(self, n: int, env: Env) -> int:
        """Candidates per suffix pass: ``pair_batch`` if given; on a CPU about 256 (image,
        filter) pairs, where oneDNN runs fastest (measured, bench/README.md); on a GPU as many
        as ``group_bytes`` of activations allow."""
        if self.run.pair_batch:
            self.pairs_per_pass = max(1, self.run.pair_batch // n) * n
            return self.pairs_per_pass // n
        per_image = sum(v[0].numel() for v in env.values()) * 4 * 3  # inputs, a few activations
        g = max(1, min(256, self.group_bytes // max(1, n * per_image)))
        if self.run.device.type == "cpu":
            g = min(g, max(1, 256 // n))
        self.pairs_per_pass = g * n  # read by the engine's out-of-memory retry
        return g
