"""The dataset protocol: what carlib accepts as images and labels, and how it batches them.

A *dataset* in carlib is anything :func:`as_batches` accepts: an :class:`ImageDataset`
(pixels in memory), a :class:`FolderDataset` (decoded lazily, e.g. ImageNet), or a pair of
tensors ``(images, labels)`` already normalized for the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch

from ..errors import CarlibError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDataset",
    "FolderDataset",
    "DataLike",
    "as_batches",
    "num_images",
    "dataset_labels",
    "data_fingerprint",
    "subset_per_class",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageDataset:
    """Decoded images held in memory as uint8, normalized batch by batch.

    Attributes:
        name: dataset name (``"tiny-imagenet"``).
        split: ``"train"`` or ``"val"``.
        images: uint8 array ``(N, H, W, 3)``.
        labels: int64 array ``(N,)`` of class indices.
        classes: WordNet ids, index order.
        class_names: human-readable names, index order.
        per_class: the ``per_class`` the subset was made with (``None``: all images).
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    class_names: list[str]
    per_class: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def normalize(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, H, W, 3)`` pixels -> normalized float ``(N, 3, H, W)``."""
        return _normalize_pixels(pixels, torch.tensor(self.mean), torch.tensor(self.std))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.images[i : i + 1])[0], int(self.labels[i])

    @property
    def normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(mean, std)`` the images are normalized with."""
        return torch.tensor(self.mean), torch.tensor(self.std)

    def pixels(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """uint8 ``(n, H, W, 3)`` pixels of the images at ``indices``, as the model sees them."""
        return self.images[np.asarray(indices, dtype=np.int64)]

    def subset(self, indices: np.ndarray | list[int]) -> "ImageDataset":
        """The images at ``indices`` (same classes and names)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageDataset(self.name, self.split, self.images[idx], self.labels[idx], self.classes,
                            self.class_names, self.per_class, self.mean, self.std)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images normalized, as ``(images, labels)`` tensors."""
        return self.normalize(self.images), torch.as_tensor(self.labels)

    def fingerprint(self) -> str:
        """A short hash identifying exactly these images and labels."""
        h = hashlib.sha256()
        h.update(f"{self.name}/{self.split}/{len(self)}".encode())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update(np.ascontiguousarray(self.images[:: max(1, len(self) // 64)]).tobytes())
        return h.hexdigest()[:16]


@dataclass
class FolderDataset:
    """Images decoded lazily from an ``ImageFolder``-style tree (used for ImageNet val).

    Attributes:
        name, split, classes, class_names: as in :class:`ImageDataset`.
        samples: ``(path, label)`` pairs in a deterministic order.
        transform: a torchvision transform from a PIL image to a normalized tensor.
        memo: decoded images kept in memory by index (see :meth:`memoized`; ``None``: none kept).
        memo_limit: the most images ``memo`` keeps.
    """

    name: str
    split: str
    samples: list[tuple[str, int]]
    classes: list[str]
    class_names: list[str]
    transform: object = field(repr=False, default=None)
    per_class: int | None = None
    num_workers: int = 0
    memo: dict | None = field(repr=False, default=None, compare=False)
    memo_limit: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    def memoized(self, limit: int = 2000) -> "FolderDataset":
        """A copy that keeps the first ``limit`` images it decodes in memory, for repeated passes
        over a few hundred photos (0.6 MB each at 224x224): the same tensors, decoded once.

        Example:
            >>> from carlib.data import load_dataset
            >>> d = load_dataset("imagenet-sample").memoized()  # doctest: +SKIP
            >>> d[0][0] is d[0][0]  # doctest: +SKIP
            True
        """
        return replace(self, memo={}, memo_limit=int(limit))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([s[1] for s in self.samples], dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        i = int(i)
        if self.memo is not None and i in self.memo:
            return self.memo[i]
        path, label = self.samples[i]
        with Image.open(path) as im:
            img = im.convert("RGB")
        item = self.transform(img), label
        self._keep(i, item)
        return item

    def _keep(self, i: int, item: tuple[torch.Tensor, int]) -> None:
        """Keep a decoded image in :attr:`memo` while it has room."""
        if self.memo is not None and len(self.memo) < self.memo_limit:
            self.memo.setdefault(i, item)

    @property
    def normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(mean, std)`` of the transform's ``Normalize`` (ImageNet's when it has none)."""
        from torchvision import transforms

        for t in getattr(self.transform, "transforms", []):
            if isinstance(t, transforms.Normalize):
                return torch.tensor(t.mean), torch.tensor(t.std)
        return torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)

    def normalize(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, H, W, 3)`` pixels as the model sees them (:meth:`pixels`) -> normalized
        float ``(N, 3, H, W)``, as the transform normalizes."""
        return _normalize_pixels(pixels, *self.normalization)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images as the model sees them (after the transform)."""
        return tuple(self[0][0].shape[1:]) if len(self) else (0, 0)

    def pixels(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """uint8 ``(n, H, W, 3)`` pixels of the images at ``indices`` as the model sees them
        (resized and cropped by the transform; its normalization undone and rounded)."""
        mean, std = (t.view(1, 3, 1, 1) for t in self.normalization)
        x = torch.stack([self[int(i)][0] for i in indices])
        pix = torch.clamp(torch.round((x * std + mean) * 255), 0, 255)
        return pix.to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def subset(self, indices: np.ndarray | list[int]) -> "FolderDataset":
        """The images at ``indices`` (same classes and names)."""
        return FolderDataset(self.name, self.split, [self.samples[i] for i in indices], self.classes,
                             self.class_names, self.transform, self.per_class, self.num_workers)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.name}/{self.split}/{len(self)}".encode())
        for p, y in self.samples:
            h.update(f"{Path(p).name}:{y};".encode())
        return h.hexdigest()[:16]


DataLike = Union[ImageDataset, FolderDataset, Sequence[torch.Tensor]]


def _normalize_pixels(pixels: np.ndarray | torch.Tensor, mean: torch.Tensor,
                      std: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)
    return x.sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1)).contiguous()


def _check_pair(data: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise CarlibError(
            f"unsupported data of type {type(data).__name__}; "
            "pass a carlib dataset (carlib.load_dataset) or a pair (images, labels) of tensors"
        )
    x, y = data
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if not x.is_floating_point():
        raise CarlibError(f"images are {str(x.dtype).replace('torch.', '')} pixels; pass normalized "
                          "float images (N, C, H, W) (e.g. pixels.float() / 255 minus the mean, "
                          "over the std)")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise CarlibError(f"labels are {str(y.dtype).replace('torch.', '')}; pass integer class "
                          "indices (an int64 tensor)")
    y = y.long()
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise CarlibError(
            f"images {tuple(x.shape)} and labels {tuple(y.shape)} do not match; "
            "pass images as (N, C, H, W) and labels as (N,)"
        )
    return x, y


def num_images(data: DataLike) -> int:
    """Number of images in any accepted dataset."""
    if isinstance(data, (ImageDataset, FolderDataset)):
        return len(data)
    return int(_check_pair(data)[1].shape[0])


def dataset_labels(data: DataLike) -> torch.Tensor:
    """All labels of a dataset as an int64 tensor, without decoding images."""
    if isinstance(data, (ImageDataset, FolderDataset)):
        return torch.as_tensor(data.labels).long()
    return _check_pair(data)[1]


def data_fingerprint(data: DataLike) -> str:
    """A short hash identifying a dataset's images and labels (for journals and caches)."""
    if isinstance(data, (ImageDataset, FolderDataset)):
        return data.fingerprint()
    x, y = _check_pair(data)
    h = hashlib.sha256()
    h.update(str(tuple(x.shape)).encode())
    h.update(y.cpu().numpy().tobytes())
    h.update(x[:: max(1, x.shape[0] // 64)].contiguous().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def as_batches(
    data: DataLike, batch_size: int, *, device: torch.device | str | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate over normalized ``(images, labels)`` batches in dataset order.

    Args:
        data: a carlib dataset or a pair ``(images, labels)``.
        batch_size: images per batch.
        device: where to put the batches (default: where they are, i.e. the CPU).

    Returns:
        An iterator of ``(float images (B, C, H, W), int64 labels (B,))``.

    Example:
        >>> x = torch.zeros(5, 3, 8, 8); y = torch.arange(5)
        >>> [b[0].shape[0] for b in as_batches((x, y), 2)]
        [2, 2, 1]
    """
    if batch_size < 1:
        raise CarlibError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(data, ImageDataset):
        for i in range(0, len(data), batch_size):
            x = data.normalize(data.images[i : i + batch_size])
            y = torch.as_tensor(data.labels[i : i + batch_size]).long()
            yield x.to(device) if device else x, y.to(device) if device else y
    elif isinstance(data, FolderDataset):
        memo = data.memo
        # every image kept: read them here; else decode in the workers (and keep what they decode)
        workers = 0 if memo is not None and len(memo) == len(data) else data.num_workers
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
        start = 0
        for x, y in loader:
            if memo is not None and workers:  # what the workers decoded, kept here
                for j in range(min(len(y), data.memo_limit - len(memo))):
                    data._keep(start + j, (x[j].clone(), int(y[j])))
            start += len(y)
            yield (x.to(device), y.to(device)) if device else (x, y)
    else:
        x_all, y_all = _check_pair(data)
        for i in range(0, x_all.shape[0], batch_size):
            x, y = x_all[i : i + batch_size], y_all[i : i + batch_size]
            yield (x.to(device), y.to(device)) if device else (x, y)


def subset_per_class(labels: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Indices of the first ``k`` images of each class, in dataset order.

    The rule behind every ``per_class`` subset: smaller subsets are nested in larger ones.

    Args:
        labels: class index of every image.
        k: images to keep per class.
        num_classes: number of classes.

    Returns:
        Sorted int64 indices.

    Example:
        >>> subset_per_class(np.array([0, 1, 0, 0, 1]), 2, 2).tolist()
        [0, 1, 2, 4]
    """
    keep = np.zeros(labels.shape[0], dtype=bool)
    for c in range(num_classes):
        keep[np.flatnonzero(labels == c)[:k]] = True
    return np.flatnonzero(keep)
