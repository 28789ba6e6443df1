"""carlib.analysis.heldout and precompute: orders chosen on the selection half, compared on the
test half, on a miniature of the ``full`` profile (smoke data, 2 images per class)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import carlib.analysis.study as E
from carlib import car_index, greedy_prune
from carlib.analysis import heldout
from carlib.analysis.cached_study import CachedStudy
from carlib.analysis.precompute import STEPS, precompute, status, step_kind
from carlib.baselines import car_order
from carlib.errors import CarlibError
from carlib.reference import accuracy_counts_naive

from conftest import requires_tiny

MINI = dict(per_class=2, greedy_per_class=1, max_classes=8, held_out_orders=True, shard_images=15,
            greedy_steps={"conv1": 2, "conv2": 1}, curve_depth={"conv1": 3, "conv2": 2}, random_seeds=(0,),
            top_k_filters=3)


@requires_tiny
def test_halves_orders_curves_and_paired_tests(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    study = E.Study("smoke", progress=False, **MINI)
    halves = study.halves()
    sel, test = halves["selection"], halves["test"]
    assert len(sel) == len(test) == 8 and not set(sel) & set(test)
    held = study.heldout_data()
    assert np.array_equal(held.labels, study.data.labels[test])
    assert np.array_equal(study.greedy_data.labels, study.data.labels[sel])
    # the halves' shards sum to the one-pass table of all images
    one_pass = car_index(study.model, "conv1", study.data, per_class=True, progress=False)
    pd.testing.assert_frame_equal(study.car_per_class("conv1"), one_pass, check_dtype=False)
    # the one-shot order comes from the selection half alone
    sel_car = car_index(study.model, "conv1", study.greedy_data, progress=False)
    assert heldout.selection_orders(study, "conv1").query("criterion == 'car-oneshot'")["filter"].tolist() \
        == car_order(sel_car)
    orders = heldout.selection_orders(study, "conv1")
    assert set(orders["criterion"]) == {"car-greedy", "car-oneshot", "l1", "l2", "mean_activation",
                                        "apoz", "taylor", "random-0"}
    # the test curves: the naive reference on the held-out images, point by point
    curves = heldout.test_curves(study, "conv1")
    for name in ("taylor", "car-greedy"):
        c = curves[curves["criterion"] == name]
        order = orders[orders["criterion"] == name].sort_values("rank")["filter"].tolist()
        for k, row in c.set_index("n_pruned").iterrows():
            correct, counts = accuracy_counts_naive(study.model, "conv1", held, order[:k])
            assert row["correct"] == int(correct.sum()) and row["n_images"] == int(counts.sum()) == 8
            assert row["low"] <= row["accuracy"] <= row["high"]
    assert curves.groupby("criterion")["n_pruned"].max().to_dict()["car-greedy"] == 2
    # paired tests: the discordant counts give the accuracy difference
    paired = heldout.paired_tests(study, "conv1")
    assert set(paired["reference"]) == {"car-oneshot"}  # greedy stops at 2 < depth 3
    for _, r in paired.iterrows():
        assert r["accuracy_reference"] - r["accuracy_other"] == pytest.approx((r["b"] - r["c"]) / 8)
        assert 0 < r["p_value"] <= 1
    rel = heldout.car_split_half(study, "conv1")
    assert rel["n_images"] == (8, 8) and -1 <= rel["rho"] <= 1
    # replicates: disjoint parts of the selection half, each the greedy loop on its images
    reps = heldout.replicate_greedy(study, "conv1", parts=2, depth=2)
    assert sorted(reps.groupby("replicate")["n_images"].first()) == [4, 4]
    first = reps[reps["replicate"] == 0]["filter"].tolist()
    part = study.greedy_data.subset(heldout.stratified_split(study.greedy_data.labels, 2, seed=0)[0])
    assert first == greedy_prune(study.model, "conv1", part, n_remove=2, progress=False)["filter"].tolist()
    # the profile's replicates (smoke: 2 parts, 3 deep), as one order per replicate
    orders = heldout.replicate_orders(study, "conv1")
    assert len(orders) == 2 and all(len(o) == 3 for o in orders) and orders[0][:2] == first
    with pytest.raises(CarlibError, match="has no replicates"):
        heldout.replicate_greedy(E.Study("smoke", progress=False, **{**MINI, "replicates": None}), "conv1")
    assert rel["halves"] == "selection/test"
    # a profile without halves: the reliability from two halves of the classes
    flat = E.Study("smoke", progress=False, **{**MINI, "held_out_orders": False})
    rel = heldout.car_split_half(flat, "conv1")
    assert rel["halves"] == "classes" and rel["n_images"] == (8, 8) and rel["k"] == 3
    assert -1 <= rel["rho"] <= 1 and 0 <= rel["shared_lowest"] <= 3


@requires_tiny
def test_test_curves_show_progress_by_order(tmp_path, monkeypatch, capsys):
    """The curves count orders on a progress bar (the long step of ``full``); silenced with progress."""
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    study = E.Study("smoke", progress=True, **{**MINI, "curve_depth": {"conv1": 1}})
    heldout.selection_orders(study, "conv1")
    capsys.readouterr()
    heldout.test_curves(study, "conv1")
    err = capsys.readouterr().err
    assert "test curves conv1" in err and "8/8" in err
    quiet = E.Study("smoke", progress=False, **{**MINI, "curve_depth": {"conv1": 1}})
    heldout.test_curves(quiet, "conv1")  # read back from the cache, without a bar
    assert "test curves" not in capsys.readouterr().err


@requires_tiny
def test_orders_compared_on_the_classes_the_profile_leaves_out(tmp_path, monkeypatch):
    """``test_other_classes``: chosen on the profile's classes, compared on the others' images;
    the curves with points read their last point from the per-image table the paired tests use."""
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    study = E.Study("smoke", progress=False, **{**MINI, "held_out_orders": False, "test_other_classes": True,
                                                 "test_per_class": 1, "curve_points": 1})
    test = study.test_data()
    kept = set(np.asarray(study.data.labels).tolist())
    assert kept == set(range(8)) and len(test) == 200 - 8 and not kept & set(np.asarray(test.labels).tolist())
    assert heldout.comparison_images(study) == "the other classes, 1 per class"
    curves = heldout.test_curves(study, "conv1")
    ok = heldout.test_correct(study, "conv1")
    orders = heldout.order_lists(study, "conv1")
    assert list(ok.columns[2:]) == [k for k, o in orders.items() if len(o) >= 3] and len(ok) == len(test)
    for name in ("l1", "car-oneshot"):
        c = curves[curves["criterion"] == name].set_index("n_pruned")
        assert list(c.index) == [0, 3]
        naive, _ = accuracy_counts_naive(study.model, "conv1", test, orders[name][:3])
        assert c.loc[3, "correct"] == int(naive.sum()) == int(ok[name].sum())
    paired = heldout.paired_tests(study, "conv1")
    assert (paired["n_images"] == len(test)).all()


@requires_tiny
def test_precompute_runs_every_step_once(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    from carlib.analysis import profiles

    monkeypatch.setitem(profiles.PROFILES, "mini", profiles.get_profile("smoke").with_(name="mini", retrain=None, **MINI))
    before = status("mini", ("conv1",))
    assert (before["state"] == "to compute").all() and before["first_missing"].iloc[0] == "accuracy_per_class"
    assert not (tmp_path / "mini").exists() or not list((tmp_path / "mini").rglob("*.csv"))  # nothing written
    lines: list[str] = []
    precompute("mini", ("conv1",), progress=False, log=lines.append)
    after = status("mini", ("conv1",))
    assert (after["state"] == "cached").all() and list(after["step"]) == list(before["step"])
    assert after.attrs["journals"]["greedy_conv1.journal.jsonl"] == 2
    steps = [line.split("] ", 1)[1].rsplit(":", 1)[0] for line in lines]
    assert steps == ["accuracy per class", "CAR conv1 (selection)", "CAR conv1 (test)", "CAR conv1 (all)",
                     "color responses conv1", "labels conv1",
                     "greedy conv1", "curves conv1", "held-out accuracy conv1", "orders conv1",
                     "test curves conv1", "paired tests conv1", "replicates conv1"]
    assert (tmp_path / "mini" / "test_curves_conv1.csv").is_file()
    # the notebooks' tables are then read, none computed
    study = CachedStudy("mini", progress=False)  # a table not precomputed raises MissingTable
    study.accuracy_per_class(), study.car("conv1"), study.greedy("conv1"), study.labels("conv1")
    study.color_responses("conv1")
    study.curves("conv1"), study.heldout_accuracy("conv1")
    heldout.test_curves(study, "conv1"), heldout.paired_tests(study, "conv1")
    heldout.replicate_greedy(study, "conv1")
    # a step cut short: named with the table it would compute first
    for f in (tmp_path / "mini").glob("test_curves_conv1.*"):
        f.unlink()
    cut = status("mini", ("conv1",)).set_index("step")
    assert (cut.loc["test curves conv1", "state"], cut.loc["test curves conv1", "first_missing"]) == (
        "to compute", "test_curves_conv1")
    assert (cut.drop("test curves conv1")["state"] == "cached").all() and cut.attrs["parts"] > 8
    from carlib.files import file_lock

    with file_lock(tmp_path / "mini" / "test_curves_conv1.csv"):  # as while another process computes it
        assert status("mini", ("conv1",)).set_index("step").loc["test curves conv1", "state"] == "computing"
    # --steps: only the steps of those kinds run (every step has a kind, in the order of STEPS)
    kinds = [step_kind(s) for s in cut.index]
    assert kinds == sorted(kinds, key=STEPS.index) and set(kinds) == set(STEPS) - {"retraining", "deep compression"}
    lines.clear()
    precompute("mini", ("conv1",), progress=False, log=lines.append, steps=("test curves", "labels"))
    assert [line.split("] ", 1)[1].rsplit(":", 1)[0] for line in lines] == ["labels conv1", "test curves conv1"]
    assert (status("mini", ("conv1",))["state"] == "cached").all()
    with pytest.raises(CarlibError, match="unknown step 'curve'; choose among: accuracy per class, CAR"):
        precompute("mini", ("conv1",), progress=False, steps=("curve",))


def test_profiles_without_halves_refuse_them_and_keep_their_cache_keys():
    from carlib.analysis.profiles import get_profile

    assert "held_out_orders" not in get_profile("default").cache_key()
    assert get_profile("full").cache_key()["held_out_orders"] is True
    with pytest.raises(CarlibError, match="held_out_orders"):
        heldout._check(type("S", (), {"profile": get_profile("smoke").with_(test_per_class=0)})())


def test_precompute_command_line_refuses_a_bad_device_in_one_line(capsys):
    from carlib.analysis.precompute import main

    assert main(["--profile", "smoke", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("carlib: error: ") and err.count("\n") == 1 and "unknown device 'tpu'" in err
    assert main(["--profile", "smoke", "--steps", "greedy,replicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("carlib: error: unknown step 'replicate'; choose among: ") and err.count("\n") == 1


@requires_tiny
def test_curves_compute_the_orders_that_need_no_greedy_run_first(tmp_path, monkeypatch):
    # so that a second process (precompute --steps curves) computes them while one runs the greedy loop
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    study = E.Study("smoke", progress=False, **MINI)
    seen, greedy = [], study.greedy
    monkeypatch.setattr(study, "greedy", lambda layer: seen.append(
        sorted(p.name for p in (study.dir / "parts").glob(f"curve_{layer}_*.csv"))) or greedy(layer))
    curves = study.curves("conv1")
    assert seen[0] == ["curve_conv1_car-oneshot_-1.csv", "curve_conv1_l1_-1.csv", "curve_conv1_random_0.csv"]
    assert list(curves["method"].unique()) == ["car-greedy", "car-oneshot", "l1", "random"]  # the table's order
    assert (curves[curves["method"] == "car-greedy"]["filter"].iloc[1:].tolist()
            == greedy("conv1")["filter"].tolist())


@requires_tiny
def test_test_curves_compute_the_orders_that_need_no_greedy_run_first(tmp_path, monkeypatch):
    # so that a second process (precompute --steps "test curves") computes them beside the greedy
    # loop; at every depth (full's curves), where no order's last point is read from test_correct
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    study = E.Study("smoke", progress=False, **{**MINI, "curve_points": None})
    seen, greedy = [], study.greedy
    monkeypatch.setattr(study, "greedy", lambda layer: seen.append(
        sorted(p.name for p in (study.dir / "parts").glob(f"test_curve_{layer}_*.csv"))) or greedy(layer))
    curves = heldout.test_curves(study, "conv1")
    free = ["car-oneshot", *heldout.ORDER_CRITERIA, "random-0"]
    assert seen[0] == sorted(f"test_curve_conv1_{k}.csv" for k in free)
    assert list(curves["criterion"].unique()) == ["car-greedy", *free]  # the orders table's order
    orders = heldout.order_lists(study, "conv1")
    for k in free:
        assert curves[curves["criterion"] == k]["filter"].iloc[1:].tolist() == orders[k][:3]


@requires_tiny
def test_replicates_another_process_computes_are_taken_last(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    study = E.Study("smoke", progress=False, **MINI)
    monkeypatch.setattr(study.cache, "computing", lambda name: name == "parts/replicate_conv1_0_of_3")
    journals, prune = [], heldout.greedy_prune
    monkeypatch.setattr(heldout, "greedy_prune", lambda *a, **kw: journals.append(kw["journal"].name) or prune(*a, **kw))
    reps = heldout.replicate_greedy(study, "conv1", parts=3, depth=1)
    assert journals == [f"replicate_conv1_{i}_of_3.journal.jsonl" for i in (1, 2, 0)]
    assert reps["replicate"].tolist() == [0, 1, 2]  # the table in replicate order
