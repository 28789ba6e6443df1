"""The ImageNet validation set in torchvision's ``ImageFolder`` layout, decoded lazily."""

from __future__ import annotations

import os
from typing import Callable

import torch

from ..errors import CarlibError, DataNotFoundError
from ..paths import PACKAGE_DIR, data_dir, data_search_dirs
from .containers import IMAGENET_MEAN, IMAGENET_STD, FolderDataset

__all__ = ["imagenet_wnids", "imagenet_class_names", "imagenet_transform", "load_imagenet"]


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (shipped with carlib)."""
    return (PACKAGE_DIR / "resources" / "imagenet1k_wnids.txt").read_text().split()


def imagenet_class_names() -> list[str]:
    """Human-readable names of the 1,000 classes in class-index order (torchvision's)."""
    try:
        from torchvision.models import AlexNet_Weights

        return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # pragma: no cover - torchvision always has it
        return imagenet_wnids()


def imagenet_transform() -> Callable[..., torch.Tensor]:
    """torchvision's standard evaluation transform: resize 256, center crop 224, ImageNet
    mean/std normalization (a PIL image -> a float tensor ``(3, 224, 224)``).

    Example:
        >>> from PIL import Image
        >>> imagenet_transform()(Image.new("RGB", (300, 260))).shape
        torch.Size([3, 224, 224])
    """
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def load_imagenet(split: str = "val") -> FolderDataset:
    """ImageNet images under ``imagenet/<split>/<wnid>/`` in a data folder, labels in the
    1,000-class index, resize 256 / center crop 224 / ImageNet normalization.

    Example:
        >>> load_imagenet("val").num_classes  # doctest: +SKIP
        1000
    """
    root = None
    for d in data_search_dirs():
        if (d / "imagenet" / split).is_dir():
            root = d / "imagenet" / split
            break
    if root is None:
        raise DataNotFoundError(
            f"ImageNet {split} images not found (they cannot be downloaded automatically); "
            f"place them as imagenet/{split}/<wnid>/*.JPEG in {data_dir()} "
            "or in a folder named by $CARLIB_DATA_DIR"
        )
    wnids = imagenet_wnids()
    index = {w: i for i, w in enumerate(wnids)}
    samples: list[tuple[str, int]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name not in index:
            raise CarlibError(
                f"{sub} is not an ImageNet-1k class folder; "
                "the layout must be imagenet/val/<wnid>/*.JPEG with the 1,000 ImageNet wnids"
            )
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        samples += [(str(f), index[sub.name]) for f in files]
    if not samples:
        raise DataNotFoundError(f"no images under {root}; place imagenet/{split}/<wnid>/*.JPEG there")
    workers = min(8, os.cpu_count() or 1) if len(samples) > 1000 else 0
    return FolderDataset("imagenet", split, samples, wnids, imagenet_class_names(),
                         imagenet_transform(), num_workers=workers)
