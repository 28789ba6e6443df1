"""Measured: the engine's time on a GPU against its prefix batch and (image, filter) pairs per
pass (``bench/results/gpu-h100/pairs-vm-cuda.log``: conv1 3.28 -> 1.79 s and conv2 2.78 -> 1.29 s
from 256 to 1024 on an H100, the GPU defaults).

conv1 and conv2 of torchvision's AlexNet with random weights (seed 0), 4,096 random 224x224
inputs labeled with its own predictions, 32 filters per evaluate call after a warm-up; also
whether the counts stay identical and the peak GPU memory.

Usage (a GPU machine): ``.venv/bin/python bench/experiments/pairs_cuda.py``
"""

import time

import torch
import torchvision

from carlib.engine import Engine

torch.set_grad_enabled(False)
torch.manual_seed(0)
tv = torchvision.models.alexnet().eval().cuda()
g = torch.Generator().manual_seed(0)
x = torch.randn(4096, 3, 224, 224, generator=g).cuda()
y = torch.cat([tv(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
for layer in ("conv1", "conv2"):
    ref = None
    for pairs in (256, 1024, 4096, 8192):
        for batch in (256, 1024):
            if pairs < batch:
                continue
            eng = Engine(tv, layer, (x, y), device="cuda", pair_batch=pairs, batch_size=batch,
                         cache_bytes=0)
            eng.evaluate([], [0, 1])  # warm-up
            torch.cuda.synchronize()
            t = time.perf_counter()
            _, cand, _ = eng.evaluate([], list(range(32)))
            torch.cuda.synchronize()
            dt = time.perf_counter() - t
            same = ref is None or bool((cand == ref).all())
            ref = cand if ref is None else ref
            print(f"{layer} pair_batch {pairs} batch {batch} {dt:.2f} s same counts {same} "
                  f"mem {torch.cuda.max_memory_allocated() / 2**30:.1f} GB", flush=True)
            torch.cuda.reset_peak_memory_stats()
