"""Getting archives: verified downloads and safe extraction."""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

from ..errors import CarlibError, DataNotFoundError
from ..files import atomic_path

__all__ = ["download", "safe_extract", "check_members", "unreadable_zip", "ZIP_ERRORS"]


def safe_extract(archive: Path, target: Path, keep: tuple[str, ...] | None = None) -> list[Path]:
    """Extract a zip archive into ``target``, refusing members that would leave it.

    Every member is checked first; the archive is then extracted into a temporary folder
    inside ``target`` (same file system), and only its top-level entries named in ``keep``
    (all of them when ``None``) are moved into place, each with one rename. Nothing that
    exists is ever replaced or deleted: an entry already in ``target`` is an error. On any
    error the temporary folder is removed and ``target`` is as it was.

    Args:
        archive: the ``.zip`` file.
        target: the folder to extract into (created if needed, removed again if an error
            leaves it empty).
        keep: the top-level entries to take from the archive (each must be there).

    Returns:
        The paths moved into ``target``.

    Raises:
        CarlibError: a member's path is absolute or contains ``..`` (zip-slip), a member is a
            symbolic link, an entry of ``keep`` is missing from the archive or already exists
            in ``target``, or the file is not a readable zip archive (truncated, corrupt).

    Example:
        >>> safe_extract(Path("tiny-imagenet-200.zip"), data_dir(), keep=("tiny-imagenet-200",))  # doctest: +SKIP
    """
    target = Path(target)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        return _extract_checked(Path(archive), target, keep)
    except ZIP_ERRORS as exc:
        raise unreadable_zip(archive, exc) from None
    finally:
        if created and not any(target.iterdir()):
            target.rmdir()  # a refused archive leaves no empty folder behind


def _refuse_existing(archive: Path, final: Path) -> None:
    if final.exists() or final.is_symlink():
        raise CarlibError(f"cannot extract {archive.name}: {final} exists already and is left "
                          "alone; move or delete it, then run again")


def check_members(zf: zipfile.ZipFile, archive: Path) -> set[str]:
    """Refuse an archive with a member that would leave the folder it is extracted into
    (an absolute path, or ``..`` climbing out) or that is a symbolic link.

    Args:
        zf: the open archive.
        archive: its path (named in the errors).

    Returns:
        The archive's top-level entry names.

    Raises:
        CarlibError: a member that would leave the folder, or a symbolic link.

    Example:
        >>> with zipfile.ZipFile("tiny-imagenet-200.zip") as zf:  # doctest: +SKIP
        ...     check_members(zf, Path("tiny-imagenet-200.zip"))
        {'tiny-imagenet-200'}
    """
    tops = set()
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        norm = posixpath.normpath(name)
        if name.startswith("/") or norm == ".." or norm.startswith("../") or ":" in name.split("/")[0]:
            raise CarlibError(
                f"refusing to extract {archive.name}: member {info.filename!r} would be "
                "written outside the folder it is extracted into; the archive is corrupt or "
                "malicious, download it again from the official URL"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise CarlibError(
                f"refusing to extract {archive.name}: member {info.filename!r} is a symbolic "
                "link; the archive is corrupt or malicious, download it again from the "
                "official URL"
            )
        tops.add(norm.split("/")[0])
    return tops


def unreadable_zip(archive: Path, exc: BaseException) -> CarlibError:
    """The one-line error for a file that is not a readable zip archive.

    Args:
        archive: the file.
        exc: what :mod:`zipfile` raised (``BadZipFile``, ``EOFError``, ``zlib.error`` ...).

    Returns:
        A :class:`CarlibError` to raise ``from None``.

    Example:
        >>> str(unreadable_zip(Path("a.zip"), EOFError()))[:39]
        'cannot extract a.zip: not a readable zi'
    """
    return CarlibError(
        f"cannot extract {Path(archive).name}: not a readable zip archive "
        f"({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}); "
        "it is truncated or corrupt, replace it with an intact copy"
    )


#: What :mod:`zipfile` raises on a truncated or corrupt archive.
ZIP_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError)


def _extract_checked(archive: Path, target: Path, keep: tuple[str, ...] | None) -> list[Path]:
    with zipfile.ZipFile(archive) as zf:
        tops = check_members(zf, archive)
        names = sorted(tops) if keep is None else list(keep)
        for name in names:
            if name not in tops:
                raise CarlibError(f"{archive.name} holds no {name}/; it is not the expected "
                                  "archive, replace it with an intact copy")
            _refuse_existing(archive, target / name)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
        try:
            zf.extractall(tmp)
            moved = []
            for name in names:
                final = target / name
                _refuse_existing(archive, final)
                os.rename(tmp / name, final)
                moved.append(final)
            return moved
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
    h256, h5 = hashlib.sha256(), hashlib.md5()
    try:
        resp = urllib.request.urlopen(url, timeout=30)
    except (OSError, ValueError) as exc:
        raise DataNotFoundError(
            f"cannot download {url} ({exc.__class__.__name__}: {exc}); "
            f"download it by hand and place it at {dest}"
        ) from None
    total = int(resp.headers.get("Content-Length") or 0) or None
    with atomic_path(dest) as tmp, open(tmp, "wb") as out, resp, tqdm(
        total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
    ) as bar:
        while block := resp.read(1 << 20):
            out.write(block)
            h256.update(block)
            h5.update(block)
            bar.update(len(block))
        out.flush()
        if sha256 and h256.hexdigest() != sha256 or md5 and h5.hexdigest() != md5:
            raise CarlibError(
                f"checksum mismatch for {url}: the download is corrupt or was changed; "
                f"delete {dest} if present and download it again"
            )
    return dest
