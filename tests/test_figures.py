"""carlib.analysis.figures and .summaries on tiny synthetic tables: every figure and summary, no data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch import nn  # noqa: E402

from carlib.analysis import figures, summaries  # noqa: E402
from carlib.analysis.patches import Patch  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _conv(n: int = 6) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(3, n, 3)


def _acc() -> pd.DataFrame:
    return pd.DataFrame({"class": [0, 1, 2, 3], "name": ["ant", "bee", "cat", "dog"], "n": [4, 4, 4, 4],
                         "top1": [0.25, 1.0, 0.5, 0.0], "top5": [0.5, 1.0, 0.75, 0.25]})


def _car(n: int = 6) -> pd.DataFrame:
    car = np.array([0.02, -0.01, 0.0, 0.05, 0.01, 0.03])[:n]
    df = pd.DataFrame({"filter": np.arange(n), "accuracy": 0.5 - car, "car": car})
    df.attrs.update({"base_accuracy": 0.5, "n_images": 1234})
    return df


def _curves(depth: int = 3, seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    parts = []
    for method, seed, drop in [("car-greedy", -1, 0.01), ("car-oneshot", -1, 0.02), ("l1", -1, 0.05)] + \
            [("random", s, 0.04 + 0.01 * s) for s in seeds]:
        k = np.arange(depth + 1)
        parts.append(pd.DataFrame({"method": method, "seed": seed, "n_pruned": k,
                                   "filter": [-1] + list(range(depth)), "accuracy": 0.5 - drop * k}))
    return pd.concat(parts, ignore_index=True)


def _patches(filters, n: int = 4, size: int = 5) -> dict[int, list[Patch]]:
    rng = np.random.default_rng(0)
    return {f: [Patch(f, i, 0, 0, 1.0, rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
                for i in range(n)] for f in filters}


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]


# ------------------------------------------------------------------------ summaries
def test_overall_accuracy_weights_classes_by_images():
    acc = _acc().assign(n=[2, 2, 4, 0])
    o = summaries.overall_accuracy(acc)
    assert o["top1"] == pytest.approx((0.5 + 2 + 2) / 8) and o["top5"] == pytest.approx((1 + 2 + 3) / 8)
    assert (o["images"], o["classes"], o["min_per_class"], o["max_per_class"]) == (8, 4, 0, 4)


def test_easiest_hardest_groups_and_ties():
    acc = _acc().assign(top1=[0.5, 1.0, 0.5, 0.0])
    t = summaries.easiest_hardest(acc, 2)
    assert list(t.columns) == ["group", "name", "n", "top1", "top5"]
    assert t["name"].tolist() == ["bee", "ant", "dog", "ant"]  # ties: the lower class first
    assert t["group"].tolist() == ["easiest"] * 2 + ["hardest"] * 2


def test_accuracy_at_clamps_to_the_deepest_point():
    c = _curves(depth=3)
    s = summaries.accuracy_at(c, 2)
    assert s.attrs["n_pruned"] == 2 and list(s.columns) == ["mean", "std", "runs", "depth"]
    assert s.loc["l1", "mean"] == pytest.approx(0.4) and s.loc["random", "runs"] == 2
    assert s.loc["random", "mean"] == pytest.approx(0.5 - 2 * 0.045)
    assert (s["depth"] == 3).all()
    assert summaries.accuracy_at(c, 10).attrs["n_pruned"] == 3


def test_heldout_summary():
    held = pd.DataFrame({"n_pruned": [0, 2, 2, 2], "method": ["none", "l1", "random", "random"],
                         "seed": [-1, -1, 0, 1], "accuracy": [0.6, 0.3, 0.2, 0.4], "n_images": 50})
    s = summaries.heldout_summary(held)
    assert s.attrs == {"unpruned": 0.6, "n_images": 50}
    assert s.index.names == ["n_pruned", "method"] and len(s) == 2
    assert s.loc[(2, "random"), "mean"] == pytest.approx(0.3) and s.loc[(2, "random"), "runs"] == 2


def _counts() -> pd.DataFrame:
    idx = {"conv1": np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.0]), "conv2": np.array([0.1, 0.2, 0.6, 0.3])}
    return summaries.color_counts(idx, {"conv1": [0, 2, 1], "conv2": [0, 1]})


def test_color_counts_named_columns():
    c = _counts().set_index("layer")
    assert c.loc["conv1", ["color_pruned", "n_pruned", "color_layer", "n_layer"]].tolist() == [2, 3, 3, 6]
    assert c.loc["conv1", "expected"] == pytest.approx(1.5)
    assert c.loc["conv2", ["color_pruned", "n_pruned", "color_layer", "n_layer"]].tolist() == [0, 2, 1, 4]
    assert c.loc["conv2", "p_greater"] == pytest.approx(1.0)
    assert c["index"].tolist() == ["weights", "responses"] and c["paper"].tolist() == [17, 14]


def test_color_counts_table_and_markdown():
    counts = _counts()
    t = summaries.color_counts_table(counts)
    assert list(t.columns) == ["layer", "index", "threshold", "color in top pruned", "color in layer",
                               "expected at random", "p (>= observed)", "paper (AlexNet)"]
    assert t["color in top pruned"].tolist() == ["2/3", "0/2"] and t["paper (AlexNet)"].tolist() == ["17/20", "14/20"]
    assert t["expected at random"].tolist() == [1.5, 0.5]
    md = summaries.color_counts_markdown(counts).splitlines()
    assert len(md) == 2
    assert md[0].startswith("- **conv1**: 2 of 3 top CAR-pruned filters are color-selective, against 1.5 expected")
    assert "(3/6)" in md[0] and "The paper reports 17/20 for AlexNet." in md[0]
    assert "**not** significantly enriched" in md[1]
    assert "**enriched**" in summaries.color_counts_markdown(counts.assign(p_greater=0.01))


def test_threshold_sweeps_and_most_important_and_selection():
    s = summaries.threshold_sweeps({"conv1": np.array([0.9, 0.1]), "conv2": np.array([0.3, 0.6, 0.2])},
                                 {"conv1": [0], "conv2": [1, 2]})
    assert s["layer"].unique().tolist() == ["conv1", "conv2"] and len(s) == 2 * 17
    assert summaries.most_important(_car(), 2) == [3, 5]
    sel = summaries.select_filters(_car(), _car(4), pd.DataFrame({"filter": range(6),
                                                                "color_index": [0.1, 0.9, 0.2, 0.3, 0.8, 0.0]}))
    assert list(sel.columns) == ["layer", "filter", "selected_as"]
    # conv1: most important 3, least 1; the most color-selective (1) is taken, so the next one (4)
    assert sel["filter"].tolist() == [3, 1, 4, 3, 1]
    assert sel["layer"].tolist() == ["conv1"] * 3 + ["conv2"] * 2


# ------------------------------------------------------------------------ figures
def test_per_class_accuracy():
    fig = figures.per_class_accuracy(_acc())
    (ax,) = fig.axes
    assert "16 images, 4 per class" in ax.get_title()
    assert ax.get_legend().get_texts()[0].get_text() == "mean 43.8%"
    assert len(ax.patches) == 20  # one bar per bin
    assert tuple(fig.get_size_inches()) == (6.5, 3.2)


def test_layer_filters_and_labeled_grids():
    conv = _conv(6)
    fig = figures.layer_filters(conv, "tinynet", "conv1")
    assert len(fig.axes) == 16 and "conv1 of tinynet: 6 filters, 3x3x3" in fig._suptitle.get_text()
    fig = figures.filters_with_car(conv, _car())
    labels = [ax.get_xlabel() for ax in fig.axes[:6]]
    assert labels == ["+2.0", "-1.0", "+0.0", "+5.0", "+1.0", "+3.0"]
    fig = figures.pruned_filters(conv, [4, 1])
    assert fig.axes[4].get_title() == "4 #1" and fig.axes[1].get_title() == "1 #2"
    assert "The first 2 CAR-pruned conv1 filters" in fig._suptitle.get_text()
    fig = figures.color_labeled_filters(conv, np.array([0.9, 0.1, 0.5, 0.2, 0.7, 0.0]), [0, 1])
    assert [ax.get_xlabel() for ax in fig.axes[:3]] == ["C 0.90", "S 0.10", "C 0.50"]
    assert "(index >= 0.5)" in fig._suptitle.get_text()
    assert [s.get_edgecolor() for s in fig.axes[1].spines.values()][0] == matplotlib.colors.to_rgba("royalblue")


def test_car_sorted():
    fig = figures.car_sorted(_car(), "conv2")
    (ax,) = fig.axes
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 6
    assert [b.get_height() for b in bars] == pytest.approx([-1, 0, 1, 2, 3, 5])
    assert ax.get_title() == "CAR index of the 6 conv2 filters (1,234 images, base accuracy 50.0%)"
    assert ax.get_xlabel() == "filters of conv2, sorted by CAR"


def test_pruning_curves():
    fig = figures.pruning_curves(_curves(depth=3), "conv1", 8, 200, 2)
    (ax,) = fig.axes
    assert ax.get_title() == "Pruning conv1: 200 images, 2 random seeds"
    assert ax.get_xlabel() == "filters of conv1 pruned (of 8)"
    data_lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 4]
    assert len(data_lines) == 4  # one per order (random: the mean over seeds)
    assert [list(ln.get_xdata()) for ln in ax.get_lines() if len(ln.get_xdata()) == 2] == [[4, 4]]  # half
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(figures.CURVE_LABELS.values())


def test_patch_panels():
    p = _patches([3, 7, 9], n=9, size=5)
    fig = figures.pruned_patches(p, [7, 3], [9], "conv2", 1500)
    assert len(fig.axes) == 10
    assert [ax.get_title() for ax in fig.axes[:3]] == ["filter 7\n#1 pruned", "filter 3\n#2 pruned",
                                                        "filter 9\nmost important"]
    title = fig._suptitle.get_text()
    assert "their 9 strongest 5x5 receptive-field patches (1,500 images)" in title
    assert "the 2 first CAR-pruned and the 1 most important" in title
    assert fig.axes[0].get_images()[0].get_array().shape == (17, 17, 3)  # 3x3 mosaic of 5x5

    p = _patches(range(12), n=4, size=5)
    fig = figures.color_labeled_patches(p, list(range(12)), np.linspace(0, 1, 12))
    assert len(fig.axes) == 20 and tuple(fig.get_size_inches()) == pytest.approx((12, 2.9))
    assert fig.axes[0].get_title() == "#1 f0: S 0.00" and fig.axes[11].get_title() == "#12 f11: C 1.00"
    assert fig.axes[0].get_images()[0].get_array().shape == (11, 11, 3)  # 2x2 mosaic
    assert not fig.axes[12].get_images()


def test_threshold_sensitivity():
    idx = {"conv1": np.array([0.9, 0.1, 0.8, 0.2]), "conv2": np.array([0.3, 0.6, 0.2])}
    sweeps = summaries.threshold_sweeps(idx, {"conv1": [0, 1], "conv2": [1]})
    fig = figures.threshold_sensitivity(sweeps)
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["conv1 (weights)", "conv2 (responses)"]
    for ax in fig.axes:
        assert len(ax.get_lines()) == 4  # counts, expected, the paper's count, the threshold
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["among the top 1 CAR-pruned", "expected at random (base rate)", "paper: 14/20"]
    assert fig.axes[0].get_ylabel() == "color-selective filters"


def test_index_agreement():
    w = pd.DataFrame({"filter": range(4), "color_index": [0.1, 0.2, 0.3, 0.4]})
    r = pd.DataFrame({"filter": range(4), "r_color": 1.0, "r_gray": 1.0, "color_index": [0.4, 0.3, 0.2, 0.1]})
    fig = figures.index_agreement(w, r, [0])
    (ax,) = fig.axes
    assert ax.get_title() == "conv1: Spearman rho = -1.00 (red: top pruned)"
    (pts,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(pts.get_offsets()) == 4


def test_class_importance_panel():
    labels = np.repeat(np.arange(6), 4)
    images = np.zeros((len(labels), 8, 8, 3), dtype=np.uint8)
    t = pd.DataFrame({"rank": [1, 2, 1, 2], "kind": ["most", "most", "least", "least"],
                      "class": [0, 1, 4, 5], "name": ["a very long class name", "b", "c", "d"],
                      "car": [0.25, 0.1, -0.125, 0.0], "accuracy": 0.5, "n": 4})
    fig = figures.class_importance(t, images, labels, layer="conv1", filt=7, why="a filter",
                                   picture=np.full((3, 3, 3), 0.5), images_per_class=3)
    assert len(fig.axes) == 1 + 4 * 3
    titles = [ax.get_title(loc="left") for ax in fig.axes[1:] if ax.get_title(loc="left")]
    assert titles == ["a very long cl\nCAR_c +0.25", "b\nCAR_c +0.10", "c\nCAR_c -0.12", "d\nCAR_c +0.00"]
    assert fig.axes[0].get_title() == "conv1 filter 7"
    assert fig._suptitle.get_text().startswith("a filter (filter 7): most important classes")
    fig = figures.class_importance(t, images, labels, layer="conv2", filt=3, why="x",
                                   patches=_patches([3], n=4, size=5)[3], images_per_class=1)
    assert len(fig.axes) == 1 + 4
    assert fig.axes[0].get_images()[0].get_array().shape == (11, 11, 3)


def test_public_names_exist_and_patch_panel():
    from carlib.analysis import plotting

    for mod in (figures, summaries, plotting):
        assert all(hasattr(mod, name) for name in mod.__all__), mod.__name__
    p = _patches([1, 2], n=2, size=3)
    fig = plotting.patch_panel(p, [2, 1, 2], ["a", "b", "c"], ["red", "navy", "red"], title="T", ncols=2,
                               mosaic_cols=2)
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    assert fig._suptitle.get_text() == "T" and not fig.axes[3].get_images()
    assert fig.axes[0].get_images()[0].get_array().shape == (3, 7, 3)  # 1 row of 2 patches
