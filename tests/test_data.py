"""carlib.data: layouts, caching, subsets, safe extraction, download, errors."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import carlib.data as D
import carlib.data.tiny_imagenet as T
from carlib import as_batches, load_dataset
from carlib.errors import CarlibError, DataNotFoundError

WNIDS = ["n01443537", "n01629819", "n01641577"]


def make_tiny(root: Path, train_per_class: int = 3, val_per_class: int = 2) -> Path:
    """A miniature tiny-imagenet-200 in the official layout (one grayscale image included)."""
    base = root / "tiny-imagenet-200"
    rng = np.random.default_rng(0)
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")  # unsorted on purpose
    (base / "words.txt").write_text("".join(f"{w}\tname{i}, other\n" for i, w in enumerate(WNIDS)))
    for w in WNIDS:
        d = base / "train" / w / "images"
        d.mkdir(parents=True)
        for j in range(train_per_class):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / f"{w}_{j}.JPEG")
    ann = []
    for j in range(val_per_class * len(WNIDS)):
        w = WNIDS[j % len(WNIDS)]
        arr = rng.integers(0, 255, (64, 64), dtype=np.uint8)
        img = Image.fromarray(arr) if j == 0 else Image.fromarray(np.stack([arr] * 3, -1))
        img.save(base / "val" / "images" / f"val_{j}.JPEG")
        ann.append(f"val_{j}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return base


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(folder.parent))
    return archive


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """A read-only-ish source folder and a fresh project home."""
    src, home = tmp_path / "shared", tmp_path / "home"
    src.mkdir()
    home.mkdir()
    monkeypatch.setenv("CARLIB_DATA_DIR", str(src))
    monkeypatch.setenv("CARLIB_HOME", str(home))
    monkeypatch.setenv("CARLIB_NO_DOWNLOAD", "1")
    return src, home


def test_tiny_imagenet_from_zip_is_extracted_into_the_project(homes, tmp_path):
    src, home = homes
    folder = make_tiny(tmp_path / "build")
    zip_folder(folder, src / "tiny-imagenet-200.zip")
    val = load_dataset("tiny-imagenet", "val", progress=False)
    assert (home / "data" / "tiny-imagenet-200" / "wnids.txt").is_file()
    assert not (src / "tiny-imagenet-200").exists()  # never beside its source
    assert val.classes == sorted(WNIDS) and val.class_names == ["name0", "name1", "name2"]
    assert val.images.shape == (6, 64, 64, 3) and val.images.dtype == np.uint8
    assert list(val.labels) == [0, 1, 2, 0, 1, 2]
    g = val.images[0]
    assert (g[..., 0] == g[..., 1]).all()  # grayscale converted to RGB
    train = load_dataset("tiny-imagenet", "train", progress=False)
    assert len(train) == 9 and list(train.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_decoded_pixels_are_cached(homes, tmp_path, monkeypatch):
    src, home = homes
    make_tiny(src)
    first = load_dataset("tiny-imagenet", "val", progress=False)
    caches = list((home / "data" / "cache").glob("tiny-imagenet-val-*.npz"))
    assert len(caches) == 1
    monkeypatch.setattr(T, "_decode_all", lambda *a, **k: pytest.fail("decoded again"))
    second = load_dataset("tiny-imagenet", "val", progress=False)
    np.testing.assert_array_equal(first.images, second.images)


def test_per_class_subset_is_balanced_nested_and_deterministic(homes):
    src, _ = homes
    make_tiny(src, train_per_class=4)
    a = load_dataset("tiny-imagenet", "train", per_class=2, progress=False)
    b = load_dataset("tiny-imagenet", "train", per_class=3, progress=False)
    assert np.bincount(a.labels).tolist() == [2, 2, 2]
    assert a.fingerprint() == load_dataset("tiny-imagenet", "train", per_class=2,
                                           progress=False).fingerprint()
    for c in range(3):
        np.testing.assert_array_equal(a.images[a.labels == c], b.images[b.labels == c][:2])


def test_batches_are_normalized(homes):
    src, _ = homes
    make_tiny(src)
    val = load_dataset("tiny-imagenet", "val", progress=False)
    batches = list(as_batches(val, 4))
    assert [b[0].shape for b in batches] == [torch.Size([4, 3, 64, 64]), torch.Size([2, 3, 64, 64])]
    x = batches[0][0]
    ref = (torch.tensor(val.images[0]).permute(2, 0, 1).float() / 255 - torch.tensor(D.IMAGENET_MEAN)[:, None, None]) / torch.tensor(D.IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(x[0], ref)


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../escape.txt", "bad")
    with pytest.raises(CarlibError, match="outside"):
        D.safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "target" / "ok.txt").exists()


def test_download_checks_integrity(tmp_path):
    payload = tmp_path / "file.bin"
    payload.write_bytes(b"carlib" * 1000)
    good = hashlib.sha256(payload.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "file.bin"
    D.download(payload.as_uri(), dest, sha256=good, progress=False)
    assert dest.read_bytes() == payload.read_bytes()
    bad = tmp_path / "out" / "bad.bin"
    with pytest.raises(CarlibError, match="checksum mismatch"):
        D.download(payload.as_uri(), bad, sha256="0" * 64, progress=False)
    assert not bad.exists() and not list((tmp_path / "out").glob("*.part"))
    with pytest.raises(DataNotFoundError, match="place it at"):
        D.download((tmp_path / "missing.zip").as_uri(), tmp_path / "x.zip", progress=False)


def test_missing_tiny_imagenet_is_downloaded_from_the_official_url(homes, tmp_path, monkeypatch):
    src, home = homes
    monkeypatch.delenv("CARLIB_NO_DOWNLOAD")
    archive = zip_folder(make_tiny(tmp_path / "build"), tmp_path / "served.zip")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    assert D.TINY_IMAGENET_URL == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    monkeypatch.setattr(T, "TINY_IMAGENET_URL", archive.as_uri())
    monkeypatch.setattr(T, "TINY_IMAGENET_MD5", md5)
    val = load_dataset("tiny-imagenet", "val", progress=False)
    assert len(val) == 6 and (home / "data" / "tiny-imagenet-200.zip").is_file()


def test_imagenet_folder_layout(homes, tmp_path):
    src, _ = homes
    wnids = D.imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    rng = np.random.default_rng(0)
    for w in (wnids[3], wnids[999]):
        d = src / "imagenet" / "val" / w
        d.mkdir(parents=True)
        for j in range(2):
            Image.fromarray(rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)).save(d / f"ILSVRC_{j}.JPEG")
    ds = load_dataset("imagenet", "val", progress=False)
    assert len(ds) == 4 and list(ds.labels) == [3, 3, 999, 999]
    x, y = next(as_batches(ds, 4))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [3, 3, 999, 999]
    assert len(load_dataset("imagenet", "val", per_class=1, progress=False)) == 2


def test_bad_names_and_missing_data(homes):
    with pytest.raises(CarlibError, match="unknown dataset 'cifar'; choose one of"):
        load_dataset("cifar")
    with pytest.raises(CarlibError, match="unknown split 'test'"):
        load_dataset("tiny-imagenet", "test")
    with pytest.raises(CarlibError, match="per_class"):
        load_dataset("tiny-imagenet", per_class=0)
    with pytest.raises(DataNotFoundError, match="tiny-imagenet-200.zip"):
        load_dataset("tiny-imagenet", "val", progress=False)
    with pytest.raises(DataNotFoundError, match="imagenet/val/<wnid>"):
        load_dataset("imagenet", "val")


def test_tensor_pairs_are_accepted():
    x, y = torch.zeros(5, 3, 8, 8), torch.arange(5)
    assert [b[1].tolist() for b in as_batches((x, y), 3)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(CarlibError, match="do not match"):
        list(as_batches((x, y[:3]), 2))
