"""Tiny ImageNet: finding, extracting or downloading the archive, listing it, and decoding
its images once into a uint8 cache."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import CarlibError, DataNotFoundError
from ..files import atomic_path, file_lock, sha256_file
from ..paths import cache_dir, data_dir, data_search_dirs
from .archive import download, safe_extract
from .containers import ImageDataset

__all__ = ["TINY_IMAGENET_URL", "TINY_IMAGENET_MD5", "TINY_IMAGENET_SHA256",
           "find_tiny_imagenet", "tiny_imagenet_listing", "load_tiny_imagenet"]

#: The official archive (CS231n).
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
#: MD5 of the official archive, as published by the torchvision-style dataset loaders.
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
#: sha256 of the official archive's layout without its unlabeled ``test/`` folder. A
#: ``tiny-imagenet-200.zip`` found on disk must match it or :data:`TINY_IMAGENET_MD5`.
TINY_IMAGENET_SHA256 = "f3e28325f4b9048f2909bd11478e31bd3f426aba40b078e1a1926ad0580b83cd"


def find_tiny_imagenet(*, download_missing: bool = True, progress: bool = True) -> Path:
    """The ``tiny-imagenet-200`` folder, extracted or downloaded into :func:`data_dir` if needed.

    Args:
        download_missing: download the official archive when no copy is found (never when
            ``$CARLIB_NO_DOWNLOAD`` is set).
        progress: show progress bars.

    Returns:
        The folder holding ``wnids.txt``, ``train/`` and ``val/``.

    Only ``tiny-imagenet-200/`` is taken from a checked archive (extracted into a temporary
    folder beside it first); nothing else in :func:`data_dir` is ever replaced or deleted.

    Raises:
        DataNotFoundError: no copy found and none may be downloaded.
        CarlibError: an archive that is not the known one (checksum), not a zip, without a
            complete ``tiny-imagenet-200/``, with unsafe members; or an incomplete
            ``tiny-imagenet-200`` folder already in :func:`data_dir`.

    Example:
        >>> find_tiny_imagenet().name  # doctest: +SKIP
        'tiny-imagenet-200'
    """
    own = data_dir()
    if (found := _extracted_copy()) is not None:
        return found
    with file_lock(own / "tiny-imagenet-200"):  # one process extracts, the others then find it
        if (found := _extracted_copy()) is not None:
            return found
        for d in data_search_dirs():
            archive = d / "tiny-imagenet-200.zip"
            if archive.is_file():
                _check_archive(archive)
                return _extract(archive, own)
        if not download_missing or os.environ.get("CARLIB_NO_DOWNLOAD"):
            raise DataNotFoundError(
                "Tiny ImageNet not found; place tiny-imagenet-200.zip (or its extracted folder) in "
                f"{own} or in a folder named by $CARLIB_DATA_DIR"
            )
        archive = download(TINY_IMAGENET_URL, own / "tiny-imagenet-200.zip", md5=TINY_IMAGENET_MD5,
                           progress=progress)
        return _extract(archive, own)


def _extracted_copy() -> Path | None:
    for d in data_search_dirs():
        folder = d / "tiny-imagenet-200"
        if (folder / "wnids.txt").is_file() and (folder / "val" / "val_annotations.txt").is_file():
            return folder
    return None


def _check_archive(archive: Path) -> None:
    """Accept only the known archives: the official one (its md5) or its layout without
    ``test/`` (:data:`TINY_IMAGENET_SHA256`)."""
    if sha256_file(archive) == TINY_IMAGENET_SHA256:
        return
    md5 = hashlib.md5()
    with open(archive, "rb") as f:
        while block := f.read(1 << 22):
            md5.update(block)
    if md5.hexdigest() != TINY_IMAGENET_MD5:
        raise CarlibError(
            f"{archive} matches neither the sha256 nor the md5 of tiny-imagenet-200.zip (corrupt "
            f"or another file); replace it with an intact copy of {TINY_IMAGENET_URL}"
        )


def _extract(archive: Path, own: Path) -> Path:
    """Extract only ``tiny-imagenet-200/`` of ``archive`` into ``own`` (nothing else of the
    archive, nothing of the user's replaced) and check it is complete."""
    folder = own / "tiny-imagenet-200"
    if folder.exists():
        raise CarlibError(
            f"{folder} exists but is incomplete (no wnids.txt or val/val_annotations.txt), so "
            f"{archive.name} is not extracted over it; move or delete it, then run again"
        )
    safe_extract(archive, own, keep=("tiny-imagenet-200",))
    if not (folder / "wnids.txt").is_file() or not (folder / "val" / "val_annotations.txt").is_file():
        shutil.rmtree(folder)  # extracted just now by this call
        raise CarlibError(f"{archive} holds an incomplete tiny-imagenet-200/ (no wnids.txt or "
                          "val/val_annotations.txt); replace it with an intact copy")
    return folder


def tiny_imagenet_listing(root: Path, split: str, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    """The image files of a split and their labels, in carlib's dataset order.

    Args:
        root: the ``tiny-imagenet-200`` folder.
        split: ``"train"`` or ``"val"``.
        wnids: the class ids in label order.

    Returns:
        ``(paths, labels)``: train images by class then number; val images by number.

    Example:
        >>> paths, labels = tiny_imagenet_listing(find_tiny_imagenet(), "val", wnids)  # doctest: +SKIP
    """
    index = {w: i for i, w in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for w in wnids:
            files = sorted(
                (root / "train" / w / "images").glob("*.JPEG"),
                key=lambda p: int(p.stem.rsplit("_", 1)[1]),
            )
            paths += files
            labels += [index[w]] * len(files)
    else:
        rows = []
        for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                rows.append((int(parts[0].split("_")[1].split(".")[0]), parts[0], parts[1]))
        for _, fname, w in sorted(rows):
            paths.append(root / "val" / "images" / fname)
            labels.append(index[w])
    return paths, np.asarray(labels, dtype=np.int64)


def _decode_all(paths: list[Path], progress: bool, desc: str) -> np.ndarray:
    from PIL import Image
    from tqdm.auto import tqdm

    first = np.asarray(Image.open(paths[0]).convert("RGB"))
    out = np.empty((len(paths),) + first.shape, dtype=np.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, disable=not progress, mininterval=1.0)):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def _words(root: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    words = root / "words.txt"
    if words.is_file():
        for line in words.read_text().splitlines():
            if "\t" in line:
                w, n = line.split("\t", 1)
                names[w] = n.split(",")[0].strip()
    return names


def load_tiny_imagenet(split: str, progress: bool = True) -> ImageDataset:
    """All images of a Tiny ImageNet split, decoded once and cached under ``data/cache``.

    Example:
        >>> len(load_tiny_imagenet("val"))  # doctest: +SKIP
        10000
    """
    root = find_tiny_imagenet(progress=progress)
    wnids = sorted(w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip())
    names = _words(root)
    class_names = [names.get(w, w) for w in wnids]
    key = hashlib.sha256(("\n".join(wnids) + str(root.resolve())).encode()).hexdigest()[:8]
    cache = cache_dir() / f"tiny-imagenet-{split}-{key}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                return ImageDataset("tiny-imagenet", split, z["images"], z["labels"], wnids,
                                    class_names)
        except (OSError, ValueError, KeyError):
            cache.unlink()  # a damaged cache is rebuilt
    paths, labels = tiny_imagenet_listing(root, split, wnids)
    if not paths:
        raise DataNotFoundError(
            f"Tiny ImageNet split {split!r} has no images under {root}; "
            "extract the full tiny-imagenet-200 archive there"
        )
    images = _decode_all(paths, progress, f"decoding tiny-imagenet {split}")
    with atomic_path(cache) as tmp:
        np.savez(tmp, images=images, labels=labels)
    return ImageDataset("tiny-imagenet", split, images, labels, wnids, class_names)
