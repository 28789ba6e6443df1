"""Labels made by eye, blind to CAR, and their agreement with the quantitative labels.

The paper sorted filters into color- and shape-selective by eye. carlib's labels
(:mod:`carlib.analysis.labels`) are quantitative; a by-eye label file lets a reader see how far
the two agree. To keep the eye blind, :func:`blinded_sheet` shows a first layer's filters in a
seeded random order, each named only by its position on the sheet (no filter number, no CAR,
no index); the labeler writes ``position,label`` rows; :func:`read_blind_labels` maps them back
to filters. Committed files live in ``carlib/resources/labels/`` (:func:`by_eye_file`), with the
protocol in the README beside them.

Command line (writes the sheet and an empty label file)::

    python -m carlib.analysis.blind alexnet-tiny conv1 sheet.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from torch import nn

from ..errors import CarlibError
from ..files import atomic_path, write_text_atomic
from .plotting import filter_images

__all__ = ["BLIND_SEED", "LABELS", "blind_order", "blinded_sheet", "read_blind_labels", "by_eye_file",
           "cohen_kappa", "main"]

BLIND_SEED = 2017
"""The seed of the sheet's permutation (the one the committed files were labeled with)."""

LABELS = ("color", "edge-or-shape", "noise-or-texture")
"""The three classes, as :func:`carlib.analysis.labels.filter_labels` names them."""

_RESOURCES = Path(__file__).resolve().parent.parent / "resources" / "labels"


def blind_order(n: int, seed: int = BLIND_SEED) -> np.ndarray:
    """The filter shown at each position of the sheet: ``order[p - 1]`` is at position ``p``.

    Example:
        >>> sorted(blind_order(5).tolist())
        [0, 1, 2, 3, 4]
    """
    return np.random.default_rng(seed).permutation(n)


