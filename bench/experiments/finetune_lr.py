"""Is the fine-tuning peak learning rate stable on the BatchNorm-folded ``alexnet-tiny``?

conv1's even filters (32 of 64) are removed; each learning rate fine-tunes one epoch on the
first 25 val images of every class (5,000, 39 steps of the ``carlib train`` recipe) and is
tested on the other 25 (5,000). Output: one line per learning rate on stdout.

    nice -n 10 .venv/bin/python bench/experiments/finetune_lr.py 0.008 0.08
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

import carlib
from carlib.finetune import finetune, finetune_config
from carlib.train import evaluate


def main(argv: list[str] | None = None) -> int:
    lrs = [float(a) for a in (sys.argv[1:] if argv is None else argv)] or [0.008]
    val = carlib.load_dataset("tiny-imagenet", "val", progress=False)
    tune, test = [], []
    for c in range(val.num_classes):
        idx = np.flatnonzero(val.labels == c)
        tune += list(idx[:25])
        test += list(idx[25:])
    tune_ds, test_ds = val.subset(np.array(tune)), val.subset(np.array(test))
    model = carlib.load_model("alexnet-tiny")
    small = carlib.prune_filters(model, "conv1", range(0, 64, 2))
    print(f"unpruned top-1 {evaluate(model, test_ds)[0]:.4f}, pruned {evaluate(small, test_ds)[0]:.4f}")
    for lr in lrs:
        t0 = time.time()
        with tempfile.TemporaryDirectory() as work:
            tuned, log = finetune(small, tune_ds, None, finetune_config(1, lr=lr, threads=2),
                                  work_dir=work, progress=False)
        print(f"lr {lr}: train loss {log['train_loss'].iloc[-1]}, test top-1 "
              f"{evaluate(tuned, test_ds)[0]:.4f} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
