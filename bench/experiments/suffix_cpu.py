import torch, time, carlib
from carlib.graph import analyze, run_nodes
torch.set_grad_enabled(False)
m = carlib.load_model("alexnet-tiny").eval()
a = torch.randn(4096,4096); b=torch.randn(4096,4096); torch.mm(a,b)
t=time.perf_counter(); torch.mm(a,b); dt=time.perf_counter()-t; print("peak mm %.1f GMAC/s"%(4096**3/dt/1e9))
for layer, suffix_macs in (("conv1", 80.6e6), ("conv2", 56.7e6)):
    plan = analyze(m, layer)
    cons = plan.gm.get_submodule(plan.consumer)
    shape = {"conv1": (192,11,11), "conv2": (384,6,6)}[layer]
    for B in (128, 256, 512, 1024):
        z = torch.randn(B, *shape)
        for fmt in ("cl",):
            gm = plan.gm
            zz = z.contiguous(memory_format=torch.channels_last) if fmt=="cl" else z
            if fmt == "cl":
                gm = plan.gm.to(memory_format=torch.channels_last)
            run_nodes(gm, plan.suffix, {plan.consumer_node: zz.clone()})
            t=time.perf_counter()
            for _ in range(3): out = run_nodes(gm, plan.suffix, {plan.consumer_node: zz.clone()})
            dt=(time.perf_counter()-t)/3
            print(layer, B, fmt, "%.3f s  %.1f GMAC/s"%(dt, B*suffix_macs/dt/1e9), flush=True)
        plan.gm.to(memory_format=torch.contiguous_format)
