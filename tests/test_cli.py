"""carlib.cli: commands work end to end; bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from carlib import AlexNetTiny
from carlib.cli import main
from carlib.errors import CarlibError
from test_data import make_tiny


@pytest.fixture
def env(tmp_path, monkeypatch):
    src, home = tmp_path / "shared", tmp_path / "home"
    src.mkdir()
    home.mkdir()
    make_tiny(src, train_per_class=2, val_per_class=4)
    monkeypatch.setenv("CARLIB_DATA_DIR", str(src))
    monkeypatch.setenv("CARLIB_HOME", str(home))
    monkeypatch.setenv("CARLIB_NO_DOWNLOAD", "1")
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(AlexNetTiny(num_classes=200).state_dict(), weights)
    return tmp_path, weights


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0 and "alexnet-tiny" in out and "tiny-imagenet" in out
    code, out, _ = run(capsys, "info", "--model", "alexnet-tiny", "--weights", __file__.replace(
        "test_cli.py", "missing.pt"))
    assert code == 2


def test_info_model_layers(capsys, env):
    _, weights = env
    code, out, _ = run(capsys, "info", "--model", "alexnet-tiny", "--weights", str(weights))
    assert code == 0 and "conv2" in out and "features.3" in out and "192" in out and "multiply" in out


def test_car_and_prune(capsys, env):
    tmp, weights = env
    out_csv = tmp / "car.csv"
    code, out, err = run(capsys, "car", "--weights", str(weights), "--layer", "conv1",
                         "--out", str(out_csv), "--quiet")
    assert code == 0, err
    df = pd.read_csv(out_csv)
    assert list(df.columns) == ["filter", "accuracy", "car"] and len(df) == 64
    pq = tmp / "car.parquet"
    code, _, err = run(capsys, "car", "--weights", str(weights), "--layer", "features.3",
                       "--per-class", "--out", str(pq), "--quiet", "--per-class-images", "2")
    assert code == 0, err
    long = pd.read_parquet(pq)
    assert set(long["n"]) == {2} and len(long) == 192 * 3
    steps = tmp / "steps.csv"
    small = tmp / "small.pt"
    code, out, err = run(capsys, "prune", "--weights", str(weights), "--layer", "conv2",
                         "--n-remove", "3", "--out", str(steps), "--save-model", str(small), "--quiet")
    assert code == 0, err
    table = pd.read_csv(steps)
    assert list(table["step"]) == [1, 2, 3]
    assert (tmp / "steps.csv.journal.jsonl").is_file()
    state = torch.load(small, weights_only=True)
    assert state["features.3.weight"].shape[0] == 189 and state["features.6.weight"].shape[1] == 189


BAD = [
    (["car", "--model", "lenet", "--layer", "conv1", "--out", "{tmp}/a.csv"], "unknown model"),
    (["car", "--weights", "{w}", "--dataset", "cifar", "--layer", "conv1", "--out", "{tmp}/a.csv"], "unknown dataset"),
    (["car", "--weights", "{w}", "--split", "test", "--layer", "conv1", "--out", "{tmp}/a.csv"], "unknown split"),
    (["car", "--weights", "{w}", "--layer", "conv9", "--out", "{tmp}/a.csv"], "unknown layer"),
    (["car", "--weights", "{w}", "--dataset", "imagenet", "--layer", "conv1", "--out", "{tmp}/a.csv"], "not found"),
    (["car", "--weights", "{tmp}/garbage.pt", "--layer", "conv1", "--out", "{tmp}/a.csv"], "corrupt"),
    (["car", "--weights", "{tmp}/other.pt", "--layer", "conv1", "--out", "{tmp}/a.csv"], "does not fit"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/nope/a.csv"], "does not exist"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.txt"], "unknown format"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/garbage.pt/a.csv"], "not a folder"),
    (["prune", "--weights", "{w}", "--layer", "conv1", "--n-remove", "64", "--out", "{tmp}/a.csv"], "n_remove"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.csv", "--device", "cuda:x"], "device"),
    (["car", "--layer"], "expected one argument"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.csv", "--precision", "fp16"], "invalid choice"),
]


def test_precision_choices_are_the_engines():
    """The CLI lists the precisions literally (``carlib --help`` does not import torch);
    they must stay those the engine accepts."""
    from carlib.cli import build_parser
    from carlib.engine import PRECISIONS

    sub = build_parser()._subparsers._group_actions[0].choices
    for cmd in ("car", "prune"):
        action = next(a for a in sub[cmd]._actions if a.dest == "precision")
        assert tuple(action.choices) == PRECISIONS


def _exit_code(argv: list[str], tmp, weights) -> int:
    """``main``'s exit code for ``argv`` with ``{tmp}`` and ``{w}`` filled in (argparse's too)."""
    try:
        return main([a.format(tmp=tmp, w=weights) for a in argv])
    except SystemExit as exc:  # argparse errors
        return exc.code


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_input_is_one_line_and_exit_2(capsys, env, argv, needle):
    tmp, weights = env
    (tmp / "garbage.pt").write_bytes(b"junk")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp / "other.pt")
    code = _exit_code(argv, tmp, weights)
    out, err = capsys.readouterr()
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp / "a.csv").exists()


def test_python_m_carlib_exit_code():
    proc = subprocess.run([sys.executable, "-m", "carlib", "car", "--layer", "conv1",
                           "--out", "/nonexistent-dir/x.csv"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "carlib: error: cannot write /nonexistent-dir/x.csv: folder /nonexistent-dir does not "
        "exist; create it first"]
    proc = subprocess.run([sys.executable, "-m", "carlib", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "prune" in proc.stdout


def test_read_only_output_folder(capsys, env):
    import os

    tmp, weights = env
    ro = tmp / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: every folder is writable")
        code, _, err = run(capsys, "car", "--weights", str(weights), "--layer", "conv1",
                           "--out", str(ro / "a.csv"))
        assert code == 2 and "permission denied" in err
    finally:
        os.chmod(ro, 0o700)


EARLY = [
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/dir.csv"], "is a folder"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "/proc/a.csv"], "cannot write /proc/a.csv"),
    (["prune", "--weights", "{w}", "--layer", "conv1", "--n-remove", "2", "--out", "{tmp}/a.csv",
      "--save-model", "{tmp}/dir.csv"], "is a folder"),
    (["prune", "--weights", "{w}", "--layer", "conv1", "--n-remove", "2", "--out", "{tmp}/a.csv",
      "--save-model", "/proc/m.pt"], "cannot write /proc/m.pt"),
    (["prune", "--weights", "{w}", "--layer", "conv1", "--n-remove", "2", "--out", "{tmp}/a.csv",
      "--journal", "/proc/j.jsonl"], "cannot write /proc/j.jsonl"),
    (["prune", "--weights", "{w}", "--layer", "conv1", "--n-remove", "2", "--out", "{tmp}/a.csv",
      "--journal", "{tmp}/dir.csv"], "is a folder"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.csv", "--device", "mps"], "device"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.csv", "--device", "meta"], "device"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.csv", "--device", "cuda:99"], "device"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.csv", "--batch-size", "0"], "batch"),
    (["prune", "--weights", "{w}", "--layer", "conv1", "--n-remove", "1", "--out", "{tmp}/a.csv",
      "--batch-size", "-4"], "batch"),
    (["car", "--weights", "{w}", "--layer", "conv1", "--out", "{tmp}/a.csv", "--per-class-images", "0"], "per-class"),
]


@pytest.mark.parametrize("argv,needle", EARLY)
def test_bad_outputs_and_devices_are_refused_before_any_data_is_loaded(capsys, env, monkeypatch, argv, needle):
    import carlib.data

    tmp, weights = env
    (tmp / "dir.csv").mkdir()
    monkeypatch.setattr(carlib.data, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    code = _exit_code(argv, tmp, weights)
    out, err = capsys.readouterr()
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp.iterdir()) == ["dir.csv", "home", "shared", "w.pt"]
    assert not any((tmp / "dir.csv").iterdir())


def test_saved_pruned_model_has_a_checksum_that_weights_checks(capsys, env):
    tmp, weights = env
    small = tmp / "small.pt"
    code, _, err = run(capsys, "prune", "--weights", str(weights), "--layer", "conv1", "--n-remove",
                       "1", "--out", str(tmp / "s.csv"), "--save-model", str(small), "--quiet",
                       "--per-class-images", "1")
    assert code == 0, err
    from carlib.files import sha256_file

    assert (tmp / "small.pt.sha256").read_text() == f"{sha256_file(small)}  small.pt\n"
    # a full-size checkpoint with a sidecar: intact it loads, one flipped byte is refused
    from carlib.models import save_checkpoint

    good = save_checkpoint(AlexNetTiny(num_classes=200).state_dict(), tmp / "good.pt")
    assert run(capsys, "info", "--model", "alexnet-tiny", "--weights", str(good))[0] == 0
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a weight tensor: torch.load alone would not notice
    good.write_bytes(bytes(data))
    code, _, err = run(capsys, "info", "--model", "alexnet-tiny", "--weights", str(good))
    assert code == 2 and "sha256" in err and len(err.strip().splitlines()) == 1


def test_a_damaged_journal_is_one_line_naming_file_and_line(capsys, env):
    tmp, weights = env
    journal = tmp / "j.jsonl"
    argv = ["prune", "--weights", str(weights), "--layer", "conv5", "--n-remove", "2", "--out",
            str(tmp / "s.csv"), "--journal", str(journal), "--quiet", "--per-class-images", "1"]
    assert run(capsys, *argv)[0] == 0
    head, step1, _ = journal.read_text().splitlines()
    journal.write_bytes((head + "\n" + step1 + "\n").encode() + b'{"step": 2, "filter": "\xff"}\n')
    code, _, err = run(capsys, *argv)
    assert code == 2 and f"journal {journal} line 3" in err and "UTF-8" in err
    assert len(err.strip().splitlines()) == 1


def test_finetune_a_pruned_network(capsys, env):
    from carlib import prune_filters
    from carlib.finetune import load_alexnet_tiny
    from carlib.models import save_checkpoint

    tmp, weights = env
    small = save_checkpoint(prune_filters(AlexNetTiny().eval(), "conv1", range(32)).state_dict(),
                            tmp / "small.pt")
    args = ["finetune", "--weights", str(small), "--epochs", "2", "--batch-size", "2", "--no-val",
            "--out", str(tmp / "tuned.pt"), "--quiet"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "2 epoch(s)" in out and (tmp / "tuned.pt.sha256").is_file()
    assert (tmp / "tuned.log.csv").read_text().count("\n") == 3 and (tmp / "tuned.ckpt.pt").is_file()
    tuned = load_alexnet_tiny(tmp / "tuned.pt")
    assert tuned.features[0].out_channels == 32
    assert not torch.equal(tuned.features[0].weight, load_alexnet_tiny(small).features[0].weight)


def test_finetune_passes_checkpoint_every_through(capsys, env, monkeypatch):
    import carlib.finetune

    seen = {}

    def fake(model, train, val, cfg, **kwargs):
        seen.update(kwargs)
        raise CarlibError("stopped after the arguments were seen")

    monkeypatch.setattr(carlib.finetune, "finetune", fake)
    tmp, weights = env
    code, out, err = run(capsys, "finetune", "--weights", str(weights), "--out", str(tmp / "t.pt"),
                         "--per-class-images", "1", "--no-val", "--checkpoint-every", "7", "--quiet")
    assert code == 2 and "stopped after the arguments were seen" in err
    assert seen["checkpoint_every"] == 7


@pytest.mark.parametrize("extra,words", [
    (["--epochs", "0"], "epochs must be an integer of at least 1"),
    (["--lr", "-1"], "lr must be a positive number"),
    (["--per-class-images", "0"], "--per-class-images must be at least 1"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be at least 0"),
    (["--weights", "missing.pt"], "not found"),
    (["--out", "no/such/folder/t.pt"], "does not exist"),
])
def test_finetune_bad_input_is_one_line(capsys, env, extra, words):
    tmp, weights = env
    opts = {"--weights": str(weights), "--out": str(tmp / "t.pt"), **dict(zip(extra[::2], extra[1::2]))}
    code, out, err = run(capsys, "finetune", "--quiet", *[a for kv in opts.items() for a in kv])
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp / "t.pt").exists()
