"""Notebook 06's figures: every pruning criterion on the test images, retraining, and the
storage-accuracy trade-off of Deep Compression. Each function returns the matplotlib figure
(also reachable under the same names in :mod:`carlib.analysis.figures`).

Example:
    >>> from carlib.analysis import heldout, tradeoff_figures
    >>> fig = tradeoff_figures.test_curves(heldout.test_curves(study, "conv1"), "conv1", 64)  # doctest: +SKIP
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["CRITERION_LABELS", "test_curves", "retraining", "compression_tradeoff"]


#: Legend text of every order of notebook 06 (:func:`carlib.analysis.heldout.selection_orders`;
#: the random orders pooled), in plotting order.
CRITERION_LABELS: dict[str, str] = {"car-greedy": "CAR, greedy (the paper)", "car-oneshot": "CAR, one-shot",
                                    "taylor": "Taylor, first order", "mean_activation": "mean activation",
                                    "apoz": "APoZ", "l1": "L1 of weights", "l2": "L2 of weights",
                                    "random": "random (mean over seeds)"}


def test_curves(curves: pd.DataFrame, layer: str, n_filters: int) -> Figure:
    """Accuracy on the test images against filters pruned, every criterion, with Wilson 95 %
    intervals (the random orders: their mean, and the range over seeds).

    Args:
        curves: :func:`carlib.analysis.heldout.test_curves`.
        layer: the layer's role (for the labels).
        n_filters: filters of the layer.

    Returns:
        The figure.

    Example:
        >>> fig = test_curves(heldout.test_curves(study, "conv1"), "conv1", 64)  # doctest: +SKIP
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = dict(zip(CRITERION_LABELS, ["crimson", "salmon", "royalblue", "darkorange", "purple",
                                         "seagreen", "olive", "grey"]))
    is_random = curves["criterion"].str.startswith("random-")
    for name, label in CRITERION_LABELS.items():
        if name == "random":
            g = curves[is_random].groupby("n_pruned")["accuracy"]
            if not len(g):
                continue
            x = np.asarray(list(g.groups))
            ax.plot(x, 100 * g.mean().to_numpy(), color=colors[name], ls="--", label=label)
            ax.fill_between(x, 100 * g.min().to_numpy(), 100 * g.max().to_numpy(), color=colors[name], alpha=0.15)
            continue
        c = curves[curves["criterion"] == name].sort_values("n_pruned")
        if c.empty:
            continue
        ax.plot(c["n_pruned"], 100 * c["accuracy"], marker="o" if len(c) < 12 else None, ms=3,
                color=colors[name], label=label)
        ax.fill_between(c["n_pruned"], 100 * c["low"], 100 * c["high"], color=colors[name], alpha=0.12)
    n = int(curves["n_images"].iloc[0])
    ax.set(xlabel=f"filters of {layer} pruned (of {n_filters})", ylabel="top-1 accuracy (%)",
           title=f"Pruning {layer}, every criterion: {n:,} test images (95 % intervals)")
    ax.legend(fontsize=8)
    return fig


def retraining(summary: pd.DataFrame, layer: str, depth: int, unpruned: float | None = None) -> Figure:
    """Test accuracy of each retrained criterion before and after retraining (mean over seeds;
    the bar: the range over seeds after).

    Args:
        summary: :func:`carlib.analysis.retraining.retraining_summary`.
        layer: the layer's role.
        depth: filters pruned.
        unpruned: the unpruned network's accuracy on the same images (a dashed line), if given.

    Returns:
        The figure.

    Example:
        >>> fig = retraining(retraining_summary(runs), "conv1", 32)  # doctest: +SKIP
    """
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(summary) + 1.5))
    y = np.arange(len(summary))[::-1]
    ax.scatter(100 * summary["before"], y, color="grey", label="before retraining", zorder=3)
    ax.scatter(100 * summary["after"], y, color="crimson", label="after (mean over seeds)", zorder=3)
    ax.hlines(y, 100 * summary["after_min"], 100 * summary["after_max"], color="crimson", lw=3, alpha=0.4)
    for yi, b, a in zip(y, summary["before"], summary["after"]):
        ax.annotate("", (100 * a, yi), (100 * b, yi), arrowprops={"arrowstyle": "->", "color": "black", "lw": 0.8})
    if unpruned is not None:
        ax.axvline(100 * unpruned, color="black", ls="--", lw=0.8, label=f"unpruned ({100 * unpruned:.1f} %)")
    ax.set_yticks(y, summary["criterion"])
    n = int(summary["n_images"].iloc[0])
    ax.set(xlabel="top-1 accuracy (%)", title=f"{layer}, {depth} filters pruned: {n:,} test images")
    # outside the axes: the points span the whole width
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def compression_tradeoff(table: pd.DataFrame, layer: str) -> Figure:
    """Test accuracy against the layer's storage compression factor (log scale), with Wilson
    95 % intervals: the unpruned layer, the structurally pruned one, and every Deep Compression
    setting; a dashed line one point below the unpruned accuracy.

    Args:
        table: :func:`carlib.analysis.retraining.deep_compression`.
        layer: the layer's role.

    Returns:
        The figure.

    Example:
        >>> fig = compression_tradeoff(retraining.deep_compression(study, "conv1"), "conv1")  # doctest: +SKIP
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    base = 100 * float(table.loc[table["stage"] == "unpruned", "accuracy"].iloc[0])
    for stage, color, label in (("unpruned", "black", "unpruned"),
                                ("filters", "crimson", "filters pruned by CAR, not retrained"),
                                ("deep", "royalblue", "+ magnitude pruning and weight sharing, fine-tuned")):
        t = table[table["stage"] == stage]
        if t.empty:
            continue
        y = 100 * t["accuracy"].to_numpy()
        err = np.vstack([y - 100 * t["low"].to_numpy(), 100 * t["high"].to_numpy() - y])
        ax.errorbar(t["factor"], y, yerr=err, fmt="o", color=color, label=label, capsize=3)
        if stage == "deep":
            for r in t.itertuples(index=False):
                # upright beside the point: neighbours on the log axis are close
                ax.annotate(f"{r.sparsity:.0%}, {r.bits} bit", (r.factor, 100 * r.accuracy), fontsize=7,
                            xytext=(5, 0), textcoords="offset points", rotation=90, va="center")
    ax.axhline(base - 1, color="black", lw=0.8, ls="--", label="1 point below unpruned")
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200) if t <= 1.5 * float(table["factor"].max())]
    ax.set_xticks(ticks, [f"{t}x" for t in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    n = int(table["n_images"].iloc[0])
    ax.set(xlabel=f"storage compression factor of {layer} (vs fp32)", ylabel="top-1 accuracy (%)",
           title=f"Compressing {layer}: {n:,} test images (95 % intervals)")
    ax.legend(fontsize=8)
    return fig
