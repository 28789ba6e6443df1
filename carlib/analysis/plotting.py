"""Plotting helpers shared by the figures: filter grids, patch mosaics and panels, saving figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
from torch import nn

from ..paths import figures_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .patches import Patch

__all__ = ["filter_images", "filter_grid", "patch_mosaic", "patch_panel", "save_figure", "style"]


def style() -> None:
    """A clean, print-readable matplotlib/seaborn style (fixed fonts and sizes)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.2)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "svg.hashsalt": "carlib",
                                "pdf.compression": 6})


def filter_images(conv: nn.Conv2d) -> np.ndarray:
    """RGB pictures of first-layer filters, each scaled to [0, 1] around grey (0.5 = zero).

    Returns:
        ``(filters, kh, kw, 3)`` float array.
    """
    w = conv.weight.detach().cpu().float()
    m = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (0.5 + 0.5 * w / m).permute(0, 2, 3, 1).numpy()


def filter_grid(conv: nn.Conv2d, *, ncols: int = 16, highlight: Mapping[int, str] | None = None,
                labels: Mapping[int, str] | None = None, colors: Mapping[int, str] | None = None,
                title: str | None = None, scale: float = 0.55):
    """A grid of first-layer filters, optionally framed and labeled.

    Args:
        conv: a convolution with 3 input channels.
        ncols: filters per row.
        highlight: ``{filter: text}``: a thick frame and the text (e.g. the pruning rank).
        labels: ``{filter: text}`` written under each filter (e.g. its color index).
        colors: ``{filter: color}`` of the frames.
        title: figure title.
        scale: inches per filter.

    Returns:
        The matplotlib figure.
    """
    imgs = filter_images(conv)
    n = len(imgs)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * (1.35 if labels else 1.1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(imgs[i], interpolation="nearest")
        color = (colors or {}).get(i, "crimson")
        for s in ax.spines.values():
            s.set_visible(highlight is not None and i in highlight)
            s.set_color(color)
            s.set_linewidth(3)
        top = f"{i}" if not highlight or i not in highlight else f"{i} #{highlight[i]}"
        ax.set_title(top, fontsize=6, pad=1.5, color=color if highlight and i in highlight else "black")
        if labels and i in labels:
            ax.set_xlabel(labels[i], fontsize=6, labelpad=1)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    return fig


def patch_mosaic(patches: Sequence[np.ndarray], ncols: int = 3) -> np.ndarray:
    """Tile uint8 patches ``(s, s, 3)`` into one image with 1-pixel white gaps."""
    s = patches[0].shape[0]
    nrows = int(np.ceil(len(patches) / ncols))
    out = np.full((nrows * (s + 1) - 1, ncols * (s + 1) - 1, 3), 255, dtype=np.uint8)
    for i, p in enumerate(patches):
        r, c = divmod(i, ncols)
        out[r * (s + 1) : r * (s + 1) + s, c * (s + 1) : c * (s + 1) + s] = p
    return out


def patch_panel(patches: Mapping[int, Sequence[Patch]], filters: Sequence[int],
                titles: Sequence[str], colors: Sequence[str], *, title: str, ncols: int = 10,
                width: float = 1.25, height: float = 1.45, mosaic_cols: int = 3) -> Figure:
    """Filters shown through their strongest patches: one mosaic per filter, in a grid.

    Args:
        patches: :func:`~carlib.analysis.patches.top_patches` of (at least) ``filters``.
        filters: the filters, in panel order (a filter may appear twice).
        titles: one title per panel.
        colors: one title color per panel.
        title: the figure's title.
        ncols: panels per row.
        width, height: inches per panel.
        mosaic_cols: patches per row of a mosaic.

    Returns:
        The figure (``ncols`` axes per row; unused ones are blank).

    Example:
        >>> fig = patch_panel(p, [3], ["filter 3"], ["navy"], title="one filter")  # doctest: +SKIP
    """
    rows = int(np.ceil(len(filters) / ncols))
    fig, axes = plt.subplots(rows, ncols, figsize=(ncols * width, rows * height), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, f in enumerate(filters):
        ax = axes.flat[i]
        ax.imshow(patch_mosaic([p.pixels for p in patches[f]], ncols=mosaic_cols))
        ax.set_title(titles[i], fontsize=7, color=colors[i])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, profile: str, name: str) -> list[Path]:
    """Save ``fig`` as ``figures/<profile>/<name>.png`` and ``.pdf`` (reproducible metadata).

    Returns:
        The two paths.
    """
    d = figures_dir(profile)
    paths = [d / f"{name}.png", d / f"{name}.pdf"]
    fig.savefig(paths[0], bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "Producer": None,
                                                         "Creator": None})
    return paths
