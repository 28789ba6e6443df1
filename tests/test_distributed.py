"""Several processes (``gloo``, 2 ranks on the CPU) give the bytes one process gives: CAR
tables (overall and per class), greedy order and journal, and a greedy run with one rank
killed (SIGKILL) resumes to the same table.

The ranks are started as a launcher starts them (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT`` in the environment), once with ``torchrun`` itself; every subprocess has a
timeout and the process group a short one, so a dead rank never leaves the test waiting.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from carlib import car_index, greedy_prune
from carlib.compare import paired_correct
from carlib.distributed import active, from_writer, is_writer, shard, shard_bounds, world_size
from carlib.errors import CarlibError
from carlib.tables import write_table

from conftest import SmallBNNet, mini_cli_world, run_cli

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TIMEOUT = 300  # seconds for any group of ranks; a hang fails the test instead of blocking it


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(extra: dict | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}",
           "CARLIB_DIST_TIMEOUT": "180"}
    for k in ("CARLIB_CRASH_AT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return {**env, **(extra or {})}


def _ranks(cmd: list[str], n: int = 2, env: dict | None = None,
           per_rank: dict[int, dict] | None = None) -> list[subprocess.CompletedProcess]:
    """Run ``cmd`` as ranks 0..n-1 of one process group; (returncode, stdout, stderr) each."""
    port = _port()
    procs = []
    for r in range(n):
        e = _env({**(env or {}), **(per_rank or {}).get(r, {})})
        e.update(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n),
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    out = []
    try:
        for p in procs:
            o, err = p.communicate(timeout=TIMEOUT)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, o, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


# ---------------------------------------------------------------------------- one process
def test_shards_are_blocks_of_whole_batches_covering_every_image_once():
    for n in (1, 2, 7, 24, 95):
        for batch in (1, 4, 16, 256):
            batches = [(i, min(n, i + batch)) for i in range(0, n, batch)]
            for w in range(1, 10):
                bounds = [shard_bounds(n, r, w, batch) for r in range(w)]
                assert bounds[0][0] == 0 and bounds[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
                # each rank's images are whole batches of one process, as evenly as they go
                mine = [[b for b in batches if a <= b[0] < z] for a, z in bounds]
                assert all(not m or (m[0][0], m[-1][1]) == bz for m, bz in zip(mine, bounds))
                assert max(map(len, mine)) - min(map(len, mine)) <= 1


def test_without_a_process_group_everything_is_one_process():
    x, y = torch.zeros(3, 3, 4, 4), torch.arange(3)
    assert not active() and world_size() == 1 and is_writer()
    assert shard((x, y), 3) == (x, y)
    assert from_writer(lambda: [1, 2]) == [1, 2]
    with pytest.raises(CarlibError, match="bad"):
        from_writer(lambda: (_ for _ in ()).throw(CarlibError("bad")))


# ---------------------------------------------------------------------------- Python API
#: (file, call): what the single process and every rank compute (95 images: 6 batches of 16,
#: 48 and 47 images per rank; car-1: one image, so rank 1 has none; car-masked: 20 images in
#: 5 batches of 4, the masked path)
CALLS = [
    ("car-1.csv", "car_index(model, 'features.0', (x[:1], y[:1]), progress=False)"),
    ("car.csv", "car_index(model, 'features.7', (x, y), batch_size=16, progress=False)"),
    ("car-class.csv", "car_index(model, 'features.7', (x, y), per_class=True, batch_size=16, "
                      "progress=False)"),
    ("car-masked.csv", "car_index(model, 'features.7', (x[:20], y[:20]), per_class=True, "
                       "method='masked', batch_size=4, progress=False)"),
    ("steps.csv", "greedy_prune(model, 'features.7', (x, y), n_remove=3, batch_size=16, "
                  "journal=tmp / 'j.jsonl', progress=False)"),
    ("paired.csv", "paired_correct(model, 'features.7', (x, y), {'a': [0, 1, 2], 'b': [5, 6, 7]}, 3, "
                   "batch_size=16)"),
    ("paired-1.csv", "paired_correct(model, 'features.7', (x[:1], y[:1]), {'a': [0, 1]}, 2)"),
]
WORKER = """
import sys, torch, torch.distributed as dist
from datetime import timedelta
from pathlib import Path
from carlib import car_index, greedy_prune
from carlib.compare import paired_correct
from carlib.tables import write_table
from conftest import SmallBNNet
tmp = Path(sys.argv[1])
dist.init_process_group("gloo", timeout=timedelta(seconds=180))
model = SmallBNNet()
model.load_state_dict(torch.load(tmp / "w.pt", weights_only=True))
x, y = torch.load(tmp / "data.pt", weights_only=True)
out = tmp / f"dist{dist.get_rank()}"
out.mkdir()
""" + "\n".join(f"write_table({call}, out / '{name}')" for name, call in CALLS) + """
dist.destroy_process_group()
"""


def test_api_under_a_process_group_gives_one_process_bytes(bn_net, tmp_path):
    model, x, y = bn_net
    x, y = x[:95], y[:95]
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save((x, y), tmp_path / "data.pt")
    one = tmp_path / "one"
    one.mkdir()
    for name, call in CALLS:
        write_table(eval(call, {"car_index": car_index, "greedy_prune": greedy_prune,
                                "paired_correct": paired_correct, "model": model, "x": x, "y": y, "tmp": one}), one / name)
    steps = (one / "steps.csv").read_text().splitlines()[1:]
    assert [int(s.split(",")[1]) for s in steps] != sorted(int(s.split(",")[1]) for s in steps)

    runs = _ranks([sys.executable, "-c", WORKER, str(tmp_path)])
    for r in runs:
        assert r.returncode == 0, r.stderr
    for rank in (0, 1):  # every rank returns the single-process tables
        for name, _ in CALLS:
            assert (tmp_path / f"dist{rank}" / name).read_bytes() == (one / name).read_bytes(), name
    # rank 0 alone wrote the journal, the bytes one process writes
    assert (tmp_path / "j.jsonl").read_bytes() == (one / "j.jsonl").read_bytes()


# ---------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    """A miniature Tiny ImageNet, a network whose filters matter, one process's results."""
    tmp = tmp_path_factory.mktemp("dist")
    weights, env = mini_cli_world(tmp)
    one = tmp / "one"
    one.mkdir()
    run_cli(env, _car(weights, one / "car.csv"), _prune(weights, one / "steps.csv"))
    return tmp, weights, env, one


