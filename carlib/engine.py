"""The CAR evaluation engine: accuracy of many pruned networks from few forward passes.

One call of :meth:`Engine.evaluate` answers: with the filters ``removed`` pruned, how many
images of each class are classified correctly, and how many with each filter of
``candidates`` pruned in addition? :func:`carlib.car_index` and :func:`carlib.greedy_prune`
are thin loops around it.

Two paths, the same numbers (the tests hold both to the naive reference):

* **fast** (sequential chains such as AlexNet and VGG, see :mod:`carlib.graph`): the input of
  the pruned layer's consumer is computed once per image (and cached across greedy steps when
  it fits ``cache_bytes``). The consumer is linear in its input channels, so its output with
  filter *k* pruned is its output for the current network minus filter *k*'s contribution
  alone, which costs 1/C of the consumer. Only the layers after the consumer run once per
  (image, filter) pair, with many filters folded into the batch dimension.
* **masked** (any other model, e.g. with skip connections): the whole network runs with a
  per-row channel mask, several filters folded into the batch.

Precision (fast path). ``"fp32"`` runs everything in fp32. ``"bf16-checked"`` runs the layers
after the consumer in bf16 (the layer that produces the logits in fp32) and then recomputes in
fp32 every (image, filter) pair whose decision bf16 cannot settle. What CAR counts is whether a
pair is correct (its label among the ``topk`` largest logits), so the pair is accepted from bf16
only when its label's logit is more than ``2 * screen_safety * err`` away from the ``topk``-th
largest of the other logits (:func:`decision_margin`), where ``err`` is the largest
bf16-vs-fp32 logit difference seen so far (measured on the unpruned network's images in every
batch and on every recomputed pair). Two logits more than ``2 * s * err`` apart keep their order
unless one of them is off by more than ``s`` times the largest error ever observed, so the
accepted decisions are fp32's (``s = screen_safety``, 4 by default; the largest ratio observed
on the benchmark is in :attr:`Engine.screen_stats`). The tests and ``make bench`` hold it to the
naive fp32 loop like the rest of the fast path; :attr:`Engine.screen_stats` says how many pairs
were recomputed and how close any error came to the safety margin. ``"auto"`` (the default)
picks ``"bf16-checked"`` where bf16 is fast (CPUs with AMX-BF16 or AVX512-BF16), else
``"fp32"``.
"""

from __future__ import annotations

import copy
import functools
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .datasets import DataLike, as_batches, dataset_labels, num_images
from .errors import CarlibError
from .graph import LayerPlan, analyze, run_nodes
from .masking import FilterMask

__all__ = ["Engine", "resolve_device", "count_correct", "decision_margin", "strict_fp32",
           "fast_bf16", "bf16_flags", "BF16_CPU_FLAGS", "PRECISIONS"]

#: The engine's precisions (see the module docstring).
PRECISIONS = ("auto", "fp32", "bf16-checked")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CPU; ``"cuda"`` without a GPU -> a one-line error."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CarlibError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CarlibError("device cuda requested but no GPU is available; use --device cpu")
    return dev


def fast_bf16(device: str | torch.device) -> bool:
    """Whether bf16 convolutions and matrix products are much faster than fp32 here.

    True on CPUs with bf16 dot-product instructions, AMX-BF16 (recent Xeons: about 4x fp32,
    measured on a 2-core Xeon) or AVX512-BF16 (AMD Zen 4 and later, Cooper Lake: about 2x,
    measured on a 2-core AMD EPYC); False elsewhere: on AVX2 CPUs bf16 is emulated and slower
    than fp32. GPUs are not auto-selected (the checked bf16 path is available there by
    ``precision="bf16-checked"``).

    Example:
        >>> fast_bf16("cpu") in (True, False)
        True
    """
    return torch.device(device).type == "cpu" and bool(_cpu_bf16_flags())


