"""Faults: a greedy run killed with SIGKILL at random (seeded) moments resumes to the table an
uninterrupted run writes, byte for byte; two processes on one output agree; hostile command
lines fail with one line.

The default run takes a fixed subset (:data:`DEFAULT_TRIALS`); ``pytest --run-faults``
(``make test-faults``) runs every trial.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carlib.cli import main
from carlib.greedy import STEP_FIELDS
from conftest import mini_cli_world, run_cli

LAYER, N_REMOVE = "conv5", 4
ROOT = Path(__file__).resolve().parents[1]


def _trials(n: int = 24, seed: int = 0) -> list[tuple[str, int, float]]:
    """``(how, n-th occurrence, delay)``: a crash point reached for the n-th time, or
    ``watch``: SIGKILL ``delay`` seconds after the journal first holds ``n`` steps."""
    rng = random.Random(seed)
    out = [("greedy-step", 2, 0.0), ("greedy-journaled", 3, 0.0), ("atomic-write", N_REMOVE + 1, 0.0),
           ("watch", 1, 0.0)]  # the default subset: one of each kind, the table write included
    while len(out) < n:
        how = rng.choice(["greedy-step", "greedy-journaled", "atomic-write", "watch", "watch"])
        last = N_REMOVE + 1 if how == "atomic-write" else N_REMOVE
        out.append((how, rng.randint(0 if how == "watch" else 1, last - (how == "watch")),
                    round(rng.uniform(0, 0.2), 3)))
    return out


TRIALS = _trials()
DEFAULT_TRIALS = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Data, a network whose filters matter, and the uninterrupted run's table and journal."""
    tmp = tmp_path_factory.mktemp("faults")
    weights, env = mini_cli_world(tmp)
    base = tmp / "base"
    base.mkdir()
    run_cli(env, _argv(weights, base / "steps.csv"))
    table = (base / "steps.csv").read_bytes()
    order = [int(line.split(b",")[1]) for line in table.splitlines()[1:]]
    assert order != sorted(order), "the test network must make the greedy order non-trivial"
    return tmp, weights, env, table, (base / "steps.csv.journal.jsonl").read_bytes()


def _argv(weights: Path, out: Path) -> list[str]:
    return ["prune", "--weights", str(weights), "--layer", LAYER, "--n-remove", str(N_REMOVE),
            "--out", str(out), "--quiet"]


def _spawn(argv: list[str], env: dict, crash: str | None = None) -> subprocess.Popen:
    full = {**os.environ, **env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    full.pop("CARLIB_CRASH_AT", None)
    if crash:
        full["CARLIB_CRASH_AT"] = crash
    return subprocess.Popen([sys.executable, "-m", "carlib", *argv], env=full, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _journal_steps(path: Path) -> int:
    try:
        return max(0, len(path.read_bytes().split(b"\n")) - 2)
    except FileNotFoundError:
        return 0


def _check_left_behind(out: Path, journal: Path, table: bytes, full_journal: bytes) -> None:
    """What a killed run leaves: a complete table or none, a journal that is a prefix of the
    uninterrupted run's (whole lines only)."""
    if out.exists():
        assert out.read_bytes() == table
    if journal.exists():
        text = journal.read_bytes()
        assert text.endswith(b"\n") and full_journal.startswith(text)
        for line in text.splitlines()[1:]:
            assert sorted(json.loads(line)) == sorted(STEP_FIELDS)


def _kill(setup, i: int) -> tuple[Path, Path]:
    """Start trial ``i``'s run and kill it as the trial says; returns (table, journal) paths."""
    tmp, weights, env, table, full_journal = setup
    how, n, delay = TRIALS[i]
    work = tmp / f"trial{i}"
    work.mkdir()
    out, journal = work / "steps.csv", work / "steps.csv.journal.jsonl"
    if how == "watch":
        proc = _spawn(_argv(weights, out), env)
        deadline = time.monotonic() + 300
        while _journal_steps(journal) < n and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode in (-signal.SIGKILL, 0)
    else:
        proc = _spawn(_argv(weights, out), env, crash=f"{how}:{n}")
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, err  # killed at that point, not before
    return out, journal


def _run_trials(setup, trials: list[int]) -> None:
    """Kill the trials' runs (in parallel: they are independent), then resume each one and
    compare its table and journal with the uninterrupted run's, byte for byte."""
    from concurrent.futures import ThreadPoolExecutor

    tmp, weights, env, table, full_journal = setup
    with ThreadPoolExecutor(max_workers=4) as pool:
        killed = list(pool.map(lambda i: _kill(setup, i), trials))
    for out, journal in killed:
        _check_left_behind(out, journal, table, full_journal)
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            assert main(_argv(weights, out)) == 0  # resumed
        assert out.read_bytes() == table
        assert journal.read_bytes() == full_journal


def test_killed_greedy_runs_resume_to_the_same_table(setup):
    _run_trials(setup, list(range(DEFAULT_TRIALS)))


@pytest.mark.faults
@pytest.mark.parametrize("first", range(DEFAULT_TRIALS, len(TRIALS), 4))
def test_killed_greedy_runs_resume_to_the_same_table_all_trials(setup, first):
    _run_trials(setup, list(range(first, min(first + 4, len(TRIALS)))))


def test_trials_cover_every_crash_point():
    from carlib.faults import CRASH_POINTS

    kinds = {how for how, _, _ in TRIALS}
    assert len(TRIALS) >= 20 and kinds == {*CRASH_POINTS, "watch"}
    assert {how for how, _, _ in TRIALS[:DEFAULT_TRIALS]} == kinds


@pytest.mark.faults
def test_two_processes_writing_one_output_agree(setup):
    tmp, weights, env, table, full_journal = setup
    work = tmp / "two"
    work.mkdir()
    out = work / "steps.csv"
    procs = [_spawn(_argv(weights, out), env) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert out.read_bytes() == table
    assert (work / "steps.csv.journal.jsonl").read_bytes() == full_journal
    assert sorted(p.name for p in work.iterdir()) == ["steps.csv", "steps.csv.journal.jsonl"]


HOSTILE = [
    (["car", "--layer", "conv1", "--out", "{work}/d.csv"], "is a folder"),
    (["car", "--layer", "conv1", "--out", "/proc/x.csv"], "cannot write /proc/x.csv"),
    (["car", "--layer", "conv1", "--out", "{work}/a.csv", "--device", "mps"], "not supported"),
    (["car", "--layer", "conv1", "--out", "{work}/a.csv", "--batch-size", "0"], "batch-size"),
    (["prune", "--layer", "conv1", "--n-remove", "2", "--out", "{work}/a.csv", "--save-model",
      "{work}"], "is a folder"),
    (["prune", "--layer", LAYER, "--n-remove", "2", "--out", "{work}/a.csv", "--weights", "{w}",
      "--journal", "{work}/bad.jsonl"], "line 2"),
]


@pytest.mark.faults
@pytest.mark.parametrize("argv,needle", HOSTILE)
def test_hostile_command_lines_fail_with_one_line(setup, argv, needle):
    tmp, weights, env, table, full_journal = setup
    work = tmp / f"hostile{HOSTILE.index((argv, needle))}"
    work.mkdir()
    (work / "d.csv").mkdir()
    (work / "bad.jsonl").write_text(full_journal.decode().splitlines()[0] + "\n[1]\n")
    before = sorted(p.name for p in work.iterdir())
    proc = _spawn([a.format(work=work, w=weights) for a in argv], env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in work.iterdir()) == before
