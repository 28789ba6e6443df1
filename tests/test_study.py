"""carlib.analysis.study: the notebooks' cached tables are computed once and reused."""

from __future__ import annotations

import pandas as pd

import carlib.analysis.study as E
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


@requires_tiny
def test_heldout_accuracy_matches_naive_on_unseen_images(tmp_path, monkeypatch):
    """The held-out check evaluates every order on the CAR images the greedy loop never saw,
    with the same numbers as masking the filters and running the whole network."""
    import numpy as np

    from carlib.reference import accuracy_counts_naive

    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path)
    study = E.Study("smoke", progress=False, per_class=2)  # greedy on 1 image per class
    held = study.heldout_data()
    assert held is not None and len(held) == len(study.greedy_data) == 40
    assert np.array_equal(np.sort(held.labels), np.arange(40))
    # disjoint from the greedy images: no held-out image equals a greedy image
    g = study.greedy_data.images.reshape(len(study.greedy_data), -1)
    h = held.images.reshape(len(held), -1)
    assert not any((g == row).all(axis=1).any() for row in h)

    table = study.heldout_accuracy("conv1")
    assert set(table["method"]) == {"none", "car-greedy", "car-oneshot", "l1", "random"}
    assert (table["n_images"] == 40).all()
    greedy = [int(f) for f in study.greedy("conv1")["filter"]]
    for _, row in table.iterrows():
        if row["method"] == "none":
            pruned = []
        elif row["method"] == "car-greedy":
            pruned = greedy[: row["n_pruned"]]
        else:
            continue
        correct, counts = accuracy_counts_naive(study.model, "conv1", held, pruned)
        assert row["accuracy"] == int(correct.sum()) / int(counts.sum())
    # depths: the greedy depth and half of conv1 (the profile's curve depth 8)
    assert sorted(set(table.loc[table["method"] == "l1", "n_pruned"])) == [3, 8]
    assert set(table.loc[table["method"] == "car-greedy", "n_pruned"]) == {3}
    assert table["accuracy"].between(0, 1).all()


@requires_tiny
def test_no_heldout_images_when_greedy_sees_all(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path)
    study = E.Study("smoke", progress=False)  # per_class == greedy_per_class == 1
    assert study.heldout_data() is None
    assert study.heldout_accuracy("conv1").empty
