"""carlib.engine: device handling, and the GPU against the CPU (skipped without a GPU).

Tolerance on a GPU (the one issue 2 asks the tests to state): cuDNN and cuBLAS sum in another
order than the CPU, so a logit can differ in its last bits and an image whose two best classes
are tied to within that rounding may be classified differently. We therefore require, for
every evaluated network (the unpruned one and each single-filter pruning), that its number of
correct images on the GPU is within **1 image** of the CPU's, that at least 90 % of the CAR
values are bit-identical, and that the greedy pruning order is the same. TF32 is off inside
the engine (:func:`carlib.engine.strict_fp32`); with TF32 the differences would be larger.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from carlib import car_index, car_index_naive, greedy_prune
from carlib.datasets import num_images
from carlib.engine import Engine, resolve_device, strict_fp32
from carlib.errors import CarlibError

from conftest import requires_tiny

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


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
    with pytest.raises(CarlibError, match="unknown device"):
        resolve_device("tpu:x")
    if not torch.cuda.is_available():
        with pytest.raises(CarlibError, match="no GPU"):
            resolve_device("cuda")


def test_engine_does_not_modify_the_model(bn_net):
    model, x, y = bn_net
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    Engine(model, "conv2", (x, y)).evaluate([1], [0, 2])
    assert model.training, "the engine restores the train/eval mode"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def _within_one_image(gpu, cpu, n: int) -> None:
    assert list(gpu["filter"]) == list(cpu["filter"])
    diff = np.abs(gpu["accuracy"].to_numpy() - cpu["accuracy"].to_numpy()) * n
    assert diff.max() <= 1 + 1e-9, f"a pruned network differs by {diff.max():.0f} images"
    assert abs(gpu.attrs["base_accuracy"] - cpu.attrs["base_accuracy"]) * n <= 1 + 1e-9
    same = (gpu["car"].to_numpy() == cpu["car"].to_numpy()).mean()
    assert same >= 0.9, f"only {same:.0%} of the CAR values are identical"


@cuda
@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_gpu_matches_cpu_bn_net(bn_net, layer):
    model, x, y = bn_net
    cpu = car_index_naive(model, layer, (x, y))
    gpu = car_index(model, layer, (x, y), device="cuda", progress=False)
    _within_one_image(gpu, cpu, len(y))
    naive_gpu = car_index_naive(model, layer, (x, y), device="cuda")
    _within_one_image(naive_gpu, cpu, len(y))


@cuda
@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_gpu_matches_cpu_alexnet(tv_alexnet, layer):
    model, x, y = tv_alexnet
    filters = range(64) if layer == "conv1" else range(0, 192, 4)
    cpu = car_index(model, layer, (x, y), filters=filters, progress=False)
    gpu = car_index(model, layer, (x, y), filters=filters, device="cuda", progress=False)
    _within_one_image(gpu, cpu, len(y))


@cuda
def test_gpu_greedy_same_order(bn_net):
    model, x, y = bn_net
    cpu = greedy_prune(model, "conv2", (x, y), n_remove=5, progress=False)
    gpu = greedy_prune(model, "conv2", (x, y), n_remove=5, device="cuda", progress=False)
    assert list(gpu["filter"]) == list(cpu["filter"])


@cuda
@requires_tiny
@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_gpu_matches_cpu_default_network(tiny_val_slice, layer):
    from carlib import load_model

    model = load_model("alexnet-tiny")
    filters = range(64) if layer == "conv1" else range(0, 192, 6)
    cpu = car_index(model, layer, tiny_val_slice, filters=filters, progress=False)
    gpu = car_index(model, layer, tiny_val_slice, filters=filters, device="cuda", progress=False)
    _within_one_image(gpu, cpu, num_images(tiny_val_slice))


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_channels_last_matches_naive_and_leaves_the_model_alone(tv_alexnet, layer):
    model, x, y = tv_alexnet
    ks = list(range(0, 64 if layer == "conv1" else 192, 8))
    cl = Engine(model, layer, (x, y), channels_last=True)
    assert cl.channels_last
    contiguous = Engine(model, layer, (x, y), channels_last=False)
    a, b = cl.evaluate([1], ks), contiguous.evaluate([1], ks)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    naive = car_index_naive(model, layer, (x, y), filters=ks, pruned=[1])
    assert (a[1].sum(dim=1).numpy() == (naive["accuracy"].to_numpy() * len(y)).round()).all()
    assert all(p.is_contiguous() for p in model.parameters()), "the caller's model is untouched"
