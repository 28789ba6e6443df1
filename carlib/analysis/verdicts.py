"""The paper's claims as the notebooks state them: one Markdown paragraph or table per test,
with its numbers, sample sizes, intervals, p-values and verdict (the tests themselves are in
:mod:`carlib.analysis.claims`, :mod:`carlib.analysis.reliability` and
:mod:`carlib.analysis.heldout`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from .selectivity import hypergeom_enrichment

__all__ = ["reliability_markdown", "threshold_free_markdown", "class_importance_markdown",
           "label_counts"]


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
