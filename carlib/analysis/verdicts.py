"""The paper's claims as the notebooks state them: one Markdown paragraph or table per test,
with its numbers, sample sizes, intervals, p-values and verdict (the tests themselves are in
:mod:`carlib.analysis.claims`, :mod:`carlib.analysis.reliability` and
:mod:`carlib.analysis.heldout`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from .heldout import ORDER_CRITERIA
from .selectivity import hypergeom_enrichment
from .stats import paired_difference_interval

__all__ = ["reliability_markdown", "threshold_free_markdown", "class_importance_markdown",
           "label_counts", "by_eye_markdown", "replicates_markdown", "replicate_colors_markdown", "PAPER_GAIN", "best_baseline", "criteria_markdown", "retraining_markdown",
           "compression_markdown"]

#: The companion paper's claim 3: CAR's accuracy over the best benchmark at half the filters.
PAPER_GAIN = {"conv1": 0.26, "conv2": 0.20}


def reliability_markdown(rel: Mapping, layer: str) -> str:
    """One Markdown paragraph on the split-half reliability of a layer's CAR.

    Args:
        rel: :func:`carlib.analysis.heldout.car_split_half`.
        layer: the layer's role (``conv1`` ...).

    Returns:
        The paragraph: Spearman between the halves with its interval and permutation p, the
        Spearman-Brown reliability, and the overlap of the halves' ``k`` lowest-CAR filters
        against chance.

    Example:
        >>> r = {"n_images": (20, 20), "halves": "classes", "n_filters": 64, "rho": 0.5,
        ...      "fisher_low": 0.3, "fisher_high": 0.66, "p": 1e-4, "reliability": 0.67,
        ...      "reliability_low": 0.46, "reliability_high": 0.8, "k": 20,
        ...      "shared_lowest": 9, "expected_shared": 6.25, "p_shared": 0.12}
        >>> reliability_markdown(r, "conv1").startswith("**Split-half reliability of conv1's CAR**")
        True
    """
    a, b = rel["n_images"]
    return (f"**Split-half reliability of {layer}'s CAR** ({rel['halves']}: {a:,} and {b:,} images, "
            f"{rel['n_filters']} filters): Spearman {rel['rho']:+.2f} [{rel['fisher_low']:+.2f}, "
            f"{rel['fisher_high']:+.2f}] between the halves (permutation p = {rel['p']:.2g}); "
            f"reliability of CAR on both halves together (Spearman-Brown) {rel['reliability']:.2f} "
            f"[{rel['reliability_low']:.2f}, {rel['reliability_high']:.2f}]. The halves' {rel['k']} "
            f"lowest-CAR filters share {rel['shared_lowest']}, against {rel['expected_shared']:.1f} "
            f"for unrelated rankings (hypergeometric p = {rel['p_shared']:.2g}).")


def class_importance_markdown(tests: Mapping[str, Mapping], alpha: float = 0.05) -> str:
    """One Markdown bullet per layer on the paper's claim 2 tested over all filters.

    Args:
        tests: layer role -> :func:`carlib.analysis.claims.class_importance_test`.
        alpha: significance level.

    Returns:
        The bullets: the mean over filters of Spearman(``CAR_c``, class-mean activation) with
        its interval, the same with every filter paired with another filter's activations (the
        null), the excess and its permutation p, the verdict, and the share of ``CAR_c`` that is
        exactly 0.

    Example:
        >>> t = {"mean_rho": 0.2, "low": 0.1, "high": 0.3, "null_mean": 0.05, "excess": 0.15,
        ...      "p": 0.001, "n_filters": 60, "n_constant": 4, "n_classes": 200,
        ...      "zero_share": 0.6, "n_values": 12800}
        >>> class_importance_markdown({"conv1": t}).startswith("- **conv1**: mean Spearman +0.20")
        True
    """
    lines = []
    for layer, t in tests.items():
        verdict = ("**above** the null: a filter matters most for the classes that drive it"
                   if t["p"] < alpha else "**not** above the null")
        lines.append(
            f"- **{layer}**: mean Spearman {t['mean_rho']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}] "
            f"over {t['n_filters']} filters ({t['n_constant']} with a constant profile left out) "
            f"and {t['n_classes']} classes, between a filter's `CAR_c` and its class-mean "
            f"activation; {t['null_mean']:+.2f} with another filter's activations (the null): excess "
            f"{t['excess']:+.3f}, permutation p = {t['p']:.2g}, {verdict}. "
            f"{t['zero_share']:.0%} of the {t['n_values']:,} `CAR_c` values are exactly 0.")
    return "\n".join(lines)


def threshold_free_markdown(tests: Mapping[str, Mapping[str, Mapping]], alpha: float = 0.05) -> str:
    """One Markdown bullet per layer on claim 1 tested without a color threshold.

    Args:
        tests: layer role -> ``{"spearman": carlib.analysis.claims.car_color_correlation(...),
            "pruned_vs_rest": carlib.analysis.claims.pruned_vs_rest(...)}``.
        alpha: significance level.

    Returns:
        The bullets: Spearman(CAR, color index) over all filters with its interval and the
        one-sided p the claim predicts (negative), and the rank-biserial effect of the color
        index of the top pruned filters against the rest with its interval and one-sided p.

    Example:
        >>> sp = {"rho": -0.3, "n": 64, "fisher_low": -0.5, "fisher_high": -0.06, "p_less": 0.01}
        >>> mw = {"rank_biserial": 0.4, "rb_low": 0.1, "rb_high": 0.6, "n_a": 20, "n_b": 44,
        ...       "p_greater": 0.005}
        >>> threshold_free_markdown({"conv1": {"spearman": sp, "pruned_vs_rest": mw}})[:30]
        '- **conv1**: Spearman(CAR, col'
    """
    lines = []
    for layer, t in tests.items():
        sp, mw = t["spearman"], t["pruned_vs_rest"]
        both = sp["p_less"] < alpha and mw["p_greater"] < alpha
        either = sp["p_less"] < alpha or mw["p_greater"] < alpha
        verdict = ("**supports** the claim" if both else "**partly** supports the claim" if either
                   else "**does not** support the claim")
        lines.append(
            f"- **{layer}**: Spearman(CAR, color index) over all {sp['n']} filters "
            f"{sp['rho']:+.2f} [{sp['fisher_low']:+.2f}, {sp['fisher_high']:+.2f}], p = {sp['p_less']:.2g} "
            f"for the claim's negative association; the {mw['n_a']} top pruned filters against the other "
            f"{mw['n_b']} (Mann-Whitney): rank-biserial {mw['rank_biserial']:+.2f} [{mw['rb_low']:+.2f}, "
            f"{mw['rb_high']:+.2f}], p = {mw['p_greater']:.2g} for more color among the pruned: {verdict}.")
    return "\n".join(lines)


def label_counts(labels: Mapping[str, pd.DataFrame], pruned: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """The three-class labels of each layer among its top pruned filters against the layer.

    Args:
        labels: layer role -> ``filter, label`` (:func:`carlib.analysis.labels.filter_labels`).
        pruned: layer role -> the top pruned filters.

    Returns:
        ``layer, label, in_layer, in_pruned, n_layer, n_pruned, expected, p_greater,
        p_less``: counts, the count expected from the layer's base rate, and the
        hypergeometric tails for more and for fewer than expected.

    Example:
        >>> lab = pd.DataFrame({"filter": range(4), "label": ["color", "color", "noise-or-texture",
        ...                                                    "edge-or-shape"]})
        >>> t = label_counts({"conv1": lab}, {"conv1": [0, 1]})
        >>> t.set_index("label")["in_pruned"].to_dict()
        {'color': 2, 'edge-or-shape': 0, 'noise-or-texture': 0}
    """
    rows = []
    for layer, df in labels.items():
        top = set(int(f) for f in pruned[layer])
        for label in ("color", "edge-or-shape", "noise-or-texture"):
            members = set(df.loc[df["label"] == label, "filter"].astype(int))
            k = len(members & top)
            e = hypergeom_enrichment(k, len(top), len(members), len(df))
            rows.append({"layer": layer, "label": label, "in_layer": len(members), "in_pruned": k,
                         "n_layer": len(df), "n_pruned": len(top), "expected": e["expected"],
                         "p_greater": e["p_greater"], "p_less": e["p_less"]})
    return pd.DataFrame(rows)


#: the paper's color counts among its top 20 pruned filters, per layer
_PAPER_COLOR = {"conv1": "17/20", "conv2": "14/20"}


def _paper_color(layer: str) -> str:
    """The end of a claim-1 sentence: the paper's count for ``layer`` where it gave one."""
    return f" (the paper: {_PAPER_COLOR[layer]})." if layer in _PAPER_COLOR else "."


