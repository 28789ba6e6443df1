"""Where the engine computes: the device policy, exact fp32 on GPUs, and fast-bf16 detection.

One policy for every entry point (Python API, command line, profiles): ``None`` means the CPU,
``"auto"`` means the first GPU when one is present and the CPU otherwise, and any device
named explicitly must exist, or a one-line :class:`~carlib.errors.CarlibError` says so.
"""

from __future__ import annotations

import copy
import functools
import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..errors import CarlibError

__all__ = ["resolve_device", "default_batch_size", "model_on", "eval_mode", "strict_fp32", "fast_bf16",
           "bf16_flags", "BF16_CPU_FLAGS", "CPU_BATCH_BYTES"]

#: /proc/cpuinfo flags of CPU instructions that make bf16 fast (see :func:`fast_bf16`).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to compute on (see the module docstring).

    Args:
        device: ``None`` (the CPU), ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
            :class:`torch.device`.

    Returns:
        A :class:`torch.device`.

    Raises:
        CarlibError: an unknown or unsupported device (only the CPU and CUDA GPUs are), or a
            GPU that is not there.

    Example:
        >>> resolve_device(None)
        device(type='cpu')
    """
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CarlibError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise CarlibError(f"device {device!r} is not supported (carlib computes on cpu or cuda); "
                          "use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CarlibError("device cuda requested but no GPU is available; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CarlibError(f"device {device!r} does not exist: this machine has "
                          f"{torch.cuda.device_count()} GPU(s); use cuda:0 .. "
                          f"cuda:{torch.cuda.device_count() - 1}")
    return dev


#: fp32 input bytes per image batch on a CPU: 256 RGB images of 64x64 (12 MiB), fewer larger ones
CPU_BATCH_BYTES = 256 * 3 * 64 * 64 * 4


def default_batch_size(device: torch.device, image_shape: tuple[int, ...]) -> int:
    """Images per batch when the caller sets none: 1024 on a GPU; on a CPU 256, or the largest
    power of two whose fp32 inputs fit in :data:`CPU_BATCH_BYTES` when that is smaller (16 at
    224x224): large images in smaller passes stay in cache (measured, bench/README.md).

    Args:
        device: where the engine computes.
        image_shape: one image's ``(C, H, W)``.

    Returns:
        A positive batch size.

    Example:
        >>> default_batch_size(torch.device("cpu"), (3, 64, 64)), default_batch_size(torch.device("cpu"), (3, 224, 224))
        (256, 16)
    """
    if device.type == "cuda":
        return 1024
    fit = max(1, CPU_BATCH_BYTES // (4 * max(1, math.prod(image_shape))))
    return min(256, 1 << (fit.bit_length() - 1))


def model_on(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` if its parameters are on ``device``, else a copy moved there (the caller's
    model stays where it is).

    Example:
        >>> m = nn.Linear(2, 2)
        >>> model_on(m, torch.device("cpu")) is m
        True
    """
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != device:
        return copy.deepcopy(model).to(device)
    return model


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` and every submodule in eval mode; afterwards each submodule
    is back in exactly the mode it had (a mix of train and eval modes included).

    Example:
        >>> m = nn.Sequential(nn.Dropout(), nn.Dropout()).train()
        >>> _ = m[1].eval()
        >>> with eval_mode(m):
        ...     m.training, m[0].training
        (False, False)
        >>> m.training, m[0].training, m[1].training
        (True, True, False)
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was in modes:
            m.training = was


@contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """On a GPU, compute fp32 convolutions and matrix products in full fp32 (no TF32).

    TF32 keeps 10 mantissa bits and moves near-tie predictions; CAR values are differences of
    a few images, so the engine keeps fp32 exact on every device. The global flags are
    restored on exit. A no-op on the CPU.

    Example:
        >>> with strict_fp32(torch.device("cpu")):
        ...     pass
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


def fast_bf16(device: str | torch.device) -> bool:
    """Whether bf16 convolutions and matrix products are much faster than fp32 here.

    True on CPUs with bf16 dot-product instructions, AMX-BF16 (recent Xeons) or AVX512-BF16
    (AMD Zen 4 and later, Cooper Lake); False elsewhere: on AVX2 CPUs bf16 is emulated and
    slower than fp32. GPUs are not auto-selected (the checked bf16 path is available there by
    ``precision="bf16-checked"``). Measurements: ``bench/README.md``.

    Example:
        >>> fast_bf16("cpu") in (True, False)
        True
    """
    return torch.device(device).type == "cpu" and bool(_cpu_bf16_flags())


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
        >>> bf16_flags("flags\\t\\t: fpu avx2 avx512f avx512_bf16 avx512_vnni")
        ('avx512_bf16',)
    """
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return tuple(x for x in BF16_CPU_FLAGS if x in flags)
    return ()
