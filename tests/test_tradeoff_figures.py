"""carlib.analysis.tradeoff_figures: notebook 06's figures draw what their tables hold."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from carlib.analysis import tradeoff_figures as T  # noqa: E402


def _curves() -> pd.DataFrame:
    rows = []
    for name, slope in (("car-greedy", 0.1), ("taylor", 0.5), ("random-0", 0.8), ("random-1", 0.6)):
        for k in (0, 16, 32):
            acc = 0.47 - slope * k / 32 * 0.47
            rows.append({"criterion": name, "n_pruned": k, "filter": -1, "correct": round(600 * acc),
                         "n_images": 600, "accuracy": acc, "low": acc - 0.03, "high": acc + 0.03})
    return pd.DataFrame(rows)


def test_test_curves_pool_the_random_orders():
    fig = T.test_curves(_curves(), "conv1", 64)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == [T.CRITERION_LABELS[k] for k in ("car-greedy", "taylor", "random")]
    random = ax.get_lines()[2]
    np.testing.assert_allclose(random.get_ydata(), 100 * _curves().query("criterion.str.startswith('random')")
                               .groupby("n_pruned")["accuracy"].mean().to_numpy())
    assert "600 test images" in ax.get_title()
    plt.close(fig)


def test_retraining_and_compression_figures():
    summary = pd.DataFrame({"criterion": ["car-greedy", "taylor"], "n_images": 600, "before": [0.34, 0.13],
                            "after": [0.39, 0.31], "after_min": [0.38, 0.30], "after_max": [0.40, 0.32]})
    fig = T.retraining(summary, "conv1", 32)
    at = {t.get_text(): y for t, y in zip(fig.axes[0].get_yticklabels(), fig.axes[0].get_yticks())}
    assert at["car-greedy"] > at["taylor"]  # the table's first criterion on top
    assert not any(line.get_linestyle() == "--" for line in fig.axes[0].get_lines())
    plt.close(fig)
    fig = T.retraining(summary, "conv1", 32, unpruned=0.412)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(line.get_xdata(), [41.2, 41.2])
    assert "unpruned (41.2 %)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    dc = pd.DataFrame({"stage": ["unpruned", "filters", "deep"], "factor": [1.0, 2.0, 43.0],
                       "accuracy": [0.47, 0.34, 0.12], "low": [0.43, 0.30, 0.10], "high": [0.51, 0.38, 0.15],
                       "sparsity": [0.0, 0.0, 0.9], "bits": [32, 32, 5], "n_images": 600})
    fig = T.compression_tradeoff(dc, "conv1")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()][-1] == "50x"
    assert ax.get_lines()[-1].get_ydata()[0] == 46.0  # one point below the unpruned accuracy
    plt.close(fig)