def by_eye_markdown(kappa: Mapping, eye: pd.DataFrame, index: pd.DataFrame, layer: str,
                    alpha: float = 0.05) -> str:
    """The by-eye labels against the quantitative ones, and claim 1 counted with them.

    Args:
        kappa: :func:`carlib.analysis.blind.cohen_kappa` of the two labelings.
        eye: :func:`label_counts` of the by-eye labels (``layer`` rows).
        index: :func:`label_counts` of the quantitative labels (``layer`` rows).
        layer: the layer role.
        alpha: significance level.

    Returns:
        Two Markdown bullets.

    Example:
        >>> k = {"kappa": 0.4, "low": 0.2, "high": 0.6, "agreement": 0.6, "n": 64}
        >>> row = {"layer": "conv1", "label": "color", "in_layer": 30, "in_pruned": 11, "n_layer": 64,
        ...        "n_pruned": 20, "expected": 9.4, "p_greater": 0.3}
        >>> by_eye_markdown(k, pd.DataFrame([row]), pd.DataFrame([row]), "conv1")[:28]
        '- **conv1**, labeled by eye '
    """
    e = eye[(eye["layer"] == layer) & (eye["label"] == "color")].iloc[0]
    i = index[(index["layer"] == layer) & (index["label"] == "color")].iloc[0]
    verdict = "**reproduced**" if e["p_greater"] < alpha else "**not reproduced**"
    return (f"- **{layer}**, labeled by eye on a blinded sheet: {e['in_layer']} of {e['n_layer']} filters "
            f"color (the index: {i['in_layer']}); agreement with the index {kappa['agreement']:.0%}, "
            f"Cohen's kappa {kappa['kappa']:.2f} [{kappa['low']:.2f}, {kappa['high']:.2f}] (n = {kappa['n']}).\n"
            f"- Claim 1 with the by-eye labels: {e['in_pruned']}/{e['n_pruned']} of the top pruned filters "
            f"color against {e['expected']:.1f} expected from the layer (hypergeometric p = "
            f"{e['p_greater']:.2g}): {verdict}" + _paper_color(layer))


