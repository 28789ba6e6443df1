"""carlib.experiments: the notebooks' cached tables are computed once and reused."""

from __future__ import annotations

import pandas as pd

import carlib.experiments as E
from conftest import requires_tiny


@requires_tiny
def test_tables_are_cached_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path)
    study = E.Study("smoke", progress=False)
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"a": [1, 2]})

    first = study.table("t", compute, x=1)
    again = study.table("t", compute, x=1)
    assert len(calls) == 1 and again.equals(first)
    study.table("t", compute, x=2)  # other parameters: recomputed
    assert len(calls) == 2
    forced = E.Study("smoke", progress=False, force=True)
    forced.table("t", compute, x=2)
    assert len(calls) == 3
    # a cached CAR table reads back to the same overall table
    c1 = study.car("conv1")
    c2 = E.Study("smoke", progress=False).car("conv1")
    pd.testing.assert_frame_equal(c1, c2)
    assert c1.attrs["base_accuracy"] == c2.attrs["base_accuracy"]
