"""Measured: how far the naive reference disagrees with itself on a GPU between batch 256 and
1024 (``bench/results/gpu-h100/naive-batch-vm-cuda.log``: 1 of 64 CAR values, by one image).

cuDNN picks its algorithm, and so its summation order, by shape: the same fp32 network (TF32
off) can flip an image whose two best classes are within rounding. conv1 of torchvision's
AlexNet with random weights (seed 0) on 10,000 random 224x224 inputs labeled with its own
predictions.

Usage (a GPU machine): ``.venv/bin/python bench/experiments/naive_batch.py``
"""

import torch
import torchvision

from carlib.reference import car_index_naive

torch.set_grad_enabled(False)
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
torch.manual_seed(0)
tv = torchvision.models.alexnet().eval().cuda()
g = torch.Generator().manual_seed(0)
x = torch.randn(10000, 3, 224, 224, generator=g).cuda()
y = torch.cat([tv(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
a = car_index_naive(tv, "conv1", (x, y), batch_size=256, device="cuda")
b = car_index_naive(tv, "conv1", (x, y), batch_size=1024, device="cuda")
d = (a["car"] - b["car"]).abs()
print(f"naive batch 256 vs 1024, conv1 of random AlexNet, 10,000 images: {int((d > 0).sum())}/64 "
      f"CARs differ, max {float(d.max()):.4f}")
print("base accuracy", a.attrs["base_accuracy"], b.attrs["base_accuracy"])