def replicates_markdown(freq: pd.DataFrame, jac: pd.DataFrame, layer: str, n_images: Sequence[int],
                        alpha: float = 0.05) -> str:
    """How stable the greedy selection is over replicates on disjoint images.

    Args:
        freq: :func:`carlib.analysis.reliability.topk_frequency` of the replicate selections.
        jac: :func:`carlib.analysis.reliability.pairwise_jaccard` of the same selections.
        layer: the layer role.
        n_images: images of each replicate.
        alpha: significance level of the pairwise overlaps.

    Returns:
        Two Markdown bullets.

    Example:
        >>> from carlib.analysis.reliability import pairwise_jaccard, topk_frequency
        >>> sel = [[0, 1, 2], [0, 1, 3], [0, 2, 3]]
        >>> md = replicates_markdown(topk_frequency(sel, 8, k=2), pairwise_jaccard(sel, 8, k=2), "conv1", [5, 5, 5])
        >>> md.splitlines()[1][:48]
        "- In every replicate's first 2: 1 filter(s) (0);"
    """
    k, n = int(jac.attrs["k"]), int(jac.attrs["n_filters"])
    r = int(freq["replicates"].iloc[0])
    always = freq.loc[freq["in_top"] == r, "filter"].astype(int).tolist()
    half = int((freq["in_top"] >= r / 2).sum())
    above = int((jac["p_greater"] < alpha).sum())
    return (f"- **{layer}**: the greedy loop on {r} disjoint parts of the greedy images "
            f"({', '.join(f'{m:,}' for m in n_images)} images): two replicates' first {k} filters share "
            f"{jac.attrs['mean_shared']:.1f} on average (Jaccard {jac.attrs['mean_jaccard']:.2f}, "
            f"{jac['jaccard'].min():.2f} to {jac['jaccard'].max():.2f} over {len(jac)} pair(s)) against "
            f"{jac.attrs['chance_shared']:.1f} (Jaccard {jac.attrs['chance_jaccard']:.2f}) for two random "
            f"selections; {above} of {len(jac)} pairs overlap more than chance (hypergeometric p < {alpha}).\n"
            f"- In every replicate's first {k}: {len(always)} filter(s) ({', '.join(map(str, always)) or 'none'}); "
            f"in at least half of them: {half}; a random selection puts a filter there with probability "
            f"{k / n:.2f}.")


