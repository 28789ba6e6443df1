"""carlib.greedy: the paper's loop against brute force, journaling and resuming."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from carlib import greedy_prune, greedy_prune_naive
from carlib.errors import CarlibError


def test_greedy_equals_brute_force(bn_net):
    model, x, y = bn_net
    fast = greedy_prune(model, "conv2", (x, y), n_remove=6, progress=False)
    naive = greedy_prune_naive(model, "conv2", (x, y), n_remove=6)
    pd.testing.assert_frame_equal(fast[["step", "filter", "car", "accuracy"]], naive)
    assert list(fast["remaining"]) == list(range(11, 5, -1))
    assert fast.attrs["base_accuracy"] == pytest.approx(naive["accuracy"].iloc[0] + naive["car"].iloc[0])


def test_greedy_masked_path_equals_fast(bn_net):
    model, x, y = bn_net
    a = greedy_prune(model, "conv1", (x, y), n_remove=4, progress=False, method="fast")
    b = greedy_prune(model, "conv1", (x, y), n_remove=4, progress=False, method="masked")
    pd.testing.assert_frame_equal(a, b)


def test_ties_go_to_lower_index(bn_net):
    from carlib import car_index_naive

    model, x, y = bn_net
    data = (x[:6], y[:6])  # few images: many filters tie
    steps = greedy_prune(model, "conv2", data, n_remove=3, progress=False)
    removed = []
    for _, row in steps.iterrows():
        df = car_index_naive(model, "conv2", data, pruned=removed,
                             filters=[k for k in range(12) if k not in removed])
        tied = df[df["car"] == df["car"].min()]["filter"]
        assert len(tied) > 1 or len(removed) > 0  # the data does produce ties
        assert row["filter"] == tied.min()
        removed.append(int(row["filter"]))


def test_resume_after_interruption(bn_net, tmp_path):
    model, x, y = bn_net
    full = greedy_prune(model, "conv2", (x, y), n_remove=5, progress=False)
    journal = tmp_path / "run.journal.jsonl"

    class Stop(Exception):
        pass

    def stop_at_3(row):
        if row["step"] == 3:
            raise Stop

    with pytest.raises(Stop):
        greedy_prune(model, "conv2", (x, y), n_remove=5, progress=False, journal=journal,
                     callback=stop_at_3)
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 3 and json.loads(lines[0])["kind"] == "carlib-greedy-journal"
    # a step half-written when the process died is redone
    with open(journal, "a") as f:
        f.write('{"step": 4, "fil')
    seen = []
    resumed = greedy_prune(model, "conv2", (x, y), n_remove=5, progress=False, journal=journal,
                           callback=seen.append)
    assert [r["step"] for r in seen] == [4, 5]
    pd.testing.assert_frame_equal(resumed, full)
    assert resumed.attrs["base_accuracy"] == full.attrs["base_accuracy"]


def test_journal_of_another_run_is_refused(bn_net, tmp_path):
    model, x, y = bn_net
    journal = tmp_path / "j.jsonl"
    greedy_prune(model, "conv2", (x, y), n_remove=1, progress=False, journal=journal)
    with pytest.raises(CarlibError, match="belongs to another run"):
        greedy_prune(model, "conv1", (x, y), n_remove=1, progress=False, journal=journal)


@pytest.mark.parametrize("n", [-1, 12, 2.5])
def test_bad_n_remove(bn_net, n):
    model, x, y = bn_net
    with pytest.raises(CarlibError, match="n_remove"):
        greedy_prune(model, "conv2", (x, y), n_remove=n, progress=False)
