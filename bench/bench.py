"""Benchmark carlib's CAR engine against the naive reference loop (``make bench``).

Both sides run in this one process, on the same model object and the same images (decoded,
normalized and already on the device), and are timed with ``time.perf_counter`` after a
warm-up. The naive side is the issue's definition: a forward hook zeroes filter ``k`` at the
mask point (:func:`carlib.mask_filters`), the full network runs over all images in batches
of 256, once per filter (plus one pass for the unpruned network), top-1 by argmax.

Workloads:
  1. car_index of conv1 of alexnet-tiny on Tiny ImageNet val (10 images per class, 2,000);
  2. the same for conv2;
  3. a 20-step greedy_prune of conv1 on the same images;
  4. car_index of conv1 of torchvision's AlexNet (random weights) on 224x224 inputs.

To keep the run affordable the naive side may time a subset of the filters (and of the greedy
steps) and extrapolate linearly; the column ``naive_note`` says so, and the agreement check
then covers exactly the filters the naive side evaluated. See bench/README.md.

Usage:
    .venv/bin/python bench/bench.py [--device cpu|cuda] [--quick] [--workloads 1,2,3,4]
                                    [--out bench/results] [--naive-filters 16] ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

import carlib
from carlib.engine import PRECISIONS, Engine
from carlib.errors import CarlibError
from carlib.graph import analyze
from carlib.masking import mask_filters

BENCH_DIR = Path(__file__).resolve().parent
NAIVE_BATCH = 256  # the naive loop: batches of 256
CARLIB_BATCH = None  # carlib's default prefix batch (256 on a CPU, 1024 on a GPU)


# ----------------------------------------------------------------------------- utilities


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Seconds taken by ``fn()`` (the device synchronized before and after), and its result."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """The shortest of ``repeats`` timings of ``fn()`` (:func:`timed`), and the last result."""
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        t, out = timed(fn, device)
        best = min(best, t)
    return best, out


@torch.no_grad()
def self_labels(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own top-1 predictions for ``x`` (in batches of 256): labels under which the
    unpruned network is 100 % accurate, for the random-input workloads."""
    return torch.cat([model(x[i : i + NAIVE_BATCH]).argmax(1) for i in range(0, len(x), NAIVE_BATCH)])


def _rss_hwm_mb() -> float | None:
    """The process's resident high-water mark (VmHWM) in MiB, or None where unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB: the peak resident size of the whole run."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


@contextmanager
def peak_memory(device: torch.device, into: dict, prefix: str) -> Iterator[None]:
    """Record the peak resident memory (and GPU memory) of the block into ``into``.

    The resident peak of one block comes from resetting the kernel's high-water mark
    (``/proc/self/clear_refs``, Linux); where that is impossible it is the process's
    ``ru_maxrss`` so far (an upper bound that includes everything run before).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        per_block = True
    except OSError:
        per_block = False
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        hwm = _rss_hwm_mb() if per_block else None
        into[f"{prefix}_rss_peak_mb"] = round(hwm if hwm is not None else maxrss_mb(), 1)
        if device.type == "cuda":
            into[f"{prefix}_gpu_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def write_atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def evenly_spaced(n_total: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n_total)`` (all of them when ``k`` is 0 or too big)."""
    if k <= 0 or k >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, k)})


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device, args: argparse.Namespace) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = ""
    desc = {
        "host": socket.gethostname(),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS", ""),
        "load_average_at_start": load,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "carlib": carlib.__version__,
        "git_commit": commit,
        "quick": bool(args.quick),
        "argv": " ".join(sys.argv[1:]),
    }
    try:
        import torchvision

        desc["torchvision"] = torchvision.__version__
    except ImportError:
        desc["torchvision"] = ""
    return desc


