"""What the benchmark writes: the machine description, result tables and the scaling figure.

Results of a machine go to one folder, ``bench/results/<machine tag>/`` (:func:`results_folder`),
with the run's name in each file: ``bench-RUN.csv``, ``scaling-RUN.csv``, ``scaling-RUN.png``,
``paper-estimate-RUN.csv`` and ``machine-RUN.json``. Every file is written atomically
(:func:`carlib.files.atomic_path`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import carlib
from carlib.files import atomic_path, write_text_atomic

__all__ = ["cpu_model", "machine_tag", "results_folder", "machine_description", "write_csv",
           "write_json", "print_tables", "plot_scaling"]

BENCH_DIR = Path(__file__).resolve().parent


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else :func:`platform.processor`).

    Example:
        >>> isinstance(cpu_model(), str)
        True
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_tag(device: torch.device) -> str:
    """A folder name for this machine, from the GPU's name on a GPU, else the CPU's.

    Args:
        device: the device benchmarked.

    Returns:
        ``gpu-...`` or ``cpu-...`` in lower case, words joined by ``-`` (trademark marks and
        the word "processor" dropped).

    Example:
        >>> machine_tag(torch.device("cpu")).startswith("cpu-")
        True
    """
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    name = re.sub(r"\((r|tm)\)|\bprocessor\b|\bcpu\b", " ", name, flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"
    return f"{'gpu' if device.type == 'cuda' else 'cpu'}-{slug}"


def results_folder(out: Path, tag: str) -> Path:
    """``out/tag``, created if missing.

    Example:
        >>> import tempfile
        >>> results_folder(Path(tempfile.mkdtemp()), "cpu-x").name
        'cpu-x'
    """
    if not tag or "/" in tag or tag.startswith("."):
        raise ValueError(f"bad machine tag {tag!r}: use a plain folder name such as cpu-zen4")
    folder = out / tag
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def machine_description(device: torch.device, args: argparse.Namespace) -> dict:
    """The machine and software the run measured, for ``machine-RUN.json``.

    Args:
        device: the device benchmarked.
        args: the parsed options (``quick`` is recorded).

    Returns:
        host, date, CPU model and cores, torch threads, ``OMP_NUM_THREADS``, load average at
        the start, device and GPU, versions of torch, torchvision, Python and carlib, the git
        commit and the command line.

    Example:
        >>> machine_description(torch.device("cpu"), argparse.Namespace(quick=True))["device"]
        'cpu'
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = ""
    try:
        import torchvision

        tv_version = torchvision.__version__
    except ImportError:
        tv_version = ""
    return {
        "host": socket.gethostname(),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS", ""),
        "load_average_at_start": load,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
        "torch": torch.__version__,
        "torchvision": tv_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "carlib": carlib.__version__,
        "git_commit": commit,
        "quick": bool(args.quick),
        "argv": " ".join(sys.argv[1:]),
    }


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a result table atomically (:func:`carlib.write_table`); returns ``path``.

    Example:
        >>> write_csv(pd.DataFrame({"a": [1]}), folder / "bench-x.csv")  # doctest: +SKIP
    """
    return carlib.write_table(df, path)


def write_json(data: dict, path: Path) -> Path:
    """Write ``data`` as indented JSON atomically; returns ``path``.

    Example:
        >>> write_json({"host": "vm"}, folder / "machine-x.json")  # doctest: +SKIP
    """
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def print_tables(df: pd.DataFrame, peak: float, peak_bf16: float | None) -> None:
    """Print the timings table and the executed-work-and-memory table of the workload rows.

    Args:
        df: one row per workload (:attr:`bench.workloads.Bench.rows`).
        peak: the fp32 peak in GMAC/s; peak_bf16: the bf16 peak, or None.

    Example:
        >>> print_tables(pd.DataFrame(bench.rows), 117.0, 233.0)  # doctest: +SKIP
    """
    show = df[["workload", "name", "images", "filters", "naive_s", "carlib_s", "speedup",
               "agree", "precision", "screen_recomputed", "naive_note"]]
    rates = df[["workload", "method", "carlib_gmac", "carlib_bf16_gmac", "carlib_gmac_s",
                "carlib_peak_frac", "naive_gmac_s", "naive_peak_frac", "checked",
                "macs_match_flop_counter", "naive_rss_peak_mb", "carlib_rss_peak_mb"]
               + [c for c in ("naive_gpu_peak_mb", "carlib_gpu_peak_mb") if c in df]]
    with pd.option_context("display.width", 250, "display.max_colwidth", 80):
        print("\n== timings (naive_s extrapolated where naive_note says so) ==")
        print(show.to_string(index=False))
        bf = f", bf16 {peak_bf16:.1f}" if peak_bf16 else ""
        print(f"\n== executed work and memory (peak GMAC/s: fp32 {peak:.1f}{bf}; "
              "peak_frac = time at those peaks / time taken) ==")
        print(rates.to_string(index=False))


def plot_scaling(df: pd.DataFrame, path: Path, title: str) -> Path:
    """Plot the scaling table: time against images and against filters, each with a
    least-squares line; written atomically as PNG.

    Args:
        df: :meth:`bench.workloads.Bench.scaling`'s table.
        path: the PNG file.
        title: the figure's title.

    Returns:
        ``path``.

    Example:
        >>> plot_scaling(sc, folder / "scaling-x.png", "car_index conv1")  # doctest: +SKIP
    """
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
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
    return path
