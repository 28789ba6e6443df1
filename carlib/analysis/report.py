"""``python -m carlib.analysis.report``: one self-contained HTML page per profile (``make report``).

``report/<profile>/index.html`` holds the claims of the paper next to what this run shows
(generated from :mod:`carlib.analysis.summaries`), every figure of ``figures/<profile>/``
inline (base64 PNG), the key tables of ``results/<profile>/`` and the provenance: commit, model
and data fingerprints, the weights' sha256 and how long each table took. It reads only cached
tables: a table that is missing or was computed from other inputs stops the report with a
message naming ``make reproduce``. The page opens in any browser, without Jupyter.
"""

from __future__ import annotations

import argparse
import base64
import html
import subprocess
import sys
from pathlib import Path

import pandas as pd

from ..errors import CarlibError
from ..files import write_text_atomic
from ..paths import REPO_ROOT, WEIGHTS_DIR, figures_dir
from .cached_study import CachedStudy
from .profiles import PROFILES, get_profile
from .study import Study
from .summaries import (accuracy_at, color_counts, color_counts_table, heldout_summary,
                        most_important, overall_accuracy, select_filters)

__all__ = ["CachedStudy", "claims", "build_report", "main", "CLAIMS"]

#: The paper's claim behind each notebook (Abbasi-Asl & Yu 2017, ImageNet AlexNet).
CLAIMS: dict[str, str] = {
    "01_baseline": "the network and its filters",
    "02_car_conv1": "greedy CAR keeps more accuracy than other orders at half of conv1's filters",
    "03_car_conv2": "the same for conv2",
    "04_color_vs_shape": "17 (conv1) and 14 (conv2) of the top 20 CAR-pruned filters are color-selective",
    "05_class_importance": "a filter's most important classes match what it selects",
    "06_compression": "at half the filters CAR beats the best benchmark by 26 (conv1) and 20 (conv2) points; "
                      "with weight pruning and sharing the layer shrinks 42x at close to the original accuracy",
}


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _layer_claim(study: Study, layer: str) -> str:
    car = study.car(layer)
    n = study.layer(layer).filters
    curves, greedy = study.curves(layer), study.greedy(layer)
    at = accuracy_at(curves, study.profile.curve_depth_for(layer, n))
    depth = at.attrs["n_pruned"]
    parts = [f"CAR from {100 * car['car'].min():+.2f} % to {100 * car['car'].max():+.2f} % "
             f"({int((car['car'] <= 0).sum())} of {n} at or below 0)."]
    g = greedy["accuracy"].iloc[-1]
    parts.append(f"{len(greedy)} greedy steps on {len(study.greedy_data):,} images: "
                 f"{_pct(greedy.attrs.get('base_accuracy', curves['accuracy'].iloc[0]))} → {_pct(g)}.")
    methods = [m for m in ("car-oneshot", "l1") if m in at.index]
    rnd = at.loc["random"] if "random" in at.index else None
    txt = ", ".join(f"{m} {_pct(at.loc[m, 'mean'])}" for m in methods)
    if rnd is not None:
        txt += f", random {_pct(rnd['mean'])} ± {100 * (rnd['std'] if rnd['std'] == rnd['std'] else 0):.1f} " \
               f"({int(rnd['runs'])} seeds)"
    parts.append(f"At {depth} of {n} pruned: {txt}.")
    held = study.heldout_accuracy(layer)
    if not held.empty:
        h = heldout_summary(held)
        at_g = h.xs(len(greedy), level="n_pruned") if len(greedy) in h.index.get_level_values(0) else None
        if at_g is not None and "car-greedy" in at_g.index:
            parts.append(f"On the {h.attrs['n_images']:,} CAR images greedy never saw (unpruned "
                         f"{_pct(h.attrs['unpruned'])}): greedy {_pct(at_g.loc['car-greedy', 'mean'])} at "
                         f"{len(greedy)} pruned.")
    return " ".join(parts)


