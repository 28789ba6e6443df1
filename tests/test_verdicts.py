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


def _paired(b: int, c: int, p: float) -> pd.DataFrame:
    n = 600
    return pd.DataFrame({"reference": ["car-greedy"] * 3, "other": ["l1", "taylor", "random-0"],
                         "depth": 32, "n_images": n, "accuracy_reference": 0.3,
                         "accuracy_other": [0.1, 0.3 - (b - c) / n, 0.5], "b": [150, b, 10],
                         "c": [30, c, 130], "p_value": [1e-20, p, 1e-25]})


def test_claim_3_names_the_strongest_baseline_and_follows_the_test():
    # the random order is more accurate here but is not a baseline: taylor is the strongest
    text = verdicts.criteria_markdown(_paired(60, 20, 1e-5), "conv1", 64)
    assert "(taylor)" in text and "+6.7 points" in text and "**supported**" in text
    assert "the paper's +26 lies outside it" in text
    assert "**the opposite**" in verdicts.criteria_markdown(_paired(20, 60, 1e-5), "conv1", 64)
    assert "**not distinguishable**" in verdicts.criteria_markdown(_paired(30, 25, 0.6), "conv2", 192)
    assert verdicts.best_baseline(_paired(60, 20, 1e-5), "car-greedy")["other"] == "taylor"


def test_retraining_and_compression_paragraphs():
    s = pd.DataFrame({"criterion": ["car-greedy", "l1"], "before": [0.3, 0.1], "after": [0.4, 0.35],
                      "after_min": [0.39, 0.34], "after_max": [0.41, 0.36], "seeds": [2, 2]})
    t = pd.DataFrame({"reading": ["before"] * 2 + ["after"] * 2, "seed": [0, 1, 0, 1],
                      "difference": [0.2, 0.2, 0.05, -0.01], "p_value": [1e-9, 1e-9, 0.01, 0.7]})
    a = {"layer": "conv1", "depth": 32, "epochs": 1, "train_images": 1000, "batch_size": 64, "n_images": 600}
    text = verdicts.retraining_markdown(s, t, a, "car-greedy", "l1")
    assert "(15 steps of 64)" in text and "2 seed(s)" in text
    assert "before retraining the difference is +20.0, +20.0 points" in text and "**supported** in every seed" in text
    assert "supported in 1 of 2 seeds, the opposite in 0" in text
    dc = pd.DataFrame({"stage": ["unpruned", "filters", "deep", "deep"], "factor": [1.0, 2.0, 20.0, 45.0],
                       "factor_huffman": [1.0, 2.0, 30.0, 60.0], "accuracy": [0.47, 0.465, 0.462, 0.40],
                       "sparsity": [0.0, 0.0, 0.8, 0.9], "bits": [32, 32, 5, 5], "n_images": 600})
    from carlib.analysis.retraining import within_one_point

    w = within_one_point(dc)
    assert (w["factor"], w["sparsity"], w["bits"]) == (20.0, 0.8, 5)
    text = verdicts.compression_markdown(w, dc, "conv1")
    assert "**20.0x**" in text and "45.0x (60.0x with Huffman coding), reaches 40.0 %" in text
    assert within_one_point(dc.assign(accuracy=[0.47, 0.2, 0.2, 0.2]))["factor"] is None


def test_replicate_paragraphs_state_overlap_counts_and_the_pooled_test():
    import numpy as np

    from carlib.analysis import claims, reliability

    sel = [[0, 1, 2, 5], [0, 1, 3, 6], [0, 2, 3, 7], [0, 1, 2, 4]]
    freq = reliability.topk_frequency(sel, 16, k=3)
    jac = reliability.pairwise_jaccard(sel, 16, k=3)
    md = verdicts.replicates_markdown(freq, jac, "conv1", [10, 10, 10, 10])
    assert "4 disjoint parts" in md and "(10, 10, 10, 10 images)" in md and "over 6 pair(s)" in md
    assert f"share {jac['shared'].mean():.1f} on average" in md
    assert "first 3: 1 filter(s) (0)" in md and "in at least half of them: 4" in md  # 0; 1, 2, 3
    color = np.zeros(16, bool)
    color[[0, 1, 2]] = True
    counts = reliability.replicate_color_counts(sel, color, k=3)
    assert counts["counts"] == [3, 2, 2, 3]
    strong = verdicts.replicate_colors_markdown(counts, claims.pooled_enrichment(sel, color, k=3, n_perm=999),
                                                "conv1", "index")
    assert "3, 2, 2, 3 of the first 3" in strong and "pooled 10/12" in strong and "**reproduced**" in strong
    assert "(the paper: 17/20)" in strong
    color[:] = False
    color[[13, 14, 15]] = True
    weak = verdicts.replicate_colors_markdown(reliability.replicate_color_counts(sel, color, k=3),
                                              claims.pooled_enrichment(sel, color, k=3, n_perm=999), "conv2", "index")
    assert "pooled 0/12" in weak and "**not reproduced** (the paper: 14/20)" in weak
