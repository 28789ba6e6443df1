"""Measured: the engine's suffix channels-last against contiguous on a GPU
(``bench/results/gpu-h100/channels-last-vm-cuda.log``: conv1 3.41 -> 3.69 s on an H100, why
channels-last is off on GPUs).

conv1 and conv2 of torchvision's AlexNet with random weights (seed 0), 4,000 random 224x224
inputs labeled with its own predictions, 32 filters per evaluate call after a warm-up; also
whether both formats give identical counts.

Usage (a GPU machine): ``.venv/bin/python bench/experiments/cl_cuda.py``
"""

import time

import torch
import torchvision

from carlib.engine import Engine

torch.set_grad_enabled(False)
torch.manual_seed(0)
tv = torchvision.models.alexnet().eval().cuda()
g = torch.Generator().manual_seed(0)
x = torch.randn(4000, 3, 224, 224, generator=g).cuda()
y = torch.cat([tv(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
for layer in ("conv1", "conv2"):
    counts = {}
    for cl in (False, True):
        eng = Engine(tv, layer, (x, y), device="cuda", channels_last=cl, cache_bytes=0)
        eng.evaluate([], [0, 1])  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        _, cand, _ = eng.evaluate([], list(range(32)))
        torch.cuda.synchronize()
        counts[cl] = cand.sum(1)
        print(f"{layer} {'channels_last' if cl else 'contiguous'} {time.perf_counter() - t:.2f} s",
              flush=True)
    print(layer, "identical counts:", bool((counts[True] == counts[False]).all()))
