"""Files written whole or not at all, and their checksums.

Every result, journal, checkpoint and cache that carlib writes goes through
:func:`atomic_path`: the content goes to a uniquely named temporary file beside the target,
which replaces the target only when complete. An interrupted or failed write never leaves a
half-written file under the final name, and two processes writing the same target do not
collide on the temporary file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import CarlibError
from .faults import crash_point

__all__ = ["atomic_path", "write_text_atomic", "sha256_file", "check_writable", "file_lock", "lock_held"]


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path to write to; it replaces ``path`` when the block ends without error.

    Args:
        path: the final file. Its folder must exist.
        mode: permission bits of the final file.

    Returns:
        A context manager yielding the temporary path (same folder, same suffix as ``path``,
        so writers that look at the suffix, e.g. ``numpy.savez`` or ``to_parquet``, behave).
        On an exception the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> target.read_text()
        'hello'
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        crash_point("atomic-write")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``.

    Example:
        >>> import tempfile
        >>> p = write_text_atomic(Path(tempfile.mkdtemp()) / "a.json", "{}\\n")
        >>> p.read_text()
        '{}\\n'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """The sha256 hex digest of a file, read in chunks.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "e"
        >>> _ = p.write_bytes(b"")
        >>> sha256_file(p)[:12]
        'e3b0c44298fc'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_writable(path: str | Path) -> Path:
    """Check that ``path`` can be written (by :func:`atomic_path`) before a long computation.

    Args:
        path: the file to be written.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CarlibError: its folder is missing, is a file, or is not writable (a file cannot be
            created there); or ``path`` is a folder, or exists and is not writable.

    Example:
        >>> check_writable("/no/such/folder/x.pt")
        Traceback (most recent call last):
        ...
        carlib.errors.CarlibError: cannot write /no/such/folder/x.pt: folder /no/such/folder does not exist; create it first
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise CarlibError(f"cannot write {p}: {parent} is a file, not a folder; choose another output path")
    if not parent.is_dir():
        raise CarlibError(f"cannot write {p}: folder {parent} does not exist; create it first")
    if p.is_dir():
        raise CarlibError(f"cannot write {p}: it is a folder; name a file (inside it, say)")
    if p.exists() and not p.is_file():
        raise CarlibError(f"cannot write {p}: it is not a regular file; choose another output path")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CarlibError(f"cannot write {p}: permission denied; choose a writable location")
    try:  # what atomic_path will do: a temporary file beside the target (read-only mounts, /proc)
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CarlibError(f"cannot write {p}: no file can be created in {parent} "
                          f"({exc.strerror or exc.__class__.__name__}); choose a writable location") from None
    return p


@contextmanager
def file_lock(name: str | Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock, across processes, on ``name`` for the duration of the block.

    Used around work that two processes must not do at once, e.g. extracting an archive into
    the data folder (two test workers, or the ranks of one distributed run, on a fresh machine);
    the locked code checks again whether the work was done meanwhile. The lock file lives in
    the system's temporary folder (named by a hash of ``name``), never beside the user's data.
    Where ``fcntl`` is missing (Windows) the block runs unlocked.

    Args:
        name: what is locked, usually the path the work writes.
        waiting: called once, before blocking, when another holder has the lock (e.g. to say
            what the process waits for); not called when the lock is free.

    Example:
        >>> with file_lock("/tmp/some/target"):
        ...     pass
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(_lock_path(name), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_path(name: str | Path) -> Path:
    digest = hashlib.sha256(str(Path(name).absolute()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"carlib-{digest}.lock"


def lock_held(name: str | Path) -> bool:
    """Whether a holder has :func:`file_lock` on ``name`` now (e.g. another process computing
    that table); never waits. ``False`` where ``fcntl`` is missing.

    Example:
        >>> lock_held("/tmp/some/target")
        False
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    path = _lock_path(name)
    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