def replicate_colors_markdown(counts: Mapping, pooled: Mapping, layer: str, label: str,
                              alpha: float = 0.05) -> str:
    """Claim 1 over the replicate selections: the color count with an interval, and the pooled test.

    Args:
        counts: :func:`carlib.analysis.reliability.replicate_color_counts`.
        pooled: :func:`carlib.analysis.claims.pooled_enrichment` of the same selections and labels.
        layer: the layer role.
        label: what "color" means here (e.g. ``"color index > 0.5"``).
        alpha: significance level.

    Returns:
        One Markdown bullet.

    Example:
        >>> c = {"counts": [4, 7, 4, 5], "replicates": 4, "k": 20, "mean": 5.0, "low": 2.9, "high": 7.1,
        ...      "expected": 6.2}
        >>> p = {"pooled": 20, "slots": 80, "expected": 24.8, "p_greater": 0.9, "p_independent": 0.92,
        ...      "p_fisher": 0.9}
        >>> replicate_colors_markdown(c, p, "conv1", "color index > 0.5")[:40]
        '- **conv1** (color index > 0.5): 4, 7, 4'
    """
    verdict = "**reproduced**" if pooled["p_greater"] < alpha else "**not reproduced**"
    return (f"- **{layer}** ({label}): {', '.join(map(str, counts['counts']))} of the first {counts['k']} "
            f"color in the {counts['replicates']} replicates; mean **{counts['mean']:.1f}** "
            f"[{counts['low']:.1f}, {counts['high']:.1f}] (t 95 %) against {counts['expected']:.1f} for a random "
            f"selection; pooled {pooled['pooled']}/{pooled['slots']} against {pooled['expected']:.1f}, "
            f"permutation p = {pooled['p_greater']:.2g} (as if independent: {pooled['p_independent']:.2g}; "
            f"Fisher: {pooled['p_fisher']:.2g}): {verdict}" + _paper_color(layer))


