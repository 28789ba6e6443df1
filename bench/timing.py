"""Timing and memory of benchmark blocks, and the machine's peak arithmetic rate.

Every timing synchronizes the device before and after (:func:`timed`); :func:`best_of` keeps the
shortest of several. :func:`peak_memory` records the resident (and GPU) high-water mark of a
block, and :func:`measure_peak` times the fastest dense kernels the fractions of peak refer to.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch
import torch.nn.functional as F

__all__ = ["sync", "timed", "best_of", "rss_high_water_mb", "maxrss_mb", "peak_memory",
           "measure_peak"]

T = TypeVar("T")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU).

    Args:
        device: the device that ran the work.

    Example:
        >>> sync(torch.device("cpu"))
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Run ``fn()`` once between two synchronizations of ``device``.

    Args:
        fn: the work to time.
        device: the device it runs on.

    Returns:
        ``(seconds, fn's result)``.

    Example:
        >>> seconds, out = timed(lambda: 2 + 2, torch.device("cpu"))
        >>> out
        4
    """
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], T], device: torch.device, repeats: int) -> tuple[float, T]:
    """The shortest of ``repeats`` timings of ``fn()`` (:func:`timed`).

    Args:
        fn: the work to time.
        device: the device it runs on.
        repeats: how many timings (at least one is made).

    Returns:
        ``(shortest seconds, the last run's result)``.

    Example:
        >>> seconds, out = best_of(lambda: sum(range(10)), torch.device("cpu"), 3)
        >>> out
        45
    """
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        t, out = timed(fn, device)
        best = min(best, t)
    return best, out  # type: ignore[return-value]


def rss_high_water_mb() -> float | None:
    """The process's resident high-water mark (``VmHWM`` of ``/proc/self/status``) in MiB.

    Returns:
        The mark, or None where ``/proc`` is not readable (not Linux).

    Example:
        >>> rss_high_water_mb() is None or rss_high_water_mb() > 0
        True
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB: the peak resident size of the whole run.

    Example:
        >>> maxrss_mb() > 0
        True
    """
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


@contextmanager
def peak_memory(device: torch.device, into: dict, prefix: str) -> Iterator[None]:
    """Record the peak resident memory (and GPU memory) of the block into ``into``.

    The resident peak of one block comes from resetting the kernel's high-water mark
    (``/proc/self/clear_refs``, Linux); where that is impossible it is the process's
    ``ru_maxrss`` so far (an upper bound that includes everything run before).

    Args:
        device: the device the block runs on (on a GPU the allocator's peak is recorded too).
        into: the row to write to.
        prefix: the keys written: ``PREFIX_rss_peak_mb`` and on a GPU ``PREFIX_gpu_peak_mb``.

    Example:
        >>> row = {}
        >>> with peak_memory(torch.device("cpu"), row, "naive"):
        ...     _ = torch.zeros(1000)
        >>> "naive_rss_peak_mb" in row
        True
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        per_block = True
    except OSError:
        per_block = False
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        hwm = rss_high_water_mb() if per_block else None
        into[f"{prefix}_rss_peak_mb"] = round(hwm if hwm is not None else maxrss_mb(), 1)
        if device.type == "cuda":
            into[f"{prefix}_gpu_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def measure_peak(device: torch.device, n: int, repeats: int = 3,
                 dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """GMAC/s of the fastest dense kernels in ``dtype`` (best of ``repeats`` after a warm-up).

    Timed: an ``n x n @ n x n`` matrix product (``mm``), and a 3x3 convolution of 256 to 256
    channels, channels-last, on a batch of ``n / 64`` 16x16 maps (``conv3x3``: the kernel class
    the layers after AlexNet's conv1 consumer run). On a 2-core Zen 4, oneDNN's convolutions run
    20-40 % faster than the BLAS product, so a product alone under-states the peak. On a GPU the
    caller switches TF32 off first, so that fp32 means fp32.

    Args:
        device: where to time.
        n: size of the matrix product.
        repeats: timings per kernel; the shortest counts.
        dtype: ``torch.float32`` or ``torch.bfloat16``.

    Returns:
        ``{"mm": ..., "conv3x3": ..., "peak": the larger of both}`` in GMAC/s.

    Example:
        >>> rates = measure_peak(torch.device("cpu"), 128, repeats=1)
        >>> rates["peak"] == max(rates["mm"], rates["conv3x3"])
        True
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    fmt = torch.channels_last
    batch = max(1, n // 64)
    x = torch.randn(batch, 256, 16, 16, generator=g).to(device, dtype).contiguous(memory_format=fmt)
    w = torch.randn(256, 256, 3, 3, generator=g).to(device, dtype).contiguous(memory_format=fmt)
    kernels: dict[str, tuple[Callable[[], torch.Tensor], int]] = {
        "mm": (lambda: torch.mm(a, b), n**3),
        "conv3x3": (lambda: F.conv2d(x, w, padding=1), batch * 256 * 256 * 9 * 16 * 16),
    }
    rates: dict[str, float] = {}
    for name, (fn, macs) in kernels.items():
        fn()  # warm-up
        rates[name] = macs / best_of(fn, device, repeats)[0] / 1e9
    rates["peak"] = max(rates.values())
    return rates
