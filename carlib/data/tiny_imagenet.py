"""Tiny ImageNet: finding, extracting or downloading the archive, listing it, and decoding
its images once into a uint8 cache."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import CarlibError, DataNotFoundError
from ..files import atomic_path, file_lock, sha256_file
from ..paths import cache_dir, data_dir, data_search_dirs
from .archive import ZIP_ERRORS, check_members, download, safe_extract, unreadable_zip
from .containers import ImageDataset, subset_per_class

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
        archive = _archive(progress, download_missing)
        _check_archive(archive)
        return _extract(archive, own)


#: what an extracted or archived ``tiny-imagenet-200/`` must hold to be used
_REQUIRED = ("wnids.txt", "val/val_annotations.txt")


def _complete(folder: Path) -> bool:
    return all((folder / rel).is_file() for rel in _REQUIRED)


def _extracted_copy() -> Path | None:
    for d in data_search_dirs():
        if _complete(folder := d / "tiny-imagenet-200"):
            return folder
    return None


def _archive(progress: bool, download_missing: bool = True) -> Path:
    """The first ``tiny-imagenet-200.zip`` of :func:`data_search_dirs`, else the official one
    downloaded into :func:`data_dir` (checksum-verified; one process downloads, the others
    then find it)."""
    for d in data_search_dirs():
        if (archive := d / "tiny-imagenet-200.zip").is_file():
            return archive
    if not download_missing or os.environ.get("CARLIB_NO_DOWNLOAD"):
        raise DataNotFoundError(
            "Tiny ImageNet not found; place tiny-imagenet-200.zip (or its extracted folder) in "
            f"{data_dir()} or in a folder named by $CARLIB_DATA_DIR"
        )
    own = data_dir() / "tiny-imagenet-200.zip"
    with file_lock(own):
        if not own.is_file():
            download(TINY_IMAGENET_URL, own, md5=TINY_IMAGENET_MD5, progress=progress)
    return own


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
    if not _complete(folder):
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
    names, labels = _listing(split, wnids, _folder_train_files(root),
                             lambda: (root / "val" / "val_annotations.txt").read_text())
    return [root / n for n in names], labels


def _folder_train_files(root: Path) -> Callable[[str], list[str]]:
    return lambda w: [f"train/{w}/images/{p.name}" for p in (root / "train" / w / "images").glob("*.JPEG")]


def _listing(split: str, wnids: list[str], train_files: Callable[[str], list[str]],
             val_annotations: Callable[[], str]) -> tuple[list[str], np.ndarray]:
    """The split's image names (relative to ``tiny-imagenet-200/``) and labels, in dataset
    order, whether they are read from a folder or straight from the archive."""
    index = {w: i for i, w in enumerate(wnids)}
    names: list[str] = []
    labels: list[int] = []
    if split == "train":
        for w in wnids:
            files = sorted(train_files(w), key=lambda n: int(PurePosixPath(n).stem.rsplit("_", 1)[1]))
            names += files
            labels += [index[w]] * len(files)
    else:
        rows = []
        for line in val_annotations().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                rows.append((int(parts[0].split("_")[1].split(".")[0]), parts[0], parts[1]))
        for _, fname, w in sorted(rows):
            names.append(f"val/images/{fname}")
            labels.append(index[w])
    return names, np.asarray(labels, dtype=np.int64)


def _decode_all(names: list[str], read: Callable[[str], bytes | Path], progress: bool,
                desc: str) -> np.ndarray:
    from PIL import Image
    from tqdm.auto import tqdm

    def pixels(name: str) -> np.ndarray:
        src = read(name)
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            return np.asarray(im.convert("RGB"))

    first = pixels(names[0])
    out = np.empty((len(names),) + first.shape, dtype=np.uint8)
    for i, n in enumerate(tqdm(names, desc=desc, disable=not progress, mininterval=1.0)):
        out[i] = pixels(n)
    return out


def _names(words: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for line in words.splitlines():
        if "\t" in line:
            w, n = line.split("\t", 1)
            names[w] = n.split(",")[0].strip()
    return names


def _source(progress: bool) -> Path:
    """An extracted ``tiny-imagenet-200`` folder, else the archive (:func:`_archive`); the
    archive is read in place, never extracted."""
    return found if (found := _extracted_copy()) is not None else _archive(progress)


def _decode_split(source: Path, split: str, progress: bool, per_class: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(images, labels, wnids, class names)`` of a split (only the first ``per_class`` images
    of each class when given), from a folder or a checked archive."""
    if source.is_dir():
        return _decode(source, split, progress, per_class,
                       lambda rel: (source / rel).read_text() if (source / rel).is_file() else None,
                       _folder_train_files(source), lambda name: source / name)
    _check_archive(source)
    try:
        with zipfile.ZipFile(source) as zf:
            if "tiny-imagenet-200" not in check_members(zf, source):
                raise CarlibError(f"{source.name} holds no tiny-imagenet-200/; it is not the "
                                  "expected archive, replace it with an intact copy")
            top = "tiny-imagenet-200/"
            members = set(zf.namelist())
            if not all(top + rel in members for rel in _REQUIRED):
                raise CarlibError(f"{source} holds an incomplete tiny-imagenet-200/ (no wnids.txt "
                                  "or val/val_annotations.txt); replace it with an intact copy")
            train: dict[str, list[str]] = {}
            for m in members:
                parts = m.split("/")
                if len(parts) == 5 and parts[1] == "train" and parts[3] == "images" and m.endswith(".JPEG"):
                    train.setdefault(parts[2], []).append(m[len(top):])
            return _decode(source, split, progress, per_class,
                           lambda rel: zf.read(top + rel).decode() if top + rel in members else None,
                           lambda w: train.get(w, []), lambda name: zf.read(top + name))
    except ZIP_ERRORS as exc:
        raise unreadable_zip(source, exc) from None


