"""Measured: CAR pairs per second of ``mobilenet_v2-coral`` at 224x224 on the CPU by images per
batch (the engine's suffix pass holds one batch of images per filter), and whether the CAR
values stay the same (the CPU batch rule for large inputs in ``bench/README.md``).

The first 64 ``imagenet-sample`` photos, 8 filters of ``features.0.0``; each batch size timed
once after a warm-up pass, plus an 8-deep pruning curve (``Engine.evaluate_prefixes``).

Usage: ``CARLIB_DATA_DIR=... .venv/bin/python bench/experiments/batch_cpu.py``
"""

import time

import torch

import carlib
from carlib.engine import Engine

torch.set_grad_enabled(False)
model = carlib.load_model("mobilenet_v2-coral").eval()
data = carlib.load_dataset("imagenet-sample", "val", progress=False).subset(range(64))
filters = list(range(0, 32, 4))
reference = None
for batch in (64, 32, 16, 8):
    eng = Engine(model, "features.0.0", data, batch_size=batch)
    eng.evaluate([], filters[:1])  # warm-up, fills the prefix cache
    t = time.perf_counter()
    base, rows, _ = eng.evaluate([], filters)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    eng.evaluate_prefixes(filters)
    dc = time.perf_counter() - t
    counts = (base.sum().item(), rows.sum(dim=1).tolist())
    reference = reference or counts
    print(f"batch {batch:3d}: {len(filters) * len(data) / dt:5.1f} pairs/s, curve {dc:5.1f} s "
          f"({(len(filters) + 1) * len(data) / dc:5.1f} images/s), "
          f"counts {'same' if counts == reference else 'DIFFERENT'}", flush=True)
