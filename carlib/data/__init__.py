"""Data: the dataset protocol and containers, Tiny ImageNet, ImageNet, downloads.

:func:`load_dataset` is the entry point; :mod:`carlib.data.containers` says what a dataset is.
"""

from __future__ import annotations

from ..errors import CarlibError
from .archive import download, safe_extract
from .containers import (IMAGENET_MEAN, IMAGENET_STD, DataLike, FolderDataset, ImageDataset,
                         as_batches, data_fingerprint, dataset_labels, num_images,
                         subset_per_class)
from .imagenet import imagenet_class_names, imagenet_transform, imagenet_wnids, load_imagenet
from .imagenet_sample import (IMAGENET_SAMPLE_FILE, IMAGENET_SAMPLE_FOLDER, IMAGENET_SAMPLE_SHA256,
                              find_imagenet_sample, imagenet_sample_listing, load_imagenet_sample)
from .tiny_imagenet import (TINY_IMAGENET_MD5, TINY_IMAGENET_SHA256, TINY_IMAGENET_URL,
                            find_tiny_imagenet, load_tiny_imagenet, tiny_imagenet_listing)

__all__ = [
    "DATASETS", "SPLITS", "load_dataset",
    "IMAGENET_MEAN", "IMAGENET_STD", "DataLike", "ImageDataset", "FolderDataset",
    "as_batches", "num_images", "dataset_labels", "data_fingerprint", "subset_per_class",
    "download", "safe_extract", "imagenet_wnids", "imagenet_class_names", "imagenet_transform",
    "load_imagenet", "IMAGENET_SAMPLE_FILE", "IMAGENET_SAMPLE_SHA256", "IMAGENET_SAMPLE_FOLDER",
    "find_imagenet_sample", "imagenet_sample_listing", "load_imagenet_sample",
    "TINY_IMAGENET_URL", "TINY_IMAGENET_MD5", "TINY_IMAGENET_SHA256",
    "find_tiny_imagenet", "tiny_imagenet_listing", "load_tiny_imagenet",
]

DATASETS = ("tiny-imagenet", "imagenet", "imagenet-sample")
SPLITS = {"tiny-imagenet": ("train", "val"), "imagenet": ("val",), "imagenet-sample": ("val",)}


def load_dataset(
    name: str, split: str = "val", per_class: int | None = None, *, progress: bool = True
) -> ImageDataset | FolderDataset:
    """Load a dataset by name.

    Args:
        name: ``"tiny-imagenet"``, ``"imagenet"`` (ILSVRC2012 validation images) or
            ``"imagenet-sample"`` (1,398 of those images, 749 classes, from
            ``imagenet-val-sample.zip``; see :mod:`carlib.data.imagenet_sample`).
        split: ``"train"`` or ``"val"`` (Tiny ImageNet); ``"val"`` (the others).
        per_class: keep only the first ``per_class`` images of every class (a deterministic,
            class-balanced subset; smaller subsets are nested in larger ones). In
            ``imagenet-sample`` most classes have one or two images (339 one, 257 two, at
            most 7): ``per_class`` 1, 2, 3 keep 749, 1,159, 1,312 of its 1,398 images.
        progress: show progress bars while extracting or decoding.

    Returns:
        An :class:`ImageDataset` (Tiny ImageNet, pixels cached as uint8 under ``data/cache``)
        or a :class:`FolderDataset` (ImageNet and the sample, decoded lazily with torchvision's
        standard evaluation transforms: resize 256, center crop 224, ImageNet mean/std).

    Raises:
        CarlibError: unknown name, split or a bad ``per_class``; an archive whose checksum
            does not match (nothing is extracted then).
        DataNotFoundError: the data is missing and cannot be downloaded.

    Example:
        >>> val = load_dataset("tiny-imagenet", "val", per_class=10)  # doctest: +SKIP
        >>> len(val), val.num_classes  # doctest: +SKIP
        (2000, 200)
    """
    if name not in DATASETS:
        raise CarlibError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS[name]:
        raise CarlibError(
            f"unknown split {split!r} for {name}; choose one of: {', '.join(SPLITS[name])}"
        )
    if per_class is not None and (not isinstance(per_class, int) or per_class < 1):
        raise CarlibError(f"per_class must be a positive integer or None, got {per_class!r}")
    if name == "tiny-imagenet":
        ds = load_tiny_imagenet(split, progress, per_class)
        if per_class is not None:
            ds = ImageDataset(ds.name, ds.split, ds.images, ds.labels, ds.classes, ds.class_names, per_class)
        return ds
    fds = load_imagenet(split) if name == "imagenet" else load_imagenet_sample(split)
    if per_class is not None:
        idx = subset_per_class(fds.labels, per_class, fds.num_classes)
        fds = FolderDataset(fds.name, fds.split, [fds.samples[i] for i in idx], fds.classes,
                            fds.class_names, fds.transform, per_class, fds.num_workers)
    return fds
