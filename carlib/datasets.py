"""Datasets: Tiny ImageNet (decoded once, cached as uint8) and the ImageNet validation set.

A *dataset* in carlib is anything :func:`as_batches` accepts: an :class:`ImageDataset`
(pixels in memory), a :class:`FolderDataset` (decoded lazily, e.g. ImageNet), or a pair of
tensors ``(images, labels)`` already normalized for the model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch

from .errors import CarlibError, DataNotFoundError
from .paths import PACKAGE_DIR, cache_dir, data_dir, data_search_dirs

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TINY_IMAGENET_URL",
    "TINY_IMAGENET_SHA256",
    "ImageDataset",
    "FolderDataset",
    "DataLike",
    "load_dataset",
    "as_batches",
    "num_images",
    "dataset_labels",
    "safe_extract",
    "download",
    "imagenet_wnids",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The official archive (CS231n). Its checksum is of the archive as published there.
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
#: MD5 of the official archive, as published by the torchvision-style dataset loaders.
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
#: sha256 of the offline copy shipped in this workplace's shared data (without ``test/``).
TINY_IMAGENET_SHA256 = "f3e28325f4b9048f2909bd11478e31bd3f426aba40b078e1a1926ad0580b83cd"

DATASETS = ("tiny-imagenet", "imagenet")
SPLITS = {"tiny-imagenet": ("train", "val"), "imagenet": ("val",)}


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
        x = torch.as_tensor(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std).contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.images[i : i + 1])[0], int(self.labels[i])

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
    """

    name: str
    split: str
    samples: list[tuple[str, int]]
    classes: list[str]
    class_names: list[str]
    transform: object = field(repr=False, default=None)
    per_class: int | None = None
    num_workers: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([s[1] for s in self.samples], dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            img = im.convert("RGB")
        return self.transform(img), label

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


def _check_pair(data: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise CarlibError(
            f"unsupported data of type {type(data).__name__}; "
            "pass a carlib dataset (carlib.load_dataset) or a pair (images, labels) of tensors"
        )
    x, y = data
    x = torch.as_tensor(x)
    y = torch.as_tensor(y).long()
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
        loader = torch.utils.data.DataLoader(
            data, batch_size=batch_size, shuffle=False, num_workers=data.num_workers
        )
        for x, y in loader:
            yield (x.to(device), y.to(device)) if device else (x, y)
    else:
        x_all, y_all = _check_pair(data)
        for i in range(0, x_all.shape[0], batch_size):
            x, y = x_all[i : i + batch_size], y_all[i : i + batch_size]
            yield (x.to(device), y.to(device)) if device else (x, y)


# ----------------------------------------------------------------------------- files


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip archive into ``target``, refusing members that would leave it.

    Extraction goes to a temporary folder beside ``target`` first and is moved into place
    member by member only after every member was checked, so an interrupted or refused
    extraction leaves nothing half-written under the final names.

    Args:
        archive: the ``.zip`` file.
        target: the folder to extract into (created if needed).

    Raises:
        CarlibError: a member's path is absolute or contains ``..`` (zip-slip).

    Example:
        >>> safe_extract(Path("tiny-imagenet-200.zip"), data_dir())  # doctest: +SKIP
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            dest = (root / info.filename).resolve()
            if info.filename.startswith(("/", "\\")) or (
                dest != root and root not in dest.parents
            ):
                raise CarlibError(
                    f"refusing to extract {archive.name}: member {info.filename!r} would be "
                    f"written outside {target}; the archive is corrupt or malicious, "
                    "download it again from the official URL"
                )
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
        try:
            zf.extractall(tmp)
            for top in tmp.iterdir():
                final = target / top.name
                if final.exists():
                    shutil.rmtree(final) if final.is_dir() else final.unlink()
                os.replace(top, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def download(url: str, dest: Path, *, sha256: str | None = None, md5: str | None = None,
             progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and an integrity check.

    Args:
        url: where to download from (``http(s)://`` or ``file://``).
        dest: the final file path; written via a temporary file and renamed when verified.
        sha256, md5: the expected digest (at least one is checked when given).
        progress: show a tqdm bar.

    Returns:
        ``dest``.

    Raises:
        DataNotFoundError: the download failed (offline, say); the message says what to place where.
        CarlibError: the checksum does not match.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h256, h5 = hashlib.sha256(), hashlib.md5()
    try:
        try:
            resp = urllib.request.urlopen(url, timeout=30)
        except (OSError, ValueError) as exc:
            raise DataNotFoundError(
                f"cannot download {url} ({exc.__class__.__name__}: {exc}); "
                f"download it by hand and place it at {dest}"
            ) from None
        total = int(resp.headers.get("Content-Length") or 0) or None
        with os.fdopen(fd, "wb") as out, resp, tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            while block := resp.read(1 << 20):
                out.write(block)
                h256.update(block)
                h5.update(block)
                bar.update(len(block))
        if sha256 and h256.hexdigest() != sha256 or md5 and h5.hexdigest() != md5:
            raise CarlibError(
                f"checksum mismatch for {url}: the download is corrupt or was changed; "
                f"delete {dest} if present and download it again"
            )
        os.replace(tmp, dest)
        return dest
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------- tiny imagenet


def _find_tiny_imagenet(*, download_missing: bool = True, progress: bool = True) -> Path:
    """Return the ``tiny-imagenet-200`` folder, extracting or downloading it if needed."""
    own = data_dir()
    for d in data_search_dirs():
        folder = d / "tiny-imagenet-200"
        if (folder / "wnids.txt").is_file() and (folder / "val" / "val_annotations.txt").is_file():
            return folder
    for d in data_search_dirs():
        archive = d / "tiny-imagenet-200.zip"
        if archive.is_file():
            safe_extract(archive, own)
            return own / "tiny-imagenet-200"
    if not download_missing or os.environ.get("CARLIB_NO_DOWNLOAD"):
        raise DataNotFoundError(
            "Tiny ImageNet not found; place tiny-imagenet-200.zip (or its extracted folder) in "
            f"{own} or in a folder named by $CARLIB_DATA_DIR"
        )
    archive = download(TINY_IMAGENET_URL, own / "tiny-imagenet-200.zip", md5=TINY_IMAGENET_MD5,
                       progress=progress)
    safe_extract(archive, own)
    return own / "tiny-imagenet-200"


def _tiny_listing(root: Path, split: str, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
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


def _load_tiny_imagenet(split: str, progress: bool) -> ImageDataset:
    root = _find_tiny_imagenet(progress=progress)
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
    paths, labels = _tiny_listing(root, split, wnids)
    if not paths:
        raise DataNotFoundError(
            f"Tiny ImageNet split {split!r} has no images under {root}; "
            "extract the full tiny-imagenet-200 archive there"
        )
    images = _decode_all(paths, progress, f"decoding tiny-imagenet {split}")
    fd, tmp = tempfile.mkstemp(prefix=cache.name, suffix=".tmp.npz", dir=cache.parent)
    os.close(fd)
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, cache)
    return ImageDataset("tiny-imagenet", split, images, labels, wnids, class_names)


# ----------------------------------------------------------------------------- imagenet


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (shipped with carlib)."""
    return (PACKAGE_DIR / "resources" / "imagenet1k_wnids.txt").read_text().split()


def _imagenet_names() -> list[str]:
    try:
        from torchvision.models import AlexNet_Weights

        return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # pragma: no cover - torchvision always has it
        return imagenet_wnids()


def _load_imagenet(split: str) -> FolderDataset:
    from torchvision import transforms

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
    tf = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    workers = min(8, os.cpu_count() or 1) if len(samples) > 1000 else 0
    return FolderDataset("imagenet", split, samples, wnids, _imagenet_names(), tf,
                         num_workers=workers)


# ----------------------------------------------------------------------------- public


def _subset_per_class(labels: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Indices of the first ``k`` images of each class, in dataset order."""
    keep = np.zeros(labels.shape[0], dtype=bool)
    for c in range(num_classes):
        keep[np.flatnonzero(labels == c)[:k]] = True
    return np.flatnonzero(keep)


def load_dataset(
    name: str, split: str = "val", per_class: int | None = None, *, progress: bool = True
) -> ImageDataset | FolderDataset:
    """Load a dataset by name.

    Args:
        name: ``"tiny-imagenet"`` or ``"imagenet"`` (ILSVRC2012 validation images).
        split: ``"train"`` or ``"val"`` (Tiny ImageNet); ``"val"`` (ImageNet).
        per_class: keep only the first ``per_class`` images of every class (a deterministic,
            class-balanced subset; smaller subsets are nested in larger ones).
        progress: show progress bars while extracting or decoding.

    Returns:
        An :class:`ImageDataset` (Tiny ImageNet, pixels cached as uint8 under ``data/cache``)
        or a :class:`FolderDataset` (ImageNet, decoded lazily with torchvision's standard
        evaluation transforms).

    Raises:
        CarlibError: unknown name, split or a bad ``per_class``.
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
        ds = _load_tiny_imagenet(split, progress)
        if per_class is not None:
            idx = _subset_per_class(ds.labels, per_class, ds.num_classes)
            ds = ImageDataset(ds.name, ds.split, ds.images[idx], ds.labels[idx], ds.classes,
                              ds.class_names, per_class)
        return ds
    fds = _load_imagenet(split)
    if per_class is not None:
        idx = _subset_per_class(fds.labels, per_class, fds.num_classes)
        fds = FolderDataset(fds.name, fds.split, [fds.samples[i] for i in idx], fds.classes,
                            fds.class_names, fds.transform, per_class, fds.num_workers)
    return fds