def claims(study: Study) -> pd.DataFrame:
    """The paper's claims next to what this run shows, one row per notebook.

    Args:
        study: a study whose tables are cached (:class:`CachedStudy`).

    Returns:
        ``notebook, paper, this run`` (the last column is generated from the tables).
    """
    acc = study.accuracy_per_class()
    o = overall_accuracy(acc)
    rows = {"01_baseline": f"top-1 {_pct(o['top1'])}, top-5 {_pct(o['top5'])} on {o['images']:,} images; "
                           f"per-class top-1 from {_pct(acc['top1'].min())} to {_pct(acc['top1'].max())}"}
    rows["02_car_conv1"] = _layer_claim(study, "conv1")
    rows["03_car_conv2"] = _layer_claim(study, "conv2")
    labels = {layer: study.color_index(layer) for layer in ("conv1", "conv2")}
    indices = {layer: df["color_index"].to_numpy() for layer, df in labels.items()}
    top = {layer: study.pruned_top(layer) for layer in indices}
    counts = color_counts(indices, top, sources={layer: df.attrs["source"] for layer, df in labels.items()})
    rows["04_color_vs_shape"] = "; ".join(
        f"{r['layer']}: {r['color_pruned']}/{r['n_pruned']} color-selective against {r['expected']:.1f} "
        f"expected from the base rate ({r['color_layer']}/{r['n_layer']}), p = {r['p_greater']:.2g}"
        f"{' (enriched)' if r['p_greater'] < 0.05 else ' (not enriched)'}" for r in counts.to_dict("records"))
    sel = select_filters(study.car("conv1"), study.car("conv2"), study.color_index("conv1"))
    s = sel[sel["selected_as"] == "most color-selective conv1 filter"].iloc[0]
    t = study.class_importance("conv1", int(s["filter"]), k=3)
    most = t[t["kind"] == "most"]
    rows["05_class_importance"] = (f"conv1 filter {s['filter']} (the most color-selective): most important classes "
                                   + ", ".join(f"{n} (CAR_c {c:+.2f})" for n, c in zip(most["name"], most["car"])))
    if study.profile.has_test:
        rows["06_compression"] = _compression_claim(study)
    return pd.DataFrame([{"notebook": k, "paper": CLAIMS[k], "this run": v} for k, v in rows.items()])


def _compression_claim(study: Study) -> str:
    """Notebook 06 in one line: CAR against the strongest baseline at half of each layer on the
    test images, and the Deep Compression factor within one point (when computed)."""
    from .heldout import paired_tests
    from .retraining import deep_compression, within_one_point
    from .verdicts import best_baseline

    parts = []
    try:
        for layer in ("conv1", "conv2"):
            p = paired_tests(study, layer)
            ref = "car-greedy" if "car-greedy" in set(p["reference"]) else "car-oneshot"
            b = best_baseline(p, ref)
            parts.append(f"{layer}, {int(b['depth'])} filters pruned: {ref} {_pct(b['accuracy_reference'])} against "
                         f"{b['other']} {_pct(b['accuracy_other'])} on {int(b['n_images']):,} test images "
                         f"(McNemar p = {b['p_value']:.2g})")
        for layer in (study.profile.retrain or {}).get("layers", []):
            w = within_one_point(deep_compression(study, layer))
            parts.append(f"{layer}: {w['factor']:.1f}x within one point of the unpruned accuracy" if w["factor"]
                         else f"{layer}: no compression setting within one point of the unpruned accuracy")
    except CarlibError:
        parts.append("notebook 06 not run for this profile yet")
    return "; ".join(parts)


