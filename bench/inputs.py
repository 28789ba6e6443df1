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

__all__ = ["load_alexnet_tiny", "load_tiny_val", "random_alexnet", "load_photos",
           "load_mobilenet_v2", "random_resnet18"]


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


def load_photos(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The first ``n`` images of ``imagenet-sample`` (224x224, normalized), or random 224x224
    inputs where the sample is not found.

    Args:
        n: images wanted; device: where they go; seed: seed of the random inputs.

    Returns:
        ``(images, labels or None for random inputs, description)``.

    Example:
        >>> x, y, what = load_photos(16, torch.device("cpu"))  # doctest: +SKIP
    """
    from carlib.data import as_batches

    try:
        ds = carlib.load_dataset("imagenet-sample", "val", progress=False)
    except CarlibError as exc:
        warnings.warn(f"imagenet-sample not available ({exc}); using random 224x224 inputs",
                      stacklevel=1)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, 3, 224, 224, generator=g).to(device), None, "random 224x224 noise"
    x, y = next(as_batches(ds.subset(list(range(min(n, len(ds))))), n))
    return x.to(device), y.to(device), f"the first {len(y)} imagenet-sample photos (224x224)"


def load_mobilenet_v2(device: torch.device, seed: int = 0) -> tuple[torch.nn.Module, str, bool]:
    """``mobilenet_v2-coral`` (ImageNet weights), or torchvision's MobileNetV2 with random
    weights (seed ``seed``) and a warning where its weights file is not found.

    Returns:
        ``(model, description of the weights, whether they are trained)``.

    Example:
        >>> model, weights, trained = load_mobilenet_v2(torch.device("cpu"))  # doctest: +SKIP
    """
    try:
        return carlib.load_model("mobilenet_v2-coral").eval().to(device), "mobilenet_v2-coral (ImageNet)", True
    except CarlibError as exc:
        import torchvision

        warnings.warn(f"cannot load mobilenet_v2-coral ({exc}); benchmarking torchvision's "
                      "MobileNetV2 with random weights", stacklevel=1)
        torch.manual_seed(seed)
        return torchvision.models.mobilenet_v2().eval().to(device), f"random (seed {seed})", False


def random_resnet18(device: torch.device, seed: int = 0) -> torch.nn.Module:
    """torchvision's ResNet-18 with random weights (seed ``seed``).

    Example:
        >>> model = random_resnet18(torch.device("cpu"))  # doctest: +SKIP
    """
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18().eval().to(device)