def best_baseline(paired: pd.DataFrame, reference: str) -> pd.Series:
    """The row of :func:`carlib.analysis.heldout.paired_tests` pairing ``reference`` with the
    most accurate criterion of :data:`~carlib.analysis.heldout.ORDER_CRITERIA` (ties: name).

    Example:
        >>> t = pd.DataFrame({"reference": ["car-greedy"] * 2, "other": ["l1", "taylor"],
        ...                   "accuracy_other": [0.1, 0.2]})
        >>> best_baseline(t, "car-greedy")["other"]
        'taylor'
    """
    rows = paired[(paired["reference"] == reference) & paired["other"].isin(ORDER_CRITERIA)]
    return rows.sort_values(["accuracy_other", "other"], ascending=[False, True], kind="stable").iloc[0]


def _verdict(diff: float, p: float, alpha: float) -> str:
    if p < alpha:
        return "**supported**" if diff > 0 else "**the opposite** (the baseline is better)"
    return "**not distinguishable** from the baseline"


def criteria_markdown(paired: pd.DataFrame, layer: str, filters: int, alpha: float = 0.05) -> str:
    """One Markdown bullet per CAR order on claim 3 before retraining: at half the filters, CAR
    against the strongest baseline on the same test images.

    Args:
        paired: :func:`carlib.analysis.heldout.paired_tests` of the layer.
        layer: the layer's role.
        filters: the layer's filter count.
        alpha: significance level.

    Returns:
        The bullets: both accuracies, the difference with its paired 95 % interval against the
        paper's, the exact McNemar p and the verdict.

    Example:
        >>> t = pd.DataFrame({"reference": ["car-greedy"], "other": ["l1"], "depth": [32],
        ...                   "n_images": [600], "accuracy_reference": [0.34], "accuracy_other": [0.06],
        ...                   "b": [180], "c": [13], "p_value": [1e-38]})
        >>> criteria_markdown(t, "conv1", 64)[:40]
        '- **conv1**, 32 of 64 filters pruned, CA'
    """
    lines = []
    for ref in [r for r in ("car-greedy", "car-oneshot") if r in set(paired["reference"])]:
        row = best_baseline(paired, ref)
        n, d = int(row["n_images"]), float(row["accuracy_reference"] - row["accuracy_other"])
        lo, hi = paired_difference_interval(int(row["b"]), int(row["c"]), n)
        paper = PAPER_GAIN.get(layer)
        vs = "" if paper is None else (f"; the paper's +{100 * paper:.0f} lies "
                                       f"{'inside' if lo <= paper <= hi else 'outside'} it")
        name = "CAR greedy" if ref == "car-greedy" else "CAR one-shot"
        lines.append(
            f"- **{layer}**, {int(row['depth'])} of {filters} filters pruned, {name}: "
            f"{100 * row['accuracy_reference']:.1f} % against {100 * row['accuracy_other']:.1f} % for the "
            f"strongest baseline ({row['other']}) on {n:,} test images: {100 * d:+.1f} points "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}]{vs}; McNemar b = {int(row['b'])}, c = {int(row['c'])}, "
            f"p = {row['p_value']:.2g}: {_verdict(d, float(row['p_value']), alpha)}.")
    return "\n".join(lines)


