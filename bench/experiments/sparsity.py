import torch, time, carlib
from carlib.graph import analyze, run_nodes
torch.manual_seed(0)
m = carlib.load_model("alexnet-tiny").eval()
t=time.time()
d = carlib.load_dataset("tiny-imagenet", split="val", per_class=10)
print("data", time.time()-t)
from carlib.datasets import as_batches
for layer in ["conv1","conv2","conv3","conv4"]:
    plan = analyze(m, layer)
    gm = plan.gm
    ph = next(n for n in gm.graph.nodes if n.op=="placeholder")
    print(layer, "consumer", plan.consumer, "suffix", [n.name for n in plan.suffix][:6])
    zero_frac=[]; 
    for x,y in as_batches(d, 500):
        with torch.no_grad():
            p = run_nodes(gm, plan.prefix+plan.between, {ph:x})
        if p.ndim==4:
            z = (p.flatten(2)==0).all(2).float()  # N,C
        else:
            z = (p.view(p.shape[0], plan.layer.filters, -1)==0).all(2).float()
        zero_frac.append(z)
    z=torch.cat(zero_frac)
    print(layer, "pairs with all-zero consumer-input channel: %.3f"%z.mean().item(),
          "per filter quantiles", z.mean(0).quantile(torch.tensor([0.,.25,.5,.75,1.])).tolist())
