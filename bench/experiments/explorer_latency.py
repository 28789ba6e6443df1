"""The filter explorer's live pruning: seconds until the accuracy, the selected filter's CAR
and every remaining filter's CAR are on screen (``LayerExplorer.prune``, as the widget calls it).

Measured on the profile's cached tables (computed first if missing), for several ``n_images``;
one warm-up call builds the engine's cache of consumer inputs, as the widget's first prune does.
Output: a CSV on stdout (``bench/results/<machine>/explorer-latency.csv``).

    .venv/bin/python bench/experiments/explorer_latency.py --profile default --layer conv1
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from carlib.analysis.explorer import LayerExplorer
from carlib.analysis.study import Study


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--layer", default="conv1")
    ap.add_argument("--images", default="20,50,100", help="comma-separated n_images")
    ap.add_argument("--prune", default="0,1", help="filters pruned (comma-separated)")
    ap.add_argument("--selected", type=int, default=5, help="the filter on screen")
    args = ap.parse_args(argv)
    study = Study(args.profile, progress=False)
    pruned = [int(f) for f in args.prune.split(",")]
    rows = []
    for n in (int(k) for k in args.images.split(",")):
        ex = LayerExplorer(study, args.layer, n_images=n)
        ex.unpruned()  # warm-up: engine built, consumer inputs cached
        marks: list[float] = []
        t0 = time.perf_counter()
        ex.prune(pruned, first=[args.selected], on_chunk=lambda r: marks.append(time.perf_counter() - t0))
        total = time.perf_counter() - t0
        rows.append({"profile": args.profile, "layer": args.layer, "n_images": len(ex.images),
                     "pruned": len(pruned), "accuracy_s": round(marks[0], 2),
                     "selected_car_s": round(marks[1], 2), "all_car_s": round(total, 2),
                     "filters": ex.n_filters - len(pruned)})
    pd.DataFrame(rows).to_csv(sys.stdout, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
