"""The summary tables and numbers the notebooks state, computed from a Study's tables.

Each function turns a :class:`~carlib.analysis.study.Study` result into the table a notebook
shows or the numbers its text states, with named columns (the figures are drawn by
:mod:`carlib.analysis.figures`).

Example:
    >>> from carlib.analysis import summaries
    >>> acc = study.accuracy_per_class()                     # doctest: +SKIP
    >>> summaries.overall_accuracy(acc)["top1"]              # doctest: +SKIP
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .selectivity import COLOR_THRESHOLD, hypergeom_enrichment, threshold_sweep

__all__ = [
    "PAPER_COLOR_COUNTS", "INDEX_SOURCES",
    "overall_accuracy", "easiest_hardest", "accuracy_at", "heldout_summary", "most_important",
    "select_filters", "color_counts", "color_counts_table", "color_counts_markdown",
    "threshold_sweeps",
]

#: Color-selective filters among the top 20 CAR-pruned ones of AlexNet, as the paper reports.
PAPER_COLOR_COUNTS: dict[str, int] = {"conv1": 17, "conv2": 14}
#: Which color index each layer is labeled with (conv1 by its weights, conv2 by its responses).
INDEX_SOURCES: dict[str, str] = {"conv1": "weights", "conv2": "responses"}


def overall_accuracy(acc: pd.DataFrame) -> dict[str, float | int]:
    """Top-1 and top-5 accuracy over all images from the per-class table.

    Args:
        acc: :meth:`Study.accuracy_per_class` (``class, name, n, top1, top5``).

    Returns:
        ``{"top1", "top5"}`` (fractions, weighted by the images per class), ``"images"``
        (total), ``"classes"``, ``"min_per_class"`` and ``"max_per_class"``.

    Example:
        >>> acc = pd.DataFrame({"n": [2, 2], "top1": [0.5, 1.0], "top5": [1.0, 1.0]})
        >>> overall_accuracy(acc)["top1"]
        0.75
    """
    return {"top1": float((acc["top1"] * acc["n"]).sum() / acc["n"].sum()),
            "top5": float((acc["top5"] * acc["n"]).sum() / acc["n"].sum()),
            "images": int(acc["n"].sum()), "classes": len(acc),
            "min_per_class": int(acc["n"].min()), "max_per_class": int(acc["n"].max())}


def easiest_hardest(acc: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The ``k`` classes with the highest and the ``k`` with the lowest top-1 accuracy.

    Args:
        acc: :meth:`Study.accuracy_per_class`.
        k: classes per group (ties: the lower class index first).

    Returns:
        ``group ("easiest"/"hardest"), name, n, top1, top5``, indexed like ``acc``.

    Example:
        >>> acc = pd.DataFrame({"class": [0, 1], "name": ["a", "b"], "n": [1, 1],
        ...                     "top1": [1.0, 0.0], "top5": [1.0, 1.0]})
        >>> easiest_hardest(acc, k=1)["name"].tolist()
        ['a', 'b']
    """
    best = acc.sort_values(["top1", "class"], ascending=[False, True]).head(k)
    worst = acc.sort_values(["top1", "class"]).head(k)
    return pd.concat([best.assign(group="easiest"), worst.assign(group="hardest")])[
        ["group", "name", "n", "top1", "top5"]]


def accuracy_at(curves: pd.DataFrame, depth: int) -> pd.DataFrame:
    """Accuracy of every pruning order with ``depth`` filters pruned (or as deep as the curves go).

    Args:
        curves: :meth:`Study.curves` (``method, seed, n_pruned, filter, accuracy``).
        depth: filters pruned (usually half of the layer).

    Returns:
        One row per method present at that depth: ``mean``, ``std`` (over random seeds),
        ``runs`` and ``depth`` (the deepest point of the method's curve); ``attrs["n_pruned"]``
        is the depth compared.

    Example:
        >>> c = pd.DataFrame({"method": ["l1"] * 3, "seed": -1, "n_pruned": [0, 1, 2],
        ...                   "accuracy": [0.5, 0.4, 0.3]})
        >>> float(accuracy_at(c, 1).loc["l1", "mean"])
        0.4
    """
    at = curves[curves["n_pruned"] == min(depth, curves["n_pruned"].max())]
    summary = at.groupby("method")["accuracy"].agg(["mean", "std", "count"]).rename(columns={"count": "runs"})
    reach = curves.groupby("method")["n_pruned"].max().rename("depth")
    summary = summary.join(reach)
    summary.attrs["n_pruned"] = int(at["n_pruned"].iloc[0])
    return summary


