"""Retraining after pruning, and Deep Compression on top of it (notebook 06).

The companion paper's claim 3 in both readings: at half of a layer's filters pruned, is the
network pruned by CAR more accurate than the one pruned by the best other criterion, *before*
retraining and *after* it? And how small does the layer get, with magnitude pruning and weight
sharing on top of the structural pruning, within one point of the unpruned network's accuracy?

Every network is physically pruned (:func:`carlib.prune_filters`), fine-tuned with the recipe
of ``python -m carlib train`` (:func:`carlib.finetune.finetune`) on Tiny ImageNet train
images, and evaluated on the test images of :meth:`Study.test_data` (never used to choose an
order). The profile's ``retrain`` setting says how (:class:`~carlib.analysis.profiles.Profile`).
Each run is cached on its own (one row per test image), so a long run resumes at the first
missing one; a run's checkpoint is deleted once its table is written.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..compare import mcnemar, paired_correct
from ..compression import deep_compress
from ..data import ImageDataset, load_dataset
from ..errors import CarlibError
from ..finetune import FINETUNE_LR, finetune, finetune_config
from ..importance import random_order
from ..pruning import prune_filters
from .cache import free_first
from .heldout import ORDER_CRITERIA, comparison_images, order_lists, paired_tests
from .stats import wilson_interval
from .study import Study

__all__ = ["retrain_depth", "train_images", "correct_on", "before_retraining", "retrain_criteria",
           "retraining", "retraining_summary", "retraining_tests", "deep_compression",
           "within_one_point"]


def _settings(study: Study) -> dict:
    R = study.profile.retrain
    if not R:
        raise CarlibError(f"profile {study.profile.name!r} has no retraining settings (retrain=None); "
                          "use a profile that sets them (e.g. 'default' or 'full')")
    return R


def retrain_depth(study: Study, layer: str) -> int:
    """Filters pruned before retraining: the profile's ``retrain["depth"]``, else half the layer.

    Example:
        >>> retrain_depth(Study("default"), "conv1")  # doctest: +SKIP
        32
    """
    return int(_settings(study).get("depth") or study.layer(layer).filters // 2)


def train_images(study: Study) -> ImageDataset:
    """The fine-tuning images: the first ``retrain["per_class"]`` Tiny ImageNet train images of
    each class the profile uses (all 500 when ``None``)."""
    R = _settings(study)
    P = study.profile
    train = load_dataset(P.dataset, "train", per_class=R.get("per_class"), progress=study.progress)
    return train.subset(np.flatnonzero(P.keeps_class(np.asarray(train.labels))))


@torch.no_grad()
def correct_on(model: nn.Module, data: ImageDataset, batch_size: int = 500) -> np.ndarray:
    """Whether ``model`` classifies each image of ``data`` correctly (top-1), in dataset order.

    Example:
        >>> correct_on(load_model(), val[:10]).mean()  # doctest: +SKIP
    """
    model.eval()
    out = []
    for i in range(0, len(data), batch_size):
        x = data.normalize(data.images[i : i + batch_size]).contiguous(memory_format=torch.channels_last)
        out.append((model(x).argmax(1) == torch.as_tensor(data.labels[i : i + batch_size])).numpy())
    return np.concatenate(out)


def before_retraining(study: Study, layer: str) -> pd.DataFrame:
    """Every order of :func:`~carlib.analysis.heldout.selection_orders` that reaches
    :func:`retrain_depth`, pruned to it, on the test images (one pass each, no retraining).

    Where the depth is that of :func:`~carlib.analysis.heldout.paired_tests` (half the layer),
    its accuracies are read from there instead of computed again.

    Returns:
        ``criterion, depth, correct, n_images, accuracy, low, high`` (Wilson 95 %), best first
        (ties: criterion name).
    """
    depth = retrain_depth(study, layer)

    def counts() -> tuple[dict[str, int], int]:
        if study.profile.curve_depth_for(layer, study.layer(layer).filters) == depth:
            p = paired_tests(study, layer)
            if len(p):
                n = int(p["n_images"].iloc[0])
                acc = {**dict(zip(p["other"], p["accuracy_other"])),
                       **dict(zip(p["reference"], p["accuracy_reference"]))}
                return {k: int(round(a * n)) for k, a in acc.items()}, n
        orders = {k: o for k, o in order_lists(study, layer).items() if len(o) >= depth}
        ok = paired_correct(study.model, study.plan(layer), study.test_data(), orders, depth,
                            device=study.device)
        return {name: int(ok[name].sum()) for name in orders}, len(ok)

    def compute() -> pd.DataFrame:
        correct, n = counts()
        rows = []
        for name, k in correct.items():
            lo, hi = wilson_interval(k, n)
            rows.append({"criterion": name, "depth": depth, "correct": k, "n_images": n,
                         "accuracy": k / n, "low": lo, "high": hi})
        return pd.DataFrame(rows).sort_values(["accuracy", "criterion"], ascending=[False, True],
                                              kind="stable", ignore_index=True)

    return study.table(f"before_retraining_{layer}", compute, layer=layer, depth=depth,
                       test=comparison_images(study))


def retrain_criteria(study: Study, layer: str) -> list[str]:
    """The orders retrained: ``car-greedy`` (when it reaches the depth), ``car-oneshot``, the
    two best of :data:`~carlib.analysis.heldout.ORDER_CRITERIA` by accuracy on the test images
    before retraining (the strongest baselines, chosen to the baselines' advantage), and
    ``random`` (its seed is the retraining seed)."""
    before = before_retraining(study, layer)
    names = set(before["criterion"])
    best = [c for c in before["criterion"] if c in ORDER_CRITERIA][:2]
    return [c for c in ("car-greedy", "car-oneshot") if c in names] + best + ["random"]


def _run_name(layer: str, criterion: str, seed: int) -> str:
    """A retraining run's name: its table is ``parts/retrain_<name>``, its checkpoint ``<name>``."""
    return f"{layer}_{criterion}_{seed}"


def _run(study: Study, layer: str, criterion: str, order: Sequence[int], seed: int,
         train: ImageDataset, test: ImageDataset, depth: int) -> pd.DataFrame:
    R = _settings(study)
    work = study.dir / "parts" / "finetune"
    name = _run_name(layer, criterion, seed)

    def compute() -> pd.DataFrame:
        small = prune_filters(study.model, study.plan(layer), list(order[:depth]))
        before = correct_on(small, test)
        cfg = finetune_config(int(R["epochs"]), seed=seed, batch_size=int(R["batch_size"]))
        tuned, log = finetune(small, train, None, cfg, work_dir=work, name=name, progress=study.progress)
        out = pd.DataFrame({"image": np.arange(len(test)), "label": np.asarray(test.labels),
                            "before": before, "after": correct_on(tuned, test)})
        out.attrs["train_loss"] = float(log["train_loss"].iloc[-1])
        return out

    table = study.table(f"parts/retrain_{name}", compute, layer=layer, order=list(order[:depth]),
                        seed=seed, epochs=R["epochs"], per_class=R.get("per_class"),
                        batch_size=R["batch_size"], lr=FINETUNE_LR, test=comparison_images(study))
    (work / f"{name}.ckpt.pt").unlink(missing_ok=True)  # the table is what counts now
    return table


def retraining(study: Study, layer: str) -> pd.DataFrame:
    """Every order of :func:`retrain_criteria`, pruned to :func:`retrain_depth` and fine-tuned
    once per seed of ``retrain["seeds"]``.

    Returns:
        One row per (criterion, seed, test image): ``criterion, seed, image, label, before,
        after`` (correct before and after retraining); ``attrs`` say the depth, epochs and
        training images.

    Example:
        >>> retraining(Study("default"), "conv1").groupby("criterion")["after"].mean()  # doctest: +SKIP
    """
    R = _settings(study)
    depth = retrain_depth(study, layer)
    orders = order_lists(study, layer)
    train, test = train_images(study), study.test_data()
    runs = [(criterion, int(seed)) for criterion in retrain_criteria(study, layer) for seed in R["seeds"]]
    parts = {}
    # the runs another process is computing last: processes running this step share the runs
    for criterion, seed in free_first(runs, lambda r: study.cache.computing(f"parts/retrain_{_run_name(layer, *r)}")):
        # random: the order of the retraining seed (selection_orders' random-<seed>)
        order = random_order(study.layer(layer).filters, seed) if criterion == "random" else orders[criterion]
        t = _run(study, layer, criterion, order, seed, train, test, depth)
        parts[criterion, seed] = t.assign(criterion=criterion, seed=seed)
    out = pd.concat([parts[r] for r in runs], ignore_index=True)[["criterion", "seed", "image", "label", "before", "after"]]
    out.attrs.update({"layer": layer, "depth": depth, "epochs": int(R["epochs"]),
                      "train_images": len(train), "batch_size": int(R["batch_size"]),
                      "n_images": len(test)})
    return out


def retraining_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy before and after retraining per criterion: the mean over seeds, its range, and
    the Wilson interval of the pooled count.

    Returns:
        ``criterion, seeds, n_images, before, after, after_min, after_max, after_low,
        after_high, gain`` (in the order of ``runs``).
    """
    rows = []
    for crit, g in runs.groupby("criterion", sort=False):
        per_seed = g.groupby("seed")[["before", "after"]].mean()
        n, seeds = int(g.groupby("seed").size().iloc[0]), len(per_seed)
        lo, hi = wilson_interval(int(g["after"].sum()), len(g))
        rows.append({"criterion": crit, "seeds": seeds, "n_images": n,
                     "before": float(per_seed["before"].mean()), "after": float(per_seed["after"].mean()),
                     "after_min": float(per_seed["after"].min()), "after_max": float(per_seed["after"].max()),
                     "after_low": lo, "after_high": hi,
                     "gain": float(per_seed["after"].mean() - per_seed["before"].mean())})
    return pd.DataFrame(rows)


def retraining_tests(runs: pd.DataFrame, reference: str, other: str) -> pd.DataFrame:
    """Exact McNemar tests of ``reference`` against ``other`` on the same test images, before
    and after retraining, per seed (before retraining a seed changes only ``random``).

    Returns:
        ``reading`` (``before``/``after``), ``seed, n_images, accuracy_reference,
        accuracy_other, difference, b, c, p_value``.
    """
    rows = []
    for seed in sorted(set(runs["seed"])):
        a = runs[(runs["criterion"] == reference) & (runs["seed"] == seed)].sort_values("image")
        b = runs[(runs["criterion"] == other) & (runs["seed"] == seed)].sort_values("image")
        if a.empty or b.empty:
            continue
        for reading in ("before", "after"):
            t = mcnemar(a[reading].to_numpy(), b[reading].to_numpy())
            ra, rb = float(a[reading].mean()), float(b[reading].mean())
            rows.append({"reading": reading, "seed": int(seed), "n_images": len(a),
                         "accuracy_reference": ra, "accuracy_other": rb, "difference": ra - rb,
                         "b": int(t["b"]), "c": int(t["c"]), "p_value": float(t["p_value"])})
    return pd.DataFrame(rows)


def deep_compression(study: Study, layer: str) -> pd.DataFrame:
    """Deep Compression of ``layer`` after CAR's structural pruning: the network pruned to
    :func:`retrain_depth` by ``car-greedy`` (``car-oneshot`` when the greedy run is shorter),
    then for every sparsity and bit width of the profile's grid
    :func:`carlib.compression.deep_compress` (magnitude pruning, fine-tuning, k-means weight
    sharing, fine-tuning the codebook; seed 0), evaluated on the test images. Each setting is
    cached on its own (``parts/``): an interrupted grid resumes at the first missing setting.

    Returns:
        One row per setting, first the unpruned network (``stage="unpruned"``, factor 1) and
        the structurally pruned one (``stage="filters"``, not fine-tuned: :func:`retraining`
        fine-tunes it), then ``stage="deep"`` rows: :func:`carlib.compression.compression_row`'s
        columns plus ``stage, criterion, correct, n_images, accuracy, low, high``.

    Example:
        >>> deep_compression(Study("default"), "conv1")[["sparsity", "bits", "factor", "accuracy"]]  # doctest: +SKIP
    """
    R = _settings(study)
    depth = retrain_depth(study, layer)
    orders = order_lists(study, layer)
    criterion = "car-greedy" if len(orders.get("car-greedy", [])) >= depth else "car-oneshot"
    order = orders[criterion][:depth]
    path = study.layer(layer).path
    original = tuple(study.layer(layer).module.weight.shape)
    test = study.test_data()
    cfg = finetune_config(int(R["epochs"]), seed=0, batch_size=int(R["batch_size"]))

    def row(net: nn.Module, stage: str, compressed: dict) -> dict:
        ok = correct_on(net, test)
        k, n = int(ok.sum()), len(ok)
        lo, hi = wilson_interval(k, n)
        return {"stage": stage, "criterion": criterion, **compressed, "correct": k, "n_images": n,
                "accuracy": k / n, "low": lo, "high": hi}

    grid = [(float(s), int(b)) for s in R["sparsities"] for b in R["bits"]]
    small, train = None, None

    def name(sparsity: float, bits: int) -> str:
        return f"{layer}_{sparsity:g}_{bits}b"

    def part(sparsity: float, bits: int) -> pd.DataFrame:
        def setting() -> pd.DataFrame:
            nonlocal small, train
            small = small if small is not None else prune_filters(study.model, study.plan(layer), order)
            train = train if train is not None else train_images(study)
            work = study.dir / "parts" / "deep_compression" / name(sparsity, bits)
            net, r = deep_compress(small, path, train, sparsity=sparsity, bits=bits, config=cfg,
                                   work_dir=work, original=original, progress=study.progress)
            for f in work.glob("*.ckpt.pt"):
                f.unlink()
            return pd.DataFrame([row(net, "deep", r)])
        # each setting cached on its own: an interrupted grid resumes at the first missing one
        return study.table(f"parts/deep_compression_{name(sparsity, bits)}", setting, layer=layer,
                           order=order, sparsity=sparsity, bits=bits, epochs=R["epochs"],
                           per_class=R.get("per_class"), batch_size=R["batch_size"], lr=FINETUNE_LR,
                           test=comparison_images(study))

    # the settings first, outside the table's lock, those another process is computing last:
    # processes running this step share the settings
    for sparsity, bits in free_first(grid, lambda g: study.cache.computing(f"parts/deep_compression_{name(*g)}")):
        part(sparsity, bits)

    def compute() -> pd.DataFrame:
        from ..compression import compression_row

        pruned = small if small is not None else prune_filters(study.model, study.plan(layer), order)
        rows = [row(study.model, "unpruned", compression_row(study.model, path)),
                row(pruned, "filters", compression_row(pruned, path, original=original))]
        for sparsity, bits in grid:
            rows.extend(part(sparsity, bits).to_dict("records"))
        return pd.DataFrame(rows)

    return study.table(f"deep_compression_{layer}", compute, layer=layer, order=order,
                       sparsities=R["sparsities"], bits=R["bits"], epochs=R["epochs"],
                       per_class=R.get("per_class"), batch_size=R["batch_size"], lr=FINETUNE_LR,
                       test=comparison_images(study))


def within_one_point(table: pd.DataFrame, points: float = 0.01) -> dict:
    """The largest storage factor of :func:`deep_compression` whose accuracy is within
    ``points`` of the unpruned network's (``None`` when no setting is).

    Returns:
        ``{"factor", "sparsity", "bits", "accuracy", "unpruned", "n_images"}``.
    """
    base = float(table.loc[table["stage"] == "unpruned", "accuracy"].iloc[0])
    ok = table[(table["stage"] != "unpruned") & (table["accuracy"] >= base - points)]
    out = {"unpruned": base, "n_images": int(table["n_images"].iloc[0]), "factor": None,
           "sparsity": None, "bits": None, "accuracy": None}
    if len(ok):
        best = ok.sort_values(["factor", "accuracy"], ascending=False, kind="stable").iloc[0]
        out.update(factor=float(best["factor"]), sparsity=float(best["sparsity"]),
                   bits=int(best["bits"]), accuracy=float(best["accuracy"]))
    return out
