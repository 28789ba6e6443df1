"""The CAR evaluation engine: accuracy of many pruned networks from few forward passes.

One call of :meth:`Engine.evaluate` answers: with the filters ``removed`` pruned, how many
images of each class are classified correctly, and how many with each filter of
``candidates`` pruned in addition? :func:`carlib.car_index` and :func:`carlib.greedy_prune`
are thin loops around it.

Two paths, the same numbers (the tests hold both to the naive reference):

* **fast** (:mod:`carlib.engine.fast`): any traceable model whose pruned layer reaches a
  consumer (:mod:`carlib.graph`): AlexNet, VGG, ResNet, MobileNetV2; the consumers' outputs
  with a filter pruned come from rules (:mod:`carlib.engine.consumers`), so only the layers
  after them run once per (image, filter) pair.
* **masked** (:mod:`carlib.engine.masked`): any other model; the whole network runs with a
  per-row channel mask, several filters folded into the batch.

Precision (fast path). ``"fp32"`` runs everything in fp32. ``"bf16-checked"`` runs the layers
after the consumer in bf16 and recomputes in fp32 every (image, filter) pair whose decision
bf16 cannot settle (:mod:`carlib.engine.screen`): the counts are fp32's. ``"auto"`` (the
default) picks ``"bf16-checked"`` where bf16 is fast (CPUs with AMX-BF16 or AVX512-BF16,
:func:`~carlib.engine.device.fast_bf16`), else ``"fp32"``.

Memory. On a GPU, an out-of-memory error in a pass makes :meth:`Engine.evaluate` start
again with half the (image, filter) pairs per pass (then half the images per batch), until a
pass fits: the counts are sums over passes, so the result is the same. The peak GPU memory
and any retries are in :meth:`Engine.memory_summary` (and the result tables' ``attrs``).

Several processes. Under an initialised ``torch.distributed`` process group each rank counts
its own contiguous block of whole batches (:mod:`carlib.distributed`) and the integer counts
are summed over the ranks: every rank gets the counts of one process computing everything.

The model is always evaluated in eval mode (a model handed over in train mode gives the same
counts as in eval mode); every submodule of the caller's model is left in the mode it had.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import distributed
from ..data import DataLike, dataset_labels, num_images
from ..errors import CarlibError
from ..graph import LayerPlan, analyze
from ..layers import check_filters
from .device import default_batch_size, eval_mode, fast_bf16, model_on, resolve_device, strict_fp32
from .correct import Counts
from .fast import FastPath
from .inputs import check_count, check_images, check_model_fits, image_shape
from .masked import MaskedPath
from .run import Run

__all__ = ["Engine", "PRECISIONS", "METHODS"]

#: The engine's precisions (see the module docstring).
PRECISIONS = ("auto", "fp32", "bf16-checked")
#: The engine's paths: ``auto`` takes the fast one where the graph allows.
METHODS = ("auto", "fast", "masked")


class Engine:
    """Evaluate a model with sets of filters of one layer pruned (see the module docstring).

    Args:
        model: the network (not modified; copied when it must move to another device).
        layer: alias or module path of the convolution, or its :class:`~carlib.graph.LayerPlan`
            (from :func:`carlib.graph.analyze` on this model: analyzed once, reused).
        data: a carlib dataset or ``(images, labels)``.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` ... (default: CPU).
        batch_size: images per prefix batch (default :func:`~carlib.engine.default_batch_size`:
            1024 on a GPU; 256 on a CPU, fewer for large images, e.g. 16 at 224x224).
        pair_batch: (image, filter) pairs per forward pass of the suffix (default from
            ``group_bytes``).
        topk: 1 or 5.
        method: ``"auto"`` (fast when the graph allows), ``"fast"`` or ``"masked"``.
        cache_bytes: cache the consumer inputs of all images when they fit (greedy steps then
            skip the layers in front of the consumer).
        group_bytes: activation memory per suffix pass that sets the default ``pair_batch``
            (default 256 MiB on a CPU, 2 GiB on a GPU).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16-checked"`` (fast path only, the masked
            path is always fp32).
        screen_safety: the safety factor of ``"bf16-checked"`` (default 4).
        channels_last: run the layers after the consumer in the channels-last memory format
            (default ``None``: on the CPU only, for convolutional suffixes). Same arithmetic in
            another loop order, faster with oneDNN on a CPU and slower on an H100
            (bench/README.md); the tests hold it to the naive reference like the rest.

    Example:
        >>> eng = Engine(load_model(), "conv1", val)  # doctest: +SKIP
        >>> base, per_filter, counts = eng.evaluate([], list(range(64)))  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, layer: str | LayerPlan, data: DataLike, *,
                 device: str | torch.device | None = None, batch_size: int | None = None,
                 pair_batch: int | None = None, topk: int = 1, method: str = "auto",
                 cache_bytes: int = 2 << 30, group_bytes: int | None = None,
                 channels_last: bool | None = None, precision: str = "auto",
                 screen_safety: float = 4.0):
        if topk < 1:
            raise CarlibError(f"topk must be at least 1, got {topk}")
        if method not in METHODS:
            raise CarlibError(f"unknown method {method!r}; use {', '.join(METHODS)}")
        if precision not in PRECISIONS:
            raise CarlibError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
        if not screen_safety >= 1:
            raise CarlibError(f"screen_safety must be at least 1, got {screen_safety!r}")
        self.batch_size = check_count(batch_size, "batch_size")
        self.oom_retries = 0
        self.peak_memory_bytes: int | None = None
        check_count(pair_batch, "pair_batch")
        self.device = resolve_device(device)
        moved = model_on(model, self.device)
        with eval_mode(moved):  # private copies made below inherit eval mode
            self._setup(model, moved, layer, data, pair_batch, topk, method, cache_bytes,
                        group_bytes, channels_last, precision, screen_safety)

    def _setup(self, model: nn.Module, moved: nn.Module, layer: str | LayerPlan, data: DataLike,
               pair_batch: int | None, topk: int, method: str, cache_bytes: int,
               group_bytes: int | None, channels_last: bool | None, precision: str,
               screen_safety: float) -> None:
        if isinstance(layer, LayerPlan) and moved is model:
            self.plan = analyze(model, layer)
        else:
            name = layer.layer.path if isinstance(layer, LayerPlan) else layer
            self.plan = analyze(moved, name)
        self.model = moved
        if method == "fast" and not self.plan.fast:
            raise CarlibError(f"the fast path does not apply to {self.plan.layer.alias}: "
                              f"{self.plan.fast_reason}; use method='masked'")
        self.method = "fast" if (method in ("auto", "fast") and self.plan.fast) else "masked"
        self.data = data
        self.n_images = num_images(data)
        if self.n_images == 0:
            raise CarlibError("the dataset has no images; choose a split or subset with images")
        check_images(moved, data)
        width = check_model_fits(moved, data, self.device)
        self.labels = dataset_labels(data)
        self.n_filters = self.plan.layer.filters
        self.topk = topk
        self.screen_safety = float(screen_safety)
        self.num_classes: int | None = None
        self._set_classes(width)  # every label checked before any rank counts
        gpu = self.device.type == "cuda"
        self.batch_size = self.batch_size or default_batch_size(self.device, image_shape(data))
        #: this rank's images, whole batches (all of them in a single process)
        self.local_data = distributed.shard(data, self.n_images, self.batch_size)
        self.n_local = num_images(self.local_data)
        if precision == "auto":
            precision = "bf16-checked" if fast_bf16(self.device) else "fp32"
        run = Run(self.plan, self.local_data, self.device, self.batch_size, topk, self._set_classes, pair_batch)
        if self.method == "fast":
            self._path = FastPath(
                run, cache_bytes, group_bytes or ((2 << 30) if gpu else (256 << 20)),
                self.device.type == "cpu" if channels_last is None else channels_last,
                screen_safety if precision == "bf16-checked" else None)
        else:
            self._path = MaskedPath(self.model, run)

    @property
    def precision(self) -> str:
        """``"bf16-checked"`` while the screen is in use, else ``"fp32"``."""
        return "bf16-checked" if getattr(self._path, "screen", None) is not None else "fp32"

    @property
    def channels_last(self) -> bool:
        """Whether the fast path runs channels-last."""
        return bool(getattr(self._path, "channels_last", False))

    @property
    def folded_norms(self) -> int:
        """How many BatchNorms after the consumers the fast path folded into the convolutions
        before them (on its private copy of the model; the caller's model is unchanged)."""
        return int(getattr(self._path, "folded_norms", 0))

    @property
    def screen_stats(self) -> dict:
        """The checked-bf16 screen's counters (:attr:`carlib.engine.screen.CheckedBf16.stats`);
        empty in fp32."""
        screen = getattr(self._path, "screen", None)
        return screen.stats if screen is not None else {}

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
            and the image count per class ``(classes,)``; summed over the ranks under a
            process group (``progress`` then counts this rank's images).
        """
        if self.n_local == 0:  # a rank without images (fewer batches than ranks) adds none
            c = Counts.zeros(len(candidates), self.num_classes)
            return distributed.all_reduce_sum(c.base, c.rows, c.images)
        with eval_mode(self.model), strict_fp32(self.device):
            out = self._retrying(lambda: self._path.evaluate(removed, candidates, progress),
                                 progress)
        return distributed.all_reduce_sum(*out)

    @torch.no_grad()
    def evaluate_prefixes(self, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct counts per class with the first 0, 1, ..., ``len(order)`` filters pruned.

        On the fast path a whole pruning curve costs one suffix pass per point and no pass in
        front of the consumer (:meth:`carlib.engine.fast.FastPath.evaluate_prefixes`).

        Returns:
            ``(correct (len(order) + 1, classes), counts (classes,))``.
        """
        if self.method != "fast":
            rows, counts = [], None
            for k in range(len(order) + 1):
                base, _, counts = self.evaluate(list(order[:k]), [])
                rows.append(base)
            return torch.stack(rows), counts
        if self.n_local == 0:
            c = Counts.zeros(len(order) + 1, self.num_classes, base_is_row0=True)
            return distributed.all_reduce_sum(c.rows, c.images)
        with eval_mode(self.model), strict_fp32(self.device):
            out = self._retrying(lambda: self._path.evaluate_prefixes(order), None)
        return distributed.all_reduce_sum(*out)

    @torch.no_grad()
    def correct_images(self, removed_sets: list[list[int]]) -> torch.Tensor:
        """Whether each image is classified correctly with each set of filters pruned.

        The per-image view of :meth:`evaluate`'s ``base`` (same arithmetic, fp32): what paired
        tests between two pruned networks need.

        Args:
            removed_sets: sets of pruned filters, one network each.

        Returns:
            A bool tensor ``(len(removed_sets), images)`` in dataset order (every rank gets all
            images under a process group).

        Example:
            >>> eng = Engine(load_model(), "conv1", val)  # doctest: +SKIP
            >>> ok = eng.correct_images([[], [3, 7]])  # doctest: +SKIP
            >>> ok.sum(dim=1)  # correct images of each network  # doctest: +SKIP
        """
        sets = [check_filters(s, self.n_filters, self.plan.layer.alias) for s in removed_sets]
        out = torch.zeros(len(sets), self.n_images, dtype=torch.long)
        if self.n_local:
            with eval_mode(self.model), strict_fp32(self.device):
                local = self._retrying(lambda: (self._path.correct_images(sets),), None)[0]
            start, _ = distributed.shard_bounds(self.n_images, distributed.rank(),
                                                distributed.world_size(), self.batch_size)
            out[:, start : start + local.shape[1]] = local.long()
        return distributed.all_reduce_sum(out)[0].bool()

    def _retrying(self, compute, progress) -> tuple:
        """``compute()``; after a CUDA out-of-memory error, again with half the (image, filter)
        pairs per pass (and half the images per batch once a pass holds one filter): the
        counts are sums over passes, so the result is the same. Records the peak GPU memory."""
        run = self._path.run
        cuda = self.device.type == "cuda"
        while True:
            if cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            try:
                out = compute()
                if cuda:
                    self.peak_memory_bytes = max(self.peak_memory_bytes or 0,
                                                 torch.cuda.max_memory_allocated(self.device))
                return out
            except torch.cuda.OutOfMemoryError:
                pairs = getattr(self._path, "pairs_per_pass", None) or run.pair_batch or run.batch_size
                if pairs <= 1:
                    raise CarlibError("out of GPU memory with one image per pass; free GPU memory "
                                      "or use --device cpu") from None
                run.pair_batch = max(1, pairs // 2)
                if run.pair_batch < run.batch_size:  # a pass holds one filter: fewer images
                    run.batch_size = max(1, run.batch_size // 2)
                self.oom_retries += 1
                if cuda:
                    torch.cuda.empty_cache()
                if progress is not None:
                    progress.reset()

    def memory_summary(self) -> dict:
        """``peak_gpu_memory_bytes`` (on a GPU), and after out-of-memory retries
        ``oom_retries`` and the ``pair_batch`` that fitted; empty otherwise."""
        out: dict = {}
        if self.peak_memory_bytes is not None:
            out["peak_gpu_memory_bytes"] = int(self.peak_memory_bytes)
        if self.oom_retries:
            out.update(oom_retries=self.oom_retries, pair_batch=self._path.run.pair_batch)
        return out

    def screen_summary(self) -> dict:
        """``screen_recomputed`` (share of the pairs recomputed in fp32) and
        ``screen_worst_ratio``; empty unless ``bf16-checked``."""
        screen = getattr(self._path, "screen", None)
        return screen.summary() if screen is not None else {}

    def _set_classes(self, c: int) -> int:
        """Record the model's output width; labels must index it."""
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= c:
            raise CarlibError(f"the labels run from {lo} to {hi} but the model has {c} outputs; "
                              f"use labels in 0..{c - 1} (a dataset that matches the model's classes)")
        self.num_classes = c
        return c
