"""Measured: the share of (image, filter) pairs whose consumer-input channel is all zero, the
pairs an exact skip could leave out (0.3 % for conv1, 0.4 % for conv2 of ``alexnet-tiny``,
quoted in ``bench/README.md``).

Such a pair's pruned network is the unpruned one, so its answer is known without a pass.
``alexnet-tiny`` on Tiny ImageNet val, 10 images per class (2,000), for conv1-conv4; the
quantiles are over filters.

Usage: ``.venv/bin/python bench/experiments/sparsity.py [--per-class 10]``
"""

import argparse

import torch

import carlib
from carlib.data import as_batches
from carlib.graph import analyze, run_nodes

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--per-class", type=int, default=10)
args = p.parse_args()
torch.set_grad_enabled(False)

model = carlib.load_model("alexnet-tiny").eval()
data = carlib.load_dataset("tiny-imagenet", "val", per_class=args.per_class, progress=False)
for layer in ("conv1", "conv2", "conv3", "conv4"):
    plan = analyze(model, layer)
    placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
    zero = []
    for x, _ in as_batches(data, 500):
        inp = run_nodes(plan.gm, plan.prefix + plan.between, {placeholder: x})
        per_channel = inp.view(inp.shape[0], plan.layer.filters, -1)  # (N, C, positions)
        zero.append((per_channel == 0).all(2).float())
    z = torch.cat(zero)
    q = z.mean(0).quantile(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    print(f"{layer} (consumer {plan.consumer}): pairs with an all-zero consumer-input channel "
          f"{z.mean().item():.3f}; per filter quantiles {[round(v, 3) for v in q.tolist()]}")
