"""Profiles: the one place that says which model, data, sizes and device each setting uses.

* ``default``: the offline, 2-core-CPU reproduction: ``alexnet-tiny`` on Tiny ImageNet val.
  Notebook 06 compares the pruning orders on the 3 images per class that follow the 10 CAR
  images (600, chosen on by nothing), at 0, a quarter and half of each layer, and retrains
  conv1 briefly (one pass over 400 train images, 3 seeds): the method at a glance; ``full``
  gives the answers.
* ``paper``: the paper's setting: torchvision AlexNet (ImageNet weights) on the ImageNet
  validation set, 50 images per class, greedy to half of conv1 and conv2, on the GPU when
  there is one (device ``auto``).
* ``imagenet``: a real ImageNet network on real photos, sized to run from scratch on a 2-core CPU
  in about half an hour (notebooks 01-05; 06 adds about 40 minutes): ``mobilenet_v2-coral`` on
  every sixth class of ``imagenet-sample`` (the 126 of them with photos, 261 photos: CAR on all,
  greedy and curves on one photo per class, 126, and the other 135 held out), greedy 2 filters
  deep in ``conv1`` and ``conv2``, curves 8 deep (one-shot CAR, L1, two random orders). Every
  (image, filter) pair costs a pass through nearly the whole network, hence the small sizes.
  ``conv1`` is ``features.0.0`` (the first convolution, 32 3x3 filters on RGB), ``conv2`` is
  ``features.1.conv.1`` (16 1x1 filters, the first layer whose filters mix all channels; the
  depthwise convolution between them filters each channel alone). Its tables are counted in cached
  shards, so a long run resumes where it stopped. Notebook 06 compares the orders 8 filters deep
  (a quarter of conv1, half of conv2) on the photos of the classes the profile leaves out (1,137,
  chosen on by nothing); no retraining (no train set).
* ``full``: the statistically sound version of ``default`` (tens of CPU-hours on 2 cores,
  resumable with ``python -m carlib.analysis.precompute``; its tables are committed as they are
  computed): all 10,000 Tiny ImageNet val images, split by class into a selection half (the first
  25 of each class: greedy to half of conv1 and of conv2, one-shot CAR, every other criterion) and
  a test half (the other 25: every comparison); notebook 06 retrains on all of Tiny ImageNet train
  (one epoch, 3 seeds) and runs Deep Compression on conv1 and conv2.
* ``smoke``: a tiny, fast version of ``default`` for CI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import CarlibError

__all__ = ["Profile", "PROFILES", "PRECOMPUTE_FIRST", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """What one setting runs.

    Attributes:
        name: profile name (also the folder under ``results/`` and ``figures/``).
        model: model name for :func:`carlib.load_model`.
        dataset: dataset name for :func:`carlib.load_dataset`; ``split`` its split.
        per_class: images per class for the CAR index (overall and per class).
        greedy_per_class: images per class for the greedy loop and the pruning curves.
        max_classes: use only the first classes (``None``: all); the model keeps all outputs.
        class_step: use only every ``class_step``-th class (0, k, 2k, ...; 1: all), a subset
            spread over the label space; the model keeps all outputs.
        curve_depth: depth of the baseline pruning curves per layer (``None``: half the filters).
        greedy_steps: greedy depth per layer, e.g. ``{"conv1": 32, "conv2": 96}``.
        random_seeds: seeds of the random-order baseline.
        device: default device (``cpu``, ``cuda``, or ``auto``: the GPU when present, see
            :func:`carlib.engine.resolve_device`).
        input_size: ``(C, H, W)`` of one image.
        top_k_filters: how many top CAR-pruned filters the figures discuss (the paper: 20).
        layers: which convolution plays each role of the notebooks (``conv1``: the first
            layer, ``conv2``: the first layer whose filters mix all channels), as module paths
            or aliases (``None``: the roles are the aliases ``conv1`` and ``conv2``).
        shard_images: count CAR in shards of this many images, each cached on its own, so a
            long run resumes where it stopped (``None``: one pass).
        held_out_orders: choose on the greedy images only (the selection half: one-shot CAR,
            the other criteria), compare on the rest (the test half, :meth:`Study.halves`).
        test_per_class: without ``held_out_orders``: the images per class that follow the CAR
            images in the split, on which notebook 06 compares the pruning orders (0: none).
            No order is chosen on them.
        test_other_classes: notebook 06 compares the pruning orders on the images of the classes
            the profile leaves out (``max_classes``, ``class_step``; at most ``test_per_class``
            each, 0: all): photos of other classes that no order was chosen on.
        curve_points: notebook 06's test curves at this many evenly spaced depths after 0
            (``None``: every depth).
        retrain: notebook 06's retraining and Deep Compression (:mod:`carlib.analysis.retraining`):
            ``layers`` (roles), ``per_class`` (Tiny ImageNet train images per class, ``None``:
            all 500), ``epochs``, ``batch_size``, ``seeds``, ``sparsities`` and ``bits`` (the
            Deep Compression grid), optionally ``depth`` (filters pruned; default: half the
            layer); ``None``: no retraining.
        replicates: the greedy loop again on disjoint, class-stratified parts of the greedy
            images (the selection half with ``held_out_orders``): ``parts`` and optionally
            ``depth`` (default ``top_k_filters``), for how stable the selection is
            (:func:`carlib.analysis.heldout.replicate_greedy`); ``None``: no replicates.
    """

    name: str
    model: str
    dataset: str
    split: str
    per_class: int
    greedy_steps: dict
    random_seeds: tuple[int, ...]
    device: str
    input_size: tuple[int, int, int]
    top_k_filters: int = 20
    greedy_per_class: int = 10
    max_classes: int | None = None
    curve_depth: dict | None = None
    layers: dict | None = None
    shard_images: int | None = None
    class_step: int = 1
    held_out_orders: bool = False
    test_per_class: int = 0
    test_other_classes: bool = False
    curve_points: int | None = None
    retrain: dict | None = None
    replicates: dict | None = None

    def layer_path(self, role: str) -> str:
        """The module path or alias of the convolution that plays ``role`` (e.g. ``conv2``)."""
        return str(self.layers.get(role, role)) if self.layers else role

    @property
    def has_test(self) -> bool:
        """Whether notebook 06 has test images (``held_out_orders``, ``test_per_class`` or
        ``test_other_classes``)."""
        return bool(self.held_out_orders or self.test_per_class or self.test_other_classes)

    def curve_depth_for(self, layer: str, filters: int) -> int:
        """How deep the baseline curves go for a layer (default: half of its filters)."""
        if self.curve_depth and layer in self.curve_depth:
            return min(int(self.curve_depth[layer]), filters - 1)
        return filters // 2

    def to_dict(self) -> dict:
        return asdict(self)

    def cache_key(self) -> dict:
        """The fields that determine the results: all but ``shard_images`` (shards sum to the
        same tables), ``layers`` only when set (unset, the roles are the aliases) and
        ``class_step`` only when it selects classes. Notebook 06's settings (``test_per_class``,
        ``test_other_classes``, ``curve_points``, ``retrain``) and ``replicates`` are left out:
        their tables carry them as their own parameters, so changing them recomputes those tables
        only."""
        key = self.to_dict()
        for field in ("shard_images", "test_per_class", "test_other_classes", "curve_points", "retrain",
                      "replicates"):
            key.pop(field)
        if key["layers"] is None:
            key.pop("layers")
        if key["class_step"] == 1:
            key.pop("class_step")
        if not key["held_out_orders"]:
            key.pop("held_out_orders")
        return key

    def keeps_class(self, labels: "np.ndarray") -> "np.ndarray":
        """Which of ``labels`` the profile uses (``max_classes`` and ``class_step``), as a mask.

        Example:
            >>> import numpy as np
            >>> get_profile("imagenet").keeps_class(np.array([0, 1, 6, 12])).tolist()
            [True, False, True, True]
        """
        labels = np.asarray(labels)
        keep = labels % self.class_step == 0
        if self.max_classes is not None:
            keep &= labels < self.max_classes
        return keep

    def with_(self, **changes: object) -> "Profile":
        """A copy with some fields changed (the notebooks' parameters)."""
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "default": Profile(
        name="default", model="alexnet-tiny", dataset="tiny-imagenet", split="val",
        per_class=10, greedy_steps={"conv1": 32, "conv2": 20}, random_seeds=(0, 1, 2, 3, 4),
        device="cpu", input_size=(3, 64, 64), top_k_filters=20,
        greedy_per_class=1, test_per_class=3, curve_points=2,
        retrain={"layers": ["conv1"], "per_class": 2, "epochs": 1, "batch_size": 32,
                 "seeds": [0, 1, 2], "sparsities": [0.75, 0.9], "bits": [5]}),
    "paper": Profile(
        name="paper", model="alexnet", dataset="imagenet", split="val", per_class=50,
        greedy_steps={"conv1": 32, "conv2": 96}, random_seeds=(0, 1, 2, 3, 4),
        device="auto", input_size=(3, 224, 224), top_k_filters=20,
        greedy_per_class=50),
    "imagenet": Profile(
        name="imagenet", model="mobilenet_v2-coral", dataset="imagenet-sample", split="val",
        per_class=7, greedy_steps={"conv1": 2, "conv2": 2}, random_seeds=(0, 1),
        device="auto", input_size=(3, 224, 224), top_k_filters=8, greedy_per_class=1,
        class_step=6, curve_depth={"conv1": 8, "conv2": 8},
        layers={"conv1": "features.0.0", "conv2": "features.1.conv.1"}, shard_images=100,
        test_other_classes=True, curve_points=1),
    "smoke": Profile(
        name="smoke", model="alexnet-tiny", dataset="tiny-imagenet", split="val",
        per_class=1, greedy_steps={"conv1": 3, "conv2": 3}, random_seeds=(0, 1),
        device="cpu", input_size=(3, 64, 64), top_k_filters=20,
        greedy_per_class=1, max_classes=40, curve_depth={"conv1": 8, "conv2": 8},
        test_per_class=1, curve_points=2,
        retrain={"layers": ["conv1"], "per_class": 2, "epochs": 1, "batch_size": 16, "seeds": [0],
                 "sparsities": [0.5], "bits": [5], "depth": 3}, replicates={"parts": 2, "depth": 3}),
    "full": Profile(
        name="full", model="alexnet-tiny", dataset="tiny-imagenet", split="val",
        per_class=50, greedy_per_class=25, greedy_steps={"conv1": 32, "conv2": 96},
        random_seeds=(0, 1, 2, 3, 4), device="cpu", input_size=(3, 64, 64), top_k_filters=20,
        shard_images=500, held_out_orders=True, replicates={"parts": 4},
        retrain={"layers": ["conv1", "conv2"], "per_class": None, "epochs": 1, "batch_size": 128,
                 "seeds": [0, 1, 2], "sparsities": [0.5, 0.7, 0.8, 0.9], "bits": [5]}),
}


#: profiles whose tables take hours: ``make reproduce`` runs their notebooks only on tables
#: precomputed (``python -m carlib.analysis.precompute``: progress bars, resumable), unless told
#: to compute inside the notebooks (``--compute``)
PRECOMPUTE_FIRST: tuple[str, ...] = ("full", "paper")


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        CarlibError: unknown profile (the message lists them).

    Example:
        >>> get_profile("smoke").per_class
        1
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise CarlibError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