def _git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _table(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_html(index=index, border=0, classes="t", float_format=lambda x: f"{x:.4g}", escape=True)


def _figures(profile: str) -> tuple[list[str], list[str]]:
    """``<figure>`` elements for every PNG of ``figures/<profile>/`` and the names found."""
    out, names = [], []
    for png in sorted(figures_dir(profile).glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        out.append(f"<figure><img alt='{html.escape(png.stem)}' src='data:image/png;base64,{data}'>"
                   f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
        names.append(png.name)
    return out, names


def _provenance(study: Study) -> str:
    import torch

    from .. import __version__
    from ..data import data_fingerprint
    from ..models import model_fingerprint

    sha = WEIGHTS_DIR / f"{study.profile.model}.sha256"
    rows = [("commit", _git_commit()), ("carlib", __version__), ("torch", torch.__version__),
            ("profile", html.escape(str(study.profile.to_dict()))),
            ("model fingerprint", model_fingerprint(study.model)),
            ("weights sha256", sha.read_text().split()[0] if sha.is_file() else "(torchvision's)"),
            ("CAR images", f"{len(study.data):,}, fingerprint {data_fingerprint(study.data)}"),
            ("greedy images", f"{len(study.greedy_data):,}, fingerprint {data_fingerprint(study.greedy_data)}")]
    times = sorted((p.stem, study.seconds(p.stem)) for p in study.dir.glob("*.json"))
    rows += [(f"time: {name}", f"{s:,.1f} s") for name, s in times if s is not None]
    return "<table class='t'>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table.t{border-collapse:collapse;margin:.5em 0 1.5em;font-size:90%}"
       ".t th,.t td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}"
       "figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#666;font-size:85%}")


def build_report(profile: str, out: Path | None = None) -> Path:
    """Write ``report/<profile>/index.html`` (or ``out``) from the cached tables and figures.

    Args:
        profile: a profile name whose results are cached (``make reproduce PROFILE=...``).
        out: where to write the page (default ``report/<profile>/index.html``).

    Returns:
        The page's path.

    Raises:
        CarlibError: unknown profile, a missing or stale table, or no figures.

    Example:
        >>> build_report("default")  # doctest: +SKIP
        PosixPath('.../report/default/index.html')
    """
    prof = get_profile(profile)
    figs, names = _figures(prof.name)
    if not figs:
        raise CarlibError(f"no figures in figures/{prof.name}/; run `make reproduce PROFILE={prof.name}` first")
    study = CachedStudy(prof.name, progress=False)
    claim_table = claims(study)
    acc = study.accuracy_per_class()
    parts = [f"<h1>carlib report: profile <code>{prof.name}</code></h1>",
             f"<p><code>{prof.model}</code> on {prof.dataset} {prof.split}: CAR on {len(study.data):,} images, "
             f"greedy and curves on {len(study.greedy_data):,}. Interpreting CNNs Through Compression "
             "(Abbasi-Asl &amp; Yu 2017, arXiv:1711.02329).</p>",
             "<h2>The paper's claims and this run</h2>", _table(claim_table)]
    parts.append("<h2>Key tables</h2><h3>Per-class top-1 accuracy: the 5 easiest and hardest classes</h3>")
    srt = acc.sort_values(["top1", "class"], ascending=[False, True])
    parts.append(_table(pd.concat([srt.head(5), srt.tail(5)])))
    for layer in prof.greedy_steps:
        car = study.car(layer)
        n = study.layer(layer).filters
        parts.append(f"<h3>{layer}: most important filters by CAR</h3>"
                     + _table(car.set_index("filter").loc[most_important(car, 10)].reset_index()))
        parts.append(f"<h3>{layer}: greedy steps</h3>" + _table(study.greedy(layer)))
        at = accuracy_at(study.curves(layer), prof.curve_depth_for(layer, n))
        parts.append(f"<h3>{layer}: accuracy with {at.attrs['n_pruned']} of {n} filters pruned</h3>"
                     + _table(at, index=True))
    labels = {layer: study.color_index(layer) for layer in ("conv1", "conv2")}
    counts = color_counts({layer: df["color_index"].to_numpy() for layer, df in labels.items()},
                          {layer: study.pruned_top(layer) for layer in labels},
                          sources={layer: df.attrs["source"] for layer, df in labels.items()})
    parts.append("<h3>Color-selective filters among the top CAR-pruned</h3>" + _table(color_counts_table(counts)))
    parts.append(f"<h2>Figures ({len(figs)})</h2>" + "".join(figs))
    parts.append("<h2>Provenance</h2>" + _provenance(study))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>carlib report: {prof.name}"
            f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    path = Path(out) if out else REPO_ROOT / "report" / prof.name / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, page)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m carlib.analysis.report", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default", help=" | ".join(PROFILES))
    p.add_argument("--out", default=None, help="output file (default report/<profile>/index.html)")
    args = p.parse_args(argv)
    try:
        path = build_report(args.profile, Path(args.out) if args.out else None)
    except CarlibError as exc:
        print(f"carlib: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
