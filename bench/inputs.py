"""The models and images the workloads run on.

Workloads 1-3 and the scaling run: the trained ``alexnet-tiny`` (random weights, with a
warning, when its checkpoint cannot be loaded) on the first Tiny ImageNet val images of every
class. Workload 4: torchvision's AlexNet with random weights on random 224x224 inputs labeled
with the model's own predictions (base accuracy 100 %).
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timezone

import torch

import carlib
from carlib.errors import CarlibError
from carlib.files import sha256_file
from carlib.models import DEFAULT_WEIGHTS

from bench.naive import self_labels

__all__ = ["load_alexnet_tiny", "load_tiny_val", "random_alexnet"]


def load_alexnet_tiny() -> tuple[torch.nn.Module, str]:
    """The trained ``alexnet-tiny``, or ``AlexNetTiny`` with random weights (seed 0) and a
    warning where the checkpoint cannot be loaded.

    Returns:
        ``(model, description of the weights)``: the checkpoint's sha256 prefix and date, or
        ``"random (weights file not loaded)"``.

    Example:
        >>> model, weights = load_alexnet_tiny()  # doctest: +SKIP
    """
    try:
        model = carlib.load_model("alexnet-tiny")
        stamp = datetime.fromtimestamp(DEFAULT_WEIGHTS.stat().st_mtime, timezone.utc)
        return model, (f"trained ({DEFAULT_WEIGHTS.name} sha256 "
                       f"{sha256_file(DEFAULT_WEIGHTS)[:12]}, {stamp:%Y-%m-%dT%H:%M:%SZ})")
    except CarlibError as exc:
        warnings.warn(f"cannot load the trained alexnet-tiny ({exc}); benchmarking AlexNetTiny "
                      "with random weights (seed 0): timings are representative, CAR values are "
                      "not", stacklevel=1)
        torch.manual_seed(0)
        return carlib.AlexNetTiny().eval(), "random (weights file not loaded)"


def load_tiny_val(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of the class-balanced Tiny ImageNet val subset (``ceil(n / 200)``
    per class), decoded and normalized.

    Args:
        n: images wanted.

    Returns:
        ``(images (n, 3, 64, 64), labels (n,))`` on the CPU.

    Raises:
        CarlibError: the data is not found (set ``CARLIB_DATA_DIR``).

    Example:
        >>> x, y = load_tiny_val(64)  # doctest: +SKIP
    """
    per_class = max(1, math.ceil(n / 200))
    ds = carlib.load_dataset("tiny-imagenet", "val", per_class=per_class, progress=False)
    x, y = ds.tensors()
    return x[:n].contiguous(), y[:n].contiguous()


def random_alexnet(n: int, device: torch.device,
                   seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """torchvision's AlexNet with random weights on ``n`` random 224x224 inputs, labeled with
    its own predictions.

    Args:
        n: inputs; device: where they and the model go; seed: seed of weights and inputs.

    Returns:
        ``(model, images, labels)``.

    Example:
        >>> tv, x, y = random_alexnet(16, torch.device("cpu"))  # doctest: +SKIP
    """
    import torchvision

    torch.manual_seed(seed)
    tv = torchvision.models.alexnet().eval().to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 224, 224, generator=g).to(device)
    return tv, x, self_labels(tv, x)
