"""carlib.files: atomic writes and checksums."""

from __future__ import annotations

import hashlib

import pytest

from carlib.files import atomic_path, file_lock, sha256_file, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_temporaries_are_unique_and_keep_the_suffix(tmp_path):
    target = tmp_path / "x.npz"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.suffix == b.suffix == ".npz" and a.parent == tmp_path
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the outer block finished last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]


def test_write_text_and_checksum(tmp_path):
    p = write_text_atomic(tmp_path / "m.json", "{}\n")
    assert p.read_text() == "{}\n" and oct(p.stat().st_mode & 0o777) == "0o644"
    assert sha256_file(p) == hashlib.sha256(b"{}\n").hexdigest()
    assert sha256_file(p, chunk=1) == sha256_file(p)


def test_file_lock_serializes_holders(tmp_path):
    import threading
    import time

    events = []

    def hold(name):
        with file_lock(tmp_path / "target"):
            events.append(f"{name} in")
            time.sleep(0.2)
            events.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events[0][0] == events[1][0] and events[2][0] == events[3][0]  # never interleaved
    assert not list(tmp_path.iterdir())  # nothing beside the target


def test_file_lock_says_when_it_waits(tmp_path):
    import threading

    said = []
    with file_lock(tmp_path / "free", waiting=lambda: said.append("free")):
        pass
    assert said == []  # a free lock: no message
    held, done = threading.Event(), threading.Event()

    def hold():
        with file_lock(tmp_path / "busy"):
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    threading.Timer(0.2, done.set).start()
    with file_lock(tmp_path / "busy", waiting=lambda: said.append("busy")):
        assert done.is_set()  # entered only after the holder let go
    t.join(10)
    assert said == ["busy"]


def test_lock_held_tells_without_waiting(tmp_path):
    from carlib.files import lock_held

    assert not lock_held(tmp_path / "t")
    with file_lock(tmp_path / "t"):
        assert lock_held(tmp_path / "t") and not lock_held(tmp_path / "u")
    assert not lock_held(tmp_path / "t")
