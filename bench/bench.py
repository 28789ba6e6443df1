"""Benchmark carlib's CAR engine against the naive reference loop (``make bench``).

Both sides run in this one process, on the same model object and the same images (decoded,
normalized and already on the device), and are timed with ``time.perf_counter`` after a
warm-up. The naive side (:mod:`bench.naive`): a forward hook zeroes filter ``k`` at the mask
point, the full network runs over all images in batches of 256, once per filter (plus one pass
for the unpruned network), top-1 by argmax.

Workloads (:mod:`bench.workloads`):
  1. car_index of conv1 of alexnet-tiny on Tiny ImageNet val (10 images per class, 2,000);
  2. the same for conv2;
  3. a 20-step greedy_prune of conv1 on the same images;
  4. car_index of conv1 of torchvision's AlexNet (random weights) on 224x224 inputs;
  5. car_index of features.0.0 of MobileNetV2 (mobilenet_v2-coral) on 224x224 photos;
  6. car_index of conv1 of torchvision's ResNet-18 (random weights) on the same photos.

To keep the run affordable the naive side may time a subset of the filters (and of the greedy
steps) and extrapolate linearly; the column ``naive_note`` says so, and the agreement check
then covers exactly the filters the naive side evaluated. See bench/README.md.

Usage:
    .venv/bin/python bench/bench.py [--device cpu|cuda] [--quick] [--workloads 1,2,3,4]
                                    [--tag MACHINE] [--run NAME] [--naive-filters 16] ...
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the bench package sits beside carlib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from carlib.engine import PRECISIONS, fast_bf16, resolve_device  # noqa: E402
from carlib.errors import CarlibError  # noqa: E402

from bench.estimate import paper_estimate  # noqa: E402
from bench.inputs import (load_alexnet_tiny, load_mobilenet_v2, load_photos,  # noqa: E402
                          load_tiny_val, random_alexnet, random_resnet18)
from bench.naive import self_labels  # noqa: E402
from bench.report import (machine_description, machine_tag, plot_scaling, print_tables,  # noqa: E402
                          results_folder, write_csv, write_json)
from bench.timing import maxrss_mb, measure_peak  # noqa: E402
from bench.workloads import Bench  # noqa: E402

__all__ = ["RESULTS_DIR", "int_list", "parse_args", "main"]

#: Where results go by default: one folder per machine tag.
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def int_list(s: str) -> list[int]:
    """Parse ``"1,2,4"`` (an empty string: no items).

    Example:
        >>> int_list("1, 2,4"), int_list("")
        ([1, 2, 4], [])
    """
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options, with the defaults that depend on ``--quick`` and the device
    filled in (``tag`` and ``run`` stay None when not given: :func:`main` derives them).

    Example:
        >>> parse_args(["--quick"]).images
        64
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke run (64 images, 8 filters, 4 naive filters, "
                        "5 greedy steps on 8 images, 16 AlexNet images, 2048 peak matrix)")
    p.add_argument("--workloads", type=int_list, default=[1, 2, 3, 4, 5, 6],
                   help="comma-separated subset of 1,2,3,4,5,6 (default all; \"\" for none, e.g. "
                        "with --paper-estimate)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR,
                   help="folder holding one folder per machine (default bench/results)")
    p.add_argument("--tag", default=None,
                   help="machine tag: results go to OUT/TAG/ (default from the GPU's or the "
                        "CPU's name, e.g. cpu-amd-epyc)")
    p.add_argument("--run", default=None,
                   help="name of this run's files in OUT/TAG/ (default TAG, TAG-quick with "
                        "--quick): bench-RUN.csv, machine-RUN.json, ...")
    p.add_argument("--plot", type=Path, default=None,
                   help="scaling figure (default OUT/TAG/scaling-RUN.png)")
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
    p.add_argument("--cnn-images", type=int, default=None,
                   help="224x224 photos for workloads 5 and 6 (default 256; quick 8)")
    p.add_argument("--cnn-filters", type=int, default=None,
                   help="filters (evenly spaced) of workloads 5 and 6, on both sides "
                        "(default 16; quick 4; 0 = all)")
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
                        "(default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's, i.e. OMP_NUM_THREADS or the core count)")
    p.add_argument("--seed", type=int, default=0, help="seed of torch and numpy (default 0)")
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
        "cnn_images": 8 if q else 256,
        "cnn_filters": 4 if q else 16,
        "scaling_images": [16, 32, 64] if q else [250, 500, 1000, 2000],
        "scaling_filters": [2, 4, 8] if q else [8, 16, 32, 64],
        "peak_size": 2048 if q else (8192 if cuda else 4096),
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.greedy_images is None:
        args.greedy_images = 8 if q else args.images
    bad = [w for w in args.workloads if w not in (1, 2, 3, 4, 5, 6)]
    if bad:
        p.error(f"unknown workload {bad[0]}; choose from 1,2,3,4,5,6")
    if args.images < 1 or args.greedy_images < 1 or args.alexnet_images < 1 or args.cnn_images < 1:
        p.error("image counts must be positive")
    if args.repeat < 1:
        p.error(f"--repeat must be at least 1, got {args.repeat}")
    for opt in ("tag", "run"):
        v = getattr(args, opt)
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            p.error(f"--{opt} {v!r}: use letters, digits, '.', '_' and '-' only")
    return args


def _measure_peaks(device: torch.device, args: argparse.Namespace, machine: dict) -> dict:
    """fp32 peak, and bf16 where carlib may compute in it (checked bf16 asked for, or ``auto``
    on a CPU with fast bf16); recorded into ``machine`` and printed."""
    peaks = {"fp32": measure_peak(device, args.peak_size)}
    if args.precision == "bf16-checked" or (args.precision == "auto" and fast_bf16(device)):
        peaks["bf16"] = measure_peak(device, args.peak_size, dtype=torch.bfloat16)
    machine["peak_matmul_n"] = args.peak_size
    for prec, r in peaks.items():
        sfx = "" if prec == "fp32" else "_bf16"
        machine[f"peak{sfx}_gmac_s"] = round(r["peak"], 2)
        machine[f"peak{sfx}_mm_gmac_s"] = round(r["mm"], 2)
        machine[f"peak{sfx}_conv3x3_gmac_s"] = round(r["conv3x3"], 2)
        print(f"peak {prec}: {r['peak']:.1f} GMAC/s (best of 3: {args.peak_size}^3 matmul "
              f"{r['mm']:.1f}, 3x3 convolution {r['conv3x3']:.1f})", flush=True)
    return {k: r["peak"] for k, r in peaks.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every checked CAR value agrees, 1 when one differs, 2 on a
    bad device. Example: ``main(["--quick", "--tag", "scratch"])``."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    try:
        device = resolve_device(args.device)
    except CarlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        # fp32 throughout (the peak is an fp32 product; TF32 would change the naive side's logits)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    tag = args.tag or machine_tag(device)
    run = args.run or tag + ("-quick" if args.quick else "")
    folder = results_folder(args.out, tag)
    torch.set_grad_enabled(False)
    t_start = time.perf_counter()

    machine = machine_description(device, args)
    print(f"carlib bench: {machine['cpu']}, {machine['cpu_cores']} cores, torch "
          f"{machine['torch']} ({machine['torch_threads']} threads), device {device}"
          + (f" ({machine['gpu']})" if machine["gpu"] else "")
          + (f", load average {machine['load_average_at_start']}" if machine["load_average_at_start"] else "")
          + f"; results in {folder}", flush=True)
    peaks = _measure_peaks(device, args, machine)
    bench = Bench(args, device, peaks["fp32"], peaks.get("bf16"))

    tiny_model = tiny_x = tiny_y = None
    machine["alexnet_tiny_weights"] = ""
    if any(w in args.workloads for w in (1, 2, 3)) or not args.no_scaling:
        try:
            x_all, y_all = load_tiny_val(max([args.images, args.greedy_images]
                                              + ([] if args.no_scaling else args.scaling_images)))
        except CarlibError as exc:
            print(f"WARNING: Tiny ImageNet not available ({exc}); skipping workloads 1-3 and "
                  "the scaling run (set CARLIB_DATA_DIR to a folder holding tiny-imagenet-200)",
                  flush=True)
        else:
            tiny_model, machine["alexnet_tiny_weights"] = load_alexnet_tiny()
            tiny_model = tiny_model.to(device)
            tiny_x, tiny_y = x_all.to(device), y_all.to(device)
    weights = machine["alexnet_tiny_weights"]
    if tiny_model is not None:
        x, y = tiny_x[: args.images], tiny_y[: args.images]
        for wid, layer in ((1, "conv1"), (2, "conv2")):
            if wid in args.workloads:
                bench.car_workload(wid, f"car_index {layer} alexnet-tiny", tiny_model, layer, x, y,
                                   weights=weights)
        if 3 in args.workloads:
            g = args.greedy_images
            bench.greedy_workload(3, f"greedy_prune({args.greedy_steps} steps) conv1 alexnet-tiny",
                                  tiny_model, "conv1", tiny_x[:g], tiny_y[:g], weights=weights)
    if 4 in args.workloads:
        tv, xa, ya = random_alexnet(args.alexnet_images, device, args.seed)
        bench.car_workload(4, "car_index conv1 torchvision-alexnet", tv, "conv1", xa, ya,
                           weights=f"random (seed {args.seed}), self-labeled 224x224 noise")
        del tv, xa, ya
    if 5 in args.workloads or 6 in args.workloads:
        xp, yp, photos = load_photos(args.cnn_images, device, args.seed)
        machine["cnn_inputs"] = photos
        if 5 in args.workloads:
            mv2, w, trained = load_mobilenet_v2(device, args.seed)
            y5 = yp if (trained and yp is not None) else self_labels(mv2, xp)
            bench.car_workload(5, "car_index features.0.0 mobilenet_v2", mv2, "features.0.0", xp, y5,
                               weights=f"{w}; {photos}" + ("" if y5 is yp else ", self-labeled"),
                               n_filters=args.cnn_filters)
            del mv2
        if 6 in args.workloads:
            rn = random_resnet18(device, args.seed)
            bench.car_workload(6, "car_index conv1 resnet18", rn, "conv1", xp, self_labels(rn, xp),
                               weights=f"random (seed {args.seed}); {photos}, self-labeled",
                               n_filters=args.cnn_filters)
            del rn

    files: list[Path] = []
    if bench.rows:
        df = pd.DataFrame(bench.rows)
        for k in ("host", "cpu", "cpu_cores", "torch_threads", "device", "gpu", "torch",
                  "peak_gmac_s", "peak_bf16_gmac_s", "date_utc"):
            df[k] = machine.get(k, float("nan"))
        files.append(write_csv(df, folder / f"bench-{run}.csv"))
        print_tables(df, peaks["fp32"], peaks.get("bf16"))

    if not args.no_scaling and tiny_model is not None:
        n = max(args.scaling_images)
        sc = bench.scaling(tiny_model, tiny_x[:n], tiny_y[:n])
        for k in ("host", "device", "torch_threads", "date_utc"):
            sc[k] = machine[k]
        files.append(write_csv(sc, folder / f"scaling-{run}.csv"))
        plot_path = args.plot or folder / f"scaling-{run}.png"
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        where = machine["gpu"] if device.type == "cuda" else machine["cpu"]
        files.append(plot_scaling(sc, plot_path, f"carlib car_index, conv1 of alexnet-tiny "
                                  f"({where}, {device}, threads: {machine['torch_threads']})"))
        print("\n== scaling (carlib car_index, conv1 of alexnet-tiny) ==")
        print(sc[["axis", "images", "filters", "seconds", "gmac_s"]].to_string(index=False))

    if args.paper_estimate:
        est = paper_estimate(device, args.paper_estimate, 64, precision=args.precision,
                             seed=args.seed)
        for k in ("host", "device", "gpu", "torch", "date_utc"):
            est[k] = machine[k]
        files.append(write_csv(est, folder / f"paper-estimate-{run}.csv"))

    machine["rss_maxrss_mb"] = round(maxrss_mb(), 1)
    if device.type == "cuda":
        machine["gpu_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    machine["total_seconds"] = round(time.perf_counter() - t_start, 1)
    files.append(write_json(machine, folder / f"machine-{run}.json"))
    print(f"\npeak resident memory (ru_maxrss): {machine['rss_maxrss_mb']:.0f} MiB; "
          f"total {machine['total_seconds']:.0f} s")
    cwd = Path.cwd()
    print("wrote " + ", ".join(str(f.relative_to(cwd) if f.is_relative_to(cwd) else f) for f in files))
    if not bench.rows:
        return 0
    n_ok = sum(bool(r["agree"]) for r in bench.rows)
    if n_ok < len(bench.rows):
        print(f"WARNING: carlib's CAR values differ from the naive reference in "
              f"{len(bench.rows) - n_ok} of {len(bench.rows)} workloads", flush=True)
        return 1
    print(f"agreement: every checked CAR value equals the naive loop's in all {n_ok} workloads",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
