"""Writing result tables atomically (CSV or Parquet), and reading them back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import CarlibError
from .files import atomic_path, check_writable

__all__ = ["write_table", "read_table", "check_output_path"]

FORMATS = (".csv", ".parquet")


def check_output_path(path: str | Path) -> Path:
    """Check that a result file can be written, before any long computation starts.

    Args:
        path: the result file (``.csv`` or ``.parquet``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CarlibError: unknown suffix, or a location that cannot be written
            (:func:`carlib.files.check_writable`).

    Example:
        >>> check_output_path("results.txt")
        Traceback (most recent call last):
        ...
        carlib.errors.CarlibError: cannot write results.txt: unknown format .txt; name the output file *.csv or *.parquet
    """
    p = Path(path)
    if p.suffix not in FORMATS:
        raise CarlibError(f"cannot write {p}: unknown format {p.suffix or '(none)'}; "
                          "name the output file *.csv or *.parquet")
    check_writable(p)
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
    with atomic_path(p) as tmp:
        if p.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return p


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    p = Path(path)
    return pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)
