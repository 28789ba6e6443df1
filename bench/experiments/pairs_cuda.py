"""Engine on the GPU: time against (image, filter) pairs per suffix pass."""
import time, torch, torchvision
from carlib.engine import Engine
torch.set_grad_enabled(False)
torch.manual_seed(0)
tv = torchvision.models.alexnet().eval().cuda()
g = torch.Generator().manual_seed(0)
x = torch.randn(4096, 3, 224, 224, generator=g).cuda()
y = torch.cat([tv(x[i:i+256]).argmax(1) for i in range(0, len(x), 256)])
for layer in ("conv1", "conv2"):
    ref = None
    for pb in (256, 1024, 4096, 8192):
        for bs in (256, 1024):
            if pb < bs: continue
            eng = Engine(tv, layer, (x, y), device="cuda", pair_batch=pb, batch_size=bs, cache_bytes=0)
            eng.evaluate([], [0, 1])
            torch.cuda.synchronize(); t = time.perf_counter()
            b, c, n = eng.evaluate([], list(range(32)))
            torch.cuda.synchronize(); dt = time.perf_counter() - t
            same = ref is None or bool((c == ref).all()); ref = c if ref is None else ref
            print(layer, "pair_batch", pb, "batch", bs, "%.2f s" % dt, "same counts", same,
                  "mem %.1f GB" % (torch.cuda.max_memory_allocated() / 2**30), flush=True)
            torch.cuda.reset_peak_memory_stats()
