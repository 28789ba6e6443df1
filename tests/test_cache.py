"""carlib.analysis.cache: tables keyed by their inputs, computed once across processes."""

from __future__ import annotations

import json
import threading

import pandas as pd

from carlib.analysis.cache import ResultCache


def test_a_table_is_read_back_for_the_same_key_and_recomputed_for_another(tmp_path):
    calls = []

    def compute(v=1):
        calls.append(v)
        out = pd.DataFrame({"a": [v]})
        out.attrs["note"] = "x"
        return out

    cache = ResultCache(tmp_path, {"profile": "p"})
    assert cache.table("t", compute, depth=2)["a"].tolist() == [1]
    again = cache.table("t", lambda: compute(2), depth=2)
    assert again["a"].tolist() == [1] and again.attrs["note"] == "x" and calls == [1]
    assert cache.table("t", lambda: compute(3), depth=3)["a"].tolist() == [3]  # another key
    assert json.loads((tmp_path / "t.json").read_text())["key"]["params"] == {"depth": "3"}
    forced = ResultCache(tmp_path, {"profile": "p"}, force=True)
    assert forced.table("t", lambda: compute(4), depth=3)["a"].tolist() == [4] and calls == [1, 3, 4]


def test_a_second_process_waits_for_the_first_and_reads_its_table(tmp_path, capsys):
    started, release = threading.Event(), threading.Event()
    calls, results = [], {}

    def slow():
        calls.append("slow")
        started.set()
        release.wait(10)
        return pd.DataFrame({"a": [7]})

    def first():
        results["first"] = ResultCache(tmp_path, {"profile": "p"}).table("t", slow)

    def second():
        results["second"] = ResultCache(tmp_path, {"profile": "p"}).table(
            "t", lambda: calls.append("second") or pd.DataFrame({"a": [8]}))

    a = threading.Thread(target=first)
    a.start()
    assert started.wait(10)
    b = threading.Thread(target=second)
    b.start()
    b.join(0.5)
    assert b.is_alive()  # blocked while the first computes
    release.set()
    a.join(10)
    b.join(10)
    assert calls == ["slow"]  # computed once
    assert results["first"]["a"].tolist() == results["second"]["a"].tolist() == [7]
    err = capsys.readouterr().err
    assert err.count("another process is computing") == 1 and "t.csv" in err


def test_cached_reads_without_computing_or_waiting(tmp_path):
    from carlib.files import file_lock

    cache = ResultCache(tmp_path, {"profile": "p"})
    assert cache.cached("t") is None and not list(tmp_path.iterdir())
    cache.table("t", lambda: pd.DataFrame({"a": [1]}), depth=1)
    with file_lock(tmp_path / "t.csv"):  # as while another process computes it: never waited for
        assert cache.cached("t", depth=1)["a"].tolist() == [1]
        assert cache.cached("t", depth=2) is None  # another key


def test_free_first_takes_the_parts_nobody_computes_before_waiting_for_the_others():
    from carlib.analysis.cache import free_first

    busy = {0, 2}
    assert list(free_first(range(4), lambda i: i in busy)) == [1, 3, 0, 2]
    seen = []
    for i in free_first(range(3), lambda i: i in busy):  # one finished meanwhile: taken when free
        seen.append(i)
        busy.discard(2)
    assert seen == [1, 2, 0]


def test_computing_says_whether_another_holder_has_the_tables_lock(tmp_path):
    from carlib.files import file_lock

    cache = ResultCache(tmp_path, {"profile": "p"})
    assert not cache.computing("parts/t")
    with file_lock(tmp_path / "parts" / "t.csv"):
        assert cache.computing("parts/t") and not cache.computing("t")
    assert not cache.computing("parts/t")
