"""Writing result tables atomically (CSV or Parquet), and reading them back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from .errors import CarlibError

__all__ = ["write_table", "read_table", "check_output_path"]

FORMATS = (".csv", ".parquet")


def check_output_path(path: str | Path) -> Path:
    """Check that a result file can be written, before any long computation starts.

    Raises:
        CarlibError: unknown suffix, or a folder that does not exist or is not writable.
    """
    p = Path(path)
    if p.suffix not in FORMATS:
        raise CarlibError(f"cannot write {p}: unknown format {p.suffix or '(none)'}; "
                          "name the output file *.csv or *.parquet")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise CarlibError(f"cannot write {p}: {parent} is a file, not a folder; choose another output path")
    if not parent.is_dir():
        raise CarlibError(f"cannot write {p}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CarlibError(f"cannot write {p}: permission denied; choose a writable location")
    return p


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` (``.csv`` or ``.parquet``) atomically.

    The table goes to a temporary file in the same folder, which replaces ``path`` only when
    complete: an interrupted write never leaves a half-written result.

    Args:
        df: the table.
        path: the destination.

    Returns:
        The destination path.

    Example:
        >>> write_table(pd.DataFrame({"a": [1]}), "/tmp/x.csv")  # doctest: +SKIP
    """
    p = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        if p.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    p = Path(path)
    return pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)