def heldout_summary(held: pd.DataFrame) -> pd.DataFrame:
    """The held-out accuracy of each pruning order and depth (random: mean and spread over seeds).

    Args:
        held: :meth:`Study.heldout_accuracy` (not empty).

    Returns:
        ``mean, std, runs`` indexed by ``n_pruned, method`` (rounded to 4 digits);
        ``attrs["unpruned"]`` is the unpruned network's accuracy and ``attrs["n_images"]``
        the number of held-out images.

    Example:
        >>> h = pd.DataFrame({"n_pruned": [0, 1], "method": ["none", "l1"], "seed": -1,
        ...                   "accuracy": [0.5, 0.25], "n_images": 4})
        >>> heldout_summary(h).attrs["unpruned"]
        0.5
    """
    out = (held[held["method"] != "none"].groupby(["n_pruned", "method"])["accuracy"]
           .agg(["mean", "std", "count"]).rename(columns={"count": "runs"}).round(4))
    out.attrs["unpruned"] = float(held.loc[held["method"] == "none", "accuracy"].iloc[0])
    out.attrs["n_images"] = int(held["n_images"].iloc[0])
    return out


def most_important(car: pd.DataFrame, k: int = 5) -> list[int]:
    """The ``k`` filters with the highest CAR (ties: the lower filter index first).

    Args:
        car: :meth:`Study.car` (``filter, car``).
        k: how many.

    Returns:
        Filter indices, most important first.

    Example:
        >>> most_important(pd.DataFrame({"filter": [0, 1, 2], "car": [0.1, 0.3, 0.1]}), 2)
        [1, 0]
    """
    return car.sort_values(["car", "filter"], ascending=[False, True])["filter"].head(k).tolist()


def select_filters(car1: pd.DataFrame, car2: pd.DataFrame, color1: pd.DataFrame) -> pd.DataFrame:
    """The filters whose classes notebook 05 shows.

    The most and the least important filter of conv1 and of conv2 (by CAR; ties: the lower
    filter index) and the most color-selective conv1 filter that is neither of the first two.

    Args:
        car1, car2: :meth:`Study.car` of conv1 and conv2.
        color1: :meth:`Study.color_weights` of conv1 (``filter, color_index``).

    Returns:
        ``layer, filter, selected_as``, in that order.

    Example:
        >>> car = pd.DataFrame({"filter": [0, 1, 2], "car": [0.1, 0.0, 0.3]})
        >>> color = pd.DataFrame({"filter": [0, 1, 2], "color_index": [0.2, 0.9, 0.5]})
        >>> select_filters(car, car, color)["filter"].tolist()
        [2, 1, 0, 2, 1]
    """
    by_car1 = car1.sort_values(["car", "filter"], ascending=[False, True])["filter"].tolist()
    by_car2 = car2.sort_values(["car", "filter"], ascending=[False, True])["filter"].tolist()
    by_color = color1.sort_values(["color_index", "filter"], ascending=[False, True])["filter"].tolist()
    rows = [("conv1", by_car1[0], "most important conv1 filter"),
            ("conv1", by_car1[-1], "least important conv1 filter"),
            ("conv1", next(f for f in by_color if f not in (by_car1[0], by_car1[-1])),
             "most color-selective conv1 filter"),
            ("conv2", by_car2[0], "most important conv2 filter"),
            ("conv2", by_car2[-1], "least important conv2 filter")]
    return pd.DataFrame(rows, columns=["layer", "filter", "selected_as"])


