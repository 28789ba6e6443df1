"""Share of (image, filter) pairs whose input to the first convolution after the consumer is
bitwise the unpruned one (the ReLU and max pooling in between absorb the pruned filter): such a
pair could reuse the unpruned logits exactly. conv1 (or argv[1]) of alexnet-tiny, 400 val images."""
import sys

import numpy as np
import torch

import carlib
from carlib.engine import Engine
from carlib.graph import run_nodes
torch.set_grad_enabled(False)
layer = sys.argv[1] if len(sys.argv) > 1 else "conv1"
val = carlib.load_dataset("tiny-imagenet", "val", per_class=10, progress=False)
eng = Engine(carlib.load_model("alexnet-tiny"), layer, val.subset(np.arange(0, 2000, 5)), precision="fp32")
gm = eng.plan.gm
suffix = eng.plan.suffix
# nodes up to the first conv of the suffix
first = next(i for i, n in enumerate(suffix) if n.op == "call_module" and isinstance(gm.get_submodule(n.target), torch.nn.Conv2d))
pre = suffix[:first]
print("absorbing ops:", [n.target for n in pre])
same = tot = 0
frac_changed = []
for p, y in eng._consumer_inputs():
    z = eng._consumer()(p)
    a0 = run_nodes(gm, pre, {eng.plan.consumer_node: z.clone()})
    for k in range(eng.n_filters):
        zk = eng._without_each(p, z, [k])
        ak = run_nodes(gm, pre, {eng.plan.consumer_node: zk})
        eq = (ak == a0).flatten(1)
        same += int(eq.all(1).sum()); tot += eq.shape[0]
        frac_changed.append(float((~eq).float().mean()))
print(f"{layer}: {same}/{tot} pairs = {same/tot:.4f} with the conv input unchanged; mean share of changed entries {np.mean(frac_changed):.3f}")
