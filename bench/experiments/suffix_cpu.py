"""Measured: GMAC/s of the layers after the consumer on the CPU, contiguous against
channels-last, by (image, filter) pairs per pass (the ~256-pair passes and channels-last
suffix in ``bench/README.md``: 44 -> 59 -> 85 GMAC/s on conv1's suffix).

Random consumer outputs of the shape the suffix of conv1 and of conv2 of ``alexnet-tiny``
receives; each size timed three times after a warm-up; beside it the 4096^3 fp32 product.

Usage: ``.venv/bin/python bench/experiments/suffix_cpu.py``
"""

import time

import torch

import carlib
from carlib.graph import analyze, run_nodes

torch.set_grad_enabled(False)
model = carlib.load_model("alexnet-tiny").eval()
a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
torch.mm(a, b)
t = time.perf_counter()
torch.mm(a, b)
print(f"peak mm {4096**3 / (time.perf_counter() - t) / 1e9:.1f} GMAC/s")
table = carlib.count(model, (3, 64, 64), per_layer=True)
names = list(table["layer"])
for layer in ("conv1", "conv2"):
    plan = analyze(model, layer)
    suffix_macs = int(table["macs"].iloc[names.index(plan.consumer) + 1 :].sum())
    # the consumer output's shape, from one image through the network
    placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
    inp = run_nodes(plan.gm, plan.prefix + plan.between, {placeholder: torch.zeros(1, 3, 64, 64)})
    shape = tuple(plan.gm.get_submodule(plan.consumer)(inp).shape[1:])
    for pairs in (128, 256, 512, 768, 1024):
        z = torch.randn(pairs, *shape)
        for fmt in (torch.contiguous_format, torch.channels_last):
            gm = plan.gm.to(memory_format=fmt)
            zz = z.contiguous(memory_format=fmt)
            run_nodes(gm, plan.suffix, {plan.consumer_node: zz.clone()})  # warm-up
            t = time.perf_counter()
            for _ in range(3):
                run_nodes(gm, plan.suffix, {plan.consumer_node: zz.clone()})
            dt = (time.perf_counter() - t) / 3
            name = "channels_last" if fmt == torch.channels_last else "contiguous"
            print(f"{layer} {pairs} pairs {name}: {dt:.3f} s, "
                  f"{pairs * suffix_macs / dt / 1e9:.1f} GMAC/s", flush=True)
    plan.gm.to(memory_format=torch.contiguous_format)
