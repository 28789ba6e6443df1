"""Share of (image, filter) pairs the checked-bf16 screen must recompute in fp32, by screen rule.

conv1 of alexnet-tiny, 400 Tiny ImageNet val images x 32 filters; every pair computed in bf16
and in fp32. Rules: the gap between the two largest logits (the old screen) and the label's
margin (decision_margin, the current one), both at 2 * 4 * (largest bf16 error); the label's
margin against 4 * (largest error of the margin itself); the error relative to the row's largest
logit; and the classifier's first two layers kept in fp32.
"""
import copy
import sys

import numpy as np
import torch

import carlib
from carlib.engine import Engine, _Fp32Input, decision_margin
from carlib.graph import run_nodes

torch.set_grad_enabled(False)
layer = sys.argv[1] if len(sys.argv) > 1 else "conv1"
val = carlib.load_dataset("tiny-imagenet", "val", per_class=10, progress=False)
eng = Engine(carlib.load_model("alexnet-tiny"), layer, val.subset(np.arange(0, 2000, 5)),
             precision="bf16-checked")
mods = [n.target for n in eng.plan.suffix if n.op == "call_module"]
last = [t for t in mods if any(True for _ in eng.plan.gm.get_submodule(t).parameters())][-1]


def low_copy(fp32_mods):
    gm = copy.deepcopy(eng.plan.gm)
    for t in mods:
        if t not in fp32_mods and t != last:
            gm.get_submodule(t).to(torch.bfloat16)
    for t in [*fp32_mods, last]:
        gm.set_submodule(t, _Fp32Input(gm.get_submodule(t)))
    return gm


variants = {"bf16 suffix": [], "fc1, fc2 in fp32": ["classifier.1", "classifier.4"]}
lows = {k: low_copy(v) for k, v in variants.items()}
out = {k: [] for k in variants}
exact, labels = [], []
for p, y in eng._consumer_inputs():
    z = eng._consumer()(p)
    for k in range(0, eng.n_filters, max(1, eng.n_filters // 32)):
        zk = eng._without_each(p, z, [k])
        exact.append(eng._suffix(zk.clone()))
        labels.append(y)
        for name, gm in lows.items():
            out[name].append(run_nodes(gm, eng.plan.suffix, {eng.plan.consumer_node: zk.to(torch.bfloat16)}).float())
ex, y = torch.cat(exact), torch.cat(labels)


def signed(lg):
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
