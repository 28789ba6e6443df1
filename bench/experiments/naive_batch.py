"""Is the naive reference itself batch-size dependent on the GPU? (fp32, TF32 off)"""
import torch, torchvision
from carlib.reference import car_index_naive
torch.set_grad_enabled(False)
torch.manual_seed(0)
tv = torchvision.models.alexnet().eval().cuda()
g = torch.Generator().manual_seed(0)
x = torch.randn(10000, 3, 224, 224, generator=g).cuda()
torch.backends.cudnn.allow_tf32 = False; torch.backends.cuda.matmul.allow_tf32 = False
y = torch.cat([tv(x[i:i+256]).argmax(1) for i in range(0, len(x), 256)])
a = car_index_naive(tv, "conv1", (x, y), batch_size=256, device="cuda")
b = car_index_naive(tv, "conv1", (x, y), batch_size=1024, device="cuda")
d = (a["car"] - b["car"]).abs()
print("naive batch 256 vs 1024, conv1 of random AlexNet, 10,000 images: %d/64 CARs differ, max %.4f" % ((d > 0).sum(), d.max()))
print("base accuracy", a.attrs["base_accuracy"], b.attrs["base_accuracy"])
