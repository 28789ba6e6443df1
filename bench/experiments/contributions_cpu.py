"""Measured: the consumer output with one filter pruned, ``z - contribution``, built two ways
(``bench/results/cpu-zen4/contributions-vm-cpu-zen4.log``: 14.3 -> 5.9 ms per 250 pairs).

A single-input-channel grouped convolution and a subtraction (the earlier engine) against an
im2col product subtracted by one ``baddbmm`` (the current one), channels-last, with the shape of
conv1's consumer in ``alexnet-tiny`` (64 -> 192 channels, 5x5, 11x11) on random activations.
Prints ms per pass (best of 10) and whether both results are identical.

Usage: ``.venv/bin/python bench/experiments/contributions_cpu.py``
"""
import time

import torch
import torch.nn.functional as F

torch.manual_seed(0)
CL = torch.channels_last


def best(f, n=10):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts) * 1e3


for n, g in [(250, 1), (64, 4), (40, 6)]:
    c, o, h, r = 64, 192, 11, 25
    p = torch.relu(torch.randn(n, c, h, h)).contiguous(memory_format=CL)
    w = torch.randn(o, c, 5, 5)
    z = F.conv2d(p, w, padding=2).contiguous(memory_format=CL)
    ks = list(range(3, 3 + g))

    def conv_then_sub():
        x = p[:, ks].contiguous(memory_format=CL)
        wg = w[:, ks].transpose(0, 1).reshape(g * o, 1, 5, 5)
        cc = F.conv2d(x, wg, None, 1, 2, 1, groups=g).unflatten(1, (g, o))
        zk = torch.empty((n * g, o, h, h), memory_format=CL)
        torch.sub(z.unsqueeze(1), cc, out=zk.unflatten(0, (n, g)))
        return zk

    def baddbmm():
        u = F.unfold(p[:, ks], 5, padding=2).view(n, g, r, h * h)
        wt = w[:, ks].permute(1, 2, 3, 0).reshape(g, r, o)
        zk = torch.empty((n * g, o, h, h), memory_format=CL)
        v = zk.unflatten(0, (n, g))
        z3 = z.permute(0, 2, 3, 1).reshape(n, h * h, o)
        for j in range(g):
            torch.baddbmm(z3, u[:, j].transpose(1, 2), wt[j].expand(n, r, o), alpha=-1,
                          out=v[:, j].permute(0, 2, 3, 1).view(n, h * h, o))
        return zk

    print(f"{n} images x {g} filters: conv + sub {best(conv_then_sub):.2f} ms, "
          f"baddbmm {best(baddbmm):.2f} ms, identical {torch.equal(conv_then_sub(), baddbmm())}")
