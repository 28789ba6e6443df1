"""The filter explorer's data: one layer of a :class:`~carlib.analysis.study.Study`, filter by filter.

:class:`LayerExplorer` reads the same cached tables as the notebooks (CAR, per-class CAR, color
index, greedy steps) and recomputes, with the CAR engine (:class:`carlib.engine.Engine`), the
accuracy and the CAR of the remaining filters when a set of filters is pruned, on a subset of
the greedy images. :mod:`carlib.analysis.explorer_ui` shows it as JupyterLab widgets.

Example:
    >>> ex = LayerExplorer(Study("smoke"), "conv1")       # doctest: +SKIP
    >>> ex.info(5)["car"]                                  # doctest: +SKIP
    >>> ex.prune([3, 7]).correct                           # doctest: +SKIP
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..car import car_table
from ..engine import Engine
from ..errors import CarlibError
from ..layers import check_filters
from .patches import top_patches
from .plotting import filter_images, patch_mosaic
from .selectivity import COLOR_THRESHOLD
from .study import Study

__all__ = ["LayerExplorer", "PruneResult", "subset_indices", "car_colors", "png_bytes", "DEFAULT_IMAGES"]

#: Images the live pruning runs on at most (evenly spaced among the greedy images).
DEFAULT_IMAGES = 50


def subset_indices(n: int, k: int | None) -> np.ndarray:
    """``k`` evenly spaced indices of ``range(n)`` (all of them when ``k`` is ``None`` or >= n).

    Args:
        n: images available.
        k: images wanted.

    Returns:
        Sorted int64 indices, the first one 0.

    Example:
        >>> subset_indices(200, 100)[:3].tolist()
        [0, 2, 4]
        >>> len(subset_indices(40, 100))
        40
    """
    if k is None or k >= n:
        return np.arange(n)
    if k < 1:
        raise CarlibError(f"the explorer needs at least 1 image, got n_images={k}")
    return np.unique(np.floor(np.arange(k) * (n / k)).astype(np.int64))


def car_colors(car: np.ndarray, scale: float | None = None) -> np.ndarray:
    """RGB colors (uint8, ``(n, 3)``) of CAR values: blue below 0, white at 0, red above.

    Args:
        car: CAR values (fractions); NaN (a pruned filter) is grey.
        scale: the CAR shown at full color (default: the largest absolute finite value).

    Returns:
        The colors.

    Example:
        >>> car_colors(np.array([0.1, -0.1, np.nan])).tolist()
        [[103, 0, 31], [5, 48, 97], [128, 128, 128]]
    """
    import matplotlib

    car = np.asarray(car, dtype=float)
    finite = np.isfinite(car)
    s = scale or (float(np.abs(car[finite]).max()) if finite.any() else 1.0) or 1.0
    rgba = matplotlib.colormaps["RdBu_r"]((np.nan_to_num(car) / s + 1) / 2)
    out = np.rint(rgba[:, :3] * 255).astype(np.uint8)
    out[~finite] = 128
    return out


def png_bytes(pixels: np.ndarray, scale: int = 1) -> bytes:
    """A uint8 RGB array as PNG bytes, enlarged ``scale`` times without smoothing.

    Example:
        >>> png_bytes(np.zeros((2, 2, 3), np.uint8))[:4]
        b'\\x89PNG'
    """
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class PruneResult:
    """The network with ``pruned`` filters removed, on the explorer's images.

    Attributes:
        pruned: the pruned filters (sorted).
        correct: images classified correctly (top-1); ``n_images`` of them in all.
        car: ``filter, accuracy, car`` of every remaining filter, relative to the pruned network.
        seconds: how long the engine took.
    """

    pruned: list[int]
    correct: int
    n_images: int
    car: pd.DataFrame = field(repr=False)
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        """``correct / n_images``."""
        return self.correct / self.n_images


class LayerExplorer:
    """One layer of a study: its filters, their CAR and color index, and live pruning.

    Args:
        study: the profile's :class:`~carlib.analysis.study.Study` (its cached tables are read,
            or computed once as the notebooks would).
        layer: a layer the profile prunes (``conv1``, ``conv2``: the keys of ``greedy_steps``).
        n_images: images the live pruning runs on (evenly spaced among the greedy images;
            ``None``: all of them).

    Example:
        >>> ex = LayerExplorer(Study("smoke"), "conv1")  # doctest: +SKIP
        >>> ex.prune([0, 1]).accuracy                     # doctest: +SKIP
    """

    def __init__(self, study: Study, layer: str, *, n_images: int | None = DEFAULT_IMAGES):
        if layer not in study.profile.greedy_steps:
            raise CarlibError(f"the explorer shows the layers profile {study.profile.name!r} prunes; "
                              f"choose one of: {', '.join(study.profile.greedy_steps)}")
        self.study, self.layer = study, layer
        self.conv = study.layer(layer).module
        self.n_filters = study.layer(layer).filters
        self.first = self.conv.in_channels == 3
        self.car = study.car(layer)
        self.greedy = study.greedy(layer)
        color = study.color_index(layer)  # the notebooks' label: weights or responses
        self.index_source = color.attrs["source"]
        self.color_index = color.sort_values("filter")["color_index"].to_numpy()
        idx = subset_indices(len(study.greedy_data), n_images)
        self.images = study.greedy_data.subset(idx) if len(idx) < len(study.greedy_data) else study.greedy_data
        self._engine: Engine | None = None
        self._unpruned: tuple[int, int] | None = None
        self._patches: dict[int, list] = {}

    # ---------------------------------------------------------------- what the tables say
    def info(self, filt: int) -> dict:
        """What the cached tables say about one filter.

        Returns:
            ``filter, car, accuracy`` (without it), ``n_images``, ``base_accuracy``,
            ``color_index``, ``index_source``, ``label`` (``"color"``/``"shape"``),
            ``greedy_step`` (its step in the greedy order, or ``None``).
        """
        (f,) = check_filters([filt], self.n_filters, self.layer)
        row = self.car.set_index("filter").loc[f]
        steps = self.greedy.set_index("filter")["step"]
        ci = float(self.color_index[f])
        return {"filter": f, "car": float(row["car"]), "accuracy": float(row["accuracy"]),
                "n_images": int(self.car.attrs["n_images"]),
                "base_accuracy": float(self.car.attrs["base_accuracy"]),
                "color_index": ci, "index_source": self.index_source,
                "label": "color" if ci >= COLOR_THRESHOLD else "shape",
                "greedy_step": int(steps[f]) if f in steps.index else None}

    def classes(self, filt: int, k: int = 5) -> pd.DataFrame:
        """The filter's ``k`` most and least important classes (:meth:`Study.class_importance`)."""
        return self.study.class_importance(self.layer, filt, k=k)

    def patches(self, filt: int, n: int = 9) -> list:
        """The filter's ``n`` strongest image patches in the CAR images (computed once)."""
        if len(self._patches.get(filt, ())) < n:
            self._patches[filt] = top_patches(self.study.model, self.layer, self.study.data, [filt], n=n)[filt]
        return self._patches[filt][:n]

    def thumbnails(self) -> np.ndarray:
        """One uint8 picture per filter: its weights (a first layer) or its strongest patch."""
        if self.first:
            return np.rint(np.clip(filter_images(self.conv), 0, 1) * 255).astype(np.uint8)
        missing = [f for f in range(self.n_filters) if f not in self._patches]
        if missing:
            found = top_patches(self.study.model, self.layer, self.study.data, missing, n=1)
            for f in missing:
                self._patches[f] = found[f]
        return np.stack([self._patches[f][0].pixels for f in range(self.n_filters)])

    def grid(self, car: np.ndarray | None = None, *, selected: int | None = None,
             pruned: Sequence[int] = (), ncols: int = 16, cell: int = 36) -> np.ndarray:
        """Every filter's thumbnail in a frame colored by its CAR (grey: pruned).

        Args:
            car: CAR of every filter (default: the cached table's); NaN for pruned ones.
            selected: a filter framed in black.
            pruned: filters drawn dimmed with a grey frame.
            ncols: filters per row.
            cell: pixels per thumbnail.

        Returns:
            A uint8 RGB image.
        """
        from PIL import Image

        values = self.car.sort_values("filter")["car"].to_numpy() if car is None else np.asarray(car, float)
        values = values.copy()
        values[list(pruned)] = np.nan
        colors = car_colors(values)
        thumbs = self.thumbnails()
        b, gap = 4, 2
        size = cell + 2 * b
        rows = int(np.ceil(self.n_filters / ncols))
        out = np.full((rows * (size + gap), ncols * (size + gap), 3), 255, dtype=np.uint8)
        for f in range(self.n_filters):
            r, c = divmod(f, ncols)
            y, x = r * (size + gap), c * (size + gap)
            out[y : y + size, x : x + size] = (0, 0, 0) if f == selected else colors[f]
            t = np.asarray(Image.fromarray(thumbs[f]).resize((cell, cell), Image.NEAREST))
            if f in pruned:
                t = (t // 4 + 160).astype(np.uint8)
            out[y + b : y + b + cell, x + b : x + b + cell] = t
        return out

    # ---------------------------------------------------------------- live pruning
    @property
    def engine(self) -> Engine:
        """The CAR engine on the explorer's images (built once; it caches the consumer inputs)."""
        if self._engine is None:
            self._engine = Engine(self.study.model, self.study.plan(self.layer), self.images,
                                  device=self.study.device)
        return self._engine

    def unpruned(self) -> tuple[int, int]:
        """``(correct, images)`` of the unpruned network on :attr:`images` (computed once)."""
        if self._unpruned is None:
            base, _, counts = self.engine.evaluate([], [])
            self._unpruned = (int(base.sum()), int(counts.sum()))
        return self._unpruned

    def prune(self, filters: Sequence[int], *, progress: object | None = None, chunk: int = 16,
              first: Sequence[int] = (),
              on_chunk: Callable[[PruneResult], None] | None = None) -> PruneResult:
        """Accuracy with ``filters`` pruned and the CAR of every other filter, on :attr:`images`.

        The numbers are :func:`carlib.car_index`'s with ``pruned=filters`` on the same images.
        The accuracy comes first (one pass), then the CAR of the ``first`` filters (one chunk),
        then the other remaining filters ``chunk`` at a time; ``on_chunk`` sees the result so
        far after each step (its ``car`` holds the filters done).

        Args:
            filters: filters to prune (at least one must remain).
            progress: a tqdm bar advanced by images x filters evaluated.
            chunk: filters per engine call.
            first: remaining filters to evaluate first, in a chunk of their own (e.g. the one
                on screen).
            on_chunk: called with the partial result after the accuracy and after each chunk.

        Returns:
            A :class:`PruneResult` (every remaining filter).
        """
        import time

        removed = check_filters(list(filters), self.n_filters, self.layer)
        if len(removed) >= self.n_filters:
            raise CarlibError(f"cannot prune all {self.n_filters} filters of {self.layer}; keep at least one")
        rest = [k for k in range(self.n_filters) if k not in removed]
        lead = [k for k in dict.fromkeys(int(f) for f in first) if k in rest]
        rest = lead + [k for k in rest if k not in lead]
        t0 = time.perf_counter()
        base, _, counts = self.engine.evaluate(removed, [])
        parts: list[pd.DataFrame] = []

        def result() -> PruneResult:
            table = (pd.concat(parts).sort_values("filter", ignore_index=True) if parts else
                     pd.DataFrame({"filter": pd.Series([], dtype="int64"), "accuracy": pd.Series([], dtype="float64"),
                                   "car": pd.Series([], dtype="float64")}))
            return PruneResult(removed, int(base.sum()), int(counts.sum()), table,
                               time.perf_counter() - t0)

        if on_chunk:
            on_chunk(result())
        step = max(1, chunk)
        chunks = [lead] if lead else []
        others = rest[len(lead):]
        chunks += [others[i : i + step] for i in range(0, len(others), step)]
        for ks in chunks:
            b, cand, _ = self.engine.evaluate(removed, ks, progress)
            if not bool((b == base).all()):
                raise RuntimeError("the engine's unpruned counts changed between calls")
            parts.append(car_table(base, cand, counts, ks, per_class=False))
            if on_chunk:
                on_chunk(result())
        return result()

    def car_with(self, result: PruneResult | None) -> np.ndarray:
        """CAR of every filter after ``result`` (NaN for the pruned ones), or the cached CAR."""
        if result is None:
            return self.car.sort_values("filter")["car"].to_numpy()
        out = np.full(self.n_filters, np.nan)
        out[result.car["filter"].to_numpy(dtype=np.int64)] = result.car["car"].to_numpy()
        return out

    def mosaic(self, filt: int, n: int = 9, scale: int = 3) -> bytes:
        """The filter's ``n`` strongest patches as one PNG (3 per row)."""
        return png_bytes(patch_mosaic([p.pixels for p in self.patches(filt, n)], ncols=3), scale)
