"""Measured: the share of (image, filter) pairs the checked-bf16 screen must recompute in fp32,
by screen rule (``bench/results/cpu-zen4/screen-vm-cpu-zen4.log``: top-2 gap 0.200 against
label margin 0.073 on 12,800 conv1 pairs).

Every pair is computed in bf16 (the layers after the consumer in bf16, the logits layer in fp32,
as :mod:`carlib.engine.screen` runs them) and in fp32. Rules, at a fixed error ``err`` (the
largest bf16-vs-fp32 logit difference over all pairs): the gap between the two largest logits
(the first screen) and the label's margin (:func:`carlib.engine.decision_margin`, the current
screen), both against ``8 * err`` (``2 * safety * err``, safety 4); the label's margin against
``4 *`` the largest error of the margin itself; and the error relative to the row's largest
logit. A second variant keeps the classifier's first two layers in fp32 too. The pruned
consumer output is the consumer run on its input with the filter's channel zeroed.
``alexnet-tiny`` on 400 Tiny ImageNet val images x 32 filters.

Usage: ``.venv/bin/python bench/experiments/screen_cpu.py [--layer conv1] [--images 400] [--filters 32]``
"""

import argparse
import copy

import numpy as np
import torch

import carlib
from carlib.data import as_batches
from carlib.engine import decision_margin
from carlib.engine.screen import Fp32Input
from carlib.graph import analyze, run_nodes

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--layer", default="conv1")
p.add_argument("--images", type=int, default=400)
p.add_argument("--filters", type=int, default=32)
args = p.parse_args()
torch.set_grad_enabled(False)

val = carlib.load_dataset("tiny-imagenet", "val", per_class=10, progress=False)
data = val.subset(np.arange(0, 2000, 5)[: args.images])
plan = analyze(carlib.load_model("alexnet-tiny").eval(), args.layer)
gm = plan.gm
consumer = gm.get_submodule(plan.consumer)
placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
mods = [n.target for n in plan.suffix if n.op == "call_module"]
last = [t for t in mods if any(True for _ in gm.get_submodule(t).parameters())][-1]


def low_copy(fp32_mods: list[str]) -> torch.fx.GraphModule:
    """The network with the layers after the consumer in bf16 but ``fp32_mods`` and the last."""
    low = copy.deepcopy(gm)
    for t in mods:
        if t not in fp32_mods and t != last:
            low.get_submodule(t).to(torch.bfloat16)
    for t in [*fp32_mods, last]:
        low.set_submodule(t, Fp32Input(low.get_submodule(t)))
    return low


variants = {"bf16 suffix": [], "fc1, fc2 in fp32": ["classifier.1", "classifier.4"]}
lows = {k: low_copy(v) for k, v in variants.items()}
out: dict[str, list[torch.Tensor]] = {k: [] for k in variants}
exact, labels = [], []
step = max(1, plan.layer.filters // args.filters)
for x, y in as_batches(data, 256):
    inp = run_nodes(gm, plan.prefix + plan.between, {placeholder: x})
    for k in range(0, plan.layer.filters, step):
        zeroed = inp.clone()
        zeroed[:, k] = 0
        zk = consumer(zeroed)
        exact.append(run_nodes(gm, plan.suffix, {plan.consumer_node: zk.clone()}))
        labels.append(y)
        for name, low in lows.items():
            out[name].append(run_nodes(low, plan.suffix,
                                       {plan.consumer_node: zk.to(torch.bfloat16)}).float())
ex, y = torch.cat(exact), torch.cat(labels)


def signed(lg: torch.Tensor) -> torch.Tensor:
    """The label's logit minus the largest other logit."""
    return lg.gather(1, y[:, None]).squeeze(1) - lg.scatter(1, y[:, None], float("-inf")).amax(1)


for name in variants:
    lo = torch.cat(out[name])
    err = float((lo - ex).abs().max())
    top = lo.topk(2, dim=1).values
    gap, margin = top[:, 0] - top[:, 1], decision_margin(lo, y)
    merr = float((signed(lo) - signed(ex)).abs().max())
    rel = (lo - ex).abs().amax(1) / lo.abs().amax(1)
    print(f"{name}: {len(y)} pairs, largest bf16 logit error {err:.4f}")
    print(f"  recomputed: top-2 gap {float((gap <= 8 * err).float().mean()):.3f}, "
          f"label margin {float((margin <= 8 * err).float().mean()):.3f}, "
          f"label margin vs its own error {float((margin <= 4 * merr).float().mean()):.3f}, "
          f"relative error {float((margin <= 8 * float(rel.max()) * lo.abs().amax(1)).float().mean()):.3f}")
