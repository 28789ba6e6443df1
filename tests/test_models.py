"""carlib.models: the default network, torchvision models, safe checkpoint loading."""

from __future__ import annotations

import json

import pytest
import torch

from carlib import AlexNetTiny, load_model
from carlib.errors import CarlibError, CheckpointError, DataNotFoundError
from carlib.files import sha256_file
from carlib.models import DEFAULT_WEIGHTS, fold_batchnorm, load_checkpoint


def test_alexnet_tiny_topology():
    m = AlexNetTiny()
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256, 256]
    assert convs[0].kernel_size == (11, 11)
    pools = [i for i, l in enumerate(m.features) if isinstance(l, torch.nn.MaxPool2d)]
    assert len(pools) == 3
    assert [l.out_features for l in m.classifier if isinstance(l, torch.nn.Linear)] == [1024, 1024, 200]
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 200)


def test_fold_batchnorm_preserves_the_function():
    torch.manual_seed(0)
    m = AlexNetTiny(batch_norm=True)
    m.train()
    for _ in range(3):
        m(torch.randn(8, 3, 64, 64))
    m.eval()
    x = torch.randn(4, 3, 64, 64)
    torch.testing.assert_close(fold_batchnorm(m)(x), m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="default weights not trained yet")
def test_committed_default_weights():
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_file(DEFAULT_WEIGHTS)
    assert DEFAULT_WEIGHTS.stat().st_size < 25 * 2**20
    assert meta["val_top1"] >= 0.35 and meta["command"].startswith("python -m carlib train")
    m = load_model("alexnet-tiny")
    assert not m.training and m(torch.zeros(1, 3, 64, 64)).shape == (1, 200)


def test_checkpoint_errors(tmp_path):
    m = AlexNetTiny()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(m, garbage)
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    with pytest.raises(CheckpointError, match="does not fit model AlexNetTiny"):
        load_checkpoint(m, other)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(m, other, sha256="0" * 64)
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": AlexNetTiny}, pickled)  # an arbitrary object: refused
    with pytest.raises(CheckpointError):
        load_checkpoint(m, pickled)
    with pytest.raises(DataNotFoundError, match="not found"):
        load_checkpoint(m, tmp_path / "missing.pt")
    good = tmp_path / "good.pt"
    torch.save(m.state_dict(), good)
    assert load_model("alexnet-tiny", weights=good) is not None


def test_unknown_model():
    with pytest.raises(CarlibError, match="unknown model 'lenet'"):
        load_model("lenet")


def test_torchvision_alexnet_offline_and_from_cache(tmp_path, monkeypatch):
    from torchvision.models import AlexNet_Weights, alexnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fname = AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    with pytest.raises(DataNotFoundError) as err:
        load_model("alexnet")
    assert fname in str(err.value) and str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)
    # the paper profile's code path: weights placed where torchvision looks for them
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    ref = alexnet()
    torch.save(ref.state_dict(), hub / fname)
    m = load_model("alexnet")
    assert not m.training
    torch.testing.assert_close(m.features[0].weight, ref.features[0].weight)
    (hub / fname).write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="delete the file"):
        load_model("alexnet")


def test_module_passes_through():
    m = AlexNetTiny().train()
    assert load_model(m) is m and not m.training
