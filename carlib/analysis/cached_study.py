"""A :class:`~carlib.analysis.study.Study` that reads its cached tables and never computes one:
what the report reads, and how ``precompute --status`` tells which steps are done."""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..errors import CarlibError
from .study import Study

__all__ = ["CachedStudy", "MissingTable"]


class MissingTable(CarlibError):
    """A table a :class:`CachedStudy` was asked for is missing or was computed from other inputs.

    Attributes:
        name: the table (``parts/...`` for a part of one).
    """

    def __init__(self, profile: str, name: str):
        super().__init__(f"results/{profile}/{name}.csv is missing or was computed from other inputs; "
                         f"run `make reproduce PROFILE={profile}` first")
        self.name = name


class CachedStudy(Study):
    """A :class:`Study` that only reads cached tables (never computes one).

    Raises:
        MissingTable: a table is missing or was computed from other inputs.

    Example:
        >>> CachedStudy("smoke").car("conv1")  # doctest: +SKIP
    """

    def table(self, name: str, compute: Callable[[], pd.DataFrame], **params: object) -> pd.DataFrame:
        """The cached table ``name``; never ``compute()``: :class:`MissingTable` instead."""

        df = self.cache.cached(name, **params)  # no lock: a table being computed is missing, not waited for
        if df is None:
            raise MissingTable(self.profile.name, name)
        return df
