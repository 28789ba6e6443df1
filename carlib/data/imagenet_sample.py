"""``imagenet-sample``: 1,398 ILSVRC2012 validation images of 749 classes, from one archive.

The archive ``imagenet-val-sample.zip`` holds ``imagenet/val/<wnid>/ILSVRC2012_val_*.JPEG``
and ``imagenet/MANIFEST.csv`` (one row per image: ``path``, ``wnid``,
``class_index_sorted_wnid``, size and source). It is checked against
:data:`IMAGENET_SAMPLE_SHA256` and extracted into ``data/imagenet-sample/`` — never into
``data/imagenet/``, where the full validation set (dataset ``imagenet``) is looked up and
where the sample would pass for it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import CarlibError, DataNotFoundError
from ..files import file_lock, sha256_file
from ..paths import data_dir, data_search_dirs
from .archive import safe_extract
from .containers import FolderDataset
from .imagenet import imagenet_class_names, imagenet_transform, imagenet_wnids

__all__ = ["IMAGENET_SAMPLE_FILE", "IMAGENET_SAMPLE_SHA256", "IMAGENET_SAMPLE_FOLDER",
           "find_imagenet_sample", "imagenet_sample_listing", "load_imagenet_sample"]

#: The archive, looked up in ``$CARLIB_DATA_DIR`` then ``data/``.
IMAGENET_SAMPLE_FILE = "imagenet-val-sample.zip"
#: Its sha256, checked before anything is extracted.
IMAGENET_SAMPLE_SHA256 = "4d8ba8f2a8a791ca58edec4831b76e2d1987e29537d889daeb5965b5779f6a3e"
#: The folder of a data directory the archive is extracted into.
IMAGENET_SAMPLE_FOLDER = "imagenet-sample"


def find_imagenet_sample() -> Path:
    """The sample's ``imagenet`` folder (holding ``MANIFEST.csv`` and ``val/``).

    An extracted copy (``imagenet-sample/imagenet/``) in ``$CARLIB_DATA_DIR`` or ``data/``
    is used as it is; otherwise the first ``imagenet-val-sample.zip`` found there is checked
    against :data:`IMAGENET_SAMPLE_SHA256` and extracted into ``data/imagenet-sample/``.

    Returns:
        ``.../imagenet-sample/imagenet``.

    Raises:
        DataNotFoundError: neither the archive nor an extracted copy is found.
        CarlibError: the archive's checksum does not match, or it is not a readable zip
            (nothing is extracted then).

    Example:
        >>> find_imagenet_sample().parent.name  # doctest: +SKIP
        'imagenet-sample'
    """
    if (found := _extracted_copy()) is not None:
        return found
    target = data_dir() / IMAGENET_SAMPLE_FOLDER
    with file_lock(target):  # one process extracts, the others then find it
        if (found := _extracted_copy()) is not None:
            return found
        for d in data_search_dirs():
            archive = d / IMAGENET_SAMPLE_FILE
            if archive.is_file():
                if sha256_file(archive) != IMAGENET_SAMPLE_SHA256:
                    raise CarlibError(
                        f"{archive} does not match the sha256 of {IMAGENET_SAMPLE_FILE} (corrupt or "
                        "another file); replace it with an intact copy"
                    )
                safe_extract(archive, target, keep=("imagenet",))
                if not (target / "imagenet" / "MANIFEST.csv").is_file():
                    raise CarlibError(f"{archive} holds no imagenet/MANIFEST.csv; replace it with an intact copy")
                return target / "imagenet"
    raise DataNotFoundError(
        f"ImageNet sample not found; place {IMAGENET_SAMPLE_FILE} (or its extracted "
        f"{IMAGENET_SAMPLE_FOLDER}/ folder) in {data_dir()} or in a folder named by $CARLIB_DATA_DIR"
    )


def _extracted_copy() -> Path | None:
    for d in data_search_dirs():
        folder = d / IMAGENET_SAMPLE_FOLDER / "imagenet"
        if (folder / "MANIFEST.csv").is_file() and (folder / "val").is_dir():
            return folder
    return None


def imagenet_sample_listing(root: Path, split: str = "val") -> list[tuple[str, int]]:
    """The images of the sample and their labels, checked against ``MANIFEST.csv``.

    Labels are the 1,000-class index of torchvision's ImageNet classifiers (the position of
    the folder's wnid in :func:`carlib.data.imagenet_wnids`, which is sorted).

    Args:
        root: the sample's ``imagenet`` folder.
        split: ``"val"``.

    Returns:
        ``(path, label)`` pairs sorted by class, then file name.

    Raises:
        CarlibError: a folder that is not an ImageNet-1k wnid, an image missing from the
            manifest or the manifest naming a missing image, or a manifest wnid or class
            index that disagrees with the folder.

    Example:
        >>> imagenet_sample_listing(find_imagenet_sample())[0][1]  # doctest: +SKIP
        0
    """
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    fix = f"delete {root.parent} to extract {IMAGENET_SAMPLE_FILE} again"
    manifest: dict[str, tuple[str, int]] = {}
    with open(root / "MANIFEST.csv", newline="") as f:
        for row in csv.DictReader(f):
            try:
                manifest[row["path"]] = (row["wnid"], int(row["class_index_sorted_wnid"]))
            except (KeyError, TypeError, ValueError):
                raise CarlibError(f"{root / 'MANIFEST.csv'} is not the sample's manifest; {fix}") from None
    base = root / split
    if not base.is_dir():
        raise DataNotFoundError(f"no folder {base}; {fix}")
    samples: list[tuple[str, int]] = []
    for sub in sorted(p for p in base.iterdir() if p.is_dir()):
        if sub.name not in index:
            raise CarlibError(f"{sub} is not an ImageNet-1k class folder; {fix}")
        for img in sorted(p for p in sub.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png")):
            key = f"imagenet/{split}/{sub.name}/{img.name}"
            if key not in manifest:
                raise CarlibError(f"{img} is not listed in MANIFEST.csv; {fix}")
            wnid, label = manifest.pop(key)
            if wnid != sub.name or label != index[sub.name]:
                raise CarlibError(
                    f"MANIFEST.csv labels {key} as {wnid} (class {label}), but its folder is "
                    f"{sub.name} (class {index[sub.name]} of the sorted ImageNet-1k wnids); {fix}"
                )
            samples.append((str(img), label))
    missing = [k for k in manifest if k.startswith(f"imagenet/{split}/")]
    if missing:
        raise CarlibError(f"{len(missing)} images of MANIFEST.csv are missing, e.g. {missing[0]}; {fix}")
    if not samples:
        raise DataNotFoundError(f"no images under {base}; {fix}")
    return samples


def load_imagenet_sample(split: str = "val") -> FolderDataset:
    """The sample as a lazily decoded dataset: resize 256, center crop 224, ImageNet mean/std
    normalization (as the ``imagenet`` dataset), labels in the 1,000-class index.

    Example:
        >>> ds = load_imagenet_sample()  # doctest: +SKIP
        >>> len(ds), ds.num_classes  # doctest: +SKIP
        (1398, 1000)
    """
    samples = imagenet_sample_listing(find_imagenet_sample(), split)
    workers = min(8, os.cpu_count() or 1) if len(samples) > 1000 else 0
    return FolderDataset("imagenet-sample", split, samples, imagenet_wnids(), imagenet_class_names(),
                         imagenet_transform(), num_workers=workers)
