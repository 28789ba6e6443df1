"""carlib.engine.core: both paths against the naive reference, and the GPU against the CPU.

Tolerance on a GPU (those tests are skipped without one): cuDNN and cuBLAS sum in another
order than the CPU, so a logit can differ in its last bits and an image whose two best classes
are tied to within that rounding may be classified differently. We therefore require, for
every evaluated network (the unpruned one and each single-filter pruning), that its number of
correct images on the GPU is within **1 image** of the CPU's, that at least 90 % of the CAR
values are bit-identical, and that the greedy pruning order is the same. TF32 is off inside
the engine (:func:`carlib.engine.strict_fp32`); with TF32 the differences would be larger.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from carlib import car_index, car_index_naive, greedy_prune
from carlib.data import num_images
from carlib.engine import Engine
from carlib.errors import CarlibError

from conftest import requires_tiny, self_labeled

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


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
    ks = list(range(0, 64, 8)) if layer == "conv1" else list(range(0, 192, 16))
    cl = Engine(model, layer, (x, y), channels_last=True)
    assert cl.channels_last
    contiguous = Engine(model, layer, (x, y), channels_last=False)
    a, b = cl.evaluate([1], ks), contiguous.evaluate([1], ks)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    naive = car_index_naive(model, layer, (x, y), filters=ks, pruned=[1])
    assert (a[1].sum(dim=1).numpy() == (naive["accuracy"].to_numpy() * len(y)).round()).all()
    assert all(p.is_contiguous() for p in model.parameters()), "the caller's model is untouched"


def _counts(naive, n):
    return (naive["accuracy"].to_numpy() * n).round().astype(int)


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
@pytest.mark.parametrize("precision", ["fp32", "bf16-checked"])
def test_precisions_match_naive_bn_net(bn_net, layer, precision):
    model, x, y = bn_net
    naive = car_index_naive(model, layer, (x, y), per_class=True)
    fast = car_index(model, layer, (x, y), per_class=True, progress=False, precision=precision)
    assert fast.attrs["precision"] == precision
    assert (fast[["filter", "class", "n"]].to_numpy() == naive[["filter", "class", "n"]].to_numpy()).all()
    assert (fast["accuracy"].to_numpy() == naive["accuracy"].to_numpy()).all()
    assert (fast["car"].to_numpy() == naive["car"].to_numpy()).all()


@pytest.mark.parametrize("method", ["fast", "masked"])
def test_labels_outside_the_model_outputs_are_a_clear_error(bn_net, method):
    model, x, y = bn_net  # 7 classes
    bad = y.clone()
    bad[0] = 7
    with pytest.raises(CarlibError, match=r"labels run from 0 to 7 but the model has 7 outputs"):
        Engine(model, "conv2", (x, bad), method=method).evaluate([], [0])
    with pytest.raises(CarlibError, match="labels run from -1"):
        Engine(model, "conv2", (x, bad - 1), method=method).evaluate_prefixes([0, 1])


def test_precision_choice_and_errors(bn_net):
    from carlib.engine import fast_bf16

    model, x, y = bn_net
    auto = Engine(model, "conv2", (x, y))
    assert auto.precision == ("bf16-checked" if fast_bf16("cpu") else "fp32")
    assert Engine(model, "conv2", (x, y), method="masked", precision="bf16-checked").precision == "fp32"
    with pytest.raises(CarlibError, match="unknown precision"):
        Engine(model, "conv2", (x, y), precision="fp16")
    with pytest.raises(CarlibError, match="screen_safety"):
        Engine(model, "conv2", (x, y), precision="bf16-checked", screen_safety=0.5)
    with pytest.raises(CarlibError, match="unknown precision"):
        car_index(model, "conv2", (x, y), precision="half", progress=False)


@pytest.mark.parametrize("consumer", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, padding="same"),          # string padding: the grouped-convolution path
    dict(kernel_size=(3, 2), stride=2, dilation=(1, 2), padding=(2, 1)),
    dict(kernel_size=1),
])
@pytest.mark.parametrize("channels_last", [True, False])
def test_consumer_geometries_match_naive(consumer, channels_last):
    """The pruned copies of the consumer output (im2col products subtracted from it) equal the
    naive masked network for any kernel, stride, dilation and padding, in both memory formats."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, **consumer), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5),
    ).eval()
    model[-1].bias.data.zero_()  # let the input, not the bias, decide the class
    x = torch.randn(60, 3, 12, 12)
    y = self_labeled(model, x, keep=0.7) % 5
    eng = Engine(model, "0", (x, y), channels_last=channels_last, precision="fp32")
    assert eng.method == "fast" and eng.channels_last == channels_last
    base, cand, _ = eng.evaluate([2], [0, 1, 3, 4, 5])
    naive = car_index_naive(model, "0", (x, y), filters=[0, 1, 3, 4, 5], pruned=[2])
    assert (cand.sum(dim=1).numpy() == _counts(naive, len(y))).all()
    assert len(set(cand.sum(dim=1).tolist())) > 1, "pruning should change some counts"


@pytest.mark.parametrize("method,limit,retries", [("fast", 40, 3), ("masked", 20, 1)])
def test_out_of_memory_halves_the_pairs_per_pass_with_the_same_counts(bn_net, monkeypatch, method,
                                                                      limit, retries):
    """A CUDA out-of-memory error, injected where a pass allocates its rows, makes the engine
    retry with half the pairs per pass (then half the images) until a pass fits."""
    from carlib import car_index, greedy_prune
    from carlib.engine.fast import FastPath

    model, x, y = bn_net
    x, y = x[:40], y[:40]
    expected = car_index(model, "conv1", (x, y), progress=False, method=method, batch_size=32)
    steps = greedy_prune(model, "conv1", (x, y), n_remove=1, progress=False, method=method, batch_size=32)
    rows = []

    def check(n):
        rows.append(n)
        if n > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    if method == "fast":
        real = FastPath._pairs_buffer

        def buffer(self, z, g):
            check(z.shape[0] * g)
            return real(self, z, g)

        monkeypatch.setattr(FastPath, "_pairs_buffer", buffer)
    else:
        forward = model.forward

        def limited(inp):
            check(inp.shape[0])
            return forward(inp)

        monkeypatch.setattr(model, "forward", limited)
    got = car_index(model, "conv1", (x, y), progress=False, method=method, batch_size=32)
    pd.testing.assert_frame_equal(got, expected)
    assert got.attrs["oom_retries"] == retries and max(rows) > limit
    assert "oom_retries" not in expected.attrs
    again = greedy_prune(model, "conv1", (x, y), n_remove=1, progress=False, method=method, batch_size=32)
    pd.testing.assert_frame_equal(again, steps)
