"""bench/bench.py (``make bench``): its accounting of executed work, and a smoke run.

No test here asserts a time: the MAC counts are checked against PyTorch's own FLOP counter on
what the engine really runs, and the smoke run checks the table it writes.
"""

from __future__ import annotations

import argparse
import importlib.util
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


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("carlib_bench", ROOT / "bench" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("precision", ["fp32", "bf16-checked"])
def test_executed_macs_match_torch_flop_counter(bench, precision):
    torch.manual_seed(0)
    model = carlib.AlexNetTiny(num_classes=20).eval()
    x = torch.randn(12, 3, 64, 64)
    y = torch.randint(0, 20, (12,))
    macm = bench.MacModel(model, "conv1", (3, 64, 64))
    eng = Engine(model, "conv1", (x, y), precision=precision)
    ks = [0, 5, 9, 63]
    with FlopCounterMode(display=False) as fc:
        eng.evaluate([2], ks)
    st = eng.screen_stats
    share = st["recomputed"] / st["pairs"] if st["pairs"] else 0.0
    fp32, bf16 = macm.executed(12, len(ks), precision=precision, recomputed=share)
    assert 2 * (fp32 + bf16) == fc.get_total_flops()
    if precision == "fp32":
        assert bf16 == 0
    else:
        # every candidate's suffix but its last layer, and the calibration pass, in bf16
        assert bf16 == 12 * (1 + len(ks)) * (macm.suffix - macm.last) > 0


def test_peak_fraction_weighs_each_precision_by_its_own_peak(bench):
    b = bench.Bench(argparse.Namespace(), torch.device("cpu"), peak=100.0, peak_bf16=200.0)
    row: dict = {}
    # 100 GMAC fp32 (1 s at peak) + 400 GMAC bf16 (2 s at peak) in 6 s: half the peak
    b._rates(row, "carlib", 100 * 10**9, 6.0, bf16_macs=400 * 10**9)
    assert row["carlib_gmac"] == 500.0 and row["carlib_bf16_gmac"] == 400.0
    assert row["carlib_peak_frac"] == 0.5
    b.peak_bf16 = None  # bf16 work but no bf16 peak timed: no fraction rather than a wrong one
    b._rates(row, "carlib", 100 * 10**9, 6.0, bf16_macs=400 * 10**9)
    assert math.isnan(row["carlib_peak_frac"])


def test_quick_run_writes_an_agreeing_table(tmp_path):
    # a process of its own, as `make bench` runs it: main() sets global torch state (no grad,
    # seeds) that must not leak into the other tests
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--workloads", "4",
         "--no-scaling", "--alexnet-images", "8", "--peak-size", "512", "--out", str(tmp_path),
         "--tag", "t"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    df = pd.read_csv(tmp_path / "bench-t.csv")
    assert list(df["workload"]) == [4]
    row = df.iloc[0]
    assert bool(row["agree"]) and row["checked"] == "4/4 filters + base"
    assert row["method"] == "fast" and row["macs_counter_ok"]
    assert row["carlib_gmac"] > 0 and 0 < row["carlib_peak_frac"]
    assert (tmp_path / "machine-t.json").is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file
