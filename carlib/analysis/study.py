"""The notebooks' computations, cached as tidy tables under ``results/<profile>/``.

A :class:`Study` binds a profile (model, data, sizes, device) and computes each result once:
the next run reads the table back unless its inputs changed or ``force=True``
(:class:`~carlib.analysis.cache.ResultCache`).
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..baselines import car_order, l1_order, order_curve, random_order
from ..car import car_index, car_table, overall_from_per_class
from ..data import DataLike, FolderDataset, data_fingerprint, load_dataset, subset_per_class
from ..engine import Engine, resolve_device
from ..errors import CarlibError
from ..graph import LayerPlan, analyze
from ..greedy import greedy_prune
from ..layers import ConvLayer, resolve_layer
from ..models import load_model, model_fingerprint
from ..paths import results_dir
from .cache import ResultCache
from .labels import filter_labels
from .profiles import Profile, get_profile
from .selectivity import color_index_responses, color_index_weights, weights_index_applies

__all__ = ["Study"]


class Study:
    """One profile's model, data and cached results.

    Args:
        profile: a name in :data:`~carlib.analysis.profiles.PROFILES` or a :class:`Profile`.
        device: overrides the profile's device (``None``: the profile's; resolved by
            :func:`carlib.engine.resolve_device`).
        force: recompute every table instead of reading the cache.
        progress: show progress bars (``None``: unless ``$CARLIB_PROGRESS`` is ``0``).
        **overrides: profile fields to change (e.g. ``per_class=5``).

    Example:
        >>> s = Study("smoke")  # doctest: +SKIP
        >>> s.car("conv1").head()  # doctest: +SKIP
    """

    def __init__(self, profile: str | Profile = "default", *, device: str | None = None,
                 force: bool = False, progress: bool | None = None, **overrides: object):
        prof = profile if isinstance(profile, Profile) else get_profile(profile)
        if overrides:
            prof = prof.with_(**overrides)
        self.profile = prof
        self.device = str(resolve_device(device or prof.device))
        self.force = force
        self.progress = progress = (os.environ.get("CARLIB_PROGRESS", "1") != "0" if progress is None
                                    else bool(progress))
        self.dir = results_dir(prof.name)
        torch.manual_seed(0)
        self.model = load_model(prof.model)
        self.data = load_dataset(prof.dataset, prof.split, per_class=prof.per_class, progress=progress)
        self.greedy_data = (self.data if prof.greedy_per_class == prof.per_class else
                            load_dataset(prof.dataset, prof.split, per_class=prof.greedy_per_class,
                                         progress=progress))
        if prof.max_classes is not None or prof.class_step != 1:
            self.data = self.data.subset(np.flatnonzero(prof.keeps_class(self.data.labels)))
            self.greedy_data = self.greedy_data.subset(np.flatnonzero(prof.keeps_class(self.greedy_data.labels)))
        self._plans: dict[str, LayerPlan] = {}
        self.cache = ResultCache(self.dir, {"profile": prof.cache_key(),
                                            "model": model_fingerprint(self.model),
                                            "data": data_fingerprint(self.data)}, force=force)

    def describe(self) -> str:
        """One Markdown paragraph: model, data, sizes, the layers playing ``conv1`` and
        ``conv2``, and the device (the notebooks' first output).

        Example:
            >>> Study("smoke").describe()  # doctest: +SKIP
            '**Profile `smoke`**: `alexnet-tiny` on tiny-imagenet val, ...'
        """
        P = self.profile
        roles = ", ".join(f"{r} = `{c.path}` ({c.filters} filters, {'x'.join(map(str, c.module.kernel_size))})"
                          for r, c in ((r, self.layer(r)) for r in ("conv1", "conv2")))
        used = len(np.unique(np.asarray(self.data.labels)))
        classes = (f"{self.data.num_classes} classes" if used == self.data.num_classes else
                   f"{used} of its {self.data.num_classes} classes")
        return (f"**Profile `{P.name}`**: `{P.model}` on {P.dataset} {P.split}, "
                f"{classes}; CAR index on {len(self.data):,} images "
                f"({P.per_class} per class), greedy pruning and curves on {len(self.greedy_data):,} "
                f"images ({P.greedy_per_class} per class), greedy depth {P.greedy_steps}; "
                f"layers: {roles}; device `{self.device}`.")

    # ---------------------------------------------------------------- caching
    def table(self, name: str, compute: Callable[[], pd.DataFrame], **params: object) -> pd.DataFrame:
        """The cached table ``name`` (see :meth:`ResultCache.table`)."""
        return self.cache.table(name, compute, **params)

    def seconds(self, name: str) -> float | None:
        """How long the cached table ``name`` took to compute (``None`` if unknown)."""
        return self.cache.seconds(name)

    # ---------------------------------------------------------------- results
    def layer(self, layer: str) -> ConvLayer:
        """The convolution that plays ``layer`` in the profile (:meth:`Profile.layer_path`;
        any other alias or module path as it is): alias, path, module, filters."""
        return resolve_layer(self.model, self.profile.layer_path(layer))

    def plan(self, layer: str) -> LayerPlan:
        """The layer's :class:`~carlib.graph.LayerPlan`, traced once per study."""
        if layer not in self._plans:
            self._plans[layer] = analyze(self.model, self.profile.layer_path(layer))
        return self._plans[layer]

    def halves(self) -> dict[str, np.ndarray]:
        """Indices into the CAR images: ``selection`` (the greedy images, the first
        ``greedy_per_class`` of each class) and ``test`` (the others, :meth:`heldout_data`)."""
        labels = np.asarray(self.data.labels)
        seen = np.sort(subset_per_class(labels, self.profile.greedy_per_class, self.data.num_classes))
        return {"selection": seen, "test": np.setdiff1d(np.arange(len(labels)), seen)}

    def car_per_class(self, layer: str, images: str = "all") -> pd.DataFrame:
        """CAR of every filter of ``layer`` for every class (one pass gives both tables).

        Args:
            layer: the role or layer.
            images: ``"all"`` CAR images, or (profiles with ``held_out_orders``) the
                ``"selection"`` or ``"test"`` half of :meth:`halves`.

        With the profile's ``shard_images`` set, the images are counted in shards of that
        size, each shard's integer counts cached on its own (an interrupted run resumes at the
        first missing shard); the sums give the same table as one pass. With
        ``held_out_orders`` the shards lie within the halves, whose sums give ``"all"``.
        """
        if images not in ("all", "selection", "test"):
            raise CarlibError(f"unknown image set {images!r}; use 'all', 'selection' or 'test'")
        if images != "all" and not self.profile.held_out_orders:
            raise CarlibError(f"profile {self.profile.name!r} has no selection and test halves "
                              "(held_out_orders=False); use images='all'")
        name = f"car_per_class_{layer}" + ("" if images == "all" else f"_{images}")
        if not self.profile.shard_images:
            data = self.data if images == "all" else self.data.subset(self.halves()[images])
            return self.table(name, lambda: car_index(
                self.model, self.plan(layer), data, per_class=True, device=self.device,
                progress=self.progress), layer=layer)
        return self.table(name, lambda: self._car_from_shards(layer, images), layer=layer)

    def _car_from_shards(self, layer: str, images: str) -> pd.DataFrame:
        from tqdm.auto import tqdm

        size = int(self.profile.shard_images)
        groups = ([(f"{h}_", idx) for h, idx in self.halves().items() if images in ("all", h)]
                  if self.profile.held_out_orders else [("", np.arange(len(self.data)))])
        filters = list(range(self.layer(layer).filters))
        parts = []
        with tqdm(total=sum(len(g[1]) for g in groups) * len(filters), desc=f"CAR {layer} (shards of {size})",
                  unit="img", unit_scale=True, disable=not self.progress, mininterval=1.0) as bar:
            done = 0
            for tag, every in groups:
                for first in range(0, len(every), size):
                    idx = every[first : first + size]
                    parts.append(self.table(f"parts/car_counts_{layer}_{tag}{first:06d}",
                                            lambda idx=idx: self._car_counts(layer, idx, filters, bar),
                                            layer=layer, first=int(idx[0]), last=int(idx[-1])))
                    done += len(idx)
                    bar.n = done * len(filters)  # a cached shard counts as done
                    bar.refresh()
        counts = pd.concat(parts).groupby(["filter", "class"], as_index=False)[["correct", "n"]].sum()
        classes = self.data.num_classes
        wide = counts.pivot(index="filter", columns="class", values="correct").reindex(
            columns=range(classes), fill_value=0).fillna(0).astype("int64")
        n = counts[counts["filter"] == -1].set_index("class")["n"].reindex(range(classes), fill_value=0)
        df = car_table(torch.tensor(wide.loc[-1].to_numpy()), torch.tensor(wide.loc[filters].to_numpy()),
                       torch.tensor(n.to_numpy()), filters, per_class=True)
        eng = Engine(self.model, self.plan(layer), self.data, device=self.device)
        df.attrs.update({"layer": eng.plan.layer.path, "topk": 1, "method": eng.method,
                         "precision": eng.precision, "shards": len(parts)})
        return df

    def _car_counts(self, layer: str, idx: np.ndarray, filters: list[int], bar=None) -> pd.DataFrame:
        """Correct images per class of one shard: the unpruned network (``filter = -1``) and
        each filter pruned alone."""
        eng = Engine(self.model, self.plan(layer), self.data.subset(idx), device=self.device)
        base, cand, n = eng.evaluate([], filters, bar)
        keep = torch.nonzero(n).flatten()
        rows = torch.cat([base[keep].unsqueeze(0), cand[:, keep]])
        return pd.DataFrame({"filter": np.repeat([-1] + filters, len(keep)),
                             "class": np.tile(keep.numpy(), len(filters) + 1),
                             "correct": rows.flatten().numpy(), "n": np.tile(n[keep].numpy(), len(filters) + 1)})

    def car(self, layer: str, images: str = "all") -> pd.DataFrame:
        """CAR of every filter of ``layer`` (aggregated from :meth:`car_per_class`)."""
        long = self.car_per_class(layer, images)
        df = overall_from_per_class(long)
        df.attrs["base_accuracy"] = float(((long["accuracy"] + long["car"]) * long["n"]).groupby(
            long["filter"]).sum().round().iloc[0] / long.groupby("filter")["n"].sum().iloc[0])
        df.attrs["n_images"] = int(long.groupby("filter")["n"].sum().iloc[0])
        return df

    def oneshot_car(self, layer: str) -> pd.DataFrame:
        """The CAR that orders filters one-shot: on the selection half with ``held_out_orders``
        (the test half then never chooses a filter), else on all CAR images."""
        return self.car(layer, "selection" if self.profile.held_out_orders else "all")

    def greedy(self, layer: str) -> pd.DataFrame:
        """The paper's greedy loop to the profile's depth (journaled, resumable)."""
        depth = self.profile.greedy_steps[layer]
        journal = self.dir / f"greedy_{layer}.journal.jsonl"
        if self.force and journal.exists():
            journal.unlink()
        return self.table(f"greedy_{layer}", lambda: greedy_prune(
            self.model, self.plan(layer), self.greedy_data, n_remove=depth, journal=journal,
            device=self.device, progress=self.progress), layer=layer, depth=depth)

    def curves(self, layer: str) -> pd.DataFrame:
        """Accuracy against filters pruned for every order, on the greedy images.

        Orders: ``car-greedy`` (to the greedy depth), ``car-oneshot`` (sorted by CAR on the
        unpruned network), ``l1`` (smallest weights first) and ``random`` (one per seed);
        each to half of the layer's filters (or the profile's ``curve_depth``).
        """
        n = self.layer(layer).filters
        half = self.profile.curve_depth_for(layer, n)

        def compute() -> pd.DataFrame:
            eng = Engine(self.model, self.plan(layer), self.greedy_data, device=self.device)
            orders = [("car-oneshot", -1, car_order(self.oneshot_car(layer)), half),
                      ("l1", -1, l1_order(self.model, self.plan(layer).layer.path), half)]
            orders += [("random", s, random_order(n, s), half) for s in self.profile.random_seeds]

            def curve(method: str, seed: int, order: list[int], depth: int) -> pd.DataFrame:
                def one() -> pd.DataFrame:
                    return order_curve(self.model, self.plan(layer), self.greedy_data, order, depth, engine=eng)
                # long profiles cache each order on its own, so an interrupted run resumes
                c = (self.table(f"parts/curve_{layer}_{method}_{seed}", one, layer=layer,
                                order=order[:depth]) if self.profile.shard_images else one())
                return c.assign(method=method, seed=seed)[["method", "seed", *c.columns]]

            parts = [curve(*o) for o in orders]  # first the orders that need no greedy run
            greedy = self.greedy(layer)
            first = curve("car-greedy", -1, list(greedy["filter"]), len(greedy))
            return pd.concat([first, *parts], ignore_index=True)

        return self.table(f"curves_{layer}", compute, layer=layer,
                          depth=self.profile.greedy_steps[layer])

    def heldout_data(self) -> DataLike | None:
        """The CAR images the greedy loop never saw (``None`` if none): both sets are the first
        images of each class (``per_class``, ``greedy_per_class``, as :func:`carlib.load_dataset`
        picks them), so these are the CAR images after the first ``greedy_per_class`` of each."""
        idx = self.halves()["test"]
        return self.data.subset(idx) if len(idx) else None

    def test_data(self) -> DataLike | None:
        """The images notebook 06 compares the pruning orders on, never used to choose one: the
        test half with ``held_out_orders`` (:meth:`heldout_data`), the images of the classes the
        profile leaves out with ``test_other_classes``, else the ``test_per_class`` images of each
        class after the CAR images in the split (``None``: none). Loaded once; photos stay decoded."""
        return self._test_data

    @cached_property
    def _test_data(self) -> DataLike | None:
        P = self.profile
        if P.held_out_orders or not P.has_test:
            return self.heldout_data() if P.held_out_orders else None
        wider = load_dataset(P.dataset, P.split, per_class=(P.test_per_class or None) if P.test_other_classes
                             else P.per_class + P.test_per_class, progress=self.progress)
        labels = np.asarray(wider.labels)
        first = subset_per_class(labels, P.per_class, wider.num_classes)
        test = wider.subset(np.flatnonzero(~P.keeps_class(labels)) if P.test_other_classes else
                            np.setdiff1d(np.flatnonzero(P.keeps_class(labels)), first))
        return test.memoized() if isinstance(test, FolderDataset) else test

    def heldout_accuracy(self, layer: str) -> pd.DataFrame:
        """Accuracy of every pruning order on :meth:`heldout_data`.

        The greedy order is chosen by its accuracy on the greedy images, so its curve there is
        optimistic; this table checks it on images it never saw, at the greedy depth and at the
        curves' depth (half the filters), for the orders that reach each depth.

        Returns:
            ``n_pruned``, ``method``, ``seed``, ``accuracy``, ``n_images`` (empty when the
            profile has no held-out images); the unpruned network is ``method="none"``.
        """
        n = self.layer(layer).filters
        half = self.profile.curve_depth_for(layer, n)
        cols = ["n_pruned", "method", "seed", "accuracy", "n_images"]

        def compute() -> pd.DataFrame:
            held = self.heldout_data()
            if held is None:
                return pd.DataFrame(columns=cols)
            eng = Engine(self.model, self.plan(layer), held, device=self.device)
            greedy = [int(f) for f in self.greedy(layer)["filter"]]
            orders = [("car-greedy", -1, greedy), ("car-oneshot", -1, car_order(self.oneshot_car(layer))),
                      ("l1", -1, l1_order(self.model, self.plan(layer).layer.path))]
            orders += [("random", s, random_order(n, s)) for s in self.profile.random_seeds]
            base, _, counts = eng.evaluate([], [])
            total = int(counts.sum())
            rows = [{"n_pruned": 0, "method": "none", "seed": -1,
                     "accuracy": float(base.sum()) / total, "n_images": total}]
            for depth in sorted({len(greedy), half} - {0}):
                for method, seed, order in orders:
                    if len(order) < depth:
                        continue
                    b, _, _ = eng.evaluate(order[:depth], [])
                    rows.append({"n_pruned": depth, "method": method, "seed": seed,
                                 "accuracy": float(b.sum()) / total, "n_images": total})
            return pd.DataFrame(rows, columns=cols)

        return self.table(f"heldout_{layer}", compute, layer=layer,
                          depth=self.profile.greedy_steps[layer], half=half)

    def color_weights(self, layer: str = "conv1") -> pd.DataFrame:
        """The weight-based color index of a first layer (no cache needed: instant)."""
        idx = color_index_weights(self.layer(layer).module)
        return pd.DataFrame({"filter": np.arange(len(idx)), "color_index": idx})

    def color_index(self, layer: str) -> pd.DataFrame:
        """The color index that labels ``layer``'s filters color- or shape-selective: from the
        weights for a first layer with large kernels, else from responses
        (:func:`~carlib.analysis.selectivity.weights_index_applies`).

        Returns:
            ``filter``, ``color_index``; ``attrs["source"]`` is ``"weights"`` or ``"responses"``.

        Example:
            >>> Study("smoke").color_index("conv1").attrs["source"]  # doctest: +SKIP
            'weights'
        """
        weights = weights_index_applies(self.layer(layer).module)
        df = (self.color_weights(layer) if weights else self.color_responses(layer))[["filter", "color_index"]]
        df.attrs["source"] = "weights" if weights else "responses"
        return df

    def color_responses(self, layer: str, top_n: int = 20) -> pd.DataFrame:
        """The response-based color index of every filter of ``layer``."""
        return self.table(f"color_responses_{layer}", lambda: color_index_responses(
            self.model, self.plan(layer), self.data, top_n=top_n), layer=layer, top_n=top_n)

    def labels(self, layer: str) -> pd.DataFrame:
        """The three-class labels of ``layer`` (:func:`~carlib.analysis.labels.filter_labels`), cached."""
        path, weights = self.profile.layer_path(layer), weights_index_applies(self.layer(layer).module)
        return self.table(f"labels_{layer}", lambda: filter_labels(self.model, path, self.data, **(
            {} if weights else {"color": self.color_responses(layer)})), layer=path)

    # ---------------------------------------------------------------- summaries
    def accuracy_per_class(self) -> pd.DataFrame:
        """Top-1 and top-5 accuracy of the unpruned network per class."""

        def compute() -> pd.DataFrame:
            # nothing pruned: the masked path is one plain forward pass per image
            plan = self.plan("conv1")
            c1, _, n = Engine(self.model, plan, self.data, device=self.device, topk=1,
                              method="masked").evaluate([], [])
            c5, _, _ = Engine(self.model, plan, self.data, device=self.device, topk=5,
                              method="masked").evaluate([], [])
            keep = torch.nonzero(n).flatten()
            names = self.data.class_names
            return pd.DataFrame({"class": keep.numpy(), "name": [names[i] for i in keep.tolist()],
                                 "n": n[keep].numpy(), "top1": (c1[keep].double() / n[keep]).numpy(),
                                 "top5": (c5[keep].double() / n[keep]).numpy()})

        return self.table("accuracy_per_class", compute)

    def pruned_top(self, layer: str, k: int | None = None) -> list[int]:
        """The first ``k`` CAR-pruned filters (default: the profile's ``top_k_filters``).

        Greedy order as far as the profile's greedy depth reaches, then the remaining filters
        by ascending one-shot CAR (only when the greedy depth is shorter than ``k``).
        """
        k = k or self.profile.top_k_filters
        order = list(self.greedy(layer)["filter"])
        for f in car_order(self.car(layer)):
            if len(order) >= k:
                break
            if f not in order:
                order.append(f)
        return order[:k]

    def class_importance(self, layer: str, filt: int, k: int = 5) -> pd.DataFrame:
        """The ``k`` most and ``k`` least important classes of one filter (by per-class CAR).

        Returns:
            ``rank, kind ("most"/"least"), class, name, car, accuracy, n``; ties broken by
            the lower class index.
        """
        long = self.car_per_class(layer)
        f = long[long["filter"] == filt].copy()
        f["name"] = [self.data.class_names[c] for c in f["class"]]
        most = f.sort_values(["car", "class"], ascending=[False, True], kind="stable").head(k)
        least = f.sort_values(["car", "class"], ascending=[True, True], kind="stable").head(k)
        out = pd.concat([most.assign(kind="most"), least.assign(kind="least")])
        out.insert(0, "rank", list(range(1, len(most) + 1)) + list(range(1, len(least) + 1)))
        return out[["rank", "kind", "class", "name", "car", "accuracy", "n"]].reset_index(drop=True)
