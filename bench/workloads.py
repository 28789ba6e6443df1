"""The benchmark's workloads: carlib and the naive loop timed on the same model and images.

:class:`Bench` runs them and collects one row per workload:

1. and 2. ``car_index`` of one layer (:meth:`Bench.car_workload`), also used for 4. (conv1 of
   torchvision's AlexNet on 224x224 inputs), 5. (``features.0.0`` of MobileNetV2) and 6.
   (conv1 of ResNet-18);
3. a ``greedy_prune`` of conv1 (:meth:`Bench.greedy_workload`);

and the scaling run (:meth:`Bench.scaling`). Each workload's warm-up checks the executed-work
model against PyTorch's FLOP counter (:func:`bench.counting.engine_macs_match`); after the
timings every CAR value the naive side evaluated is compared with carlib's for exact equality.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

import carlib
from carlib.engine import Engine

from bench.counting import (MacModel, consumer_input_bytes, engine_macs_match, recomputed_share,
                            work_rates)
from bench.naive import car_values, evenly_spaced, naive_car, naive_correct
from bench.timing import best_of, maxrss_mb, peak_memory, sync, timed

__all__ = ["Bench", "CACHE_BYTES"]

#: The engine's default consumer-input cache (greedy steps after the first skip the prefix).
CACHE_BYTES = 2 << 30


class Bench:
    """Runs the workloads with the options of ``bench/bench.py`` and collects their rows.

    Args:
        args: the parsed options (:func:`bench.bench.parse_args`).
        device: where both sides run.
        peak: GMAC/s of the fastest fp32 kernel measured (:func:`bench.timing.measure_peak`).
        peak_bf16: the same in bf16, or None where bf16 was not timed.

    Example:
        >>> b = Bench(parse_args(["--quick"]), torch.device("cpu"), 100.0)  # doctest: +SKIP
        >>> b.car_workload(1, "car_index conv1 alexnet-tiny", model, "conv1", x, y,
        ...                weights="random")  # doctest: +SKIP
        >>> b.rows[0]["agree"]  # doctest: +SKIP
        True
    """

    def __init__(self, args: argparse.Namespace, device: torch.device, peak: float,
                 peak_bf16: float | None = None):
        self.args = args
        self.device = device
        self.peak = peak
        self.peak_bf16 = peak_bf16
        self.rows: list[dict] = []

    # ------------------------------------------------------------------ helpers
    def _warmup(self, model: torch.nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor,
                macm: MacModel) -> bool | None:
        """Run both sides once on a small slice (not timed); the engine's run is counted by the
        FLOP counter and compared with ``macm`` (None where the fast path does not apply)."""
        n = min(x.shape[0], 32)
        naive_correct(model, layer, x[:n], y[:n], [0])
        ok = engine_macs_match(model, layer, x, y, macm, device=self.device,
                               precision=self.args.precision)
        sync(self.device)
        return ok

    def _rates(self, row: dict, side: str, macs: int | None, seconds: float,
               bf16_macs: int = 0) -> None:
        work_rates(row, side, macs, seconds, peak=self.peak, peak_bf16=self.peak_bf16,
                   bf16_macs=bf16_macs)

    @staticmethod
    def _precision(row: dict, attrs: dict) -> None:
        """The engine precision carlib used, and its screen statistics (bf16-checked)."""
        row["precision"] = attrs.get("precision", "fp32")
        row["screen_recomputed"] = attrs.get("screen_recomputed", float("nan"))
        row["screen_worst_ratio"] = attrs.get("screen_worst_ratio", float("nan"))

    def _finish(self, row: dict) -> None:
        row["rss_maxrss_mb"] = round(maxrss_mb(), 1)
        self.rows.append(row)
        screen = (f", {row['screen_recomputed']:.1%} of pairs recomputed in fp32"
                  if row.get("precision") == "bf16-checked" else "")
        print(f"    naive {row['naive_s']:.2f}s ({row['naive_note']}), carlib {row['carlib_s']:.2f}s "
              f"({row.get('precision', 'fp32')}{screen}), x{row['speedup']:.2f}, "
              f"agree={row['agree']} ({row['checked']})", flush=True)

    # ------------------------------------------------------------------ workloads
    def car_workload(self, wid: int, name: str, model: torch.nn.Module, layer: str,
                     x: torch.Tensor, y: torch.Tensor, *, weights: str,
                     n_filters: int | None = None) -> dict:
        """Time ``car_index`` of ``layer`` against the naive loop and check every CAR value the
        naive side evaluated.

        Args:
            wid: workload number; name: its description (the last word names the model).
            model: the network; layer: the convolution; x, y: images and labels on the device.
            weights: what the weights are (recorded).
            n_filters: evaluate this many filters, evenly spaced (default ``--filters``).

        Returns:
            The row appended to :attr:`rows`.

        Example:
            >>> bench.car_workload(4, "car_index conv1 torchvision-alexnet", tv, "conv1", x, y,
            ...                    weights="random")  # doctest: +SKIP
        """
        args, dev = self.args, self.device
        macm = MacModel(model, layer, tuple(x.shape[1:]))
        n, nf = x.shape[0], macm.filters
        k = args.filters if n_filters is None else n_filters
        filters = evenly_spaced(nf, k) if k else list(range(nf))
        naive_ks = [filters[i] for i in evenly_spaced(len(filters), args.naive_filters)]
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
                model, layer, (x, y), filters=filters, device=dev, progress=False,
                precision=args.precision), dev, args.repeat)
        self._precision(row, df.attrs)

        extrapolated = len(naive_ks) < len(filters)
        naive_s = t_base + t_filt * len(filters) / len(naive_ks)
        naive = car_values(base, correct, n)
        fast = df.set_index("filter")
        diffs = [abs(float(fast.loc[k, "car"]) - naive[k][1]) for k in naive_ks]
        same = [float(fast.loc[k, "car"]) == naive[k][1]
                and float(fast.loc[k, "accuracy"]) == naive[k][0] for k in naive_ks]
        same_base = df.attrs["base_accuracy"] == float(base) / n
        row.update({
            "naive_s": round(naive_s, 3),
            "carlib_s": round(t_car, 3),
            "speedup": round(naive_s / t_car, 2),
            "agree": all(same) and same_base,
            "checked": f"{sum(same)}/{len(naive_ks)} filters + base",
            "max_abs_car_diff": max(diffs) if diffs else 0.0,
            "naive_note": (f"timed {len(naive_ks)}/{len(filters)} filters + base pass, "
                           f"filter time x{len(filters) / len(naive_ks):.2f} (extrapolated)"
                           if extrapolated else "measured (all filters)"),
            "naive_extrapolated": extrapolated,
            "naive_measured_s": round(t_base + t_filt, 3),
            "method": df.attrs.get("method", ""),
            "base_accuracy": df.attrs["base_accuracy"],
            "macs_match_flop_counter": macs_ok,
        })
        if row["method"] == "fast":
            fast_macs, bf16_macs = macm.executed(
                n, len(filters), precision=row["precision"],
                recomputed=recomputed_share(row["screen_recomputed"]))
        else:
            fast_macs, bf16_macs = macm.naive(n, 1 + len(filters)), 0
        self._rates(row, "carlib", fast_macs, t_car, bf16_macs)
        self._rates(row, "naive", macm.naive(n, 1 + len(filters)), naive_s)
        self._finish(row)
        return row

    def greedy_workload(self, wid: int, name: str, model: torch.nn.Module, layer: str,
                        x: torch.Tensor, y: torch.Tensor, *, weights: str) -> dict:
        """Time ``greedy_prune`` of ``layer`` against the naive loop following carlib's choices.

        The naive side runs ``--naive-greedy-steps`` steps, each on a subset of the remaining
        filters that always includes carlib's choice, and its time is extrapolated per pass.
        Checked at every naive step (after the timings): carlib's reported CAR of its choice,
        the choice itself (no evaluated candidate has a lower CAR; ties: the lower index), and
        the CAR of every evaluated candidate from carlib's engine.

        Args:
            wid, name, model, layer, x, y, weights: as :meth:`car_workload`.

        Returns:
            The row appended to :attr:`rows`.

        Example:
            >>> bench.greedy_workload(3, "greedy_prune(5 steps) conv1 alexnet-tiny", model,
            ...                       "conv1", x, y, weights="random")  # doctest: +SKIP
        """
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
                model, layer, (x, y), n_remove=steps, device=dev, progress=False,
                precision=args.precision), dev, args.repeat)
        self._precision(row, steps_df.attrs)
        chosen = [int(f) for f in steps_df["filter"]]

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

        checks: list[bool] = []
        n_checked = 0
        max_diff = 0.0
        check_engine = Engine(model, layer, (x, y), device=dev, precision=args.precision)
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

        total_passes = sum(1 + (nf - s) for s in range(steps))  # base + remaining candidates
        naive_s = measured / naive_passes * total_passes
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
            "macs_match_flop_counter": macs_ok,
        })
        if check_engine.method == "fast":
            cached = consumer_input_bytes(model, layer, x) * n <= CACHE_BYTES
            fast_macs, bf16_macs = macm.greedy(
                n, steps, cached=cached, precision=row["precision"],
                recomputed=recomputed_share(row["screen_recomputed"]))
        else:
            fast_macs, bf16_macs = macm.naive(n, total_passes), 0
        self._rates(row, "carlib", fast_macs, t_car, bf16_macs)
        self._rates(row, "naive", macm.naive(n, total_passes), naive_s)
        self._finish(row)
        return row

    def scaling(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
        """carlib's ``car_index`` of conv1 timed against the image count (``--scaling-images``,
        all filters or ``--filters``) and the filter count (``--scaling-filters``, all images).

        Args:
            model: ``alexnet-tiny``; x, y: the images and labels (the largest count).

        Returns:
            One row per point: ``axis, images, filters, seconds, gmac, gmac_s``.

        Example:
            >>> sc = bench.scaling(model, x, y)  # doctest: +SKIP
        """
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
        rows: list[dict] = []
        done: dict[tuple[int, int], dict] = {}

        def run(n: int, k: int, axis: str) -> None:
            """Time ``car_index`` on ``n`` images and ``k`` filters; a row of ``axis``."""
            if (n, k) in done:  # the shared corner of both axes: measured once
                rows.append({**done[(n, k)], "axis": axis})
                return
            t, df = timed(lambda: carlib.car_index(model, layer, (x[:n], y[:n]), filters=range(k),
                                                   device=dev, progress=False,
                                                   precision=args.precision), dev)
            precision = df.attrs.get("precision", "fp32")
            macs = (sum(macm.executed(n, k, precision=precision,
                                      recomputed=recomputed_share(df.attrs.get("screen_recomputed"))))
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
