"""carlib.analysis.retraining and the test images of notebook 06, on a miniature of the
``default`` profile (smoke data: 8 classes, 2 test images per class, 3 train images per class)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import carlib.analysis.study as E
from carlib import prune_filters
from carlib.analysis import heldout, retraining
from carlib.compression import compression_row
from carlib.data import load_dataset
from carlib.errors import CarlibError
from carlib.finetune import finetune, finetune_config
from carlib.importance import random_order
from carlib.reference import accuracy_counts_naive

from conftest import requires_tiny

MINI = dict(per_class=1, greedy_per_class=1, max_classes=8, test_per_class=2, curve_points=2,
            greedy_steps={"conv1": 2, "conv2": 1}, curve_depth={"conv1": 2, "conv2": 2}, random_seeds=(0,),
            top_k_filters=3,
            retrain={"layers": ["conv1"], "per_class": 3, "epochs": 1, "batch_size": 4, "seeds": [0, 1],
                     "sparsities": [0.5, 0.8], "bits": [4], "depth": 2})


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    return E.Study("smoke", progress=False, **MINI)


@requires_tiny
def test_test_images_follow_the_car_images_and_are_never_chosen_on(study):
    test = study.test_data()
    wider = load_dataset("tiny-imagenet", "val", per_class=3, progress=False)
    labels = np.asarray(wider.labels)
    expected = [i for c in range(8) for i in np.flatnonzero(labels == c)[1:3]]
    np.testing.assert_array_equal(test.images, wider.images[sorted(expected)])
    assert np.bincount(test.labels).tolist() == [2] * 8
    seen = {im.tobytes() for im in study.data.images} | {im.tobytes() for im in study.greedy_data.images}
    assert not seen & {im.tobytes() for im in test.images}
    # the curves at the profile's points: the naive reference on the test images
    curves = heldout.test_curves(study, "conv1")
    orders = heldout.selection_orders(study, "conv1")
    assert sorted(set(curves["n_pruned"])) == [0, 1, 2]
    taylor = orders[orders["criterion"] == "taylor"].sort_values("rank")["filter"].tolist()
    for _, row in curves[curves["criterion"] == "taylor"].iterrows():
        correct, counts = accuracy_counts_naive(study.model, "conv1", test, taylor[: row["n_pruned"]])
        assert row["correct"] == int(correct.sum()) and row["n_images"] == int(counts.sum()) == 16
    # before retraining: read from the paired tests at the same depth, best first
    before = retraining.before_retraining(study, "conv1")
    paired = heldout.paired_tests(study, "conv1")
    assert set(before["criterion"]) == set(paired["other"]) | set(paired["reference"])
    assert list(before["accuracy"]) == sorted(before["accuracy"], reverse=True)
    at = curves[curves["n_pruned"] == 2].set_index("criterion")["correct"]
    assert (before.set_index("criterion")["correct"] == at[before["criterion"]]).all()


@requires_tiny
def test_retraining_prunes_physically_fine_tunes_each_seed_and_resumes(study):
    crits = retraining.retrain_criteria(study, "conv1")
    before = retraining.before_retraining(study, "conv1")
    baselines = [c for c in before["criterion"] if c in heldout.ORDER_CRITERIA][:2]
    assert crits == ["car-greedy", "car-oneshot"] + baselines + ["random"]
    runs = retraining.retraining(study, "conv1")
    assert runs.attrs["train_images"] == 24 and runs.attrs["depth"] == 2 and runs.attrs["n_images"] == 16
    assert len(runs) == len(crits) * 2 * 16
    assert not list((study.dir / "parts" / "finetune").glob("*.ckpt.pt"))  # checkpoints removed
    # one run, redone by hand: the pruned network before, the fine-tuned one after
    test = study.test_data()
    order = random_order(64, 1)[:2]
    small = prune_filters(study.model, "conv1", order)
    correct, _ = accuracy_counts_naive(study.model, "conv1", test, order)
    mine = runs[(runs["criterion"] == "random") & (runs["seed"] == 1)]
    np.testing.assert_array_equal(mine["before"].to_numpy(), retraining.correct_on(small, test))
    assert int(mine["before"].sum()) == int(correct.sum())
    train = retraining.train_images(study)
    tuned, _ = finetune(small, train, None, finetune_config(1, seed=1, batch_size=4),
                        work_dir=study.dir / "by-hand", progress=False)
    np.testing.assert_array_equal(mine["after"].to_numpy(), retraining.correct_on(tuned, test))
    # the cached runs are read back
    again = retraining.retraining(study, "conv1")
    pd.testing.assert_frame_equal(again, runs)
    summary = retraining.retraining_summary(runs).set_index("criterion")
    assert (summary["seeds"] == 2).all() and (summary["n_images"] == 16).all()
    g = runs[runs["criterion"] == "car-greedy"]
    assert summary.loc["car-greedy", "after"] == pytest.approx(g["after"].mean())
    tests = retraining.retraining_tests(runs, "car-greedy", baselines[0])
    assert list(tests["reading"]) == ["before", "after"] * 2
    for r in tests.itertuples(index=False):
        assert r.b - r.c == round(16 * r.difference)


@requires_tiny
def test_deep_compression_counts_the_layer_and_reports_each_setting(study, monkeypatch):
    dc = retraining.deep_compression(study, "conv1")
    assert list(dc["stage"]) == ["unpruned", "filters", "deep", "deep"]
    assert dc["criterion"].eq("car-greedy").all()  # the greedy run reaches the depth
    assert dc.loc[0, "factor"] == 1.0 and (dc.loc[1:, "filters_kept"] == 62).all()
    greedy = study.greedy("conv1")["filter"].tolist()[:2]
    small = prune_filters(study.model, "conv1", greedy)
    assert dc.loc[1, "total_bits"] == compression_row(small, "conv1", original=(64, 3, 11, 11))["total_bits"]
    deep = dc[dc["stage"] == "deep"]
    assert deep["sparsity"].round(2).tolist() == [0.5, 0.8] and (deep["bits"] == 4).all()
    assert deep["factor"].is_monotonic_increasing and (deep["factor"] > dc.loc[1, "factor"]).all()
    assert ((dc["low"] <= dc["accuracy"]) & (dc["accuracy"] <= dc["high"])).all()
    assert (dc["n_images"] == 16).all()
    # each setting is cached on its own: with the grid's table gone, nothing is fine-tuned again
    assert len(list((study.dir / "parts").glob("deep_compression_conv1_*.csv"))) == 2
    for f in study.dir.glob("deep_compression_conv1.*"):
        f.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("a cached setting was computed again")

    monkeypatch.setattr(retraining, "deep_compress", refuse)
    again = retraining.deep_compression(study, "conv1")
    pd.testing.assert_frame_equal(again, dc)


@requires_tiny
def test_profiles_without_test_images_or_retraining_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    flat = E.Study("smoke", progress=False, **{**MINI, "test_per_class": 0, "retrain": None})
    assert flat.test_data() is None
    with pytest.raises(CarlibError, match="has no test images"):
        heldout.test_curves(flat, "conv1")
    with pytest.raises(CarlibError, match="has no retraining settings"):
        retraining.retraining(flat, "conv1")


@requires_tiny
def test_conv2_is_pruned_retrained_and_compressed_as_conv1(tmp_path, monkeypatch):
    # the full profile retrains and compresses conv2 too: its consumer (conv3) loses input channels
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    R = {**MINI["retrain"], "layers": ["conv2"], "seeds": [0], "sparsities": [0.5]}
    study = E.Study("smoke", progress=False, **{**MINI, "greedy_steps": {"conv1": 2, "conv2": 2}, "retrain": R})
    runs = retraining.retraining(study, "conv2")
    crits = retraining.retrain_criteria(study, "conv2")
    assert runs.attrs["depth"] == 2 and len(runs) == len(crits) * 16 and crits[:2] == ["car-greedy", "car-oneshot"]
    test = study.test_data()
    orders = heldout.order_lists(study, "conv2")
    for crit in ("car-greedy", "car-oneshot"):
        correct, _ = accuracy_counts_naive(study.model, "conv2", test, orders[crit][:2])
        mine = runs[runs["criterion"] == crit]
        np.testing.assert_array_equal(mine["before"].to_numpy(),
                                      retraining.correct_on(prune_filters(study.model, "conv2", orders[crit][:2]), test))
        assert int(mine["before"].sum()) == int(correct.sum())  # the naive masked network agrees
    dc = retraining.deep_compression(study, "conv2")
    assert list(dc["stage"]) == ["unpruned", "filters", "deep"] and dc["criterion"].eq("car-greedy").all()
    assert list(dc["shape"]) == ["192x64x5x5", "190x64x5x5", "190x64x5x5"]
    assert dc.loc[2, "sparsity"] == pytest.approx(0.5, abs=0.01) and dc.loc[2, "factor"] > dc.loc[1, "factor"] > 1


@requires_tiny
def test_processes_running_the_step_share_its_runs_and_settings(study, monkeypatch):
    # a run or setting another process is computing (its table's lock held) is taken last
    busy = {"parts/retrain_conv1_car-greedy_0", "parts/deep_compression_conv1_0.5_4b"}
    monkeypatch.setattr(study.cache, "computing", lambda name: name in busy)
    done, run = [], retraining._run

    def recording(study_, layer, criterion, order, seed, *args):
        done.append((criterion, seed))
        return run(study_, layer, criterion, order, seed, *args)

    monkeypatch.setattr(retraining, "_run", recording)
    runs = retraining.retraining(study, "conv1")
    crits = retraining.retrain_criteria(study, "conv1")
    assert done[0] == ("car-greedy", 1) and done[-1] == ("car-greedy", 0) and len(done) == 2 * len(crits)
    assert [(c, s) for c, s in runs[["criterion", "seed"]].drop_duplicates().itertuples(index=False)] \
        == [(c, s) for c in crits for s in (0, 1)]  # the table in its own order
    settings, compress = [], retraining.deep_compress
    monkeypatch.setattr(retraining, "deep_compress", lambda *a, **kw: settings.append(kw["sparsity"]) or compress(*a, **kw))
    dc = retraining.deep_compression(study, "conv1")
    assert settings == [0.8, 0.5] and dc[dc["stage"] == "deep"]["sparsity"].round(2).tolist() == [0.5, 0.8]
    assert not list((study.dir / "parts" / "deep_compression").rglob("*.ckpt.pt"))
