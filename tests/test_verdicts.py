"""carlib.analysis.verdicts: the paragraphs state the numbers they are given and the verdict
follows the p-values; label counts add up."""

from __future__ import annotations

import pandas as pd

from carlib.analysis import verdicts


def test_label_counts_add_up_and_follow_the_hypergeometric_law():
    lab = pd.DataFrame({"filter": range(10), "label": ["color"] * 3 + ["edge-or-shape"] * 5 + ["noise-or-texture"] * 2})
    t = verdicts.label_counts({"conv1": lab}, {"conv1": [0, 1, 2, 9]}).set_index("label")
    assert t["in_layer"].sum() == 10 and t["in_pruned"].sum() == 4
    assert t.loc["color", "in_pruned"] == 3 and t.loc["color", "expected"] == 4 * 3 / 10
    # all three color filters among four drawn of ten: C(7,1) / C(10,4)
    assert abs(t.loc["color", "p_greater"] - 7 / 210) < 1e-12
    assert t.loc["edge-or-shape", "p_less"] == 1 / 210 * 5  # none of the five: C(5,4) / C(10,4)


def test_verdicts_follow_the_p_values():
    sp = {"rho": -0.3, "n": 64, "fisher_low": -0.5, "fisher_high": -0.06, "p_less": 0.01}
    mw = {"rank_biserial": 0.4, "rb_low": 0.1, "rb_high": 0.6, "n_a": 20, "n_b": 44, "p_greater": 0.005}
    assert "**supports**" in verdicts.threshold_free_markdown({"conv1": {"spearman": sp, "pruned_vs_rest": mw}})
    weak = verdicts.threshold_free_markdown({"conv1": {"spearman": {**sp, "p_less": 0.2},
                                                       "pruned_vs_rest": {**mw, "p_greater": 0.3}}})
    assert "**does not**" in weak and "p = 0.2 " in weak
    t = {"mean_rho": 0.2, "low": 0.1, "high": 0.3, "null_mean": 0.05, "excess": 0.15, "p": 0.2,
         "n_filters": 60, "n_constant": 4, "n_classes": 200, "zero_share": 0.6, "n_values": 12800}
    text = verdicts.class_importance_markdown({"conv2": t})
    assert "**not** above" in text and "60 filters (4 with a constant profile" in text and "12,800" in text
    rel = {"n_images": (1000, 1000), "halves": "classes", "n_filters": 64, "rho": 0.34,
           "fisher_low": 0.09, "fisher_high": 0.54, "p": 0.0075, "reliability": 0.5,
           "reliability_low": 0.17, "reliability_high": 0.7, "k": 20, "shared_lowest": 7,
           "expected_shared": 6.25, "p_shared": 0.44}
    text = verdicts.reliability_markdown(rel, "conv1")
    assert "1,000 and 1,000 images" in text and "+0.34 [+0.09, +0.54]" in text and "share 7" in text
