"""Choose on some images, compare on others: every pruning order of a layer, chosen without
the test images (:meth:`Study.test_data`), evaluated on them, with Wilson intervals and paired
(McNemar) tests.

With ``held_out_orders`` (profile ``full``) the orders are chosen on the selection half and
compared on the test half (:meth:`Study.halves`); otherwise they are chosen as the profile's
other notebooks choose them (greedy and the activation criteria on the greedy images, one-shot
CAR on the CAR images) and compared on the ``test_per_class`` images per class that follow the
CAR images in the split, or with ``test_other_classes`` on the images of the classes the profile
leaves out (profile ``imagenet``).

The orders: ``car-greedy`` (the greedy loop, as deep as the profile runs it), ``car-oneshot``
(one-shot CAR), the criteria of :data:`ORDER_CRITERIA` (:mod:`carlib.importance`) and
``random-<seed>`` for the profile's seeds. Every table is cached by the study; the curves one
order at a time, so an interrupted run resumes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..baselines import car_order, random_order
from ..compare import curve_points, mcnemar, order_curves, paired_correct
from ..engine import Engine
from ..errors import CarlibError
from ..greedy import greedy_prune
from ..importance import importance_order
from .cache import free_first
from .reliability import class_halves, split_half, stratified_split
from .study import Study

__all__ = ["ORDER_CRITERIA", "selection_orders", "test_curves", "paired_tests",
           "car_split_half", "replicate_greedy", "replicate_orders", "comparison_images", "order_lists",
           "test_correct"]

#: the literature's criteria traced beside CAR (names of :data:`carlib.importance.CRITERIA`)
ORDER_CRITERIA = ("l1", "l2", "mean_activation", "apoz", "taylor")


def _check(study: Study) -> None:
    if not study.profile.has_test:
        raise CarlibError(f"profile {study.profile.name!r} has no test images; use a profile with "
                          "held_out_orders=True (e.g. 'full') or set test_per_class or test_other_classes")


def comparison_images(study: Study) -> str:
    """What the test images are (:meth:`Study.test_data`), for the cache key of the tables
    computed on them.

    Example:
        >>> comparison_images(Study("full"))  # doctest: +SKIP
        'test half'
    """
    P = study.profile
    if P.held_out_orders:
        return "test half"
    if P.test_other_classes:
        return f"the other classes, {P.test_per_class or 'all'} per class"
    return f"{P.test_per_class} per class after the CAR images"


def selection_orders(study: Study, layer: str) -> pd.DataFrame:
    """Every pruning order of ``layer``, none chosen on the test images.

    Args:
        study: a study whose profile has test images (:attr:`Profile.has_test`).
        layer: the role (``conv1``, ``conv2``) or layer.

    Returns:
        A tidy table ``criterion, rank, filter`` (rank 0 is pruned first); ``car-greedy`` is as
        long as the greedy run, every other order holds all filters.

    Example:
        >>> selection_orders(Study("full"), "conv1").groupby("criterion").size()  # doctest: +SKIP
    """
    _check(study)

    def compute() -> pd.DataFrame:
        orders = {"car-greedy": [int(f) for f in study.greedy(layer)["filter"]], **_greedy_free_orders(study, layer)}
        return pd.DataFrame([{"criterion": k, "rank": r, "filter": f}
                             for k, order in orders.items() for r, f in enumerate(order)])

    return study.table(f"orders_{layer}", compute, layer=layer,
                       depth=study.profile.greedy_steps[layer], criteria=list(ORDER_CRITERIA))


def _greedy_free_orders(study: Study, layer: str) -> dict[str, list[int]]:
    """Every order of :func:`selection_orders` but ``car-greedy``, in the table's order (cached:
    :func:`test_curves` reads them before the orders table exists)."""
    def compute() -> pd.DataFrame:
        orders = {"car-oneshot": car_order(study.oneshot_car(layer))}
        for name in ORDER_CRITERIA:
            orders[name] = importance_order(name, study.model, study.plan(layer), study.greedy_data,
                                            device=study.device)
        for seed in study.profile.random_seeds:
            orders[f"random-{seed}"] = random_order(study.layer(layer).filters, seed)
        return pd.DataFrame([{"criterion": k, "rank": r, "filter": f}
                             for k, order in orders.items() for r, f in enumerate(order)])

    table = study.table(f"parts/greedy_free_orders_{layer}", compute, layer=layer, criteria=list(ORDER_CRITERIA))
    return {k: [int(f) for f in g.sort_values("rank")["filter"]] for k, g in table.groupby("criterion", sort=False)}


def order_lists(study: Study, layer: str) -> dict[str, list[int]]:
    """:func:`selection_orders` as ``criterion -> filters in pruning order``.

    Example:
        >>> order_lists(Study("default"), "conv1")["car-greedy"][:3]  # doctest: +SKIP
    """
    table = selection_orders(study, layer)
    return {k: [int(f) for f in g.sort_values("rank")["filter"]]
            for k, g in table.groupby("criterion", sort=False)}


def test_curves(study: Study, layer: str) -> pd.DataFrame:
    """Accuracy on the test images against filters pruned, for every order of
    :func:`selection_orders`, to the profile's curve depth (default: half the layer), at every
    depth or at the profile's ``curve_points`` (:func:`carlib.compare.curve_points`).

    Returns:
        :func:`carlib.compare.order_curves`' table: ``criterion, n_pruned, filter, correct,
        n_images, accuracy, low, high`` (Wilson 95 %).

    Example:
        >>> test_curves(Study("full"), "conv1")  # doctest: +SKIP
    """
    _check(study)
    depth = study.profile.curve_depth_for(layer, study.layer(layer).filters)
    points = curve_points(depth, study.profile.curve_points)
    test = comparison_images(study)

    def compute() -> pd.DataFrame:
        held = study.test_data()
        eng = None
        memo: dict = {}  # one engine and one memo of the counts: the unpruned point once

        def part(name: str, order: list[int], orders: dict[str, list[int]] | None) -> pd.DataFrame:
            def one() -> pd.DataFrame:
                nonlocal eng
                if eng is None:
                    eng = Engine(study.model, study.plan(layer), held, device=study.device)
                    if orders is not None:  # the last point of every order that reaches it: read once
                        ok = test_correct(study, layer, engine=eng)
                        memo.update({tuple(sorted(orders[k][:depth])): int(ok[k].sum())
                                     for k in ok.columns[2:]})
                return order_curves(study.model, study.plan(layer), held, {name: order}, depth,
                                    points=points, engine=eng, memo=memo)
            return study.table(f"parts/test_curve_{layer}_{name}", one, layer=layer,
                               order=order[:depth], points=points, test=test)

        if points is None:  # every depth: the orders that need no greedy run first, so that
            # one process computes them while another runs the greedy loop
            for name, order in _greedy_free_orders(study, layer).items():
                part(name, order, None)
        orders = order_lists(study, layer)
        bar = tqdm(orders.items(), total=len(orders), desc=f"test curves {layer}", unit="order",
                   disable=not study.progress, mininterval=1.0)
        parts = []
        for name, order in bar:
            bar.set_postfix_str(name)
            parts.append(part(name, order, orders if points is not None else None))
        return pd.concat(parts, ignore_index=True)

    return study.table(f"test_curves_{layer}", compute, layer=layer, depth=depth, points=points, test=test)


def test_correct(study: Study, layer: str, engine: Engine | None = None) -> pd.DataFrame:
    """Per-image correctness on the test images of every order that reaches the profile's curve
    depth (default: half the layer), pruned to that depth: what :func:`paired_tests` tests and the last
    point of :func:`test_curves`, computed once.

    Args:
        study, layer: as :func:`test_curves`.
        engine: an :class:`~carlib.engine.Engine` on the test images to reuse.

    Returns:
        :func:`carlib.compare.paired_correct`'s table (``image, label``, one bool column per order).

    Example:
        >>> test_correct(Study("full"), "conv1").mean(numeric_only=True)  # doctest: +SKIP
    """
    _check(study)
    depth = study.profile.curve_depth_for(layer, study.layer(layer).filters)
    orders = {k: o[:depth] for k, o in order_lists(study, layer).items() if len(o) >= depth}
    return study.table(f"parts/test_correct_{layer}", lambda: paired_correct(
        study.model, study.plan(layer), study.test_data(), orders, depth, engine=engine, device=study.device),
        layer=layer, depth=depth, test=comparison_images(study), orders=orders)


def paired_tests(study: Study, layer: str, references: tuple[str, ...] = ("car-greedy", "car-oneshot")) -> pd.DataFrame:
    """Exact McNemar tests on the test images at the profile's curve depth: each reference order against
    every other order, the same images pruned by both.

    Args:
        study, layer: as :func:`test_curves`.
        references: the orders tested against all others (those that reach the depth).

    Returns:
        ``reference, other, depth, n_images, accuracy_reference, accuracy_other, b, c, p_value``
        (``b``: images only the reference gets right, ``c``: only the other; two-sided exact).

    Example:
        >>> paired_tests(Study("full"), "conv1")  # doctest: +SKIP
    """
    _check(study)
    depth = study.profile.curve_depth_for(layer, study.layer(layer).filters)

    def compute() -> pd.DataFrame:
        ok = test_correct(study, layer)
        orders = list(ok.columns[2:])
        rows = []
        for ref in (r for r in references if r in orders):
            for other in (o for o in orders if o != ref):
                t = mcnemar(ok[ref].to_numpy(), ok[other].to_numpy())
                rows.append({"reference": ref, "other": other, "depth": depth, "n_images": len(ok),
                             "accuracy_reference": float(np.mean(ok[ref])),
                             "accuracy_other": float(np.mean(ok[other])),
                             "b": int(t["b"]), "c": int(t["c"]), "p_value": float(t["p_value"])})
        return pd.DataFrame(rows)

    return study.table(f"paired_{layer}", compute, layer=layer, depth=depth, test=comparison_images(study))


def car_split_half(study: Study, layer: str) -> dict:
    """Split-half reliability of one-shot CAR (:func:`carlib.analysis.reliability.split_half`,
    ``k`` = the profile's ``top_k_filters``): how much of a layer's CAR ranking is signal.

    With ``held_out_orders`` the halves are the selection and test halves; otherwise the CAR
    images are split by class (:func:`~carlib.analysis.reliability.class_halves` of the
    per-class table, seed 0), so every profile reports it without a new pass.

    Returns:
        :func:`~carlib.analysis.reliability.split_half`'s dict, plus ``n_images`` (the two
        halves' sizes) and ``halves`` (``"selection/test"`` or ``"classes"``).

    Example:
        >>> car_split_half(Study("full"), "conv2")["rho"]  # doctest: +SKIP
    """
    if study.profile.held_out_orders:
        a, b, halves = study.car(layer, "selection"), study.car(layer, "test"), "selection/test"
        sizes = (a.attrs["n_images"], b.attrs["n_images"])
    else:
        a, b = class_halves(study.car_per_class(layer), seed=0)
        halves, sizes = "classes", (int(a["n_images"].iloc[0]), int(b["n_images"].iloc[0]))
    out = split_half(a, b, k=min(study.profile.top_k_filters, len(a) // 2))
    out["n_images"], out["halves"] = sizes, halves
    return out


def replicate_greedy(study: Study, layer: str, parts: int | None = None, depth: int | None = None) -> pd.DataFrame:
    """The greedy loop on ``parts`` disjoint, class-stratified parts of the greedy images (the
    selection half with ``held_out_orders``; :func:`carlib.analysis.reliability.stratified_split`,
    seed 0), each journaled: how stable is the selection?

    Args:
        study, layer: as :func:`test_curves`.
        parts: how many replicates (default: the profile's ``replicates["parts"]``).
        depth: greedy steps per replicate (default: the profile's ``replicates["depth"]``, else
            ``top_k_filters``).

    Returns:
        ``replicate, n_images`` and the greedy table's columns (``step, filter, accuracy``, ...).

    Example:
        >>> replicate_greedy(Study("full"), "conv1")  # doctest: +SKIP
    """
    settings = study.profile.replicates or {}
    parts = parts or settings.get("parts")
    if not parts or parts < 2:
        raise CarlibError(f"profile {study.profile.name!r} has no replicates; set replicates="
                          "{'parts': 4} (at least 2 parts) or pass parts=")
    depth = depth or settings.get("depth") or study.profile.top_k_filters
    data = study.greedy_data
    splits = stratified_split(np.asarray(data.labels), parts, seed=0)
    tables = {}

    def name(i: int) -> str:
        return f"parts/replicate_{layer}_{i}_of_{parts}"

    # the replicates another process is computing last: processes running this step share them
    for i in free_first(range(parts), lambda i: study.cache.computing(name(i))):
        idx = splits[i]
        journal = study.dir / f"{name(i)}.journal.jsonl"
        journal.parent.mkdir(parents=True, exist_ok=True)
        t = study.table(name(i), lambda idx=idx, journal=journal: greedy_prune(
            study.model, study.plan(layer), data.subset(idx), n_remove=depth, journal=journal,
            device=study.device, progress=study.progress), layer=layer, depth=depth, images=int(len(idx)))
        tables[i] = t.assign(replicate=i, n_images=len(idx))
    out = pd.concat([tables[i] for i in range(parts)], ignore_index=True)
    return out[["replicate", "n_images"] + [c for c in out.columns if c not in ("replicate", "n_images")]]


def replicate_orders(study: Study, layer: str) -> list[list[int]]:
    """:func:`replicate_greedy`'s selections, one pruning order per replicate.

    Example:
        >>> [len(o) for o in replicate_orders(Study("smoke"), "conv1")]  # doctest: +SKIP
        [3, 3]
    """
    reps = replicate_greedy(study, layer)
    return [[int(f) for f in g.sort_values("step")["filter"]] for _, g in reps.groupby("replicate")]