def measure_peak(device: torch.device, n: int, repeats: int = 3,
                 dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """GMAC/s of the fastest dense kernels in ``dtype`` (best of ``repeats`` after a warm-up;
    fp32 with TF32 off, see :func:`main`).

    Timed: an ``n x n @ n x n`` matrix product (``mm``), and a 3x3 convolution of 256 to 256
    channels, channels-last, on a batch of ``n / 64`` 16x16 maps (``conv3x3``: the kernel
    class the suffix of AlexNet runs). On a 2-core Zen 4, oneDNN's convolutions run 20-40 %
    faster than the BLAS product, so a product alone under-states the peak (fractions above 1).

    Returns:
        ``{"mm": ..., "conv3x3": ..., "peak": max of both}``.
    """
    import torch.nn.functional as F

    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    fmt = torch.channels_last
    batch = max(1, n // 64)
    x = torch.randn(batch, 256, 16, 16, generator=g).to(device, dtype).contiguous(memory_format=fmt)
    w = torch.randn(256, 256, 3, 3, generator=g).to(device, dtype).contiguous(memory_format=fmt)
    kernels = {"mm": (lambda: torch.mm(a, b), n**3),
               "conv3x3": (lambda: F.conv2d(x, w, padding=1), batch * 256 * 256 * 9 * 16 * 16)}
    rates = {}
    for name, (fn, macs) in kernels.items():
        fn()  # warm-up
        rates[name] = macs / best_of(fn, device, repeats)[0] / 1e9
    rates["peak"] = max(rates.values())
    return rates


# ----------------------------------------------------------------------------- MAC accounting


class MacModel:
    """Multiply-accumulates of one image through a model, split around a layer's consumer.

    ``prefix``: the layers up to and including the pruned convolution; ``consumer``: the next
    channel-mixing layer; ``suffix``: everything after it; ``full``: the whole network
    (convolutions and linear layers, from :func:`carlib.count`).
    """

    def __init__(self, model: torch.nn.Module, layer: str, input_size: tuple[int, int, int]):
        plan = analyze(model, layer)
        table = carlib.count(model, input_size, per_layer=True)
        names = list(table["layer"])
        macs = [int(m) for m in table["macs"]]
        self.full = sum(macs)
        self.filters = plan.layer.filters
        self.fast = plan.fast
        if plan.consumer is None or plan.layer.path not in names or plan.consumer not in names:
            self.prefix = self.consumer = self.suffix = 0
            return
        i, j = names.index(plan.layer.path), names.index(plan.consumer)
        self.prefix = sum(macs[: i + 1])
        self.consumer = macs[j]
        self.suffix = sum(macs[j + 1 :])
        # the layer that produces the logits: the checked-bf16 screen keeps it in fp32
        self.last = macs[-1] if len(macs) > j + 1 else 0

    def naive(self, n_images: int, passes: int) -> int:
        """The naive loop: the full network per image per pass."""
        return n_images * self.full * passes

    def engine_counter(self, n_images: int, candidates: int) -> int:
        """What :attr:`Engine.macs` counts for one evaluate call on the fast path: the consumer
        once per image and each candidate filter's contribution (1/C of the consumer)."""
        return n_images * (self.consumer + candidates * self.consumer // self.filters)

    def fast_evaluate(self, n_images: int, candidates: int, prefix_cached: bool = False) -> int:
        """Everything the fast path executes in one evaluate call: the prefix (unless cached),
        the engine counter, and the suffix once for the network plus once per candidate."""
        pre = 0 if prefix_cached else n_images * self.prefix
        return pre + self.engine_counter(n_images, candidates) + n_images * self.suffix * (1 + candidates)

    def executed(self, n_images: int, candidates: int, *, prefix_cached: bool = False,
                 precision: str = "fp32", recomputed: float = 0.0) -> tuple[int, int]:
        """``(fp32 MACs, bf16 MACs)`` the fast path executes in one evaluate call.

        In fp32 this is :meth:`fast_evaluate`. With ``bf16-checked`` the network's suffix also
        runs once in bf16 (the calibration of the error bound), every candidate's suffix runs
        in bf16 but for its last layer, and the ``recomputed`` share of the candidates runs
        the suffix again in fp32.
        """
        if precision != "bf16-checked":
            return self.fast_evaluate(n_images, candidates, prefix_cached), 0
        pairs = n_images * candidates
        fp32 = (self.fast_evaluate(n_images, 0, prefix_cached)
                + self.engine_counter(n_images, candidates) - self.engine_counter(n_images, 0)
                + (n_images + pairs) * self.last + round(recomputed * pairs) * self.suffix)
        return fp32, (n_images + pairs) * (self.suffix - self.last)


# ----------------------------------------------------------------------------- the naive side


@torch.no_grad()
def naive_correct(model: torch.nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor,
                  pruned: list[int]) -> int:
    """Top-1 correct images of ``model`` with ``pruned`` filters of ``layer`` zeroed at the
    mask point (a forward hook), the full network over all images in batches of 256."""
    correct = 0
    with mask_filters(model, layer, pruned):
        for i in range(0, x.shape[0], NAIVE_BATCH):
            logits = model(x[i : i + NAIVE_BATCH])
            correct += int((logits.argmax(dim=1) == y[i : i + NAIVE_BATCH]).sum())
    return correct


def naive_car(model: torch.nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor,
              filters: list[int], pruned: list[int] = ()) -> tuple[int, dict[int, int]]:
    """The naive CAR loop: correct counts of the network (``pruned`` removed) and of it with
    each filter of ``filters`` removed in addition, one full pass each."""
    pruned = list(pruned)
    base = naive_correct(model, layer, x, y, pruned)
    return base, {k: naive_correct(model, layer, x, y, pruned + [k]) for k in filters}


def _share(v: object) -> float:
    """A recomputed share from a table cell (NaN or missing: 0)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(f) else f


def car_values(base: int, correct: dict[int, int], n: int) -> dict[int, tuple[float, float]]:
    """``(accuracy, car)`` per filter, computed as :func:`carlib.car.car_table` computes them."""
    base_acc = float(base) / n
    return {k: (float(c) / n, base_acc - float(c) / n) for k, c in correct.items()}


# ----------------------------------------------------------------------------- workloads


class Bench:
    def __init__(self, args: argparse.Namespace, device: torch.device, peak: float,
                 peak_bf16: float | None = None):
        """``peak`` and ``peak_bf16``: GMAC/s of the fastest fp32 and bf16 kernels measured in
        this run (:func:`measure_peak`); ``peak_bf16`` None where bf16 was not timed."""
        self.args = args
        self.device = device
        self.peak = peak
        self.peak_bf16 = peak_bf16
        self.rows: list[dict] = []

    # -- helpers
    @staticmethod
    def _precision(row: dict, attrs: dict) -> None:
        """The engine precision carlib used, and its screen statistics (bf16-checked)."""
        row["precision"] = attrs.get("precision", "fp32")
        row["screen_recomputed"] = attrs.get("screen_recomputed", float("nan"))
        row["screen_worst_ratio"] = attrs.get("screen_worst_ratio", float("nan"))

    def _rates(self, row: dict, side: str, macs: int | None, seconds: float,
               bf16_macs: int = 0) -> None:
        """Executed work (``macs`` in fp32 plus ``bf16_macs`` in bf16), its rate, and the
        fraction of peak: the time the work would take at the measured peak of each precision
        over the time it took (with no bf16 work, the rate over the fp32 peak)."""
        if side == "carlib":
            row["carlib_bf16_gmac"] = round(bf16_macs / 1e9, 3)
        if macs is None:
            row[f"{side}_gmac"] = row[f"{side}_gmac_s"] = row[f"{side}_peak_frac"] = float("nan")
            return
        row[f"{side}_gmac"] = round((macs + bf16_macs) / 1e9, 3)
        ok = seconds > 0
        row[f"{side}_gmac_s"] = round((macs + bf16_macs) / seconds / 1e9, 2) if ok else float("nan")
        if not ok or (bf16_macs and not self.peak_bf16):
            row[f"{side}_peak_frac"] = float("nan")
            return
        at_peak = macs / (self.peak * 1e9) + (bf16_macs / (self.peak_bf16 * 1e9) if bf16_macs else 0.0)
        row[f"{side}_peak_frac"] = round(at_peak / seconds, 3)

    def _warmup(self, model, layer, x, y, macm: MacModel) -> bool | None:
        """Run both sides once on a small slice (not timed); check the engine's MAC counter
        against :class:`MacModel` (None when the fast path does not apply)."""
        n = min(x.shape[0], 32)
        ks = list(range(min(4, macm.filters)))
        naive_correct(model, layer, x[:n], y[:n], [0])
        eng = Engine(model, layer, (x[:n], y[:n]), device=self.device, batch_size=CARLIB_BATCH,
                     cache_bytes=0)
        eng.evaluate([], ks)
        sync(self.device)
        if eng.method != "fast":
            return None
        return eng.macs == macm.engine_counter(n, len(ks))

    def car_workload(self, wid: int, name: str, model, layer: str, x, y, *, weights: str) -> None:
        args, dev = self.args, self.device
        macm = MacModel(model, layer, tuple(x.shape[1:]))
        n, nf = x.shape[0], macm.filters
        filters = evenly_spaced(nf, args.filters) if args.filters else list(range(nf))
        naive_ks = evenly_spaced(len(filters), args.naive_filters)
        naive_ks = [filters[i] for i in naive_ks]
        print(f"[{wid}] {name}: {n} images, {len(filters)} filters "
              f"(naive: {len(naive_ks)}) ...", flush=True)
        macs_ok = self._warmup(model, layer, x, y, macm)
        row: dict = {"workload": wid, "name": name, "model": name.split()[-1], "layer": layer,
                     "weights": weights, "images": n, "filters": len(filters), "repeat": args.repeat}

        with peak_memory(dev, row, "naive"):
            t_base, base = best_of(lambda: naive_correct(model, layer, x, y, []), dev, args.repeat)
            t_filt, correct = best_of(
                lambda: {k: naive_correct(model, layer, x, y, [k]) for k in naive_ks}, dev,
                args.repeat)
        with peak_memory(dev, row, "carlib"):
            t_car, df = best_of(lambda: carlib.car_index(
                model, layer, (x, y), filters=filters, batch_size=CARLIB_BATCH, device=dev,
                progress=False, precision=args.precision), dev, args.repeat)
        self._precision(row, df.attrs)

        measured = t_base + t_filt
        extrapolated = len(naive_ks) < len(filters)
        naive_s = t_base + t_filt * len(filters) / len(naive_ks)
        naive = car_values(base, correct, n)
        fast = df.set_index("filter")
        diffs = [abs(float(fast.loc[k, "car"]) - naive[k][1]) for k in naive_ks]
        same = [float(fast.loc[k, "car"]) == naive[k][1]
                and float(fast.loc[k, "accuracy"]) == naive[k][0] for k in naive_ks]
        same_base = df.attrs["base_accuracy"] == float(base) / n
        n_bad = sum(not s for s in same) + (not same_base)
        row.update({
            "naive_s": round(naive_s, 3),
            "carlib_s": round(t_car, 3),
            "speedup": round(naive_s / t_car, 2),
            "agree": n_bad == 0,
            "checked": f"{sum(same)}/{len(naive_ks)} filters + base",
            "max_abs_car_diff": max(diffs) if diffs else 0.0,
            "naive_note": (f"timed {len(naive_ks)}/{len(filters)} filters + base pass, "
                           f"filter time x{len(filters) / len(naive_ks):.2f} (extrapolated)"
                           if extrapolated else "measured (all filters)"),
            "naive_extrapolated": extrapolated,
            "naive_measured_s": round(measured, 3),
            "method": df.attrs.get("method", ""),
            "base_accuracy": df.attrs["base_accuracy"],
            "macs_counter_ok": macs_ok,
        })
        if row["method"] == "fast":
            fast_macs, bf16_macs = macm.executed(n, len(filters), precision=row["precision"],
                                                 recomputed=_share(row["screen_recomputed"]))
        else:
            fast_macs, bf16_macs = macm.naive(n, 1 + len(filters)), 0
        self._rates(row, "carlib", fast_macs, t_car, bf16_macs)
        self._rates(row, "naive", macm.naive(n, 1 + len(filters)), naive_s)
        if args.bf16:
            self._bf16(row, model, layer, x, y, filters, df, fast_macs, naive_s)
        row["rss_maxrss_mb"] = round(maxrss_mb(), 1)
        self.rows.append(row)
        self._report(row)

    def _bf16(self, row: dict, model, layer: str, x, y, filters: list[int], exact, macs: int,
              naive_s: float) -> None:
        """The same CAR computed with the suffix in bf16 (autocast): an approximation, off by
        default in carlib; timed, and compared filter by filter with the exact fp32 table."""
        dev = self.device
        eng = Engine(model, layer, (x, y), device=dev, batch_size=CARLIB_BATCH, cache_bytes=0,
                     dtype=torch.bfloat16)
        eng.evaluate([], filters[:2])  # warm-up
        eng = Engine(model, layer, (x, y), device=dev, batch_size=CARLIB_BATCH, cache_bytes=0,
                     dtype=torch.bfloat16)
        t, (base, cand, counts) = timed(lambda: eng.evaluate([], filters), dev)
        n = int(counts.sum())
        acc = cand.sum(dim=1).double().numpy() / n
        car = float(base.sum()) / n - acc
        ex = exact.set_index("filter").loc[filters]
        diff = np.abs(car - ex["car"].to_numpy())
        order_fp32 = sorted(filters, key=lambda k: (float(ex.loc[k, "car"]), k))
        bf = dict(zip(filters, car))
        order_bf16 = sorted(filters, key=lambda k: (bf[k], k))
        row.update({
            "bf16_s": round(t, 3),
            "bf16_speedup": round(naive_s / t, 2),
            "bf16_cars_identical": f"{int((diff == 0).sum())}/{len(filters)}",
            "bf16_max_abs_car_diff": float(diff.max()),
            "bf16_base_identical": float(base.sum()) / n == exact.attrs["base_accuracy"],
            "bf16_same_lowest_car_filter": order_fp32[0] == order_bf16[0],
        })
        rate = macs / t / 1e9
        row["bf16_gmac_s"] = round(rate, 2)
        row["bf16_peak_frac"] = round(rate / self.peak_bf16, 3) if self.peak_bf16 else float("nan")
        print(f"    bf16 (approximate): {t:.2f}s, x{naive_s / t:.2f} vs naive fp32, "
              f"{row['bf16_cars_identical']} CARs identical, max |diff| {diff.max():.4f}, "
              f"{row['bf16_peak_frac']:.1%} of the bf16 peak", flush=True)

    def paper_estimate(self, n_images: int, candidates: int) -> pd.DataFrame:
        """Extrapolate the paper profile's greedy cost (torchvision AlexNet, 50,000 ImageNet
        val images, greedy to half of conv1 and conv2) from the engine's measured time per
        (image, candidate) pair and per image on random 224x224 inputs, labeled with the
        model's own predictions as in workload 4 (with checked bf16 the recomputed share, and
        so the time per pair, depends on how close the decisions are; the CSV records it)."""
        import torchvision

        dev = self.device
        torch.manual_seed(self.args.seed)
        tv = torchvision.models.alexnet().eval().to(dev)
        g = torch.Generator().manual_seed(self.args.seed)
        x = torch.randn(n_images, 3, 224, 224, generator=g).to(dev)
        y = self_labels(tv, x)
        rows = []
        for layer, filters in (("conv1", 64), ("conv2", 192)):
            ks = list(range(min(candidates, filters)))
            eng = Engine(tv, layer, (x, y), device=dev, batch_size=CARLIB_BATCH,
                         precision=self.args.precision)
            eng.evaluate([], ks[:2])  # warm-up, fills the consumer-input cache
            t_base, _ = timed(lambda: eng.evaluate([], []), dev)
            eng.screen_stats.update(pairs=0, recomputed=0)
            t_all, _ = timed(lambda: eng.evaluate([], ks), dev)
            per_pair = max(t_all - t_base, 0.0) / (n_images * len(ks))
            per_image = t_base / n_images
            steps = filters // 2
            pairs = sum(filters - s for s in range(steps))
            total = 50_000 * (per_pair * pairs + per_image * steps)
            rows.append({"layer": layer, "filters": filters, "greedy_steps": steps,
                         "measured_images": n_images, "measured_candidates": len(ks),
                         "precision": eng.precision,
                         "screen_recomputed": eng.screen_summary().get("screen_recomputed", float("nan")),
                         "us_per_pair": round(per_pair * 1e6, 2),
                         "us_per_image_base": round(per_image * 1e6, 2),
                         "pairs_50k": 50_000 * pairs, "estimated_s_50k": round(total, 1),
                         "estimated_h_50k": round(total / 3600, 2)})
            print(f"[paper] greedy {layer} to half ({steps} steps) on 50,000 images: "
                  f"{per_pair * 1e6:.1f} us per (image, filter) -> {total / 3600:.2f} h", flush=True)
        del tv, x
        return pd.DataFrame(rows)

    def greedy_workload(self, wid: int, name: str, model, layer: str, x, y, *, weights: str) -> None:
        args, dev = self.args, self.device
        macm = MacModel(model, layer, tuple(x.shape[1:]))
        n, nf = x.shape[0], macm.filters
        steps = min(args.greedy_steps, nf - 1)
        naive_steps = max(1, min(args.naive_greedy_steps, steps))
        print(f"[{wid}] {name}: {n} images, {steps} steps of {nf} filters "
              f"(naive: {naive_steps} step(s), {args.naive_filters or nf} candidates) ...", flush=True)
        macs_ok = self._warmup(model, layer, x, y, macm)
        row: dict = {"workload": wid, "name": name, "model": name.split()[-1], "layer": layer,
                     "weights": weights, "images": n, "filters": nf, "repeat": args.repeat}

        with peak_memory(dev, row, "carlib"):
            t_car, steps_df = best_of(lambda: carlib.greedy_prune(
                model, layer, (x, y), n_remove=steps, batch_size=CARLIB_BATCH, device=dev,
                progress=False, precision=args.precision), dev, args.repeat)
        self._precision(row, steps_df.attrs)
        chosen = [int(f) for f in steps_df["filter"]]

        # The naive loop follows carlib's choices for naive_steps steps; at each step it
        # evaluates a subset of the remaining filters (always including carlib's choice).
        measured = 0.0
        naive_passes = 0
        naive_runs: list[tuple[list[int], list[int], int, dict[int, int]]] = []
        removed: list[int] = []
        with peak_memory(dev, row, "naive"):
            for s in range(naive_steps):
                remaining = [k for k in range(nf) if k not in removed]
                ks = [remaining[i] for i in evenly_spaced(len(remaining), args.naive_filters)]
                ks = sorted(set(ks) | {chosen[s]})
                t, (base, correct) = best_of(
                    lambda: naive_car(model, layer, x, y, ks, list(removed)), dev, args.repeat)
                measured += t
                naive_passes += 1 + len(ks)
                naive_runs.append((list(removed), ks, base, correct))
                removed.append(chosen[s])

        # agreement (untimed): at each naive step, carlib's reported CAR of its choice, the
        # choice itself (no evaluated candidate has a lower CAR; ties: lower index), and the
        # CAR of every evaluated candidate from carlib's engine, all against the naive values
        checks: list[bool] = []
        n_checked = 0
        max_diff = 0.0
        check_engine = Engine(model, layer, (x, y), device=dev, batch_size=CARLIB_BATCH,
                              precision=args.precision)
        for s, (removed_s, ks, base, correct) in enumerate(naive_runs):
            naive = car_values(base, correct, n)
            st = steps_df.iloc[s]
            checks.append(float(st["car"]) == naive[chosen[s]][1]
                          and float(st["accuracy"]) == naive[chosen[s]][0])
            checks.append(min(ks, key=lambda k: (naive[k][1], k)) == chosen[s])
            b, cand, counts = check_engine.evaluate(removed_s, ks)
            n_img = int(counts.sum())
            checks.append(int(b.sum()) == base)
            for i, k in enumerate(ks):
                acc = float(cand[i].sum()) / n_img
                car = float(b.sum()) / n_img - acc
                checks.append(car == naive[k][1] and acc == naive[k][0])
                max_diff = max(max_diff, abs(car - naive[k][1]))
            n_checked += len(ks)

        per_pass = measured / naive_passes
        total_passes = sum(1 + (nf - s) for s in range(steps))  # base + remaining candidates
        naive_s = per_pass * total_passes
        extrapolated = naive_passes < total_passes
        row.update({
            "naive_s": round(naive_s, 3),
            "carlib_s": round(t_car, 3),
            "speedup": round(naive_s / t_car, 2),
            "agree": all(checks),
            "checked": f"{n_checked} CARs in {naive_steps}/{steps} steps + choices",
            "max_abs_car_diff": max_diff,
            "naive_note": (f"timed {naive_steps}/{steps} steps, {naive_passes}/{total_passes} "
                           f"passes; x{total_passes / naive_passes:.2f} (extrapolated)"
                           if extrapolated else "measured (all steps, all filters)"),
            "naive_extrapolated": extrapolated,
            "naive_measured_s": round(measured, 3),
            "method": check_engine.method,
            "base_accuracy": steps_df.attrs.get("base_accuracy", float("nan")),
            "macs_counter_ok": macs_ok,
        })
        if check_engine.method == "fast":
            # greedy_prune caches the consumer inputs (default cache_bytes 2 GiB) when they fit
            cached = self._consumer_input_bytes(model, layer, x) * n <= (2 << 30)
            split = [macm.executed(n, nf - s, prefix_cached=cached and s > 0,
                                   precision=row["precision"],
                                   recomputed=_share(row["screen_recomputed"]))
                     for s in range(steps)]
            fast_macs, bf16_macs = sum(f for f, _ in split), sum(b for _, b in split)
        else:
            fast_macs, bf16_macs = macm.naive(n, total_passes), 0
        self._rates(row, "carlib", fast_macs, t_car, bf16_macs)
        self._rates(row, "naive", macm.naive(n, total_passes), naive_s)
        row["rss_maxrss_mb"] = round(maxrss_mb(), 1)
        self.rows.append(row)
        self._report(row)

    @staticmethod
    @torch.no_grad()
    def _consumer_input_bytes(model, layer, x) -> int:
        plan = analyze(model, layer)
        seen: dict = {}

        def hook(module, inputs) -> None:
            seen.setdefault("b", inputs[0][0].numel() * inputs[0].element_size())

        h = model.get_submodule(plan.consumer).register_forward_pre_hook(hook)
        try:
            model(x[:1])
        finally:
            h.remove()
        return int(seen["b"])

    def _report(self, row: dict) -> None:
        screen = (f", {row['screen_recomputed']:.1%} of pairs recomputed in fp32"
                  if row.get("precision") == "bf16-checked" else "")
        print(f"    naive {row['naive_s']:.2f}s ({row['naive_note']}), carlib {row['carlib_s']:.2f}s "
              f"({row.get('precision', 'fp32')}{screen}), x{row['speedup']:.2f}, "
              f"agree={row['agree']} ({row['checked']})", flush=True)

    # -- scaling
    def scaling(self, model, x, y) -> pd.DataFrame:
        args, dev = self.args, self.device
        layer = "conv1"
        macm = MacModel(model, layer, tuple(x.shape[1:]))
        nf = macm.filters
        k_img = min(args.filters, nf) if args.filters else nf
        images = [n for n in args.scaling_images if n <= x.shape[0]] or [x.shape[0]]
        filters = [k for k in args.scaling_filters if k <= nf] or [nf]
        print(f"[scaling] car_index conv1 alexnet-tiny: images {images} ({k_img} filters), "
              f"filters {filters} ({x.shape[0]} images) ...", flush=True)
        self._warmup(model, layer, x, y, macm)
        rows = []
        done: dict[tuple[int, int], dict] = {}

        def run(n: int, k: int, axis: str) -> None:
            if (n, k) in done:  # the shared corner of both axes: measured once
                rows.append({**done[(n, k)], "axis": axis})
                return
            t, df = timed(lambda: carlib.car_index(model, layer, (x[:n], y[:n]), filters=range(k),
                                                   batch_size=CARLIB_BATCH, device=dev,
                                                   progress=False, precision=args.precision), dev)
            precision = df.attrs.get("precision", "fp32")
            macs = (sum(macm.executed(n, k, precision=precision,
                                      recomputed=_share(df.attrs.get("screen_recomputed"))))
                    if macm.fast else macm.naive(n, 1 + k))
            rows.append({"axis": axis, "images": n, "filters": k, "seconds": round(t, 4),
                         "gmac": round(macs / 1e9, 3), "gmac_s": round(macs / t / 1e9, 2)})
            done[(n, k)] = rows[-1]
            print(f"    {axis}: {n} images x {k} filters: {t:.3f}s", flush=True)

        for n in images:
            run(n, k_img, "images")
        for k in filters:
            run(x.shape[0], k, "filters")
        return pd.DataFrame(rows)


def plot_scaling(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, axis, xlabel in ((axes[0], "images", "images"), (axes[1], "filters", "filters evaluated")):
        d = df[df["axis"] == axis].sort_values(axis)
        xs, ts = d[axis].to_numpy(float), d["seconds"].to_numpy(float)
        ax.plot(xs, ts, "o", label="measured")
        if len(xs) >= 2:
            slope, icpt = np.polyfit(xs, ts, 1)
            grid = np.linspace(0, xs.max(), 50)
            ax.plot(grid, icpt + slope * grid, "--", lw=1,
                    label=f"linear fit: {slope * 1e3:.2f} ms/{axis[:-1]} + {icpt:.2f} s")
        fixed = d["filters"].iloc[0] if axis == "images" else d["images"].iloc[0]
        other = "filters" if axis == "images" else "images"
        ax.set_xlabel(xlabel)
        ax.set_ylabel("carlib car_index time (s)")
        ax.set_title(f"vs {axis} ({other} = {fixed})")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------- main


def int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke run (64 images, 8 filters, 4 naive filters, "
                        "5 greedy steps on 8 images, 16 AlexNet images, 2048 peak matrix)")
    p.add_argument("--workloads", type=int_list, default=[1, 2, 3, 4], help="comma-separated subset of 1,2,3,4 (default all; \"\" for none, e.g. with --paper-estimate)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="folder for the CSV/JSON files (default bench/results)")
    p.add_argument("--plot", type=Path, default=None,
                   help="scaling figure (default bench/scaling.png; with --quick "
                        "OUT/scaling-TAG.png so that a smoke run leaves the figure alone)")
    p.add_argument("--tag", default=None, help="file name tag (default HOSTNAME-DEVICE[-quick])")
    p.add_argument("--images", type=int, default=None,
                   help="Tiny ImageNet val images for workloads 1-3 and scaling "
                        "(default 2000 = 10 per class; quick 64)")
    p.add_argument("--greedy-images", type=int, default=None,
                   help="images for workload 3 (default: --images; quick 8)")
    p.add_argument("--filters", type=int, default=None,
                   help="evaluate only this many filters (evenly spaced) in workloads 1, 2, 4 "
                        "on both sides (default 0 = all; quick 8)")
    p.add_argument("--naive-filters", type=int, default=None,
                   help="filters the naive side times (evenly spaced; 0 = all); its time is "
                        "extrapolated linearly (default 16; quick 4)")
    p.add_argument("--greedy-steps", type=int, default=None, help="greedy steps (default 20; quick 5)")
    p.add_argument("--naive-greedy-steps", type=int, default=1,
                   help="greedy steps the naive side runs before extrapolating (default 1)")
    p.add_argument("--alexnet-images", type=int, default=None,
                   help="224x224 images for workload 4 (default 256 on CPU, 1024 on a GPU; quick 16)")
    p.add_argument("--scaling-images", type=int_list, default=None,
                   help="image counts of the scaling run, all filters (or --filters) "
                        "(default 250,500,1000,2000; quick 16,32,64)")
    p.add_argument("--scaling-filters", type=int_list, default=None,
                   help="filter counts of the scaling run, on the largest image count "
                        "(default 8,16,32,64; quick 2,4,8)")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling run and figure")
    p.add_argument("--peak-size", type=int, default=None,
                   help="n of the n x n matrix product timed for the peak, beside a 3x3 "
                        "convolution on n/64 images (default 4096 on CPU, 8192 on a GPU; quick 2048)")
    p.add_argument("--repeat", type=int, default=1,
                   help="time each side of workloads 1-4 this many times and keep the shortest "
                        "(default 1; the carlib side of workload 3 is the long one)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's, i.e. OMP_NUM_THREADS or the core count)")
    p.add_argument("--seed", type=int, default=0, help="seed of torch and numpy (default 0)")
    p.add_argument("--bf16", action="store_true",
                   help="also time workloads 1, 2, 4 with the suffix in bf16 (an approximation, "
                        "off by default in carlib) and count the CAR values that differ from fp32")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="carlib's engine precision (default auto: checked bf16 on CPUs with "
                        "AMX-BF16 or AVX512-BF16, else fp32); every choice is held to the naive "
                        "fp32 values")
    p.add_argument("--paper-estimate", type=int, default=0, metavar="IMAGES",
                   help="extrapolate the paper profile's greedy cost (50,000 images, half of "
                        "conv1 and conv2) from the engine's speed on this many 224x224 images")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    q = args.quick
    defaults = {
        "images": 64 if q else 2000,
        "filters": 8 if q else 0,
        "naive_filters": 4 if q else 16,
        "greedy_steps": 5 if q else 20,
        "alexnet_images": 16 if q else (1024 if cuda else 256),
        "scaling_images": [16, 32, 64] if q else [250, 500, 1000, 2000],
        "scaling_filters": [2, 4, 8] if q else [8, 16, 32, 64],
        "peak_size": 2048 if q else (8192 if cuda else 4096),
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.greedy_images is None:
        args.greedy_images = 8 if q else args.images
    bad = [w for w in args.workloads if w not in (1, 2, 3, 4)]
    if bad:
        p.error(f"unknown workload {bad[0]}; choose from 1,2,3,4")
    if args.images < 1 or args.greedy_images < 1 or args.alexnet_images < 1:
        p.error("image counts must be positive")
    if args.repeat < 1:
        p.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def load_alexnet_tiny() -> tuple[torch.nn.Module, str]:
    try:
        model = carlib.load_model("alexnet-tiny")
        w = carlib.models.DEFAULT_WEIGHTS
        stamp = datetime.fromtimestamp(w.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return model, f"trained ({w.name} sha256 {carlib.models.file_sha256(w)[:12]}, {stamp})"
    except CarlibError as exc:
        warnings.warn(f"cannot load the trained alexnet-tiny ({exc}); benchmarking "
                      "AlexNetTiny with random weights (seed 0) instead: timings are "
                      "representative, CAR values are not", stacklevel=1)
        print(f"WARNING: alexnet-tiny weights not loaded ({exc.__class__.__name__}); "
              "using random weights", flush=True)
        torch.manual_seed(0)
        return carlib.AlexNetTiny().eval(), "random (weights file not loaded)"


def load_tiny(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    per_class = max(1, math.ceil(n / 200))
    ds = carlib.load_dataset("tiny-imagenet", "val", per_class=per_class, progress=False)
    x, y = ds.tensors()
    return x[:n].contiguous(), y[:n].contiguous()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    try:
        device = carlib.engine.resolve_device(args.device)
    except CarlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        # fp32 throughout (the peak is an fp32 product; TF32 would change the naive side's logits)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    args.out.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0] or "host"
    tag = args.tag or f"{host}-{device.type}" + ("-quick" if args.quick else "")
    plot_path = args.plot or (args.out / f"scaling-{tag}.png" if args.quick else BENCH_DIR / "scaling.png")
    torch.set_grad_enabled(False)
    t_start = time.perf_counter()

    machine = machine_description(device, args)
    print(f"carlib bench: {machine['cpu']}, {machine['cpu_cores']} cores, torch "
          f"{machine['torch']} ({machine['torch_threads']} threads), device {device}"
          + (f" ({machine['gpu']})" if machine["gpu"] else "")
          + (f", load average {machine['load_average_at_start']}" if machine["load_average_at_start"] else ""),
          flush=True)
    peaks = {"fp32": measure_peak(device, args.peak_size)}
    # bf16 is timed where carlib may compute in it (auto picks checked bf16 on CPUs with fast
    # bf16) or --bf16 asks for the unchecked variant; elsewhere a bf16 product is slow to time
    if args.bf16 or args.precision == "bf16-checked" or (
            args.precision == "auto" and carlib.engine.fast_bf16(device)):
        peaks["bf16"] = measure_peak(device, args.peak_size, dtype=torch.bfloat16)
    machine["peak_matmul_n"] = args.peak_size
    for prec, r in peaks.items():
        sfx = "" if prec == "fp32" else "_bf16"
        machine[f"peak{sfx}_gmac_s"] = round(r["peak"], 2)
        machine[f"peak{sfx}_mm_gmac_s"] = round(r["mm"], 2)
        machine[f"peak{sfx}_conv3x3_gmac_s"] = round(r["conv3x3"], 2)
        print(f"peak {prec}: {r['peak']:.1f} GMAC/s (best of 3: {args.peak_size}^3 matmul "
              f"{r['mm']:.1f}, 3x3 convolution {r['conv3x3']:.1f})", flush=True)
    peak = peaks["fp32"]["peak"]
    peak_bf16 = peaks["bf16"]["peak"] if "bf16" in peaks else None
    bench = Bench(args, device, peak, peak_bf16)
    tiny_needed = any(w in args.workloads for w in (1, 2, 3)) or not args.no_scaling
    tiny_model = tiny_x = tiny_y = None
    weights = ""
    if tiny_needed:
        try:
            n_load = max([args.images, args.greedy_images]
                         + ([] if args.no_scaling else args.scaling_images))
            x_all, y_all = load_tiny(n_load)
        except CarlibError as exc:
            print(f"WARNING: Tiny ImageNet not available ({exc}); skipping workloads 1-3 and "
                  "the scaling run (set CARLIB_DATA_DIR to a folder holding tiny-imagenet-200)",
                  flush=True)
        else:
            tiny_model, weights = load_alexnet_tiny()
            tiny_model = tiny_model.to(device)
            tiny_x, tiny_y = x_all.to(device), y_all.to(device)
    machine["alexnet_tiny_weights"] = weights

    if tiny_model is not None:
        x, y = tiny_x[: args.images], tiny_y[: args.images]
        if 1 in args.workloads:
            bench.car_workload(1, "car_index conv1 alexnet-tiny", tiny_model, "conv1", x, y,
                               weights=weights)
        if 2 in args.workloads:
            bench.car_workload(2, "car_index conv2 alexnet-tiny", tiny_model, "conv2", x, y,
                               weights=weights)
        if 3 in args.workloads:
            g = args.greedy_images
            bench.greedy_workload(3, f"greedy_prune({args.greedy_steps} steps) conv1 alexnet-tiny",
                                  tiny_model, "conv1", tiny_x[:g], tiny_y[:g], weights=weights)
    if 4 in args.workloads:
        import torchvision

        torch.manual_seed(args.seed)
        tv = torchvision.models.alexnet().eval().to(device)
        g = torch.Generator().manual_seed(args.seed)
        xa = torch.randn(args.alexnet_images, 3, 224, 224, generator=g).to(device)
        ya = self_labels(tv, xa)  # base accuracy 100 %
        bench.car_workload(4, "car_index conv1 torchvision-alexnet", tv, "conv1", xa, ya,
                           weights="random (seed 0), self-labeled 224x224 noise")
        del tv, xa, ya

    # ---- results table
    files = []
    if bench.rows:
        df = pd.DataFrame(bench.rows)
        for k in ("host", "cpu", "cpu_cores", "torch_threads", "device", "gpu", "torch",
                  "peak_gmac_s", "peak_bf16_gmac_s", "date_utc"):
            df[k] = machine.get(k, float("nan"))
        path = args.out / f"bench-{tag}.csv"
        carlib.write_table(df, path)
        files.append(path)
        show = df[["workload", "name", "images", "filters", "naive_s", "carlib_s", "speedup",
                   "agree", "precision", "screen_recomputed", "naive_note"]]
        rates = df[["workload", "method", "carlib_gmac", "carlib_bf16_gmac", "carlib_gmac_s",
                    "carlib_peak_frac",
                    "naive_gmac_s", "naive_peak_frac", "checked", "naive_rss_peak_mb",
                    "carlib_rss_peak_mb"]
                   + [c for c in ("naive_gpu_peak_mb", "carlib_gpu_peak_mb") if c in df]]
        with pd.option_context("display.width", 250, "display.max_colwidth", 80):
            print("\n== timings (naive_s extrapolated where naive_note says so) ==")
            print(show.to_string(index=False))
            bf = f", bf16 {peak_bf16:.1f}" if peak_bf16 else ""
            print(f"\n== executed work and memory (peak GMAC/s: fp32 {peak:.1f}{bf}; "
                  "peak_frac = time at those peaks / time taken) ==")
            print(rates.to_string(index=False))
            if args.bf16:
                cols = [c for c in ("workload", "bf16_s", "bf16_speedup", "bf16_cars_identical",
                                    "bf16_max_abs_car_diff", "bf16_same_lowest_car_filter",
                                    "bf16_gmac_s", "bf16_peak_frac") if c in df]
                print("\n== bf16 suffix, unchecked (approximate; never carlib's default) ==")
                print(df[cols].to_string(index=False))

    # ---- scaling
    if not args.no_scaling and tiny_model is not None:
        sc = bench.scaling(tiny_model, tiny_x[: max(args.scaling_images)],
                           tiny_y[: max(args.scaling_images)])
        for k in ("host", "device", "torch_threads", "date_utc"):
            sc[k] = machine[k]
        path = args.out / f"scaling-{tag}.csv"
        carlib.write_table(sc, path)
        files.append(path)
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot_scaling(sc, plot_path,
                     f"carlib car_index, conv1 of alexnet-tiny ({machine['cpu'] if device.type == 'cpu' else machine['gpu']}, "
                     f"{device}, threads: {machine['torch_threads']})")
        files.append(plot_path)
        print("\n== scaling (carlib car_index, conv1 of alexnet-tiny) ==")
        print(sc[["axis", "images", "filters", "seconds", "gmac_s"]].to_string(index=False))

    if args.paper_estimate:
        est = bench.paper_estimate(args.paper_estimate, 64)
        for k in ("host", "device", "gpu", "torch", "date_utc"):
            est[k] = machine[k]
        path = args.out / f"paper-estimate-{tag}.csv"
        carlib.write_table(est, path)
        files.append(path)

    machine["rss_maxrss_mb"] = round(maxrss_mb(), 1)
    if device.type == "cuda":
        machine["gpu_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    machine["total_seconds"] = round(time.perf_counter() - t_start, 1)
    mpath = args.out / f"machine-{tag}.json"
    write_atomic_text(mpath, json.dumps(machine, indent=2) + "\n")
    files.append(mpath)
    print(f"\npeak resident memory (ru_maxrss): {machine['rss_maxrss_mb']:.0f} MiB; "
          f"total {machine['total_seconds']:.0f} s")
    print("wrote " + ", ".join(str(f.relative_to(Path.cwd()) if f.is_relative_to(Path.cwd()) else f)
                              for f in files))
    if bench.rows and not all(r["agree"] for r in bench.rows):
        print("WARNING: some CAR values of carlib differ from the naive reference", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
