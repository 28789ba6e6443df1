"""The one place that knows where things live: repository, data, results, figures.

Every other module (and every notebook) asks this module for a path, so nothing depends on
the current working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "PACKAGE_DIR",
    "WEIGHTS_DIR",
    "data_dir",
    "data_search_dirs",
    "cache_dir",
    "results_dir",
    "figures_dir",
]

PACKAGE_DIR: Path = Path(__file__).resolve().parent
REPO_ROOT: Path = PACKAGE_DIR.parent
WEIGHTS_DIR: Path = PACKAGE_DIR / "weights"


def data_dir() -> Path:
    """The project's own, writable data folder (downloads, extracted archives, caches).

    Returns:
        ``$CARLIB_HOME/data`` if ``CARLIB_HOME`` is set, else the repository's ``data/``.

    Example:
        >>> data_dir().name
        'data'
    """
    home = os.environ.get("CARLIB_HOME")
    return (Path(home) if home else REPO_ROOT) / "data"


def data_search_dirs() -> list[Path]:
    """Folders searched for datasets, in order: ``$CARLIB_DATA_DIR`` (``os.pathsep``-separated,
    may be read-only), then :func:`data_dir`.

    Returns:
        The existing folders, without duplicates.

    Example:
        >>> isinstance(data_search_dirs(), list)
        True
    """
    dirs: list[Path] = []
    for part in os.environ.get("CARLIB_DATA_DIR", "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part).expanduser())
    dirs.append(data_dir())
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def cache_dir() -> Path:
    """Where decoded-pixel caches are kept (``data/cache``; created by whoever writes the
    first cache, so a refused dataset leaves no folder behind)."""
    return data_dir() / "cache"


def _output_root() -> Path:
    home = os.environ.get("CARLIB_HOME")
    return Path(home) if home else REPO_ROOT


def results_dir(profile: str) -> Path:
    """``results/<profile>/``, created on demand.

    Args:
        profile: a profile name such as ``"default"``.

    Returns:
        The folder for the profile's cached result tables.

    Example:
        >>> results_dir("smoke").parts[-2:]
        ('results', 'smoke')
    """
    d = _output_root() / "results" / profile
    d.mkdir(parents=True, exist_ok=True)
    return d


def figures_dir(profile: str) -> Path:
    """``figures/<profile>/``, created on demand (PNG and PDF files of the notebooks)."""
    d = _output_root() / "figures" / profile
    d.mkdir(parents=True, exist_ok=True)
    return d
