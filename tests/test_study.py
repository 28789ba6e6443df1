"""carlib.analysis.study: the notebooks' cached tables are computed once and reused."""

from __future__ import annotations

import pandas as pd

import carlib.analysis.study as E
from carlib.analysis.labels import filter_labels
from conftest import requires_imagenet_sample, requires_tiny


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
    # greedy on 1 image per class of 20 classes, the other image of each class held out
    study = E.Study("smoke", progress=False, per_class=2, max_classes=20)
    held = study.heldout_data()
    assert held is not None and len(held) == len(study.greedy_data) == 20
    assert np.array_equal(np.sort(held.labels), np.arange(20))
    # disjoint from the greedy images: no held-out image equals a greedy image
    g = study.greedy_data.images.reshape(len(study.greedy_data), -1)
    h = held.images.reshape(len(held), -1)
    assert not any((g == row).all(axis=1).any() for row in h)

    table = study.heldout_accuracy("conv1")
    assert set(table["method"]) == {"none", "car-greedy", "car-oneshot", "l1", "random"}
    assert (table["n_images"] == 20).all()
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


@requires_tiny
def test_color_index_reads_weights_only_for_large_first_layer_kernels(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path)
    study = E.Study("smoke", progress=False, class_step=4)  # classes 0, 4, ..., 36 of 40
    assert sorted(set(study.data.labels)) == list(range(0, 40, 4)) and len(study.data) == 10
    assert "10 of its 200 classes" in study.describe()
    c1, c2 = study.color_index("conv1"), study.color_index("conv2")  # 11x11 on RGB; 5x5
    assert (c1.attrs["source"], c2.attrs["source"]) == ("weights", "responses")
    pd.testing.assert_frame_equal(c1, study.color_weights("conv1"))
    pd.testing.assert_frame_equal(c2, study.color_responses("conv2")[["filter", "color_index"]])
    # three-class labels: cached, and the same as computing them directly on the layer's path
    lab = study.labels("conv2")
    assert study.seconds("labels_conv2") is not None and lab.attrs["source"] == "responses"
    direct = filter_labels(study.model, study.profile.layer_path("conv2"), study.data)
    pd.testing.assert_frame_equal(lab, direct, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(E.Study("smoke", progress=False, class_step=4).labels("conv2"), lab)
    assert study.labels("conv1").attrs["source"] == "weights"


@requires_tiny
def test_sharded_car_equals_one_pass_and_resumes(tmp_path, monkeypatch):
    """A profile with ``shard_images`` counts in cached shards; the sums give the one-pass
    table exactly, and a lost shard is recomputed alone."""
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / "one-pass")
    one = E.Study("smoke", progress=False).car_per_class("conv1")
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path / name)
    sharded = E.Study("smoke", progress=False, shard_images=15)
    got = sharded.car_per_class("conv1")
    pd.testing.assert_frame_equal(got, one)
    parts = sorted((tmp_path / "smoke" / "parts").glob("car_counts_conv1_*.csv"))
    assert [p.name for p in parts] == [f"car_counts_conv1_{i:06d}.csv" for i in (0, 15, 30)]
    (tmp_path / "smoke" / "car_per_class_conv1.csv").unlink()
    parts[1].unlink()
    calls = []
    again = E.Study("smoke", progress=False, shard_images=15)
    orig = again._car_counts
    monkeypatch.setattr(again, "_car_counts", lambda *a: calls.append(a[1][0]) or orig(*a))
    pd.testing.assert_frame_equal(again.car_per_class("conv1"), one)
    assert calls == [15]


@requires_imagenet_sample
def test_paper_pipeline_on_real_photos(tmp_path, monkeypatch):
    """The ``paper`` profile's code path end to end on real ImageNet photos: torchvision's
    AlexNet loaded from a hub cache (random weights, its last bias set so that most images are
    barely right and pruning changes answers), 224-px JPEGs, 1,000 classes; the tables agree
    with the naive reference and with each other."""
    import os

    import numpy as np
    import torch
    from torchvision.models import AlexNet_Weights, alexnet

    from carlib.data import as_batches, load_dataset
    from carlib.paths import data_search_dirs
    from carlib.reference import car_index_naive

    sources = os.pathsep.join(str(d) for d in data_search_dirs())  # the sample, before moving home
    monkeypatch.setenv("CARLIB_DATA_DIR", sources)
    monkeypatch.setenv("CARLIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    sizes = dict(dataset="imagenet-sample", per_class=1, greedy_per_class=1, max_classes=5,
                 greedy_steps={"conv1": 1, "conv2": 1}, random_seeds=(0,),
                 curve_depth={"conv1": 2, "conv2": 2}, top_k_filters=2)
    data = load_dataset("imagenet-sample", "val", per_class=1, progress=False)
    data = data.subset(np.flatnonzero(np.asarray(data.labels) < sizes["max_classes"]))
    x, y = next(as_batches(data, len(data)))
    torch.manual_seed(0)
    net = alexnet().eval()
    with torch.no_grad():  # the rows of the images' classes: each image's class just ahead
        last = net.classifier[-1]
        h = net.classifier[:-1](torch.flatten(net.avgpool(net.features(x)), 1)).double()
        others = torch.ones(1000, dtype=torch.bool)
        others[y] = False
        top = (h @ last.weight.double().T + last.bias.double())[:, others].max(dim=1).values
        margin = 0.02 * float(top.std() + 1)
        target = top.unsqueeze(1) - 1 + (1 + margin) * torch.eye(len(y), dtype=torch.float64)
        last.bias[y] = 0
        last.weight[y] = (torch.linalg.pinv(h) @ target).T.float()
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(net.state_dict(), hub / AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1])

    study = E.Study("paper", device="cpu", progress=False, **sizes)
    assert "`features.0` (64 filters, 11x11)" in study.describe() and len(study.data) == len(y) >= 3
    assert study.dir == tmp_path / "home" / "results" / "paper"
    acc = study.accuracy_per_class()
    assert acc["n"].sum() == len(y) and 0.5 <= (acc["top1"] * acc["n"]).sum() / len(y) <= 1
    car = study.car_per_class("conv1")
    some = list(range(0, 64, 9))  # the naive loop costs a whole AlexNet pass per filter
    ref = car_index_naive(study.model, "conv1", data, per_class=True, filters=some)
    pd.testing.assert_frame_equal(car[car["filter"].isin(some)].reset_index(drop=True),
                                  ref.reset_index(drop=True), check_dtype=False)
    assert (study.car("conv1")["car"] != 0).any()  # pruning changes answers on real photos
    greedy = study.greedy("conv1")
    assert len(greedy) == 1 and (study.dir / "greedy_conv1.journal.jsonl").is_file()
    curves = study.curves("conv1")
    base = study.car("conv1").attrs["base_accuracy"]
    assert np.allclose(curves.loc[curves["n_pruned"] == 0, "accuracy"], base)
    assert study.pruned_top("conv1")[:1] == greedy["filter"].tolist()
    r = study.color_responses("conv1")
    assert len(r) == 64 and np.isfinite(r["color_index"]).all()


@requires_tiny
def test_test_data_is_loaded_once_per_study(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "results_dir", lambda name: tmp_path)
    study = E.Study("smoke", progress=False)
    first = study.test_data()
    assert study.test_data() is first and len(first) == 40  # smoke: 1 per class of its 40, after the CAR image
    assert E.Study("smoke", progress=False).test_data() is not first
