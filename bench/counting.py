"""Multiply-accumulates (MACs) the naive loop and carlib's engine execute, and their rates.

:class:`MacModel` counts analytically, per image, the convolutions and linear layers of a model
(:func:`carlib.count`) split around the pruned layer's consumer, and from that what the fast
path executes. :func:`engine_macs_match` holds that count to PyTorch's own FLOP counter
(:class:`torch.utils.flop_counter.FlopCounterMode`, FLOPs / 2 = MACs for convolutions and
matrix products) around a real :meth:`carlib.engine.Engine.evaluate` call, which every
workload's warm-up does (column ``macs_match_flop_counter``).
"""

from __future__ import annotations

import math
from typing import Callable, TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

import carlib
from carlib.engine import Engine
from carlib.graph import analyze, run_nodes

__all__ = ["MacModel", "flop_counter_macs", "engine_macs_match", "consumer_input_bytes",
           "recomputed_share", "work_rates"]

T = TypeVar("T")


class MacModel:
    """Multiply-accumulates of one image through a model, split around a layer's consumer.

    Attributes:
        full: the whole network (convolutions and linear layers, from :func:`carlib.count`).
        prefix: the layers the fast path runs once per image (up to and including the pruned
            convolution, and any that do not depend on it).
        consumer: the pruned layer's consumers (the channel-mixing layers it reaches).
        pair_consumer: what their rules execute per (image, filter) pair.
        suffix: everything else (what runs per pair).
        last: the layer that produces the logits (the checked-bf16 screen keeps it in fp32).
        filters: the pruned layer's filter count.
        fast: whether the engine's fast path applies.

    Args:
        model: the network.
        layer: alias or module path of the pruned convolution.
        input_size: ``(C, H, W)`` of one image.

    Example:
        >>> m = MacModel(carlib.AlexNetTiny(), "conv1", (3, 64, 64))  # doctest: +SKIP
        >>> m.prefix + m.consumer + m.suffix == m.full  # doctest: +SKIP
        True
    """

    def __init__(self, model: torch.nn.Module, layer: str, input_size: tuple[int, int, int]):
        plan = analyze(model, layer)
        table = carlib.count(model, input_size, per_layer=True)
        names = list(table["layer"])
        macs = [int(m) for m in table["macs"]]
        self.full: int = sum(macs)
        self.filters: int = plan.layer.filters
        self.fast: bool = bool(plan.fast)
        self.prefix = self.consumer = self.suffix = self.last = self.pair_consumer = 0
        if not plan.fast or plan.layer.path not in names:
            return
        front = {n.target for n in plan.front if n.op == "call_module"}
        self.prefix = sum(m for name, m in zip(names, macs) if name in front)
        for c in plan.consumers:
            m = macs[names.index(c.target)]
            mod = model.get_submodule(c.target)
            self.consumer += m
            if isinstance(mod, torch.nn.Conv2d) and mod.groups > 1:  # grouped: one group per pair
                self.pair_consumer += 0 if mod.in_channels == mod.groups else m // mod.groups
            else:  # linear in its input channels: 1/C per pair
                self.pair_consumer += m // self.filters
        self.suffix = self.full - self.prefix - self.consumer
        self.last = macs[-1] if self.suffix else 0

    def naive(self, n_images: int, passes: int) -> int:
        """The naive loop: the full network per image per pass.

        Example:
            >>> m.naive(2000, 65)  # doctest: +SKIP
        """
        return n_images * self.full * passes

    def consumer_macs(self, n_images: int, candidates: int) -> int:
        """The consumers' part of one evaluate call on the fast path: the consumers once per
        image and, per image and candidate filter, each one's rule (1/C of a consumer linear in
        its input channels, one group of a grouped convolution, nothing for a depthwise one).

        Example:
            >>> m.consumer_macs(32, 4)  # doctest: +SKIP
        """
        return n_images * (self.consumer + candidates * self.pair_consumer)

    def fast_evaluate(self, n_images: int, candidates: int, prefix_cached: bool = False) -> int:
        """Everything the fp32 fast path executes in one evaluate call: the prefix (unless its
        outputs are cached), the consumer part, and the suffix once for the network plus once per
        candidate.

        Example:
            >>> m.fast_evaluate(2000, 64)  # doctest: +SKIP
        """
        pre = 0 if prefix_cached else n_images * self.prefix
        return (pre + self.consumer_macs(n_images, candidates)
                + n_images * self.suffix * (1 + candidates))

    def executed(self, n_images: int, candidates: int, *, prefix_cached: bool = False,
                 precision: str = "fp32", recomputed: float = 0.0) -> tuple[int, int]:
        """``(fp32 MACs, bf16 MACs)`` the fast path executes in one evaluate call.

        In fp32 this is :meth:`fast_evaluate`. With ``bf16-checked`` the network's suffix also
        runs once in bf16 (the calibration of the error bound), every candidate's suffix runs in
        bf16 but for its last layer, and the ``recomputed`` share of the candidates runs the
        suffix again in fp32.

        Args:
            n_images: images evaluated.
            candidates: filters evaluated on top of the network.
            prefix_cached: the consumer inputs come from the engine's cache.
            precision: ``"fp32"`` or ``"bf16-checked"`` (what the engine reports it ran).
            recomputed: share of the (image, filter) pairs the screen recomputed in fp32.

        Returns:
            ``(fp32, bf16)`` multiply-accumulates.

        Example:
            >>> m.executed(2000, 64, precision="bf16-checked", recomputed=0.075)  # doctest: +SKIP
        """
        if precision != "bf16-checked":
            return self.fast_evaluate(n_images, candidates, prefix_cached), 0
        pairs = n_images * candidates
        fp32 = (self.fast_evaluate(n_images, 0, prefix_cached)
                + self.consumer_macs(n_images, candidates) - self.consumer_macs(n_images, 0)
                + (n_images + pairs) * self.last + round(recomputed * pairs) * self.suffix)
        return fp32, (n_images + pairs) * (self.suffix - self.last)

    def greedy(self, n_images: int, steps: int, *, cached: bool, precision: str = "fp32",
               recomputed: float = 0.0) -> tuple[int, int]:
        """``(fp32, bf16)`` MACs of ``steps`` greedy steps on the fast path: step *s* evaluates
        the ``filters - s`` remaining filters; after the first step the consumer inputs come from
        the cache when they fit it (``cached``).

        Example:
            >>> m.greedy(2000, 20, cached=True)  # doctest: +SKIP
        """
        split = [self.executed(n_images, self.filters - s, prefix_cached=cached and s > 0,
                               precision=precision, recomputed=recomputed)
                 for s in range(steps)]
        return sum(f for f, _ in split), sum(b for _, b in split)


