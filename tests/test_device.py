"""carlib.engine.device: one device policy, exact fp32 on GPUs, fast-bf16 detection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from carlib.engine import bf16_flags, eval_mode, model_on, resolve_device, strict_fp32
from carlib.errors import CarlibError


def test_model_on_copies_only_when_it_must_and_eval_mode_restores():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    assert model_on(m, torch.device("cpu")) is m
    with eval_mode(m):
        assert not m.training and not m[1].training
    assert m.training and m[1].training


def test_strict_fp32_turns_tf32_off_and_restores_the_flags():
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        with strict_fp32(torch.device("cuda")):
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with strict_fp32(torch.device("cpu")):  # a no-op on the CPU
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_resolve_device_errors():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CarlibError, match="unknown device"):
        resolve_device("tpu:x")
    if not torch.cuda.is_available():
        with pytest.raises(CarlibError, match="no GPU"):
            resolve_device("cuda")


def test_bf16_flags_from_cpuinfo():
    assert bf16_flags("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n") == ("avx512_bf16",)
    assert bf16_flags("flags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n") == ("amx_bf16", "avx512_bf16")
    assert bf16_flags("flags\t\t: fpu sse avx2 fma\n") == ()
    assert bf16_flags("no flags line here") == ()


def test_default_batch_size_fits_large_images_in_fewer_images_per_batch():
    from carlib.engine import default_batch_size

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert default_batch_size(cpu, (3, 64, 64)) == 256  # the default profile's batches
    assert default_batch_size(cpu, (3, 32, 32)) == 256
    assert default_batch_size(cpu, (3, 224, 224)) == 16
    assert default_batch_size(cpu, (3, 4096, 4096)) == 1
    assert default_batch_size(gpu, (3, 224, 224)) == 1024
