"""carlib.train: the training recipe of alexnet-tiny, on a few synthetic images."""

from __future__ import annotations

import json

import numpy as np
import pytest
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


def test_the_recipe_decays_weights_not_vectors_and_evaluates_few_classes():
    from carlib.compression import prune_weights, share_weights
    from conftest import TinyNet, prototype_images

    net = share_weights(prune_weights(TinyNet(), "conv2", 0.5), "conv2", bits=2)
    opt, sched = T.sgd_one_cycle(net, T.TrainConfig(epochs=2, lr=0.1), steps_per_epoch=5)
    decay, no_decay = (sum(p.numel() for p in g["params"]) for g in opt.param_groups)
    assert decay == 6 * 3 * 9 + 4 * 8  # conv1 and linear weights
    assert no_decay == 6 + 3 + 8 + 4  # biases and conv2's shared values (3: one code is the zero)
    assert opt.param_groups[0]["weight_decay"] > 0 == opt.param_groups[1]["weight_decay"]
    assert sched.get_last_lr()[0] == pytest.approx(0.01)  # the one-cycle start: lr / 10
    top1, top5 = T.evaluate(net, prototype_images(n=8))  # 4 classes: top-5 counts every image
    assert top5 == 1.0 and 0 <= top1 <= 1