def color_counts(indices: Mapping[str, np.ndarray], pruned: Mapping[str, Sequence[int]], *,
                 threshold: float = COLOR_THRESHOLD, sources: Mapping[str, str] = INDEX_SOURCES,
                 paper: Mapping[str, int] = PAPER_COLOR_COUNTS) -> pd.DataFrame:
    """Color-selective filters among the top pruned ones of each layer, against the base rate.

    Args:
        indices: ``{layer: color index of every filter}`` (position = filter).
        pruned: ``{layer: the top CAR-pruned filters}``.
        threshold: a filter is color-selective when its index is at least this.
        sources: ``{layer: which index ("weights"/"responses")}``.
        paper: ``{layer: the paper's count among its top 20}``.

    Returns:
        One row per layer: ``layer, index, threshold, color_pruned, n_pruned, color_layer,
        n_layer, expected`` (color filters among ``n_pruned`` drawn at random), ``p_greater``
        (hypergeometric P(X >= color_pruned)) and ``paper``.

    Example:
        >>> t = color_counts({"conv1": np.array([0.9, 0.1, 0.8, 0.2])}, {"conv1": [0, 1]},
        ...                  sources={"conv1": "weights"}, paper={"conv1": 17})
        >>> t.loc[0, ["color_pruned", "n_pruned", "color_layer"]].astype(int).tolist()
        [1, 2, 2]
        >>> float(t.loc[0, "expected"])
        1.0
    """
    rows = []
    for layer, idx in indices.items():
        color = np.asarray(idx) >= threshold
        top = list(pruned[layer])
        k = int(color[top].sum())
        e = hypergeom_enrichment(k, len(top), int(color.sum()), len(color))
        rows.append({"layer": layer, "index": sources[layer], "threshold": threshold,
                     "color_pruned": k, "n_pruned": len(top), "color_layer": int(color.sum()),
                     "n_layer": len(color), "expected": e["expected"], "p_greater": e["p_greater"],
                     "paper": paper[layer]})
    return pd.DataFrame(rows)


def color_counts_table(counts: pd.DataFrame) -> pd.DataFrame:
    """:func:`color_counts` as the notebook shows it (counts as ``k/n``, expectation rounded).

    Args:
        counts: :func:`color_counts`.

    Returns:
        ``layer, index, threshold, color in top pruned, color in layer, expected at random,
        p (>= observed), paper (AlexNet)``.

    Example:
        >>> t = color_counts({"conv1": np.array([0.9, 0.1])}, {"conv1": [0]},
        ...                  sources={"conv1": "weights"}, paper={"conv1": 17})
        >>> color_counts_table(t)["color in top pruned"].tolist()
        ['1/1']
    """
    return pd.DataFrame([{"layer": r["layer"], "index": r["index"], "threshold": r["threshold"],
                          "color in top pruned": f"{r['color_pruned']}/{r['n_pruned']}",
                          "color in layer": f"{r['color_layer']}/{r['n_layer']}",
                          "expected at random": round(float(r["expected"]), 1),
                          "p (>= observed)": r["p_greater"], "paper (AlexNet)": f"{r['paper']}/20"}
                         for r in counts.to_dict("records")])


def color_counts_markdown(counts: pd.DataFrame, alpha: float = 0.05) -> str:
    """One Markdown bullet per layer: the count, the base rate, the p-value and the verdict.

    Args:
        counts: :func:`color_counts`.
        alpha: significance level of the enrichment.

    Returns:
        The bullets, one line each.

    Example:
        >>> t = color_counts({"conv1": np.array([0.9, 0.1])}, {"conv1": [0]},
        ...                  sources={"conv1": "weights"}, paper={"conv1": 17})
        >>> color_counts_markdown(t).startswith("- **conv1**: 1 of 1 ")
        True
    """
    lines = []
    for r in counts.to_dict("records"):
        verdict = ("**enriched** in color filters" if r["p_greater"] < alpha else
                   "**not** significantly enriched in color filters")
        lines.append(f"- **{r['layer']}**: {r['color_pruned']} of {r['n_pruned']} top CAR-pruned filters "
                     f"are color-selective, against {round(float(r['expected']), 1)} expected from the "
                     f"layer's base rate ({r['color_layer']}/{r['n_layer']}); p = {r['p_greater']:.3g}: "
                     f"{verdict}. The paper reports {r['paper']}/20 for AlexNet.")
    return "\n".join(lines)


def threshold_sweeps(indices: Mapping[str, np.ndarray],
                     pruned: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """:func:`~carlib.analysis.selectivity.threshold_sweep` of every layer, in one table.

    Args:
        indices: ``{layer: color index of every filter}``.
        pruned: ``{layer: the top CAR-pruned filters}``.

    Returns:
        The sweeps' columns and ``layer``.

    Example:
        >>> s = threshold_sweeps({"conv1": np.array([0.9, 0.1])}, {"conv1": [0]})
        >>> sorted(s["layer"].unique())
        ['conv1']
    """
    return pd.concat([threshold_sweep(indices[layer], pruned[layer]).assign(layer=layer)
                      for layer in indices])

