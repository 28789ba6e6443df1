"""The notebooks' figures: one function per figure, each returning the matplotlib figure.

Every figure of ``notebooks/01_*.ipynb`` ... ``05_*.ipynb`` is drawn here from the tables a
:class:`~carlib.analysis.study.Study` computes (and the summaries of
:mod:`carlib.analysis.summaries`); the notebook saves it with
:func:`carlib.analysis.plotting.save_figure`.

Example:
    >>> from carlib.analysis import figures
    >>> from carlib.analysis.plotting import save_figure
    >>> fig = figures.car_sorted(study.car("conv1"), "conv1")         # doctest: +SKIP
    >>> save_figure(fig, study.profile.name, "02_conv1_car_sorted")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from .patches import Patch
from .plotting import filter_grid, patch_mosaic, patch_panel
from .selectivity import COLOR_THRESHOLD
from .summaries import INDEX_SOURCES, PAPER_COLOR_COUNTS, overall_accuracy
from .tradeoff_figures import CRITERION_LABELS, compression_tradeoff, retraining, test_curves

__all__ = [
    "CURVE_LABELS", "CURVE_COLORS",
    "per_class_accuracy", "layer_filters", "car_sorted", "filters_with_car", "pruning_curves",
    "pruned_filters", "pruned_patches", "threshold_sensitivity", "index_agreement",
    "color_labeled_filters", "color_labeled_patches", "class_importance",
    # notebook 06 (carlib.analysis.tradeoff_figures)
    "CRITERION_LABELS", "test_curves", "retraining", "compression_tradeoff",
]

#: Legend text of each pruning order of :meth:`Study.curves`, in plotting order.
CURVE_LABELS: dict[str, str] = {"car-greedy": "CAR, greedy (the paper)",
                                "car-oneshot": "CAR, one-shot order",
                                "l1": "L1 norm of weights",
                                "random": "random order (mean ± sd over seeds)"}
#: Line colors of the pruning orders, in the order of :data:`CURVE_LABELS`.
CURVE_COLORS: list[str] = ["crimson", "salmon", "seagreen", "grey"]


def per_class_accuracy(acc: pd.DataFrame) -> Figure:
    """Histogram of the per-class top-1 accuracy, with the overall accuracy marked.

    Args:
        acc: :meth:`Study.accuracy_per_class`.

    Returns:
        The figure (one axes).

    Example:
        >>> fig = per_class_accuracy(study.accuracy_per_class())  # doctest: +SKIP
    """
    import seaborn as sns

    top1 = overall_accuracy(acc)["top1"]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    sns.histplot(acc["top1"], bins=np.linspace(0, 1, 21), ax=ax, color="steelblue")
    ax.axvline(top1, color="crimson", ls="--", label=f"mean {top1:.1%}")
    ax.set(xlabel="top-1 accuracy of a class", ylabel="classes",
           title=f"Per-class top-1 accuracy ({acc['n'].sum():,} images, {acc['n'].iloc[0]} per class)")
    ax.legend()
    return fig


def layer_filters(conv: nn.Conv2d, model: str, layer: str = "conv1") -> Figure:
    """Every filter of a first layer as an RGB picture.

    Args:
        conv: the convolution (3 input channels).
        model: the model's name (for the title).
        layer: the layer's name (for the title).

    Returns:
        The figure (one axes per grid cell).

    Example:
        >>> fig = layer_filters(study.layer("conv1").module, "alexnet-tiny")  # doctest: +SKIP
    """
    return filter_grid(conv, ncols=16, title=f"{layer} of {model}: {conv.out_channels} filters, "
                       f"{conv.kernel_size[0]}x{conv.kernel_size[1]}x3")


def car_sorted(car: pd.DataFrame, layer: str) -> Figure:
    """The CAR of every filter of a layer as bars, sorted (grey: CAR <= 0).

    Args:
        car: :meth:`Study.car` (``filter, accuracy, car``; ``attrs`` ``base_accuracy`` and
            ``n_images``).
        layer: the layer's name (for the labels).

    Returns:
        The figure (one axes, one bar per filter).

    Example:
        >>> fig = car_sorted(study.car("conv1"), "conv1")  # doctest: +SKIP
    """
    base = car.attrs["base_accuracy"]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    srt = car.sort_values(["car", "filter"]).reset_index(drop=True)
    ax.bar(np.arange(len(srt)), 100 * srt["car"], color=np.where(srt["car"] > 0, "steelblue", "grey"), width=1.0)
    ax.set(xlabel=f"filters of {layer}, sorted by CAR", ylabel="CAR (percentage points)",
           title=f"CAR index of the {len(srt)} {layer} filters ({car.attrs['n_images']:,} images, "
                 f"base accuracy {base:.1%})")
    ax.set_xlim(-1, len(srt))
    return fig


def filters_with_car(conv: nn.Conv2d, car: pd.DataFrame, layer: str = "conv1") -> Figure:
    """The filters of a first layer, each labeled with its CAR in percentage points.

    Args:
        conv: the convolution (3 input channels).
        car: :meth:`Study.car` of that layer.
        layer: the layer's name (for the title).

    Returns:
        The figure.

    Example:
        >>> fig = filters_with_car(study.layer("conv1").module, study.car("conv1"))  # doctest: +SKIP
    """
    return filter_grid(conv, ncols=16, labels={f: f"{100 * c:+.1f}" for f, c in zip(car["filter"], car["car"])},
                       title=f"{layer} filters with their CAR (percentage points of top-1 accuracy)")


def pruning_curves(curves: pd.DataFrame, layer: str, n_filters: int, n_images: int,
                   n_seeds: int) -> Figure:
    """Accuracy against filters pruned for every pruning order (random: mean ± sd over seeds).

    Args:
        curves: :meth:`Study.curves`.
        layer: the layer's name (for the labels).
        n_filters: filters of the layer (a dotted line marks half of them).
        n_images: images the curves are measured on.
        n_seeds: seeds of the random order.

    Returns:
        The figure (one axes, one line per order).

    Example:
        >>> fig = pruning_curves(study.curves("conv1"), "conv1", 64, 200, 5)  # doctest: +SKIP
    """
    import seaborn as sns

    plot = curves.assign(method=curves["method"].map(CURVE_LABELS), accuracy=100 * curves["accuracy"])
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=plot, x="n_pruned", y="accuracy", hue="method", errorbar="sd", ax=ax,
                 hue_order=list(CURVE_LABELS.values()), palette=CURVE_COLORS)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside: it hid curves
    ax.axvline(n_filters // 2, color="black", lw=0.8, ls=":")
    ax.set(xlabel=f"filters of {layer} pruned (of {n_filters})", ylabel="top-1 accuracy (%)",
           title=f"Pruning {layer}: {n_images:,} images, {n_seeds} random seeds")
    return fig


def pruned_filters(conv: nn.Conv2d, pruned: Sequence[int], layer: str = "conv1") -> Figure:
    """The filters of a first layer, the first pruned ones framed with their pruning rank.

    Args:
        conv: the convolution (3 input channels).
        pruned: filters in pruning order (:meth:`Study.pruned_top`).
        layer: the layer's name (for the title).

    Returns:
        The figure.

    Example:
        >>> fig = pruned_filters(conv1, study.pruned_top("conv1"))  # doctest: +SKIP
    """
    return filter_grid(conv, ncols=16, highlight={f: i + 1 for i, f in enumerate(pruned)},
                       title=f"The first {len(pruned)} CAR-pruned {layer} filters, framed with their pruning rank")


def pruned_patches(patches: Mapping[int, Sequence[Patch]], pruned: Sequence[int],
                   important: Sequence[int], layer: str, n_images: int) -> Figure:
    """The first CAR-pruned and the most important filters of a layer through their patches.

    Args:
        patches: :func:`~carlib.analysis.patches.top_patches` of ``pruned + important``.
        pruned: filters in pruning order (titled with their rank, in red).
        important: the most important filters (titled in blue).
        layer: the layer's name (for the title).
        n_images: images the patches were searched in.

    Returns:
        The figure (10 panels per row).

    Example:
        >>> fig = pruned_patches(p, top20, most, "conv2", len(study.data))  # doctest: +SKIP
    """
    filters = list(pruned) + list(important)
    n = max(len(patches[f]) for f in filters)
    size = patches[filters[0]][0].pixels.shape[0]
    titles = [f"filter {f}\n" + (f"#{list(pruned).index(f) + 1} pruned" if f in pruned else "most important")
              for f in filters]
    colors = ["crimson" if f in pruned else "navy" for f in filters]
    return patch_panel(patches, filters, titles, colors,
                       title=f"{layer} filters through their {n} strongest {size}x{size} receptive-field patches "
                             f"({n_images:,} images): the {len(pruned)} first CAR-pruned and the "
                             f"{len(important)} most important")


def threshold_sensitivity(sweeps: pd.DataFrame, *, threshold: float = COLOR_THRESHOLD,
                          sources: Mapping[str, str] = INDEX_SOURCES,
                          paper: Mapping[str, int] = PAPER_COLOR_COUNTS) -> Figure:
    """Color-selective filters among the top pruned ones as the threshold moves, per layer.

    Args:
        sweeps: :func:`~carlib.analysis.summaries.threshold_sweeps` (one panel per layer, in order
            of appearance).
        threshold: the threshold used for the counts (a vertical line).
        sources: ``{layer: which index}`` (the panel titles).
        paper: ``{layer: the paper's count}`` (a horizontal line).

    Returns:
        The figure (one axes per layer: the counts, the base rate, the paper's count, the threshold).

    Example:
        >>> fig = threshold_sensitivity(summaries.threshold_sweeps(indices, top))  # doctest: +SKIP
    """
    layers = list(dict.fromkeys(sweeps["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, layer in zip(axes, layers):
        s = sweeps[sweeps["layer"] == layer]
        ax.plot(s["threshold"], s["color_in_pruned"], "o-", color="crimson",
                label=f"among the top {s['n_pruned'].iloc[0]} CAR-pruned")
        ax.plot(s["threshold"], s["expected"], "s--", color="grey", label="expected at random (base rate)")
        ax.axhline(paper[layer], color="black", ls=":", label=f"paper: {paper[layer]}/20")
        ax.axvline(threshold, color="steelblue", lw=0.8)
        ax.set(xlabel="color-index threshold", title=f"{layer} ({sources[layer]})")
    axes[0].set_ylabel("color-selective filters")
    axes[-1].legend(fontsize=8)
    return fig


def index_agreement(weights: pd.DataFrame, responses: pd.DataFrame, pruned: Sequence[int],
                    layer: str = "conv1") -> Figure:
    """The weight color index against the response color index of the same filters.

    Args:
        weights: :meth:`Study.color_weights` (``filter, color_index``).
        responses: :meth:`Study.color_responses` of the same layer.
        pruned: filters drawn in red (the top CAR-pruned).
        layer: the layer's name (for the title).

    Returns:
        The figure (one axes; the title gives Spearman's rho).

    Example:
        >>> fig = index_agreement(study.color_weights("conv1"), study.color_responses("conv1"),
        ...                       study.pruned_top("conv1"))  # doctest: +SKIP
    """
    both = weights.merge(responses, on="filter", suffixes=("_weights", "_responses"))
    rho = both[["color_index_weights", "color_index_responses"]].corr(method="spearman").iloc[0, 1]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(both["color_index_weights"], both["color_index_responses"], s=14,
               c=np.where(both["filter"].isin(pruned), "crimson", "grey"))
    ax.set(xlabel="color index from weights", ylabel="color index from responses",
           title=f"{layer}: Spearman rho = {rho:.2f} (red: top pruned)")
    return fig


def color_labeled_filters(conv: nn.Conv2d, index: np.ndarray, pruned: Sequence[int], *,
                          threshold: float = COLOR_THRESHOLD, layer: str = "conv1") -> Figure:
    """First-layer filters labeled color- (C) or shape-selective (S) with their index.

    Args:
        conv: the convolution (3 input channels).
        index: color index of every filter.
        pruned: the top CAR-pruned filters (framed with their rank: red if color, blue if shape).
        threshold: color-selective when the index is at least this.
        layer: the layer's name (for the title).

    Returns:
        The figure.

    Example:
        >>> fig = color_labeled_filters(conv1, w_idx["color_index"].to_numpy(), top1)  # doctest: +SKIP
    """
    return filter_grid(conv, ncols=16,
                       labels={f: f"{'C' if index[f] >= threshold else 'S'} {index[f]:.2f}" for f in range(len(index))},
                       highlight={f: i + 1 for i, f in enumerate(pruned)},
                       colors={f: "crimson" if index[f] >= threshold else "royalblue" for f in pruned},
                       title=f"{layer}: C = color-selective, S = shape-selective (index >= {threshold}); "
                             "framed: top CAR-pruned with rank")


def color_labeled_patches(patches: Mapping[int, Sequence[Patch]], pruned: Sequence[int],
                          index: np.ndarray, *, threshold: float = COLOR_THRESHOLD,
                          layer: str = "conv2") -> Figure:
    """The top CAR-pruned filters of a layer through their patches, labeled C or S.

    Args:
        patches: :func:`~carlib.analysis.patches.top_patches` of ``pruned`` (4 each).
        pruned: filters in pruning order.
        index: response color index of every filter.
        threshold: color-selective when the index is at least this.
        layer: the layer's name (for the title).

    Returns:
        The figure (10 panels per row).

    Example:
        >>> fig = color_labeled_patches(p, top2, r2["color_index"].to_numpy())  # doctest: +SKIP
    """
    labels = ["C" if index[f] >= threshold else "S" for f in pruned]
    titles = [f"#{i + 1} f{f}: {lab} {index[f]:.2f}" for i, (f, lab) in enumerate(zip(pruned, labels))]
    colors = ["crimson" if lab == "C" else "royalblue" for lab in labels]
    return patch_panel(patches, pruned, titles, colors, width=1.2, mosaic_cols=2,
                       title=f"{layer}, top CAR-pruned filters by their strongest patches: C = color-selective, "
                             f"S = shape-selective (response index >= {threshold})")


def class_importance(table: pd.DataFrame, images: np.ndarray, labels: np.ndarray, *, layer: str,
                     filt: int, why: str, picture: np.ndarray | None = None,
                     patches: Sequence[Patch] | None = None, images_per_class: int = 3) -> Figure:
    """One filter next to example images of its most and least important classes.

    Args:
        table: :meth:`Study.class_importance` of the filter (``rank, kind, class, name, car``).
        images: the dataset (in memory or decoded from files: its ``pixels(indices)``), or
            its uint8 images ``(N, H, W, 3)``.
        labels: the class of every image.
        layer, filt: the filter (for the title).
        why: why the filter was selected (the figure's title).
        picture: the filter's RGB picture (:func:`~carlib.analysis.plotting.filter_images`),
            for a first layer; or
        patches: its strongest patches (shown as a 2-column mosaic), for a deeper layer.
        images_per_class: images shown per class.

    Returns:
        The figure: the filter on the left; the most important classes in the top row and the
        least important in the bottom row, each class titled with its name and ``CAR_c``.

    Example:
        >>> t = study.class_importance("conv1", 5)  # doctest: +SKIP
        >>> fig = class_importance(t, study.data, study.data.labels, layer="conv1", filt=5,
        ...                        why="a filter", picture=filter_images(conv1)[5])  # doctest: +SKIP
    """
    labels = np.asarray(labels)
    fig = plt.figure(figsize=(12, 3.4))
    gs = fig.add_gridspec(2, 1 + 5 * images_per_class, wspace=0.05, hspace=0.35)
    ax = fig.add_subplot(gs[:, 0])
    if picture is not None:
        ax.imshow(picture, interpolation="nearest")
    else:
        ax.imshow(patch_mosaic([p.pixels for p in patches], ncols=2))
    ax.set_title(f"{layer} filter {filt}", fontsize=8)
    ax.axis("off")
    for r, kind in enumerate(("most", "least")):
        rows = table[table["kind"] == kind]
        for j, (cls, name, car) in enumerate(zip(rows["class"], rows["name"], rows["car"])):
            imgs = np.flatnonzero(labels == cls)[:images_per_class]
            for m, i in enumerate(imgs):
                a = fig.add_subplot(gs[r, 1 + j * images_per_class + m])
                a.imshow(images.pixels([i])[0] if hasattr(images, "pixels") else images[i])
                a.axis("off")
                if m == 0:
                    a.set_title(f"{name[:14]}\nCAR_c {car:+.2f}", fontsize=7, loc="left",
                                color="crimson" if kind == "most" else "navy")
    fig.suptitle(f"{why} (filter {filt}): most important classes (top row) and least important "
                 "(bottom row)", fontsize=9)
    return fig
