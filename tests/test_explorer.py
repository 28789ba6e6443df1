"""carlib.analysis.explorer and explorer_ui: the explorer's numbers are the study's tables and the
engine's (held to the naive reference); the widgets show them and survive bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from carlib.analysis.explorer import LayerExplorer, car_colors, png_bytes, subset_indices  # noqa: E402
from carlib.errors import CarlibError  # noqa: E402
from conftest import requires_tiny  # noqa: E402


@pytest.fixture(scope="module")
def study():
    from carlib.analysis.study import Study

    return Study("smoke", progress=False)  # the notebooks' cached smoke tables (computed once)


def test_helpers():
    assert subset_indices(200, 100).tolist() == list(range(0, 200, 2))
    assert subset_indices(40, None).tolist() == list(range(40))
    assert subset_indices(7, 3).tolist() == [0, 2, 4]
    with pytest.raises(CarlibError, match="at least 1 image"):
        subset_indices(10, 0)
    c = car_colors(np.array([0.0, 0.2, -0.2, np.nan]))
    assert c[3].tolist() == [128, 128, 128] and c[1, 0] > c[1, 2] and c[2, 2] > c[2, 0]
    assert png_bytes(np.zeros((3, 2, 3), np.uint8), scale=4).startswith(b"\x89PNG")


@requires_tiny
def test_prune_matches_car_index_and_the_naive_reference(study):
    import carlib
    from carlib.reference import accuracy_counts_naive

    ex = LayerExplorer(study, "conv1", n_images=10)
    assert len(ex.images) == 10
    seen = []
    res = ex.prune([7, 3], first=[40], chunk=16, on_chunk=lambda r: seen.append(sorted(r.car["filter"])))
    assert res.pruned == [3, 7] and res.n_images == 10
    # the accuracy first, then the filter on screen alone, then the rest 16 at a time
    assert [len(s) for s in seen] == [0, 1, 17, 33, 49, 62] and seen[1] == [40]
    correct, counts = accuracy_counts_naive(study.model, "conv1", ex.images, [3, 7])
    assert res.correct == int(correct.sum()) and int(counts.sum()) == 10
    ref = carlib.car_index(study.model, "conv1", ex.images, pruned=[3, 7], progress=False)
    assert res.car["filter"].tolist() == ref["filter"].tolist()
    assert np.array_equal(res.car["car"].to_numpy(), ref["car"].to_numpy())
    for k in (0, 40, 63):
        c, _ = accuracy_counts_naive(study.model, "conv1", ex.images, [3, 7, k])
        assert res.car.set_index("filter").loc[k, "car"] == res.correct / 10 - int(c.sum()) / 10
    car = ex.car_with(res)
    assert np.isnan(car[[3, 7]]).all() and np.isfinite(np.delete(car, [3, 7])).all()
    assert ex.unpruned() == (int(accuracy_counts_naive(study.model, "conv1", ex.images, [])[0].sum()), 10)


@requires_tiny
def test_info_and_pictures_come_from_the_study(study):
    ex = LayerExplorer(study, "conv1")
    car = study.car("conv1").set_index("filter")
    greedy = study.greedy("conv1")
    f = int(greedy["filter"].iloc[0])
    info = ex.info(f)
    assert info["car"] == car.loc[f, "car"] and info["greedy_step"] == 1
    assert info["color_index"] == study.color_weights("conv1").set_index("filter").loc[f, "color_index"]
    assert info["label"] == ("color" if info["color_index"] >= 0.5 else "shape")
    assert len(ex.images) == len(study.greedy_data)  # smoke: 40 images, fewer than 100
    grid = ex.grid(selected=2, pruned=[5])
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    assert (grid[0, 2 * 46] == 0).all()  # the selected filter's frame is black
    assert len(ex.patches(f, 4)) == 4 and ex.classes(f)["kind"].tolist().count("most") == 5
    for bad, msg in ((lambda: LayerExplorer(study, "conv3"), "choose one of"),
                     (lambda: ex.info(64), "out of range"),
                     (lambda: ex.prune(range(64)), "keep at least one")):
        with pytest.raises(CarlibError, match=msg):
            bad()


@requires_tiny
def test_widgets_select_prune_and_restore(study):
    import carlib
    from carlib.analysis.explorer_ui import ExplorerApp

    app = ExplorerApp("smoke", n_images=10, study_factory=lambda name: study)
    assert app.layer_w.value == "conv1" and "carlib-idle" in app.busy.value
    car = study.car("conv1").set_index("filter")["car"]
    app.filter_w.value = 5
    assert app.selected == 5 and f"<span class='carlib-car'>{100 * car[5]:+.2f} pp</span>" in app.info_w.value
    grid = app.grid_w.value
    app.prune_w.value = (3, 7)
    app.prune_btn.click()
    ref = carlib.car_index(study.model, "conv1", app.ex.images, filters=[5], pruned=[3, 7], progress=False)
    res = app.history[-1]
    assert res.accuracy == ref.attrs["base_accuracy"]
    assert f"data-correct='{res.correct}' data-n='10'" in app.result_w.value
    assert f"<span class='carlib-car-live'>{100 * ref['car'].iloc[0]:+.2f} pp</span>" in app.info_w.value
    assert app.grid_w.value != grid and "carlib-idle" in app.busy.value
    app.reset_btn.click()
    assert app.result is None and app.grid_w.value == grid
    with pytest.raises(CarlibError):  # shown on the page, controls enabled again
        app._busy("pruning", app.prune, list(range(64)))
    assert "carlib-error" in app.busy.value and not app.prune_btn.disabled
    app.layer_w.value = "conv2"
    assert app.ex.layer == "conv2" and len(app.filter_w.options) == 192 and app.history == []
