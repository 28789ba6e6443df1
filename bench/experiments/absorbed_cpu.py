"""Measured: the share of (image, filter) pairs whose input to the first convolution after the
consumer is bitwise the unpruned one (``bench/results/cpu-zen4/absorbed-vm-cpu-zen4.log``).

The ReLU and max pooling between the consumer and the next convolution can absorb a pruned
filter; such a pair could reuse the unpruned logits exactly. Also printed: the mean share of
that input's entries a pruned filter changes (a sparse update of the next layers would need it
small). The consumer output with filter ``k`` pruned is computed as the naive loop defines it,
the consumer run on its input with channel ``k`` zeroed. ``alexnet-tiny`` on Tiny ImageNet val
(every fifth of the 2,000 images of 10 per class: 400).

Usage: ``.venv/bin/python bench/experiments/absorbed_cpu.py [--layer conv1] [--images 400]``
"""

import argparse

import numpy as np
import torch

import carlib
from carlib.data import as_batches
from carlib.graph import analyze, run_nodes

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--layer", default="conv1")
p.add_argument("--images", type=int, default=400)
args = p.parse_args()
torch.set_grad_enabled(False)

val = carlib.load_dataset("tiny-imagenet", "val", per_class=10, progress=False)
data = val.subset(np.arange(0, 2000, 5)[: args.images])
plan = analyze(carlib.load_model("alexnet-tiny").eval(), args.layer)
gm = plan.gm
consumer = gm.get_submodule(plan.consumer)
placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
# the nodes after the consumer up to the first convolution: what may absorb a pruned filter
first = next(i for i, n in enumerate(plan.suffix)
             if n.op == "call_module" and isinstance(gm.get_submodule(n.target), torch.nn.Conv2d))
absorbing = plan.suffix[:first]
print("absorbing ops:", [n.target for n in absorbing])

same = total = 0
changed = []
for x, _ in as_batches(data, 256):
    inp = run_nodes(gm, plan.prefix + plan.between, {placeholder: x})
    unpruned = run_nodes(gm, absorbing, {plan.consumer_node: consumer(inp)})
    for k in range(plan.layer.filters):
        zeroed = inp.clone()
        zeroed[:, k] = 0
        pruned = run_nodes(gm, absorbing, {plan.consumer_node: consumer(zeroed)})
        eq = (pruned == unpruned).flatten(1)
        same += int(eq.all(1).sum())
        total += eq.shape[0]
        changed.append(float((~eq).float().mean()))
print(f"{args.layer}: {same}/{total} pairs = {same / total:.4f} with the conv input unchanged; "
      f"mean share of changed entries {np.mean(changed):.3f}")