def flop_counter_macs(fn: Callable[[], T]) -> tuple[int, T]:
    """Run ``fn()`` under PyTorch's FLOP counter.

    Args:
        fn: the work to count.

    Returns:
        ``(MACs = counted FLOPs / 2, fn's result)``; the counter covers convolutions and matrix
        products (``mm``, ``addmm``, ``bmm``, ``baddbmm``), each multiply-add two FLOPs.

    Example:
        >>> macs, _ = flop_counter_macs(lambda: torch.ones(2, 3) @ torch.ones(3, 4))
        >>> macs
        24
    """
    with FlopCounterMode(display=False) as fc:
        out = fn()
    return fc.get_total_flops() // 2, out


def engine_macs_match(model: torch.nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor,
                      macm: MacModel, *, device: torch.device, precision: str,
                      n_images: int = 32, candidates: int = 4) -> bool | None:
    """Whether :meth:`MacModel.executed` equals the FLOP counter on what the engine runs.

    One :meth:`carlib.engine.Engine.evaluate` call on the first ``n_images`` images and the first
    ``candidates`` filters, under :func:`flop_counter_macs`; the recomputed share comes from the
    engine's own screen counters.

    Args:
        model: the network.
        layer: the pruned convolution.
        x: images; y: their labels.
        macm: the model's :class:`MacModel`.
        device: where to run.
        precision: the engine precision (as passed to carlib).
        n_images: images of the call.
        candidates: filters evaluated in it.

    Returns:
        True or False, or None where the fast path does not apply (nothing modeled).

    Example:
        >>> engine_macs_match(model, "conv1", x, y, MacModel(model, "conv1", (3, 64, 64)),
        ...                   device=torch.device("cpu"), precision="fp32")  # doctest: +SKIP
        True
    """
    n = min(x.shape[0], n_images)
    ks = list(range(min(candidates, macm.filters)))
    eng = Engine(model, layer, (x[:n], y[:n]), device=device, cache_bytes=0, precision=precision)
    if eng.method != "fast":
        return None
    counted, _ = flop_counter_macs(lambda: eng.evaluate([], ks))
    st = eng.screen_stats
    share = st["recomputed"] / st["pairs"] if st.get("pairs") else 0.0
    fp32, bf16 = macm.executed(n, len(ks), precision=eng.precision, recomputed=share)
    return fp32 + bf16 == counted


