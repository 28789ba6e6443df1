"""Result tables cached under ``results/<profile>/``, recomputed only when their inputs change.

Every table ``<name>.csv`` has a sidecar ``<name>.json`` holding the key it was computed with
(profile, model and data fingerprints, parameters), the table's scalar ``attrs`` and how long
it took. Both are written atomically.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import pandas as pd

from ..files import file_lock, lock_held, write_text_atomic
from ..tables import read_table, write_table

__all__ = ["ResultCache", "free_first"]

T = TypeVar("T")


def free_first(items: Sequence[T], busy: Callable[[T], bool]) -> Iterator[T]:
    """Every item once, each time the first that ``busy`` does not flag (else the first left):
    processes that share the parts of a long step (retraining runs, replicates) each take a part
    nobody is computing, instead of queueing behind one lock.

    Example:
        >>> list(free_first([1, 2, 3], busy=lambda i: i == 1))
        [2, 3, 1]
    """
    left = list(items)
    while left:
        item = next((i for i in left if not busy(i)), left[0])
        left.remove(item)
        yield item


class ResultCache:
    """Tables of one profile in one folder.

    Args:
        folder: where the tables live (``results/<profile>/``).
        key: what every table depends on (profile, model and data fingerprints); JSON-able.
        force: recompute every table instead of reading it.

    Example:
        >>> import tempfile
        >>> cache = ResultCache(Path(tempfile.mkdtemp()), {"profile": "x"})
        >>> cache.table("t", lambda: pd.DataFrame({"a": [1]}))["a"].tolist()
        [1]
    """

    def __init__(self, folder: Path, key: dict, *, force: bool = False):
        self.folder = Path(folder)
        self.key = key
        self.force = force

    def table(self, name: str, compute: Callable[[], pd.DataFrame], **params: object) -> pd.DataFrame:
        """``<name>.csv`` if computed with the same key and ``params``, else ``compute()`` (stored).

        Two processes sharing the folder never compute one table at once: the second waits
        for the first (saying so on stderr) and then reads its table.
        """
        path = self.folder / f"{name}.csv"
        if not self.force and (df := self.cached(name, **params)) is not None:
            return df

        def waiting() -> None:
            print(f"carlib: another process is computing {path}; waiting for it", file=sys.stderr, flush=True)

        with file_lock(path, waiting=waiting):
            if not self.force and (df := self.cached(name, **params)) is not None:
                return df  # computed by the process this one waited for
            t0 = time.time()
            df = compute()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_table(df, path)
            attrs = {k: v for k, v in df.attrs.items() if isinstance(v, (int, float, str))}
            write_text_atomic(self.folder / f"{name}.json",
                              json.dumps({"key": self._key(name, params), "attrs": attrs,
                                          "seconds": round(time.time() - t0, 1)}, indent=1) + "\n")
        return df

    def computing(self, name: str) -> bool:
        """Whether another process is computing the table ``name`` now (holds its lock).

        Example:
            >>> import tempfile
            >>> ResultCache(Path(tempfile.mkdtemp()), {}).computing("t")
            False
        """
        return lock_held(self.folder / f"{name}.csv")

    def cached(self, name: str, **params: object) -> pd.DataFrame | None:
        """``<name>.csv`` if it was computed with the same key and ``params``, else ``None``;
        never computes, waits or writes.

        Example:
            >>> import tempfile
            >>> ResultCache(Path(tempfile.mkdtemp()), {"profile": "x"}).cached("t") is None
            True
        """
        path, meta_path = self.folder / f"{name}.csv", self.folder / f"{name}.json"
        if not (path.is_file() and meta_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != self._key(name, params):
            return None
        df = read_table(path)
        df.attrs.update(meta.get("attrs", {}))
        return df

    def _key(self, name: str, params: dict) -> dict:
        key = dict(self.key, name=name, params={k: str(v) for k, v in params.items()})
        return json.loads(json.dumps(key))  # tuples become lists, as in the stored sidecar

    def seconds(self, name: str) -> float | None:
        """How long the cached table ``name`` took to compute (``None`` if unknown)."""
        p = self.folder / f"{name}.json"
        return json.loads(p.read_text()).get("seconds") if p.is_file() else None