def _car(weights: Path, out: Path) -> list[str]:  # 21 images, 6 batches: 12 and 9 per rank
    return ["car", "--weights", str(weights), "--layer", "conv5", "--per-class",
            "--per-class-images", "7", "--batch-size", "4", "--out", str(out), "--quiet"]


def _prune(weights: Path, out: Path) -> list[str]:  # 24 images, 5 batches: 10 and 15 per rank
    return ["prune", "--weights", str(weights), "--layer", "conv5", "--n-remove", "4",
            "--batch-size", "5", "--out", str(out), "--quiet"]


def test_car_on_two_ranks_writes_one_process_bytes(cli_setup):
    tmp, weights, env, one = cli_setup
    work = tmp / "car"
    work.mkdir()
    runs = _ranks([sys.executable, "-m", "carlib", *_car(weights, work / "car.csv")], env=env)
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert (work / "car.csv").read_bytes() == (one / "car.csv").read_bytes()
    assert "rows written to" in runs[0].stdout and runs[1].stdout == ""  # rank 0 reports
    assert sorted(p.name for p in work.iterdir()) == ["car.csv"]  # no stray file


@pytest.mark.faults  # a fault trial (about half a minute): make test-faults
def test_a_killed_rank_stops_the_run_and_torchrun_resumes_it(cli_setup):
    tmp, weights, env, one = cli_setup
    work = tmp / "killed"
    work.mkdir()
    out, journal = work / "steps.csv", work / "steps.csv.journal.jsonl"
    full = (one / "steps.csv.journal.jsonl").read_bytes()
    # rank 1 SIGKILLs itself after computing step 2; rank 0 fails with one line, no hang
    first = _ranks([sys.executable, "-m", "carlib", *_prune(weights, out)], env=env,
                   per_rank={1: {"CARLIB_CRASH_AT": "greedy-step:2"}})
    assert first[1].returncode == -signal.SIGKILL
    assert first[0].returncode == 1, first[0].stderr
    assert first[0].stderr.count("\n") == 1 and "another process of this run failed" in first[0].stderr
    assert not out.exists()
    done = journal.read_bytes()
    assert full.startswith(done) and len(done.splitlines()) - 1 in (1, 2)  # steps journaled
    # torchrun itself starts the second run, which resumes from rank 0's journal
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_port()), "-m", "carlib",
           *_prune(weights, out)]
    r = subprocess.run(cmd, env=_env(env), cwd=ROOT, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (one / "steps.csv").read_bytes()
    assert journal.read_bytes() == full
    assert sorted(p.name for p in work.iterdir()) == ["steps.csv", "steps.csv.journal.jsonl"]


def test_bad_input_fails_with_one_line_on_every_rank(cli_setup):
    tmp, weights, env, one = cli_setup
    argv = _prune(weights, tmp / "bad.csv")
    argv[argv.index("conv5")] = "conv9"
    runs = _ranks([sys.executable, "-m", "carlib", *argv], env=env)
    for r in runs:
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "conv9" in r.stderr, r.stderr
