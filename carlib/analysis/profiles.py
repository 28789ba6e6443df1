"""Profiles: the one place that says which model, data, sizes and device each setting uses.

* ``default``: the offline, 2-core-CPU reproduction: ``alexnet-tiny`` on Tiny ImageNet val.
* ``paper``: the paper's setting: torchvision AlexNet (ImageNet weights) on the ImageNet
  validation set, 50 images per class, greedy to half of conv1 and conv2, on the GPU when
  there is one (device ``auto``).
* ``smoke``: a tiny, fast version of ``default`` for CI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..errors import CarlibError

__all__ = ["Profile", "PROFILES", "get_profile"]


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
        curve_depth: depth of the baseline pruning curves per layer (``None``: half the filters).
        greedy_steps: greedy depth per layer, e.g. ``{"conv1": 32, "conv2": 96}``.
        random_seeds: seeds of the random-order baseline.
        device: default device (``cpu``, ``cuda``, or ``auto``: the GPU when present, see
            :func:`carlib.engine.resolve_device`).
        input_size: ``(C, H, W)`` of one image.
        top_k_filters: how many top CAR-pruned filters the figures discuss (the paper: 20).
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

    def curve_depth_for(self, layer: str, filters: int) -> int:
        """How deep the baseline curves go for a layer (default: half of its filters)."""
        if self.curve_depth and layer in self.curve_depth:
            return min(int(self.curve_depth[layer]), filters - 1)
        return filters // 2

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes: object) -> "Profile":
        """A copy with some fields changed (the notebooks' parameters)."""
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "default": Profile(
        name="default", model="alexnet-tiny", dataset="tiny-imagenet", split="val",
        per_class=10, greedy_steps={"conv1": 32, "conv2": 20}, random_seeds=(0, 1, 2, 3, 4),
        device="cpu", input_size=(3, 64, 64), top_k_filters=20,
        greedy_per_class=1),
    "paper": Profile(
        name="paper", model="alexnet", dataset="imagenet", split="val", per_class=50,
        greedy_steps={"conv1": 32, "conv2": 96}, random_seeds=(0, 1, 2, 3, 4),
        device="auto", input_size=(3, 224, 224), top_k_filters=20,
        greedy_per_class=50),
    "smoke": Profile(
        name="smoke", model="alexnet-tiny", dataset="tiny-imagenet", split="val",
        per_class=1, greedy_steps={"conv1": 3, "conv2": 3}, random_seeds=(0, 1),
        device="cpu", input_size=(3, 64, 64), top_k_filters=20,
        greedy_per_class=1, max_classes=40, curve_depth={"conv1": 8, "conv2": 8}),
}


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