@torch.no_grad()
def consumer_input_bytes(model: torch.nn.Module, layer: str, x: torch.Tensor) -> int:
    """Bytes of one image's cut values: the consumers' inputs and what the layers after them
    read from before (what the engine caches).

    Args:
        model: the network (the fast path applies).
        layer: the pruned convolution.
        x: images; the first one is run.

    Returns:
        The byte count.

    Example:
        >>> consumer_input_bytes(carlib.AlexNetTiny(), "conv1", torch.randn(1, 3, 64, 64))  # doctest: +SKIP
    """
    plan = analyze(model, layer)
    placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
    env = {placeholder: x[:1]}
    run_nodes(plan.gm, plan.front, env)
    return int(sum(env[n].numel() * env[n].element_size() for n in plan.cut))


def recomputed_share(value: object) -> float:
    """A recomputed share from a table attribute or cell (NaN, None or missing: 0).

    Example:
        >>> recomputed_share(float("nan")), recomputed_share(0.25)
        (0.0, 0.25)
    """
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(f) else f


def work_rates(row: dict, side: str, macs: int | None, seconds: float, *, peak: float,
               peak_bf16: float | None, bf16_macs: int = 0) -> None:
    """Write executed work, its rate and its fraction of peak into ``row``.

    The fraction of peak is the time the work would take at the measured peak of each
    precision (fp32 MACs at ``peak``, bf16 MACs at ``peak_bf16``) over the time it took: 1 means
    every multiply ran at the speed of the fastest kernel measured.

    Args:
        row: the result row; keys ``SIDE_gmac``, ``SIDE_gmac_s``, ``SIDE_peak_frac`` (and for
            ``carlib`` also ``carlib_bf16_gmac``) are written.
        side: ``"carlib"`` or ``"naive"``.
        macs: fp32 MACs executed (None: unknown, NaN is written).
        seconds: the time taken.
        peak: fp32 peak in GMAC/s.
        peak_bf16: bf16 peak in GMAC/s, or None where not measured (then bf16 work has no
            fraction rather than a wrong one).
        bf16_macs: bf16 MACs executed.

    Example:
        >>> row = {}
        >>> work_rates(row, "carlib", 100 * 10**9, 6.0, peak=100.0, peak_bf16=200.0,
        ...            bf16_macs=400 * 10**9)
        >>> row["carlib_gmac"], row["carlib_peak_frac"]
        (500.0, 0.5)
    """
    if side == "carlib":
        row["carlib_bf16_gmac"] = round(bf16_macs / 1e9, 3)
    if macs is None:
        row[f"{side}_gmac"] = row[f"{side}_gmac_s"] = row[f"{side}_peak_frac"] = float("nan")
        return
    row[f"{side}_gmac"] = round((macs + bf16_macs) / 1e9, 3)
    ok = seconds > 0
    row[f"{side}_gmac_s"] = round((macs + bf16_macs) / seconds / 1e9, 2) if ok else float("nan")
    if not ok or (bf16_macs and not peak_bf16):
        row[f"{side}_peak_frac"] = float("nan")
        return
    at_peak = macs / (peak * 1e9) + (bf16_macs / (peak_bf16 * 1e9) if bf16_macs and peak_bf16 else 0.0)
    row[f"{side}_peak_frac"] = round(at_peak / seconds, 3)