#: /proc/cpuinfo flags of CPU instructions that make bf16 fast (see :func:`fast_bf16`).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def _cpu_bf16_flags() -> tuple[str, ...]:
    """The :data:`BF16_CPU_FLAGS` this CPU has (/proc/cpuinfo, read once; none where absent)."""
    try:
        with open("/proc/cpuinfo") as f:
            return bf16_flags(f.read())
    except OSError:
        return ()


def bf16_flags(cpuinfo: str) -> tuple[str, ...]:
    """The :data:`BF16_CPU_FLAGS` named on the first ``flags`` line of a /proc/cpuinfo text.

    Example:
        >>> bf16_flags("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni")
        ('avx512_bf16',)
    """
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return tuple(x for x in BF16_CPU_FLAGS if x in flags)
    return ()


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
    return _tally_rows(logits, labels.repeat(groups), g, (groups, num_classes), topk)


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


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """On a GPU, compute fp32 convolutions and matrix products in full fp32 (no TF32).

    TF32 keeps 10 mantissa bits and moves near-tie predictions; CAR values are differences of
    a few images, so the engine keeps fp32 exact on every device. The global flags are
    restored on exit. A no-op on the CPU.
    """
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class Engine:
    """Evaluate a model with sets of filters of one layer pruned (see the module docstring).

    Args:
        model: the network (not modified; copied when it must move to another device).
        layer: alias or module path of the convolution.
        data: a carlib dataset or ``(images, labels)``.
        device: ``"cpu"``, ``"cuda"``, ... (default: CPU).
        batch_size: images per prefix batch (default 256 on a CPU, 1024 on a GPU).
        pair_batch: (image, filter) pairs per forward pass of the suffix (default from
            ``group_bytes``).
        topk: 1 or 5.
        method: ``"auto"`` (fast when the graph allows), ``"fast"`` or ``"masked"``.
        cache_bytes: cache the consumer inputs of all images when they fit (greedy steps then
            skip the layers in front of the consumer).
        group_bytes: activation memory per suffix pass that sets the default ``pair_batch``
            (default 256 MiB on a CPU, 2 GiB on a GPU).
        dtype: compute dtype of the whole suffix (``torch.float32``); ``torch.bfloat16`` is
            approximate (it changes CAR values) and overrides ``precision``.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16-checked"`` (see the module docstring;
            fast path only, the masked path is always fp32).
        screen_safety: the safety factor of ``"bf16-checked"`` (default 4).
        channels_last: run the layers after the consumer in the channels-last memory format
            (default ``None``: on the CPU only, for convolutional suffixes). Same arithmetic in
            another loop order: 1.1-1.7x faster with oneDNN on a 2-core CPU, 5-8 % slower in
            fp32 on an H100 (measured, bench/README.md); the tests and ``make bench`` hold it to
            the naive reference like the rest of the fast path.
    """

    def __init__(self, model: nn.Module, layer: str, data: DataLike, *,
                 device: str | torch.device | None = None, batch_size: int | None = None,
                 pair_batch: int | None = None, topk: int = 1, method: str = "auto",
                 cache_bytes: int = 2 << 30, group_bytes: int | None = None,
                 dtype: torch.dtype = torch.float32, channels_last: bool | None = None,
                 precision: str = "auto", screen_safety: float = 4.0):
        if topk < 1:
            raise CarlibError(f"topk must be at least 1, got {topk}")
        if method not in ("auto", "fast", "masked"):
            raise CarlibError(f"unknown method {method!r}; use auto, fast or masked")
        if precision not in PRECISIONS:
            raise CarlibError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
        if not screen_safety >= 1:
            raise CarlibError(f"screen_safety must be at least 1, got {screen_safety!r}")
        self.device = resolve_device(device)
        param = next(iter(model.parameters()), None)
        if param is not None and param.device != self.device:
            model = copy.deepcopy(model).to(self.device)
        self.model = model
        self.plan: LayerPlan = analyze(model, layer)
        if method == "fast" and not self.plan.fast:
            raise CarlibError(f"the fast path does not apply to {layer}: {self.plan.fast_reason}; "
                              "use method='masked'")
        self.method = "fast" if (method in ("auto", "fast") and self.plan.fast) else "masked"
        self.channels_last = False
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        if self.method == "fast" and channels_last and self._suffix_is_conv():
            # a private copy: the caller's model keeps its memory format
            self.plan = analyze(copy.deepcopy(model), layer)
            # the consumer too: its input, output and every pruned copy of its output then
            # stay channels-last, so no pass reorders memory
            for node in [self.plan.consumer_node, *self.plan.suffix]:
                if node.op == "call_module":
                    self.plan.gm.get_submodule(node.target).to(memory_format=torch.channels_last)
            self.channels_last = True
        self.data = data
        self.n_images = num_images(data)
        if self.n_images == 0:
            raise CarlibError("the dataset has no images; choose a split or subset with images")
        self.labels = dataset_labels(data)
        gpu = self.device.type == "cuda"
        # measured on an H100 (bench/README.md): 1024-image batches and >= 1024 pairs per pass
        # run 1.8-2.2x faster than 256; on a 2-core CPU 256 pairs per pass are fastest
        self.batch_size = batch_size or (1024 if gpu else 256)
        self.topk = topk
        self.dtype = dtype
        self.cache_bytes = cache_bytes
        self.group_bytes = group_bytes or ((2 << 30) if gpu else (256 << 20))
        self.pair_batch = pair_batch
        self.n_filters = self.plan.layer.filters
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # rows the bf16 screen left undecided: (fp32 input, bf16 logits, labels, slots, err)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]] = []
        self.num_classes: int | None = None
        # multiply-accumulates of the consumer layer only (its full passes and the per-filter
        # contributions); the layers before and after it are not counted here
        self.macs = 0
        if precision == "auto":
            precision = "bf16-checked" if fast_bf16(self.device) else "fp32"
        if self.method != "fast" or dtype != torch.float32:
            precision = "fp32"
        self.precision = precision
        self.screen_safety = float(screen_safety)
        self._low = self._make_low() if precision == "bf16-checked" else None
        #: ``pairs`` evaluated through the bf16 screen, ``recomputed`` in fp32, ``err`` (largest
        #: bf16-vs-fp32 logit difference seen), ``worst_ratio`` (largest difference on a
        #: recomputed row over the ``err`` in force when it was screened: the safety margin
        #: holds while this stays below ``screen_safety``).
        self.screen_stats = {"pairs": 0, "recomputed": 0, "err": 0.0, "worst_ratio": 0.0}

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def evaluate(self, removed: list[int], candidates: list[int],
                 progress: "object | None" = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Correct counts per class for the current network and each candidate.

        Args:
            removed: filters already pruned.
            candidates: filters to evaluate one at a time on top of ``removed``.
            progress: a tqdm bar advanced by the number of images x candidates done.

        Returns:
            ``(base, per_candidate, n)``: int64 ``(classes,)``, ``(len(candidates), classes)``
            and the image count per class ``(classes,)``.
        """
        self._pending = []  # nothing left over from an interrupted call
        with _eval_mode(self.model), strict_fp32(self.device):
            if self.method == "fast":
                return self._evaluate_fast(removed, candidates, progress)
            return self._evaluate_masked(removed, candidates, progress)

    def screen_summary(self) -> dict:
        """``screen_recomputed`` (share of the pairs recomputed in fp32) and
        ``screen_worst_ratio`` (see :attr:`screen_stats`); empty unless ``bf16-checked``."""
        st = self.screen_stats
        if self.precision != "bf16-checked" or not st["pairs"]:
            return {}
        return {"screen_recomputed": round(st["recomputed"] / st["pairs"], 4),
                "screen_worst_ratio": round(st["worst_ratio"], 3)}

    def _set_classes(self, c: int) -> None:
        """Record the model's output width; labels must index it."""
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= c:
            raise CarlibError(f"the labels run from {lo} to {hi} but the model has {c} outputs; "
                              f"use labels in 0..{c - 1} (a dataset that matches the model's classes)")
        self.num_classes = c

    # ------------------------------------------------------------------ fast path
    def _consumer_inputs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(consumer input, labels) per image batch, from the cache when it exists."""
        if self._cache is not None:
            yield from self._cache
            return
        plan = self.plan
        gm = plan.gm
        placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
        nodes = plan.prefix + plan.between
        keep: list[tuple[torch.Tensor, torch.Tensor]] = []
        total = 0
        for x, y in as_batches(self.data, self.batch_size, device=self.device):
            p = self._fmt(run_nodes(gm, nodes, {placeholder: x}))
            total += p.numel() * p.element_size()
            if total <= self.cache_bytes:
                keep.append((p, y))
            yield p, y
        if total <= self.cache_bytes:
            self._cache = keep

    def _memory_format(self, t: torch.Tensor) -> torch.memory_format:
        """The fast path's memory format for a tensor shaped like ``t`` (channels-last for 4-D
        tensors when :attr:`channels_last`)."""
        if self.channels_last and t.dim() == 4:
            return torch.channels_last
        return torch.contiguous_format

    def _fmt(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in the fast path's memory format (unchanged unless that is channels-last)."""
        fmt = self._memory_format(t)
        return t.contiguous(memory_format=fmt) if fmt == torch.channels_last else t

    def _consumer(self) -> nn.Module:
        return self.plan.gm.get_submodule(self.plan.consumer)

    def _suffix_is_conv(self) -> bool:
        """Whether a convolution follows the consumer (channels-last pays only there)."""
        gm = self.plan.gm
        return any(n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.Conv2d)
                   for n in self.plan.suffix)

    def _channel(self, p: torch.Tensor, ks: list[int]) -> torch.Tensor:
        """Channels ``ks`` of the consumer input: ``(N, G, ...)``."""
        if self.plan.flatten:
            return p.view(p.shape[0], self.n_filters, -1)[:, ks]
        return p[:, ks]

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
        cons = self._consumer()
        g = len(ks)
        if self.plan.flatten:
            x = self._channel(p, ks)  # (N, G, S)
            w = cons.weight.view(cons.out_features, self.n_filters, -1)[:, ks]  # (O, G, S)
            self.macs += x.shape[0] * g * x.shape[2] * cons.out_features
            return torch.einsum("ngs,ogs->ngo", x, w)
        x = self._fmt(p[:, ks])  # (N, G, H, W)
        w = cons.weight[:, ks]  # (O, G, kh, kw)
        wg = w.transpose(0, 1).reshape(g * cons.out_channels, 1, *w.shape[2:])
        out = F.conv2d(x, wg, None, cons.stride, cons.padding, cons.dilation, groups=g)
        n, _, h, wd = out.shape
        self.macs += n * g * cons.out_channels * h * wd * w.shape[2] * w.shape[3]
        return out.unflatten(1, (g, cons.out_channels))

    def _pruned(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The consumer output ``z`` minus each contribution of ``c`` (``(N, G, ...)``), as one
        image-major batch ``(N * G, ...)`` in the suffix's memory format, written in one pass."""
        n, g = c.shape[:2]
        zk = self._pairs_buffer(z, g)
        torch.sub(z.unsqueeze(1), c, out=zk.unflatten(0, (n, g)))
        return zk

    def _pairs_buffer(self, z: torch.Tensor, g: int) -> torch.Tensor:
        return torch.empty((z.shape[0] * g, *z.shape[1:]), dtype=z.dtype, device=z.device,
                           memory_format=self._memory_format(z))

    def _without_each(self, p: torch.Tensor, z: torch.Tensor, ks: list[int]) -> torch.Tensor:
        """The consumer output ``z`` with each filter of ``ks`` pruned in turn: ``(N * G, ...)``,
        image-major, in the suffix's memory format.

        For a convolution consumer (numeric padding) each filter's contribution is an im2col
        matrix product subtracted from ``z`` by the same call (``baddbmm``): one pass over the
        output instead of a single-input-channel convolution and a subtraction (5.9 against
        14.3 ms per 250 pairs for conv1's consumer of alexnet-tiny on a 2-core CPU, identical
        values: ``bench/experiments/contributions_cpu.py``).
        """
        cons = self._consumer()
        if self.plan.flatten or isinstance(cons.padding, str):
            return self._pruned(z, self._contributions(p, ks))
        n, g = z.shape[0], len(ks)
        o, (kh, kw) = cons.out_channels, cons.kernel_size
        zk = self._pairs_buffer(z, g)
        out = zk.unflatten(0, (n, g))
        cols = F.unfold(p[:, ks], cons.kernel_size, cons.dilation, cons.padding, cons.stride)
        cols = cols.view(n, g, kh * kw, -1)  # (N, G, kh*kw, L)
        w = cons.weight[:, ks].reshape(o, g, kh * kw)
        self.macs += n * g * o * cols.shape[3] * kh * kw
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

    def _suffix(self, z: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        env = {plan.consumer_node: self._fmt(z)}
        if self.dtype != torch.float32:
            with torch.autocast(self.device.type, dtype=self.dtype):
                return run_nodes(plan.gm, plan.suffix, env).float()
        return run_nodes(plan.gm, plan.suffix, env)

    def _make_low(self) -> "torch.fx.GraphModule":
        """A bf16 copy of the layers after the consumer; the module that produces the logits
        (the last module with parameters) stays fp32 and receives fp32 inputs."""
        gm = copy.deepcopy(self.plan.gm)
        mods = [n.target for n in self.plan.suffix if n.op == "call_module"]
        last = next((t for t in reversed(mods)
                     if any(True for _ in gm.get_submodule(t).parameters())), None)
        for t in mods:
            if t != last:
                gm.get_submodule(t).to(torch.bfloat16)
        if last is not None:
            gm.set_submodule(last, _Fp32Input(gm.get_submodule(last)))
        return gm

    def _suffix_low(self, z: torch.Tensor) -> torch.Tensor:
        x = z.to(torch.bfloat16, memory_format=self._memory_format(z))
        return run_nodes(self._low, self.plan.suffix, {self.plan.consumer_node: x}).float()

    def _calibrate(self, z: torch.Tensor, exact: torch.Tensor) -> None:
        """Update the bf16 error bound from rows computed both ways (the unpruned network)."""
        if self._low is None:
            return
        try:
            low = self._suffix_low(z)
        except (RuntimeError, TypeError):  # a suffix that cannot run in bf16: stay in fp32
            self._low, self.precision = None, "fp32"
            return
        st = self.screen_stats
        st["err"] = max(st["err"], float((low - exact).abs().max()))

    def _tally(self, table: torch.Tensor, zk: torch.Tensor, labels: torch.Tensor,
               slots: torch.Tensor) -> None:
        """Add the correct rows of the consumer outputs ``zk`` to ``table[slot, label]``.

        In fp32 every row is decided at once. With the bf16 screen, a row is decided from bf16
        when its :func:`decision_margin` exceeds ``2 * screen_safety * err`` (module docstring);
        the others wait, in fp32, for :meth:`_flush`, which recomputes them in batches as large
        as a pass (a few rows at a time cost about 30 % more per row on a 2-core CPU).
        """
        if self._low is None:
            table += _tally_rows(self._suffix(zk), labels, slots, table.shape, self.topk)
            return
        low = self._suffix_low(zk)
        st = self.screen_stats
        if low.shape[1] > self.topk:
            # "not above" rather than "at most": a NaN margin is recomputed too
            sure = decision_margin(low, labels, self.topk) > 2.0 * self.screen_safety * st["err"]
        else:
            sure = torch.zeros(low.shape[0], dtype=torch.bool, device=low.device)
        st["pairs"] += low.shape[0]
        table += _tally_rows(low[sure], labels[sure], slots[sure], table.shape, self.topk)
        idx = (~sure).nonzero().squeeze(1)
        if idx.numel():
            self._pending.append((zk[idx], low[idx], labels[idx], slots[idx], st["err"]))
            if sum(len(r[0]) for r in self._pending) >= zk.shape[0]:
                self._flush(table)

    def _flush(self, table: torch.Tensor) -> None:
        """Recompute the rows the bf16 screen left undecided in fp32 and add them to ``table``;
        their bf16 errors raise ``err`` for the rows screened after them."""
        if not self._pending:
            return
        chunks, self._pending = self._pending, []
        exact = self._suffix(torch.cat([c[0] for c in chunks]))
        st = self.screen_stats
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
        table += _tally_rows(exact, labels, slots, table.shape, self.topk)

    def _group_size(self, n: int, z: torch.Tensor) -> int:
        """Candidates per suffix pass: ``pair_batch`` if given; on a CPU about 256 (image,
        filter) pairs, where oneDNN runs fastest (measured, bench/README.md); on a GPU as many
        as ``group_bytes`` of activations allow."""
        if self.pair_batch:
            return max(1, self.pair_batch // n)
        per_image = z[0].numel() * 4 * 3  # consumer output and a few suffix activations
        g = max(1, min(256, self.group_bytes // max(1, n * per_image)))
        if self.device.type == "cpu":
            g = min(g, max(1, 256 // n))
        return g

    def _evaluate_fast(self, removed, candidates, progress):
        cons = self._consumer()
        base = None
        cand = None
        counts = None
        for p, y in self._consumer_inputs():
            n = y.shape[0]
            z = cons(self._zero(p, removed))
            self.macs += _linear_macs(cons, z)
            logits = self._suffix(z.clone())  # the suffix may start with an in-place ReLU
            self._calibrate(z, logits)
            if base is None:
                self._set_classes(logits.shape[1])
                c = self.num_classes
                base = torch.zeros(c, dtype=torch.long)
                cand = torch.zeros(len(candidates), c, dtype=torch.long)
                counts = torch.zeros(c, dtype=torch.long)
            base += count_correct(logits, y, 1, self.num_classes, self.topk)[0]
            counts += torch.bincount(y.cpu(), minlength=self.num_classes)
            g = self._group_size(n, z)
            for i in range(0, len(candidates), g):
                ks = candidates[i : i + g]
                self._tally(cand, self._without_each(p, z, ks), y.repeat_interleave(len(ks)),
                            _slots(i, len(ks), n, y.device))
                if progress is not None:
                    progress.update(len(ks) * n)
        self._flush(cand)
        return base, cand, counts

    @torch.no_grad()
    def evaluate_prefixes(self, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct counts per class with the first 0, 1, ..., ``len(order)`` filters pruned.

        On the fast path the consumer output for ``order[:k]`` is the unpruned output minus the
        running sum of the first ``k`` filters' contributions, so a whole pruning curve costs
        one suffix pass per point and no pass in front of the consumer.

        Returns:
            ``(correct (len(order) + 1, classes), counts (classes,))``.
        """
        if self.method != "fast":
            rows, counts = [], None
            for k in range(len(order) + 1):
                base, _, counts = self.evaluate(list(order[:k]), [])
                rows.append(base)
            return torch.stack(rows), counts
        self._pending = []
        with _eval_mode(self.model), strict_fp32(self.device):
            cons = self._consumer()
            out = counts = None
            for p, y in self._consumer_inputs():
                n = y.shape[0]
                z = cons(p)
                self.macs += _linear_macs(cons, z)
                if out is None:
                    self._set_classes(self._suffix(z[:1].clone()).shape[1])
                    out = torch.zeros(len(order) + 1, self.num_classes, dtype=torch.long)
                    counts = torch.zeros(self.num_classes, dtype=torch.long)
                counts += torch.bincount(y.cpu(), minlength=self.num_classes)
                logits = self._suffix(z.clone())
                self._calibrate(z, logits)
                out[0] += count_correct(logits, y, 1, self.num_classes, self.topk)[0]
                g = self._group_size(n, z)
                running = None
                for i in range(0, len(order), g):
                    ks = list(order[i : i + g])
                    c = self._contributions(p, ks).cumsum(dim=1)
                    if running is not None:
                        c += running.unsqueeze(1)
                    running = c[:, -1]
                    self._tally(out, self._pruned(z, c), y.repeat_interleave(len(ks)),
                                _slots(1 + i, len(ks), n, y.device))
            self._flush(out)
            return out, counts

    # ------------------------------------------------------------------ masked path
    def _evaluate_masked(self, removed, candidates, progress):
        hook = FilterMask(self.model, self.plan)
        try:
            base = cand = counts = None
            for x, y in as_batches(self.data, self.batch_size, device=self.device):
                n = y.shape[0]
                m0 = torch.ones(self.n_filters, device=self.device)
                m0[removed] = 0
                hook.mask = m0
                logits = self.model(x)
                if base is None:
                    self._set_classes(logits.shape[1])
                    c = self.num_classes
                    base = torch.zeros(c, dtype=torch.long)
                    cand = torch.zeros(len(candidates), c, dtype=torch.long)
                    counts = torch.zeros(c, dtype=torch.long)
                base += count_correct(logits, y, 1, self.num_classes, self.topk)[0]
                counts += torch.bincount(y.cpu(), minlength=self.num_classes)
                g = max(1, (self.pair_batch or self.batch_size) // n)
                for i in range(0, len(candidates), g):
                    ks = candidates[i : i + g]
                    mask = m0.repeat(len(ks), 1)
                    mask[torch.arange(len(ks)), torch.tensor(ks)] = 0
                    hook.mask = mask.repeat_interleave(n, dim=0)
                    xs = x.repeat(len(ks), *([1] * (x.ndim - 1)))
                    cand[i : i + len(ks)] += count_correct(self.model(xs), y, len(ks),
                                                           self.num_classes, self.topk)
                    if progress is not None:
                        progress.update(len(ks) * n)
            return base, cand, counts
        finally:
            hook.remove()


class _Fp32Input(nn.Module):
    """Runs a module in fp32 on an input cast up from bf16 (the logits layer of the screen)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float())


def _slots(first: int, g: int, n: int, device: torch.device) -> torch.Tensor:
    """Table rows of an image-major batch of ``n`` images x ``g`` networks (``first`` ...)."""
    return torch.arange(first, first + g, device=device).repeat(n)


def _tally_rows(logits: torch.Tensor, labels: torch.Tensor, slots: torch.Tensor,
                shape: tuple[int, int], topk: int) -> torch.Tensor:
    """Correct rows (one label and table row each) counted into an int64 table of ``shape``
    ``(table rows, classes)`` on the CPU: one bincount."""
    if topk == 1:
        ok = logits.argmax(dim=1) == labels  # ties go to the lower class index
    else:
        ok = (logits.topk(topk, dim=1).indices == labels[:, None]).any(dim=1)
    flat = torch.bincount((slots * shape[1] + labels)[ok], minlength=shape[0] * shape[1])
    return flat.view(shape).cpu()


def _linear_macs(cons: nn.Module, out: torch.Tensor) -> int:
    if isinstance(cons, nn.Conv2d):
        k = cons.in_channels // cons.groups * cons.kernel_size[0] * cons.kernel_size[1]
        return out.numel() * k
    return out.numel() * cons.in_features
