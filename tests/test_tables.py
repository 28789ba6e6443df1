"""carlib.tables: atomic writes, never a half-written result file."""

from __future__ import annotations

import pandas as pd
import pytest

from carlib import read_table, write_table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(tmp_path, suffix):
    df = pd.DataFrame({"filter": [0, 1], "car": [0.5, -0.25]})
    p = write_table(df, tmp_path / f"t{suffix}")
    pd.testing.assert_frame_equal(read_table(p), df)
    assert [f.name for f in tmp_path.iterdir()] == [f"t{suffix}"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "t.csv"
    write_table(pd.DataFrame({"a": [1]}), p)

    def boom(self, path, **kw):
        with open(path, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        write_table(pd.DataFrame({"a": [2]}), p)
    monkeypatch.undo()
    assert read_table(p)["a"].tolist() == [1]
    assert [f.name for f in tmp_path.iterdir()] == ["t.csv"]