def blinded_sheet(conv: nn.Conv2d, seed: int = BLIND_SEED, ncols: int = 8):
    """A first layer's filters in the order of :func:`blind_order`, titled by position only.

    Args:
        conv: a convolution with 3 input channels.
        seed: the permutation's seed.
        ncols: filters per row.

    Returns:
        The matplotlib figure.

    Example:
        >>> from carlib import load_model
        >>> from carlib.layers import resolve_layer
        >>> fig = blinded_sheet(resolve_layer(load_model(), "conv1").module)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    imgs = filter_images(conv)[blind_order(conv.out_channels, seed)]
    nrows = -(-len(imgs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.3, nrows * 1.45), squeeze=False)
    for p, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if p >= len(imgs):
            ax.axis("off")
            continue
        ax.imshow(imgs[p], interpolation="nearest")
        ax.set_title(str(p + 1), fontsize=9, pad=2)
    fig.tight_layout(pad=0.3)
    return fig


def read_blind_labels(path: str | Path, n: int, seed: int = BLIND_SEED) -> pd.DataFrame:
    """A by-eye label file (``position,label``, positions 1..n of the sheet) as ``filter, label``.

    Args:
        path: the CSV file.
        n: the layer's filters.
        seed: the seed the sheet was made with.

    Returns:
        ``filter, label``, one row per filter, in filter order.

    Raises:
        CarlibError: a missing, repeated or unknown position, or a label not in :data:`LABELS`.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "l.csv"
        >>> _ = f.write_text("position,label\\n1,color\\n2,edge-or-shape\\n")
        >>> t = read_blind_labels(f, 2)
        >>> t.set_index("filter").loc[blind_order(2)[0], "label"]  # the filter at position 1
        'color'
    """
    try:
        df = pd.read_csv(path, comment="#", dtype={"label": str})
    except (OSError, pd.errors.ParserError) as e:
        raise CarlibError(f"{path}: cannot read the label file ({e}); write 'position,label' rows") from None
    if list(df.columns) != ["position", "label"]:
        raise CarlibError(f"{path}: columns {list(df.columns)}; the file needs exactly 'position,label'")
    pos = pd.to_numeric(df["position"], errors="coerce")
    if pos.isna().any() or sorted(pos.astype(int)) != list(range(1, n + 1)):
        raise CarlibError(f"{path}: the positions must be 1..{n}, each once; "
                          f"label every filter of the sheet exactly once")
    missing = pos[df["label"].isna()].astype(int).tolist()
    if missing:
        raise CarlibError(f"{path}: position(s) {missing[:10]} have no label; write one of {', '.join(LABELS)}")
    bad = sorted(set(df["label"]) - set(LABELS))
    if bad:
        raise CarlibError(f"{path}: unknown label(s) {bad}; use one of {', '.join(LABELS)}")
    order = blind_order(n, seed)
    out = pd.DataFrame({"filter": order[pos.astype(int).to_numpy() - 1], "label": df["label"].to_numpy()})
    return out.sort_values("filter").reset_index(drop=True)


def by_eye_file(model: str, layer: str) -> Path | None:
    """The committed by-eye label file of ``model``'s ``layer`` (``None`` if there is none).

    Example:
        >>> by_eye_file("no-such-model", "conv1") is None
        True
    """
    path = _RESOURCES / f"{model}_{layer}_by_eye.csv"
    return path if path.is_file() else None


def cohen_kappa(a: Sequence[str], b: Sequence[str], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Cohen's kappa between two labelings of the same items, with a bootstrap interval.

    ``kappa = (p_o - p_e) / (1 - p_e)``: the observed agreement ``p_o`` beyond the agreement
    ``p_e`` expected from the two labelings' marginals alone (0: chance, 1: identical).

    Args:
        a, b: the labels, item by item.
        n_boot: bootstrap resamples of the items (percentile 95 % interval).
        seed: the bootstrap's seed.

    Returns:
        ``{"kappa", "low", "high", "agreement", "expected", "n"}``.

    Example:
        >>> k = cohen_kappa(["x", "x", "y", "y"], ["x", "x", "y", "x"])
        >>> round(k["kappa"], 3), k["agreement"], k["n"]
        (0.5, 0.75, 4)
    """
    a, b = np.asarray(a, dtype=str), np.asarray(b, dtype=str)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise CarlibError(f"cohen_kappa needs two labelings of the same items, got {a.shape} and {b.shape}")
    cats = np.unique(np.concatenate([a, b]))
    ia, ib = np.searchsorted(cats, a), np.searchsorted(cats, b)

    def kappa(idx: np.ndarray) -> tuple[float, float, float]:
        x, y = ia[idx], ib[idx]
        po = float(np.mean(x == y))
        pe = float(np.sum(np.bincount(x, minlength=len(cats)) * np.bincount(y, minlength=len(cats)))) / len(x) ** 2
        return (1.0 if po == 1 else (po - pe) / (1 - pe)) if pe < 1 else float("nan"), po, pe

    k, po, pe = kappa(np.arange(len(a)))
    rng = np.random.default_rng(seed)
    boots = np.array([kappa(rng.integers(0, len(a), len(a)))[0] for _ in range(n_boot)])
    low, high = np.nanquantile(boots, [0.025, 0.975])
    return {"kappa": k, "low": float(low), "high": float(high), "agreement": po, "expected": pe, "n": len(a)}


def main(argv: list[str] | None = None) -> int:
    """``python -m carlib.analysis.blind MODEL LAYER SHEET.png``: the sheet and an empty label file."""
    p = argparse.ArgumentParser(prog="python -m carlib.analysis.blind", description=main.__doc__)
    p.add_argument("model", help="a model name (e.g. alexnet-tiny)")
    p.add_argument("layer", help="a first layer with 3 input channels (e.g. conv1)")
    p.add_argument("sheet", type=Path, help="where the PNG goes (the label file goes beside it, .csv)")
    p.add_argument("--seed", type=int, default=BLIND_SEED)
    args = p.parse_args(argv)
    from ..layers import resolve_layer
    from ..models import load_model

    try:
        conv = resolve_layer(load_model(args.model), args.layer).module
        if conv.in_channels != 3:
            raise CarlibError(f"{args.layer} has {conv.in_channels} input channels; a sheet shows a first "
                              f"layer's filters (3 input channels) as pictures")
        fig = blinded_sheet(conv, args.seed)
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.sheet) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        template = args.sheet.with_suffix(".csv")
        if not template.exists():
            rows = "".join(f"{i},\n" for i in range(1, conv.out_channels + 1))
            write_text_atomic(template, "position,label\n" + rows)
    except CarlibError as e:
        print(f"carlib: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.sheet}: {conv.out_channels} filters in a random order (seed {args.seed}); "
          f"write one of {', '.join(LABELS)} per position in {template}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
