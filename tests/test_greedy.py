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


def test_progress_counts_pairs_and_a_resumed_run_starts_at_its_journal(bn_net, tmp_path, monkeypatch):
    import tqdm.auto

    model, x, y = bn_net
    bars = []

    class Recorder(tqdm.auto.tqdm):
        def close(self):  # tqdm closes a bar more than once
            if not self.disable and (self.total, self.n, self.postfix) not in bars:
                bars.append((self.total, self.n, self.postfix))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    journal = tmp_path / "run.journal.jsonl"
    n = len(y)
    greedy_prune(model, "conv2", (x, y), n_remove=2, journal=journal, progress=True)
    greedy_prune(model, "conv2", (x, y), n_remove=4, journal=journal, progress=True)
    # conv2 has 12 filters: steps of 12, 11, 10 and 9 candidates, each on every image
    assert bars == [((12 + 11) * n, (12 + 11) * n, "step 2/2"), ((12 + 11 + 10 + 9) * n, 42 * n, "step 4/4")]


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


def test_greedy_on_a_model_in_train_mode_equals_eval_mode(bn_net):
    model, x, y = bn_net
    expected = greedy_prune(model, "conv1", (x, y), n_remove=3, progress=False)
    model.train()
    model.features[5].eval()
    modes = {name: m.training for name, m in model.named_modules()}
    for _ in range(2):
        got = greedy_prune(model, "conv1", (x, y), n_remove=3, progress=False)
        pd.testing.assert_frame_equal(got, expected)
        assert got.attrs["base_accuracy"] == expected.attrs["base_accuracy"]
    assert {name: m.training for name, m in model.named_modules()} == modes


@pytest.mark.parametrize("n", [True, False, "2", None])
def test_n_remove_must_be_an_integer(bn_net, n):
    model, x, y = bn_net
    with pytest.raises(CarlibError, match="n_remove"):
        greedy_prune(model, "conv2", (x, y), n_remove=n, progress=False)


@pytest.fixture(scope="module")
def _journal_text(_bn_net, tmp_path_factory):
    """The journal of a 3-step greedy run on conv2 (computed once for the module)."""
    model, x, y = _bn_net
    journal = tmp_path_factory.mktemp("journal") / "j.jsonl"
    greedy_prune(model, "conv2", (x, y), n_remove=3, progress=False, journal=journal)
    return journal.read_bytes()


@pytest.fixture
def good_journal(_journal_text, tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(_journal_text)
    return journal


def _edit_step(lines, i, **change):
    row = json.loads(lines[i])
    for k, v in change.items():
        if v is ...:
            row.pop(k)
        else:
            row[k] = v
    lines[i] = json.dumps(row)
    return lines


BAD_JOURNALS = {
    "filter-out-of-range": (lambda ls: _edit_step(ls, 2, filter=99), 3),
    "negative-filter": (lambda ls: _edit_step(ls, 2, filter=-1), 3),
    "filter-twice": (lambda ls: _edit_step(ls, 2, filter=json.loads(ls[1])["filter"]), 3),
    "missing-field": (lambda ls: _edit_step(ls, 2, car=...), 3),
    "string-filter": (lambda ls: _edit_step(ls, 1, filter="3"), 2),
    "bool-filter": (lambda ls: _edit_step(ls, 1, filter=True), 2),
    "nan-accuracy": (lambda ls: _edit_step(ls, 1, accuracy=float("nan")), 2),
    "accuracy-above-one": (lambda ls: _edit_step(ls, 3, accuracy=1.5), 4),
    "wrong-remaining": (lambda ls: _edit_step(ls, 2, remaining=3), 3),
    "step-skipped": (lambda ls: _edit_step(ls, 2, step=5), 3),
    "garbage-in-the-middle": (lambda ls: ls[:2] + ["{not json"] + ls[2:], 3),
    "list-as-step": (lambda ls: ls[:2] + ["[1, 2]"] + ls[3:], 3),
    "list-as-header": (lambda ls: ["[" + ls[0] + "]"] + ls[1:], 1),
    "number-as-header": (lambda ls: ["17"] + ls[1:], 1),
}


@pytest.mark.parametrize("case", list(BAD_JOURNALS))
def test_a_bad_journal_is_refused_naming_file_and_line(bn_net, good_journal, case):
    model, x, y = bn_net
    journal = good_journal
    edit, line = BAD_JOURNALS[case]
    journal.write_text("\n".join(edit(journal.read_text().splitlines())) + "\n")
    with pytest.raises(CarlibError) as err:
        greedy_prune(model, "conv2", (x, y), n_remove=5, progress=False, journal=journal)
    msg = str(err.value)
    assert f"{journal} line {line}" in msg and "\n" not in msg


def test_a_journal_with_non_utf8_bytes_is_refused(bn_net, good_journal):
    model, x, y = bn_net
    journal = good_journal
    journal.write_bytes(journal.read_bytes()[:-20] + b"\xff\xfe\x80" + b"\n")
    with pytest.raises(CarlibError, match=f"{journal} line 4") as err:
        greedy_prune(model, "conv2", (x, y), n_remove=5, progress=False, journal=journal)
    assert "UTF-8" in str(err.value)


def test_a_torn_last_line_is_redone_but_a_torn_middle_line_is_not(bn_net, good_journal):
    model, x, y = bn_net
    full = greedy_prune(model, "conv2", (x, y), n_remove=4, progress=False)
    journal = good_journal
    text = journal.read_text()
    journal.write_text(text + text.splitlines()[3][:12])  # no newline: a torn final write
    pd.testing.assert_frame_equal(
        greedy_prune(model, "conv2", (x, y), n_remove=4, progress=False, journal=journal), full)
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:2] + [lines[2][:10]] + lines[3:]) + "\n")
    with pytest.raises(CarlibError, match="line 3"):
        greedy_prune(model, "conv2", (x, y), n_remove=4, progress=False, journal=journal)