def _decode(source: Path, split: str, progress: bool, per_class: int | None, text: Callable[[str], str | None],
            train_files: Callable[[str], list[str]], read: Callable[[str], bytes | Path]
            ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """:func:`_decode_split` given how to read a text file, list a class's train images and
    read an image of ``tiny-imagenet-200/`` (a folder's or an archive's)."""
    wnids = sorted(w.strip() for w in (text("wnids.txt") or "").split() if w.strip())
    names = _names(text("words.txt") or "")
    files, labels = _listing(split, wnids, train_files, lambda: text("val/val_annotations.txt") or "")
    if not files:
        raise _no_images(split, source)
    if per_class is not None:
        keep = subset_per_class(labels, per_class, len(wnids))
        files, labels = [files[i] for i in keep], labels[keep]
    return (_decode_all(files, read, progress, f"decoding tiny-imagenet {split}"), labels, wnids,
            [names.get(w, w) for w in wnids])


def _no_images(split: str, source: Path) -> DataNotFoundError:
    return DataNotFoundError(f"Tiny ImageNet split {split!r} has no images in {source}; "
                             "use the full tiny-imagenet-200 archive or its extracted folder")


def load_tiny_imagenet(split: str, progress: bool = True, per_class: int | None = None) -> ImageDataset:
    """The images of a Tiny ImageNet split, decoded once and cached under ``data/cache``.

    The images are read from an extracted ``tiny-imagenet-200`` folder when there is one
    (``$CARLIB_DATA_DIR``, then ``data/``), else straight from ``tiny-imagenet-200.zip``
    (checked against its checksum, never extracted; downloaded into ``data/`` when missing
    and allowed). The cache is named by the source (folder and its ``wnids.txt``, or
    archive path, size and time), so a replaced source is decoded again.

    Args:
        split: ``"train"`` or ``"val"``.
        progress: show a progress bar while decoding.
        per_class: only the first ``per_class`` images of each class (``None``: all). Read from
            the split's cache when there is one, else only those images are decoded (and cached
            on their own): a few train images per class need no pass over all 100,000.

    Example:
        >>> len(load_tiny_imagenet("val"))  # doctest: +SKIP
        10000
    """
    source = _source(progress)
    if source.is_dir():
        tag = str(source.resolve()) + (source / "wnids.txt").read_text()
    else:
        st = source.stat()
        tag = f"{source.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    stem = f"tiny-imagenet-{split}-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"
    whole = cache_dir() / f"{stem}.npz"
    if per_class is not None and not whole.is_file():
        return _cached(cache_dir() / f"{stem}-first{per_class}.npz", source, split, progress, per_class)
    ds = _cached(whole, source, split, progress, None)
    if per_class is None:
        return ds
    idx = subset_per_class(ds.labels, per_class, ds.num_classes)
    return ImageDataset(ds.name, ds.split, ds.images[idx], ds.labels[idx], ds.classes, ds.class_names)


def _cached(cache: Path, source: Path, split: str, progress: bool, per_class: int | None) -> ImageDataset:
    """The dataset in ``cache``, decoded from ``source`` and written there first when missing."""
    with file_lock(cache):  # one process decodes, the others then read its cache
        if cache.is_file():
            try:
                with np.load(cache) as z:
                    return ImageDataset("tiny-imagenet", split, z["images"], z["labels"],
                                        [str(c) for c in z["classes"]],
                                        [str(c) for c in z["class_names"]])
            except (OSError, ValueError, KeyError):
                cache.unlink()  # a damaged or older cache is rebuilt
        images, labels, wnids, class_names = _decode_split(source, split, progress, per_class)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            np.savez(tmp, images=images, labels=labels, classes=np.array(wnids),
                     class_names=np.array(class_names))
    return ImageDataset("tiny-imagenet", split, images, labels, wnids, class_names)
