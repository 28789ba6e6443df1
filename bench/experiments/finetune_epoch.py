"""Seconds per fine-tuning epoch of ``alexnet-tiny`` on Tiny ImageNet train, extrapolated from a
fraction of an epoch.

The network is the committed one with half of conv1's filters removed (32 of 64, the lowest
indices: the cost does not depend on which). The images are random uint8 pixels of Tiny
ImageNet train's shape (64x64x3, 200 classes): a step costs the same whatever the pixels, and
the 100,000 decoded images need not be in memory. ``--steps`` optimizer steps of the recipe
(:func:`carlib.finetune.finetune`, batch 128, augmentation, checkpoint) are timed after one
warm-up step, and scaled to an epoch's 781 steps; the evaluation of the 10,000 val images is
timed on ``--eval-images`` and scaled. Output: one CSV line on stdout.

    nice -n 10 .venv/bin/python bench/experiments/finetune_epoch.py --threads 1 --steps 20
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

from carlib import load_model, prune_filters
from carlib.data import ImageDataset
from carlib.finetune import finetune, finetune_config
from carlib.train import evaluate


def _images(n: int, seed: int) -> ImageDataset:
    g = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(200)]
    return ImageDataset("tiny-imagenet", "train", g.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                        np.arange(n) % 200, names, names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps (at least 4)")
    ap.add_argument("--eval-images", type=int, default=1000)
    args = ap.parse_args(argv)
    small = prune_filters(load_model("alexnet-tiny"), "conv1", range(32))
    times = []
    with tempfile.TemporaryDirectory() as work:
        for steps in (3, 3 + args.steps):  # the difference drops start-up and the checkpoint
            t0 = time.perf_counter()
            # two epochs of `steps` steps each (the schedule needs five steps in all)
            finetune(small, _images(128 * steps, 0), config=finetune_config(
                2, batch_size=128, threads=args.threads), work_dir=f"{work}/{steps}", progress=False)
            times.append(time.perf_counter() - t0)
    per_step = (times[1] - times[0]) / (2 * args.steps)
    val = _images(args.eval_images, 1)
    t0 = time.perf_counter()
    evaluate(small, val)
    per_image = (time.perf_counter() - t0) / args.eval_images
    print("machine,threads,steps_timed,seconds_per_step,epoch_seconds,val_eval_seconds")
    print(f"{platform.machine()} {os.cpu_count()} cores,{torch.get_num_threads()},{2 * args.steps},"
          f"{per_step:.3f},{per_step * (100_000 // 128):.0f},{per_image * 10_000:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
