"""carlib.finetune: the training recipe from a given network, resumed bit for bit."""

from __future__ import annotations

import pytest
import torch

import carlib.train as T
from carlib import AlexNetTiny, prune_filters
from carlib.compression import prune_weights, share_weights
from carlib.errors import CarlibError
from carlib.finetune import finetune, finetune_config, load_alexnet_tiny
from carlib.models import save_checkpoint
from conftest import TinyNet, prototype_images


def _start() -> torch.nn.Module:
    torch.manual_seed(0)
    return share_weights(prune_weights(TinyNet(), "conv2", 0.5), "conv2", bits=3)


CFG = finetune_config(3, lr=0.05, batch_size=16, threads=1)


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    data = prototype_images()
    whole, whole_log = finetune(_start(), data, data, CFG, work_dir=tmp_path / "a", progress=False)
    calls = {"n": 0}
    augment = T.augment

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 batches per epoch: the second batch of epoch 2
            raise KeyboardInterrupt
        return augment(*args, **kwargs)

    monkeypatch.setattr(T, "augment", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        finetune(_start(), data, data, CFG, work_dir=tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "finetune.log.csv").read_text().count("\n") == 2  # header + epoch 1
    monkeypatch.setattr(T, "augment", augment)
    torch.manual_seed(123)  # the random state of the process does not matter
    resumed, log = finetune(_start(), data, data, CFG, work_dir=tmp_path / "b", progress=False)
    assert "resuming from epoch 1" in capsys.readouterr().err
    a, b = whole.state_dict(), resumed.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    cols = ["epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr_end"]
    assert log[cols].equals(whole_log[cols]) and len(log) == 3
    assert not list((tmp_path / "b").glob("*.tmp*"))


def test_a_run_killed_inside_an_epoch_resumes_from_the_last_step_checkpoint(tmp_path, monkeypatch, capsys):
    data = prototype_images()
    whole, whole_log = finetune(_start(), data, data, CFG, work_dir=tmp_path / "a", progress=False)
    calls = {"n": 0}
    augment = T.augment

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # 4 batches per epoch: the fourth batch of epoch 2
            raise KeyboardInterrupt
        return augment(*args, **kwargs)

    monkeypatch.setattr(T, "augment", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        finetune(_start(), data, data, CFG, work_dir=tmp_path / "b", progress=False, checkpoint_every=2)
    monkeypatch.setattr(T, "augment", augment)
    torch.manual_seed(123)
    resumed, log = finetune(_start(), data, data, CFG, work_dir=tmp_path / "b", progress=False,
                            checkpoint_every=2)
    assert "resuming from epoch 1, step 2 of epoch 2" in capsys.readouterr().err
    a, b = whole.state_dict(), resumed.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    cols = ["epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr_end"]
    assert log[cols].equals(whole_log[cols]) and len(log) == 3
    with pytest.raises(CarlibError, match="checkpoint_every must be an integer of at least 0"):
        finetune(_start(), data, data, CFG, work_dir=tmp_path / "c", checkpoint_every=-1)


def test_another_start_or_config_starts_over(tmp_path, capsys):
    data = prototype_images()
    cfg = finetune_config(1, lr=0.05, batch_size=8, threads=1)
    finetune(_start(), data, config=cfg, work_dir=tmp_path, progress=False)
    other = prune_weights(TinyNet(), "conv1", 0.5)
    finetune(other, data, config=cfg, work_dir=tmp_path, progress=False)
    finetune(_start(), data, config=finetune_config(1, lr=0.01, batch_size=8, threads=1),
             work_dir=tmp_path, progress=False)
    assert "resuming" not in capsys.readouterr().err


def test_the_start_network_is_not_modified(tmp_path):
    start = _start()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    finetune(start, prototype_images(), config=finetune_config(1, batch_size=8, threads=1),
             work_dir=tmp_path, progress=False)
    assert all(torch.equal(before[k], v) for k, v in start.state_dict().items())


@pytest.mark.parametrize("case,words", [
    ("few", "fewer than the 5 the schedule needs"), ("classes", "the network has 2 outputs"),
    ("work_dir", "cannot create the folder"), ("diverged", "fine-tuning diverged"),
])
def test_bad_input_is_one_line(tmp_path, case, words):
    data, model, work = prototype_images(), TinyNet(), tmp_path / "w"
    cfg = finetune_config(1, batch_size=8, threads=1)
    if case == "few":
        cfg = finetune_config(1, batch_size=16, threads=1)
    elif case == "classes":
        model = TinyNet(classes=2)
    elif case == "diverged":
        cfg = finetune_config(1, lr=1e12, batch_size=8, threads=1)
    else:
        (tmp_path / "file").write_text("x")
        work = tmp_path / "file" / "w"
    with pytest.raises(CarlibError) as err:
        finetune(model, data, config=cfg, work_dir=work, progress=False)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_pruned_checkpoint_loads_with_its_own_shapes(tmp_path):
    torch.manual_seed(0)
    small = prune_filters(AlexNetTiny().eval(), "conv1", range(0, 64, 2))
    save_checkpoint(small.state_dict(), tmp_path / "small.pt")
    loaded = load_alexnet_tiny(tmp_path / "small.pt")
    assert loaded.features[0].out_channels == 32 and loaded.features[3].in_channels == 32
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CarlibError, match="cannot read checkpoint"):
        load_alexnet_tiny(tmp_path / "bad.pt")


def test_the_command_line_default_lr_is_the_library_default():
    from carlib.cli import build_parser
    from carlib.finetune import FINETUNE_LR

    args = build_parser().parse_args(["finetune", "--weights", "x.pt", "--out", "y.pt"])
    assert args.lr == FINETUNE_LR
