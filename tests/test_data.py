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
import carlib.data.imagenet_sample as S
import carlib.data.tiny_imagenet as T
from carlib import as_batches, load_dataset
from carlib.errors import CarlibError, DataNotFoundError
from carlib.files import sha256_file

from conftest import requires_imagenet_sample

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


def test_tiny_imagenet_is_read_from_its_zip_without_extracting(homes, tmp_path, monkeypatch):
    src, home = homes
    folder = make_tiny(tmp_path / "build")
    _checked(monkeypatch, zip_folder(folder, src / "tiny-imagenet-200.zip"))
    val = load_dataset("tiny-imagenet", "val", progress=False)
    assert [p.name for p in (home / "data").iterdir()] == ["cache"]  # nothing extracted
    assert sorted(p.name for p in src.iterdir()) == ["tiny-imagenet-200.zip"]
    assert val.classes == sorted(WNIDS) and val.class_names == ["name0", "name1", "name2"]
    assert val.images.shape == (6, 64, 64, 3) and val.images.dtype == np.uint8
    assert list(val.labels) == [0, 1, 2, 0, 1, 2]
    g = val.images[0]
    assert (g[..., 0] == g[..., 1]).all()  # grayscale converted to RGB
    train = load_dataset("tiny-imagenet", "train", progress=False)
    assert len(train) == 9 and list(train.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_the_zip_and_its_extracted_folder_give_the_same_dataset(homes, tmp_path, monkeypatch):
    src, home = homes
    folder = make_tiny(tmp_path / "build")
    _checked(monkeypatch, zip_folder(folder, src / "tiny-imagenet-200.zip"))
    from_zip = [load_dataset("tiny-imagenet", s, progress=False) for s in ("val", "train")]
    monkeypatch.setenv("CARLIB_DATA_DIR", str(folder.parent))  # now an extracted copy is found
    from_folder = [load_dataset("tiny-imagenet", s, progress=False) for s in ("val", "train")]
    for a, b in zip(from_zip, from_folder):
        np.testing.assert_array_equal(a.images, b.images)
        assert a.labels.tolist() == b.labels.tolist() and a.classes == b.classes
        assert a.class_names == b.class_names == ["name0", "name1", "name2"]
    assert len(list((home / "data" / "cache").glob("*.npz"))) == 4  # one cache per source


def test_an_archive_without_val_annotations_is_refused(homes, tmp_path, monkeypatch):
    src, home = homes
    folder = make_tiny(tmp_path / "build")
    (folder / "val" / "val_annotations.txt").unlink()
    _checked(monkeypatch, zip_folder(folder, src / "tiny-imagenet-200.zip"))
    with pytest.raises(CarlibError, match="incomplete tiny-imagenet-200/") as err:
        load_dataset("tiny-imagenet", "val", progress=False)
    assert "\n" not in str(err.value) and not list(home.rglob("*.npz"))


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


def test_a_few_images_per_class_decode_only_those_until_the_split_is_cached(homes, monkeypatch):
    src, home = homes
    make_tiny(src, train_per_class=4)
    cache = home / "data" / "cache"
    decoded: list[int] = []
    real = T._decode_all
    monkeypatch.setattr(T, "_decode_all", lambda names, *a, **k: decoded.append(len(names)) or real(names, *a, **k))
    few = load_dataset("tiny-imagenet", "train", per_class=2, progress=False)
    assert decoded == [6] and [p.name.endswith("-first2.npz") for p in cache.iterdir()] == [True]
    assert load_dataset("tiny-imagenet", "train", per_class=2, progress=False).fingerprint() == few.fingerprint()
    assert decoded == [6]  # read back from its own cache
    whole = load_dataset("tiny-imagenet", "train", progress=False)
    assert decoded == [6, 12]
    # once the whole split is cached, subsets come from it: the same pixels
    again = load_dataset("tiny-imagenet", "train", per_class=2, progress=False)
    assert decoded == [6, 12] and again.fingerprint() == few.fingerprint() and again.per_class == 2
    idx = D.subset_per_class(whole.labels, 2, 3)
    np.testing.assert_array_equal(few.images, whole.images[idx])
    np.testing.assert_array_equal(few.labels, whole.labels[idx])


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
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("imagenet-sample", "val")
    assert "imagenet-val-sample.zip" in str(err.value) and "CARLIB_DATA_DIR" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(CarlibError, match="unknown split 'train' for imagenet-sample"):
        load_dataset("imagenet-sample", "train")


def test_tensor_pairs_are_accepted():
    x, y = torch.zeros(5, 3, 8, 8), torch.arange(5)
    assert [b[1].tolist() for b in as_batches((x, y), 3)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(CarlibError, match="do not match"):
        list(as_batches((x, y[:3]), 2))


# ---------------------------------------------------------------- imagenet-sample

SAMPLE_HEADER = ("path,split,wnid,class_index_sorted_wnid,width,height,source_repo,"
                 "source_commit,source_path\n")


def make_sample_zip(archive: Path, per_class=(2, 1, 3), *, bad_index: bool = False) -> Path:
    """A miniature imagenet-val-sample.zip: imagenet/val/<wnid>/*.JPEG and MANIFEST.csv."""
    wnids = D.imagenet_wnids()
    chosen = [wnids[5], wnids[17], wnids[998]]
    rng = np.random.default_rng(0)
    rows = []
    with zipfile.ZipFile(archive, "w") as zf:
        for w, k in zip(chosen, per_class):
            for j in range(k):
                name = f"imagenet/val/{w}/ILSVRC2012_val_{wnids.index(w) * 10 + j:08d}.JPEG"
                buf = __import__("io").BytesIO()
                Image.fromarray(rng.integers(0, 255, (227, 227, 3), dtype=np.uint8)).save(buf, "JPEG")
                zf.writestr(name, buf.getvalue())
                index = wnids.index(w) + (1 if bad_index and j == 0 else 0)
                rows.append(f"{name},val,{w},{index},227,227,repo,0,{name}\n")
        zf.writestr("imagenet/MANIFEST.csv", SAMPLE_HEADER + "".join(rows))
    return archive


@pytest.fixture
def sample_zip(homes, monkeypatch):
    """A miniature sample archive in the data source, its checksum the expected one."""
    src, home = homes
    archive = make_sample_zip(src / "imagenet-val-sample.zip")
    monkeypatch.setattr(S, "IMAGENET_SAMPLE_SHA256", sha256_file(archive))
    return src, home, archive


def test_imagenet_sample_is_checked_and_extracted_beside_not_into_imagenet(sample_zip):
    src, home, archive = sample_zip
    ds = load_dataset("imagenet-sample", "val", progress=False)
    assert (home / "data" / "imagenet-sample" / "imagenet" / "MANIFEST.csv").is_file()
    assert not (home / "data" / "imagenet").exists() and not (src / "imagenet-sample").exists()
    wnids = D.imagenet_wnids()
    assert ds.name == "imagenet-sample" and ds.num_classes == 1000 and ds.classes == wnids
    assert list(ds.labels) == [5, 5, 17, 998, 998, 998]
    assert ds.class_names[17] == D.imagenet_class_names()[17]
    x, y = next(as_batches(ds, 6))
    assert x.shape == (6, 3, 224, 224) and y.tolist() == [5, 5, 17, 998, 998, 998]
    # the same transform as the imagenet dataset: resize 256, center crop 224, mean/std
    from torchvision import transforms

    with Image.open(ds.samples[0][0]) as im:
        ref = transforms.Normalize(D.IMAGENET_MEAN, D.IMAGENET_STD)(
            transforms.ToTensor()(transforms.CenterCrop(224)(transforms.Resize(256)(im.convert("RGB")))))
    torch.testing.assert_close(x[0], ref)
    # per_class: the first k of every class, nested
    assert list(load_dataset("imagenet-sample", "val", per_class=1, progress=False).labels) == [5, 17, 998]
    two = load_dataset("imagenet-sample", "val", per_class=2, progress=False)
    assert list(two.labels) == [5, 5, 17, 998, 998] and two.per_class == 2
    # the full ImageNet dataset does not pick the sample up
    with pytest.raises(DataNotFoundError, match="imagenet/val/<wnid>"):
        load_dataset("imagenet", "val")
    # a second load uses the extracted copy (the archive is not needed any more)
    archive.unlink()
    assert len(load_dataset("imagenet-sample", "val", progress=False)) == 6


def test_imagenet_sample_with_a_wrong_checksum_is_refused_and_nothing_extracted(homes, monkeypatch):
    src, home = homes
    archive = make_sample_zip(src / "imagenet-val-sample.zip")
    before = archive.read_bytes()
    assert S.IMAGENET_SAMPLE_SHA256 != sha256_file(archive)
    with pytest.raises(CarlibError) as err:
        load_dataset("imagenet-sample", "val", progress=False)
    assert "sha256" in str(err.value) and "\n" not in str(err.value)
    assert not (home / "data" / "imagenet-sample").exists()
    assert archive.read_bytes() == before  # the user's file is left alone


def test_corrupt_imagenet_sample_archive_is_refused_and_nothing_extracted(homes, monkeypatch):
    src, home = homes
    archive = make_sample_zip(src / "imagenet-val-sample.zip")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64  # damage a member
    archive.write_bytes(bytes(data))
    monkeypatch.setattr(S, "IMAGENET_SAMPLE_SHA256", sha256_file(archive))
    with pytest.raises(CarlibError, match="not a readable zip archive") as err:
        load_dataset("imagenet-sample", "val", progress=False)
    assert "\n" not in str(err.value)
    assert not (home / "data" / "imagenet-sample").exists()
    (src / "imagenet-val-sample.zip").write_bytes(b"not a zip at all")
    monkeypatch.setattr(S, "IMAGENET_SAMPLE_SHA256", sha256_file(archive))
    with pytest.raises(CarlibError, match="not a readable zip archive"):
        load_dataset("imagenet-sample", "val", progress=False)
    assert not (home / "data" / "imagenet-sample").exists()


def test_imagenet_sample_manifest_must_agree_with_the_folders(homes, monkeypatch):
    src, home = homes
    archive = make_sample_zip(src / "imagenet-val-sample.zip", bad_index=True)
    monkeypatch.setattr(S, "IMAGENET_SAMPLE_SHA256", sha256_file(archive))
    with pytest.raises(CarlibError, match="MANIFEST.csv labels .* as .* but its folder is"):
        load_dataset("imagenet-sample", "val", progress=False)
    root = home / "data" / "imagenet-sample" / "imagenet"
    (root / "MANIFEST.csv").write_text(SAMPLE_HEADER)  # lists no image
    with pytest.raises(CarlibError, match="is not listed in MANIFEST.csv"):
        load_dataset("imagenet-sample", "val", progress=False)


@requires_imagenet_sample
def test_the_real_imagenet_sample():
    """The archive in the data folder: its checksum, 1,398 images of 749 classes, labels equal
    to MANIFEST.csv's (read from the archive itself), per-class subsets."""
    import csv
    import io

    from carlib.paths import data_search_dirs

    archive = next((d / D.IMAGENET_SAMPLE_FILE for d in data_search_dirs()
                    if (d / D.IMAGENET_SAMPLE_FILE).is_file()), None)
    ds = load_dataset("imagenet-sample", "val", progress=False)
    assert len(ds) == 1398 and len(set(ds.labels.tolist())) == 749
    assert Path(ds.samples[0][0]).parent.parent.parent.parent.name == "imagenet-sample"
    if archive is not None:
        assert sha256_file(archive) == D.IMAGENET_SAMPLE_SHA256
        with zipfile.ZipFile(archive) as zf:
            rows = list(csv.DictReader(io.TextIOWrapper(zf.open("imagenet/MANIFEST.csv"))))
        expected = {r["path"]: int(r["class_index_sorted_wnid"]) for r in rows}
        got = {"/".join(Path(p).parts[-4:]): y for p, y in ds.samples}
        assert got == expected
    wnids = D.imagenet_wnids()
    assert all(wnids[y] == Path(p).parent.name for p, y in ds.samples)
    sizes = [len(load_dataset("imagenet-sample", "val", per_class=k, progress=False)) for k in (1, 2, 3, 7)]
    assert sizes == [749, 1159, 1312, 1398]
    one = load_dataset("imagenet-sample", "val", per_class=1, progress=False)
    assert np.bincount(one.labels, minlength=1000).max() == 1
    x, y = next(as_batches(one.subset([0, 1]), 2))
    assert x.shape == (2, 3, 224, 224) and y.tolist() == one.labels[:2].tolist()


# ---------------------------------------------------------------- hostile Tiny ImageNet archives

def _checked(monkeypatch, archive: Path) -> Path:
    """Make ``archive`` the expected Tiny ImageNet archive (its sha256 the official one)."""
    monkeypatch.setattr(T, "TINY_IMAGENET_SHA256", sha256_file(archive))
    return archive


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tiny_extraction_never_touches_the_users_other_data(homes, tmp_path, monkeypatch):
    src, home = homes
    folder = make_tiny(tmp_path / "build")
    archive = src / "tiny-imagenet-200.zip"
    zip_folder(folder, archive)
    with zipfile.ZipFile(archive, "a") as zf:  # hostile extra top-level entries
        zf.writestr("imagenet/val/n01440764/evil.JPEG", b"x")
        zf.writestr("cache/evil.npz", b"x")
        zf.writestr("README.md", b"replaced")
    _checked(monkeypatch, archive)
    own = home / "data"
    (own / "imagenet" / "val" / "n01440764").mkdir(parents=True)
    (own / "imagenet" / "val" / "n01440764" / "mine.JPEG").write_bytes(b"user image")
    (own / "cache").mkdir()
    (own / "cache" / "mine.npz").write_bytes(b"user cache")
    (own / "README.md").write_text("user readme")
    before = _tree(own)
    assert len(load_dataset("tiny-imagenet", "val", progress=False)) == 6
    after = _tree(own)
    assert {k: after[k] for k in before} == before  # nothing of the user's changed
    new = {k.split("/")[0] for k in set(after) - set(before)}
    assert new == {"cache"}
    assert not (own / "cache" / "evil.npz").exists() and not (own / "imagenet" / "val" / "n01440764" / "evil.JPEG").exists()
    assert not [p for p in own.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_tiny_archive_must_match_the_official_checksum(homes, tmp_path):
    src, home = homes
    zip_folder(make_tiny(tmp_path / "build"), src / "tiny-imagenet-200.zip")
    with pytest.raises(CarlibError, match="sha256") as err:
        load_dataset("tiny-imagenet", "val", progress=False)
    assert "\n" not in str(err.value) and not (home / "data" / "tiny-imagenet-200").exists()


def _symlink_zip(archive: Path) -> Path:
    import stat

    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01443537\n")
        link = zipfile.ZipInfo("tiny-imagenet-200/words.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return archive


HOSTILE_ARCHIVES = {
    "random-bytes": (lambda a: a.write_bytes(np.random.default_rng(0).bytes(5000)), "not a readable zip"),
    "no-tiny-folder": (lambda a: zipfile.ZipFile(a, "w").writestr("other/wnids.txt", "x"),
                       "holds no tiny-imagenet-200/"),
    "symlink": (_symlink_zip, "symbolic link"),
}


@pytest.mark.parametrize("case", list(HOSTILE_ARCHIVES))
def test_hostile_tiny_archives_are_one_line_exit_2_and_leave_nothing(homes, monkeypatch, capsys, case):
    from carlib.cli import main

    src, home = homes
    make, needle = HOSTILE_ARCHIVES[case]
    archive = src / "tiny-imagenet-200.zip"
    make(archive)
    _checked(monkeypatch, archive)
    code = main(["car", "--layer", "conv1", "--out", str(home / "a.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    own = home / "data"
    assert not own.exists() or not any(own.iterdir())
    assert not (home / "a.csv").exists()


def test_symlink_members_are_refused_by_safe_extract(tmp_path):
    with pytest.raises(CarlibError, match="symbolic link"):
        D.safe_extract(_symlink_zip(tmp_path / "l.zip"), tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_an_incomplete_tiny_folder_of_the_user_is_not_deleted(homes, tmp_path, monkeypatch):
    src, home = homes
    _checked(monkeypatch, zip_folder(make_tiny(tmp_path / "build"), src / "tiny-imagenet-200.zip"))
    mine = home / "data" / "tiny-imagenet-200" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    assert len(load_dataset("tiny-imagenet", "val", progress=False)) == 6  # read from the zip
    with pytest.raises(CarlibError, match="tiny-imagenet-200 exists") as err:
        T.find_tiny_imagenet(download_missing=False, progress=False)  # which would extract
    assert "\n" not in str(err.value) and mine.read_text() == "mine"
    assert [p.name for p in mine.parent.iterdir()] == ["notes.txt"]


def test_processes_extracting_at_once_take_turns(homes, tmp_path, monkeypatch):
    """Two workers (test workers, distributed ranks) loading a fresh machine's data at once:
    one extracts, the other waits and then finds the extracted copy; neither fails."""
    import threading
    import time

    src, home = homes
    _checked(monkeypatch, zip_folder(make_tiny(tmp_path / "build"), src / "tiny-imagenet-200.zip"))
    slow = T.safe_extract

    def slow_extract(*args, **kwargs):  # widen the window in which both would be extracting
        time.sleep(0.3)
        return slow(*args, **kwargs)

    monkeypatch.setattr(T, "safe_extract", slow_extract)
    start, found, errors = threading.Barrier(2), [], []

    def find():
        start.wait()
        try:
            found.append(T.find_tiny_imagenet(download_missing=False, progress=False))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=find) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and found == [home / "data" / "tiny-imagenet-200"] * 2
    assert sorted(p.name for p in (home / "data").iterdir()) == ["tiny-imagenet-200"]


def test_a_memoized_folder_dataset_decodes_each_image_once(tmp_path, monkeypatch):
    from dataclasses import replace

    from conftest import folder_copy, prototype_images

    ds = prototype_images(n=6, classes=3)
    folder = folder_copy(ds, tmp_path)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    plain = [folder[i][0] for i in range(6)]
    memo = folder.memoized(limit=4)
    opened.clear()
    for _ in range(3):  # three passes: the first 4 images decoded once, the others every time
        batches = list(as_batches(memo, 4))
    assert len(opened) == 4 + 2 * 3
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), torch.stack(plain), rtol=0, atol=0)
    np.testing.assert_array_equal(memo.pixels([5, 0]), folder.pixels([5, 0]))
    assert memo.fingerprint() == folder.fingerprint() and folder.memo is None  # the original keeps none
    assert memo.subset([0, 1]).memo is None  # other indices: a new dataset, nothing kept
    # decoded in worker processes: the batches are kept here, so the next pass decodes nothing
    workers = replace(folder, num_workers=2).memoized()
    first = torch.cat([b[0] for b in as_batches(workers, 4)])
    assert sorted(workers.memo) == list(range(6))
    for f in tmp_path.glob("*.png"):  # the next pass reads nothing from disk, in no process
        f.unlink()
    again = torch.cat([b[0] for b in as_batches(workers, 4)])
    assert torch.equal(first, again) and torch.equal(first, torch.stack(plain))
