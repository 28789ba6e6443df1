"""Engine on the GPU: channels-last vs contiguous suffix, time and agreement."""
import time, torch, torchvision
from carlib.engine import Engine
torch.set_grad_enabled(False)
torch.manual_seed(0)
tv = torchvision.models.alexnet().eval().cuda()
g = torch.Generator().manual_seed(0)
x = torch.randn(4000, 3, 224, 224, generator=g).cuda()
y = torch.cat([tv(x[i:i+256]).argmax(1) for i in range(0, len(x), 256)])
for layer in ("conv1", "conv2"):
    res = {}
    for cl in (False, True):
        eng = Engine(tv, layer, (x, y), device="cuda", channels_last=cl, cache_bytes=0)
        eng.evaluate([], [0, 1])
        torch.cuda.synchronize(); t = time.perf_counter()
        b, c, n = eng.evaluate([], list(range(32)))
        torch.cuda.synchronize(); dt = time.perf_counter() - t
        res[cl] = c.sum(1)
        print(layer, "channels_last" if cl else "contiguous", "%.2f s" % dt, flush=True)
    print(layer, "identical counts:", bool((res[True] == res[False]).all()))
