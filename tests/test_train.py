"""carlib.train: the training recipe of alexnet-tiny, on a few synthetic images."""

from __future__ import annotations

import json

import numpy as np
import torch

import carlib.train as T
from carlib.data import ImageDataset
from carlib.files import sha256_file
from carlib.models import AlexNetTiny, load_checkpoint


def _fake(split: str, n: int) -> ImageDataset:
    g = np.random.default_rng(0 if split == "train" else 1)
    return ImageDataset("tiny-imagenet", split, g.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                        np.arange(n) % 8, [f"n{i}" for i in range(8)], [f"c{i}" for i in range(8)])


def test_training_is_deterministic_and_writes_everything_atomically(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "load_dataset", lambda name, split, **k: _fake(split, 64 if split == "train" else 16))
    cfg = T.TrainConfig(epochs=1, batch_size=32, lr=0.01, threads=1)
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run / "w.pt"
        meta = T.train_alexnet_tiny(cfg, out=out, work_dir=tmp_path / run / "work", progress=False,
                                    command="test")
        assert meta["sha256"] == sha256_file(out) == (out.with_suffix(".sha256")).read_text().split()[0]
        assert json.loads(out.with_suffix(".json").read_text())["config"]["epochs"] == 1
        assert (tmp_path / run / "w.log.csv").read_text().count("\n") == 2  # header + 1 epoch
        assert not list((tmp_path / run).glob("*.tmp*"))
        outs.append(load_checkpoint(AlexNetTiny(num_classes=8), out).state_dict())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    # the folded network has no BatchNorm: conv -> ReLU -> pool, as the committed weights
    assert not any("running_mean" in k for k in outs[0])