def retraining_markdown(summary: pd.DataFrame, tests: pd.DataFrame, attrs: Mapping, reference: str,
                        other: str, alpha: float = 0.05) -> str:
    """One Markdown paragraph on claim 3 after retraining.

    Args:
        summary: :func:`carlib.analysis.retraining.retraining_summary`.
        tests: :func:`carlib.analysis.retraining.retraining_tests` of ``reference`` and ``other``.
        attrs: the ``attrs`` of :func:`carlib.analysis.retraining.retraining` (depth, epochs ...).
        reference, other: the two criteria compared.
        alpha: significance level.

    Returns:
        The paragraph: the retraining budget, both accuracies before and after (mean over
        seeds and range), per-seed differences with McNemar p, and the verdict in both readings.

    Example:
        >>> s = pd.DataFrame({"criterion": ["car-greedy", "l1"], "before": [0.3, 0.1], "after": [0.4, 0.35],
        ...                   "after_min": [0.39, 0.34], "after_max": [0.41, 0.36], "seeds": [3, 3]})
        >>> t = pd.DataFrame({"reading": ["before", "after"], "seed": [0, 0], "difference": [0.2, 0.05],
        ...                   "p_value": [1e-9, 0.01]})
        >>> a = {"layer": "conv1", "depth": 32, "epochs": 1, "train_images": 1000, "batch_size": 64,
        ...      "n_images": 600}
        >>> retraining_markdown(s, t, a, "car-greedy", "l1")[:28]
        '**conv1, 32 filters pruned, '
    """
    s = summary.set_index("criterion")
    steps = attrs["epochs"] * (attrs["train_images"] // attrs["batch_size"])
    parts = [f"**{attrs['layer']}, {attrs['depth']} filters pruned, retrained** for {attrs['epochs']} "
             f"epoch(s) over {attrs['train_images']:,} Tiny ImageNet train images ({steps} steps of "
             f"{attrs['batch_size']}), {int(s.loc[reference, 'seeds'])} seed(s), on {attrs['n_images']:,} test images:"]
    for c in (reference, other):
        parts.append(f"{c} {100 * s.loc[c, 'before']:.1f} % before, {100 * s.loc[c, 'after']:.1f} % after "
                     f"(seeds {100 * s.loc[c, 'after_min']:.1f} to {100 * s.loc[c, 'after_max']:.1f});")
    for reading in ("before", "after"):
        t = tests[tests["reading"] == reading]
        diffs = ", ".join(f"{100 * d:+.1f}" for d in t["difference"])
        ok = (t["p_value"] < alpha) & (t["difference"] > 0)
        bad = (t["p_value"] < alpha) & (t["difference"] < 0)
        verdict = ("**supported** in every seed" if ok.all() else "**the opposite** in every seed" if bad.all()
                   else "**not distinguishable** in any seed" if not (ok.any() or bad.any())
                   else f"supported in {int(ok.sum())} of {len(t)} seeds, the opposite in {int(bad.sum())}")
        parts.append(f"{reading} retraining the difference is {diffs} points by seed (largest McNemar "
                     f"p = {t['p_value'].max():.2g}): {verdict}.")
    return " ".join(parts)


def compression_markdown(within: Mapping, table: pd.DataFrame, layer: str) -> str:
    """One Markdown paragraph on the Deep Compression factor against the paper's 42x.

    Args:
        within: :func:`carlib.analysis.retraining.within_one_point`.
        table: :func:`carlib.analysis.retraining.deep_compression`.
        layer: the layer's role.

    Returns:
        The paragraph.

    Example:
        >>> t = pd.DataFrame({"stage": ["unpruned", "deep"], "factor": [1.0, 30.0], "accuracy": [0.47, 0.40],
        ...                   "sparsity": [0.0, 0.9], "bits": [32, 5], "factor_huffman": [1.0, 45.0]})
        >>> w = {"factor": None, "unpruned": 0.47, "n_images": 600}
        >>> compression_markdown(w, t, "conv1")[:20]
        '**conv1**: unpruned '
    """
    deep = table[table["stage"] == "deep"]
    top = deep.sort_values("factor", ascending=False).iloc[0] if len(deep) else None
    head = f"**{layer}**: unpruned {100 * within['unpruned']:.1f} % on {within['n_images']:,} test images."
    if within["factor"] is not None:
        body = (f" The largest storage factor within one point of it: **{within['factor']:.1f}x** "
                f"({within['sparsity']:.0%} of the kept weights pruned, {within['bits']}-bit codes; "
                f"{100 * within['accuracy']:.1f} %)")
    else:
        body = " No setting of the grid stays within one point of it"
    if top is not None:
        body += (f"; the largest factor of the grid, {top['factor']:.1f}x ({top['factor_huffman']:.1f}x with "
                 f"Huffman coding), reaches {100 * top['accuracy']:.1f} %")
    return head + body + ". The paper: 42x at close to the original accuracy."
