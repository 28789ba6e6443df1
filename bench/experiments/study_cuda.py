"""The smoke profile's study on the GPU, compared with the same study on the CPU."""
import time
import numpy as np, pandas as pd, torch
from carlib.experiments import Study
out = {}
for dev in ("cpu", "cuda"):
    t = time.time()
    s = Study("smoke", device=dev, force=True, progress=False)
    out[dev] = {"car1": s.car("conv1"), "car2": s.car("conv2"), "greedy1": s.greedy("conv1"),
                "curves1": s.curves("conv1"), "acc": s.accuracy_per_class()}
    print(dev, "study done in %.1f s" % (time.time() - t), flush=True)
for k in out["cpu"]:
    a, b = out["cpu"][k], out["cuda"][k]
    num = a.select_dtypes("number").columns
    d = (a[num] - b[num]).abs().max().max()
    print(k, "rows", len(a), len(b), "max abs diff cpu vs cuda", d)
print("greedy order cpu ", list(out["cpu"]["greedy1"]["filter"]))
print("greedy order cuda", list(out["cuda"]["greedy1"]["filter"]))
