"""bench/ (``make bench``): its accounting of executed work, a smoke run, and its shape.

No test here asserts a time. The analytic MAC count (``bench.counting.MacModel``) is held to
PyTorch's own FLOP counter around what carlib really runs (``Engine.evaluate``, ``car_index``,
``greedy_prune``); the smoke run checks the table it writes.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import carlib
from carlib.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.counting import MacModel, engine_macs_match, work_rates  # noqa: E402

N, CLASSES = 12, 20


@pytest.fixture(scope="module")
def small():
    """A random ``AlexNetTiny`` with 20 classes and 12 random 64x64 images."""
    torch.manual_seed(0)
    model = carlib.AlexNetTiny(num_classes=CLASSES).eval()
    x = torch.randn(N, 3, 64, 64)
    y = torch.randint(0, CLASSES, (N,))
    return model, x, y


def flop_macs(fn) -> tuple[int, object]:
    with FlopCounterMode(display=False) as fc:
        out = fn()
    return fc.get_total_flops() // 2, out  # a multiply-add is two FLOPs


@pytest.mark.parametrize("precision", ["fp32", "bf16-checked"])
def test_mac_model_equals_the_flop_counter_on_engine_evaluate(small, precision):
    model, x, y = small
    macm = MacModel(model, "conv1", (3, 64, 64))
    eng = Engine(model, "conv1", (x, y), precision=precision)
    ks = [0, 5, 9, 63]
    counted, _ = flop_macs(lambda: eng.evaluate([2], ks))
    st = eng.screen_stats
    share = st["recomputed"] / st["pairs"] if st else 0.0
    fp32, bf16 = macm.executed(N, len(ks), precision=eng.precision, recomputed=share)
    assert fp32 + bf16 == counted
    if precision == "fp32":
        assert bf16 == 0
    else:
        # every candidate's suffix but its last layer, and the calibration pass, in bf16
        assert bf16 == N * (1 + len(ks)) * (macm.suffix - macm.last) > 0


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_mac_model_equals_the_flop_counter_on_car_index(small, layer):
    model, x, y = small
    macm = MacModel(model, layer, (3, 64, 64))
    ks = [0, 3, 7]
    counted, df = flop_macs(lambda: carlib.car_index(model, layer, (x, y), filters=ks,
                                                     progress=False, precision="fp32"))
    assert df.attrs["method"] == "fast"
    assert sum(macm.executed(N, len(ks))) == counted
    assert macm.prefix + macm.consumer + macm.suffix == macm.full


def test_mac_model_equals_the_flop_counter_on_greedy_prune(small):
    # the consumer inputs are cached after the first step: later steps skip the prefix
    model, x, y = small
    macm = MacModel(model, "conv1", (3, 64, 64))
    counted, _ = flop_macs(lambda: carlib.greedy_prune(model, "conv1", (x, y), n_remove=3,
                                                       progress=False, precision="fp32"))
    assert sum(macm.greedy(N, 3, cached=True)) == counted
    assert sum(macm.greedy(N, 3, cached=False)) == counted + 2 * N * macm.prefix


@pytest.mark.parametrize("precision", ["fp32", "bf16-checked"])
def test_the_warmup_check_passes_on_what_the_engine_runs(small, precision):
    model, x, y = small
    macm = MacModel(model, "conv2", (3, 64, 64))
    assert engine_macs_match(model, "conv2", x, y, macm, device=torch.device("cpu"),
                             precision=precision) is True


def test_peak_fraction_weighs_each_precision_by_its_own_peak():
    row: dict = {}
    # 100 GMAC fp32 (1 s at peak) + 400 GMAC bf16 (2 s at peak) in 6 s: half the peak
    work_rates(row, "carlib", 100 * 10**9, 6.0, peak=100.0, peak_bf16=200.0,
               bf16_macs=400 * 10**9)
    assert row["carlib_gmac"] == 500.0 and row["carlib_bf16_gmac"] == 400.0
    assert row["carlib_peak_frac"] == 0.5
    # bf16 work but no bf16 peak timed: no fraction rather than a wrong one
    work_rates(row, "carlib", 100 * 10**9, 6.0, peak=100.0, peak_bf16=None,
               bf16_macs=400 * 10**9)
    assert math.isnan(row["carlib_peak_frac"])


def test_quick_run_writes_an_agreeing_table(tmp_path):
    # a process of its own, as `make bench` runs it: main() sets global torch state (no grad,
    # seeds) that must not leak into the other tests
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench.py"), "--quick", "--workloads", "4",
         "--no-scaling", "--alexnet-images", "8", "--peak-size", "512", "--out", str(tmp_path),
         "--tag", "m", "--run", "t"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "agreement: every checked CAR value equals the naive loop's" in proc.stdout
    df = pd.read_csv(tmp_path / "m" / "bench-t.csv")
    assert list(df["workload"]) == [4]
    row = df.iloc[0]
    assert bool(row["agree"]) and row["checked"] == "4/4 filters + base"
    assert row["method"] == "fast" and bool(row["macs_match_flop_counter"])
    assert row["carlib_gmac"] > 0 and 0 < row["carlib_peak_frac"]
    # the machine folder holds the run's files and nothing else: no temporary file is left
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "m", "m/bench-t.csv", "m/machine-t.json"]


def test_the_removed_unchecked_bf16_option_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "bench.py"), "--bf16"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "--bf16" in proc.stderr


# ----------------------------------------------------------------------------- shape

SOURCES = sorted(BENCH.rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(BENCH).as_posix())
def test_bench_sources_use_no_private_names(path):
    bad = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("carlib", "bench"):
            bad += [f"from {node.module} import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names
                    if any(part.startswith("_") for part in a.name.split("."))]
        # another object's private attribute (self's own are fine)
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            bad.append(f"line {node.lineno}: .{node.attr}")
    assert not bad, bad


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(BENCH).as_posix())
def test_bench_modules_are_small_and_documented(path):
    tree = _tree(path)
    assert ast.get_docstring(tree), "no module docstring"
    assert len(path.read_text().splitlines()) <= 400
    if path.parent == BENCH:  # the bench package: public names declared, functions documented
        assert any(isinstance(n, (ast.Assign, ast.AnnAssign)) and "__all__" in ast.unparse(n)
                   for n in tree.body), "no __all__"
        undocumented = [n.name for n in ast.walk(tree)
                        if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                        and not n.name.startswith("_") and not ast.get_docstring(n)]
        assert not undocumented, undocumented


@pytest.mark.parametrize("name, layer", [("resnet18", "conv1"), ("resnet18", "conv6"),
                                         ("mobilenet_v2", "features.0.0")])
def test_mac_model_equals_the_flop_counter_beyond_chains(name, layer):
    """Residual graphs, several cut values, a depthwise consumer (no MAC per pair)."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    x = torch.randn(6, 3, 32, 32)
    y = torch.randint(0, 10, (6,))
    macm = MacModel(model, layer, (3, 32, 32))
    assert macm.fast and macm.prefix + macm.consumer + macm.suffix == macm.full
    assert (macm.pair_consumer == 0) == (name == "mobilenet_v2")
    assert engine_macs_match(model, layer, x, y, macm, device=torch.device("cpu"),
                             precision="fp32", n_images=6, candidates=3) is True
