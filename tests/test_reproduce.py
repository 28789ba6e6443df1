"""carlib.analysis.reproduce: the committed notebooks stay checkable by nbval, and noise is stripped."""

from __future__ import annotations

import json
import shutil

import pytest

from carlib.analysis.reproduce import NOTEBOOK_DIR, NOTEBOOKS, strip_noise


def _code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_six_numbered_notebooks():
    assert NOTEBOOKS == ["01_baseline.ipynb", "02_car_conv1.ipynb", "03_car_conv2.ipynb",
                         "04_color_vs_shape.ipynb", "05_class_importance.ipynb", "06_compression.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_valid_nbval_reference(name):
    """nbval fails a reference cell with outputs but no execution count ('Unrun reference
    cell has outputs'); the first cell is the tagged parameters cell; kernel python3."""
    nb = json.loads((NOTEBOOK_DIR / name).read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    for cell in code:
        assert "injected-parameters" not in cell["metadata"].get("tags", [])
        if cell.get("outputs"):
            assert cell["execution_count"] is not None, cell["source"][:80]
        assert "papermill" not in cell["metadata"] and "execution" not in cell["metadata"]
    assert "papermill" not in nb["metadata"]


def test_strip_noise_renumbers_and_drops_injected_cell(tmp_path):
    src = NOTEBOOK_DIR / NOTEBOOKS[0]
    nb = json.loads(src.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    injected = {"cell_type": "code", "execution_count": 7, "id": "injected",
                "metadata": {"tags": ["injected-parameters"], "papermill": {"duration": 1.0}},
                "outputs": [], "source": ["profile = 'smoke'\n"]}
    nb["cells"].insert(nb["cells"].index(code[0]) + 1, injected)
    nb["metadata"]["papermill"] = {"duration": 12.5}
    for i, c in enumerate(code):
        c["execution_count"] = 100 + 3 * i  # as a kernel numbers them, with gaps
        c["metadata"]["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
        for out in c.get("outputs", []):
            if "execution_count" in out:
                out["execution_count"] = 100 + 3 * i
    dst = tmp_path / src.name
    dst.write_text(json.dumps(nb))
    strip_noise(dst)
    cells = _code_cells(dst)
    assert len(cells) == len(code)  # the injected cell is gone
    assert [c["execution_count"] for c in cells] == list(range(1, len(code) + 1))
    for c in cells:
        assert "execution" not in c["metadata"]
        for out in c.get("outputs", []):
            if "execution_count" in out:
                assert out["execution_count"] == c["execution_count"]
    assert "papermill" not in json.loads(dst.read_text())["metadata"]
    # idempotent: stripping twice gives the same file
    again = tmp_path / "again.ipynb"
    shutil.copy(dst, again)
    strip_noise(again)
    assert again.read_text() == dst.read_text()


def test_a_long_profile_runs_only_on_precomputed_tables(monkeypatch, capsys):
    import pandas as pd

    from carlib.analysis import precompute, reproduce

    ran, asked = [], []
    monkeypatch.setattr(reproduce, "run_notebooks", lambda profile, **kw: ran.append(profile) or 0.0)
    steps = pd.DataFrame({"step": ["greedy conv1", "greedy conv2", "curves conv2"],
                          "state": ["cached", "to compute", "to compute"],
                          "first_missing": ["", "greedy_conv2", "greedy_conv2"]})
    monkeypatch.setattr(precompute, "status", lambda profile: asked.append(profile) or steps)
    assert reproduce.main(["--profile", "full"]) == 2 and ran == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "carlib: error: profile 'full' has 2 of 3 steps not computed yet (first: greedy conv2, table greedy_conv2); "
        "run `make precompute PROFILE=full` first")
    assert reproduce.main(["--profile", "full", "--compute"]) == 0 and ran == ["full"]
    assert reproduce.main(["--profile", "default"]) == 0 and ran == ["full", "default"]
    assert asked == ["full"]  # default is not checked: its notebooks compute in minutes
    steps["state"] = "cached"
    assert reproduce.main(["--profile", "full"]) == 0 and ran == ["full", "default", "full"]


def test_some_notebooks_need_only_their_layers_tables(monkeypatch, capsys):
    import pandas as pd

    from carlib.analysis import precompute, reproduce

    ran, asked = [], []
    monkeypatch.setattr(reproduce, "run_notebooks", lambda profile, **kw: ran.append(kw["notebooks"]) or 0.0)

    def status(profile, layers=("conv1", "conv2")):
        asked.append(layers)
        rows = [("accuracy per class", "cached"), *[(f"greedy {la}", "cached" if la == "conv1" else "to compute")
                                                     for la in layers]]
        return pd.DataFrame({"step": [r[0] for r in rows], "state": [r[1] for r in rows],
                             "first_missing": ["" if r[1] == "cached" else "greedy_conv2" for r in rows]})

    monkeypatch.setattr(precompute, "status", status)
    assert reproduce.main(["--profile", "full", "--notebooks", "2,01"]) == 0
    assert ran == [["01_baseline.ipynb", "02_car_conv1.ipynb"]] and asked == [("conv1",)]
    assert reproduce.main(["--profile", "full", "--notebooks", "03_car_conv2.ipynb"]) == 2 and len(ran) == 1
    assert asked[-1] == ("conv2",)
    assert "1 of 2 steps not computed yet (first: greedy conv2" in capsys.readouterr().err
    assert reproduce.main(["--profile", "full", "--notebooks", "7"]) == 2 and len(ran) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("carlib: error: no notebook '7'; choose among: 01, 02, 03")


def test_select_notebooks_by_number_or_name():
    from carlib.analysis.reproduce import NOTEBOOK_STEPS, select_notebooks

    assert select_notebooks(None) == NOTEBOOKS
    assert select_notebooks("06, 2,02") == ["02_car_conv1.ipynb", "06_compression.ipynb"]
    assert sorted(NOTEBOOK_STEPS) == [nb[:2] for nb in NOTEBOOKS]  # every notebook says what it reads


#: the calls of a notebook that read a precomputed step, by kind of step
_READS = {"CAR": r"study\.car\(|car_per_class\(|car_split_half\(", "greedy": r"study\.greedy\(|pruned_top\(",
          "curves": r"study\.curves\(", "held-out accuracy": r"heldout_accuracy\(",
          "replicates": r"replicate_greedy\(|replicate_orders\(", "labels": r"study\.labels\(",
          "color responses": r"color_responses\(|color_index\(", "orders": r"selection_orders\(|test_curves\(",
          "test curves": r"test_curves\(", "paired tests": r"paired_tests\(|before_retraining\(",
          "retraining": r"retraining\.retraining\(", "deep compression": r"deep_compression\("}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_declares_the_steps_it_reads(name):
    """NOTEBOOK_STEPS against the notebook's code: a step read but not declared would be computed
    inside the notebook (hours, for ``full``); one declared but not read would hold it back."""
    import re

    from carlib.analysis.precompute import STEPS
    from carlib.analysis.reproduce import NOTEBOOK_STEPS

    layers, kinds = NOTEBOOK_STEPS[name[:2]]
    assert set(kinds) <= set(STEPS) and set(layers) <= {"conv1", "conv2"}
    nb = json.loads((NOTEBOOK_DIR / name).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    read = {kind for kind, pattern in _READS.items() if re.search(pattern, code)}
    # the orders feed the greedy-free test curves; the greedy table, every later step of its layer
    if read & {"orders", "test curves", "paired tests", "retraining", "deep compression", "replicates"}:
        read.add("greedy")
    assert read == set(kinds)
    assert all(f'"{la}"' in code for la in layers)


def test_a_notebook_waits_only_for_the_steps_it_reads(monkeypatch, capsys):
    import pandas as pd

    from carlib.analysis import precompute, reproduce

    ran = []
    monkeypatch.setattr(reproduce, "run_notebooks", lambda profile, **kw: ran.append(kw["notebooks"]) or 0.0)
    missing = {"replicates conv2", "retraining conv2", "deep compression conv2"}

    def status(profile, layers=("conv1", "conv2")):
        steps = ["accuracy per class"] + [f"{k} {la}" for la in layers for k in precompute.STEPS[1:]]
        return pd.DataFrame({"step": steps, "state": ["to compute" if s in missing else "cached" for s in steps],
                             "first_missing": [s.replace(" ", "_") if s in missing else "" for s in steps]})

    monkeypatch.setattr(precompute, "status", status)
    assert reproduce.main(["--profile", "full", "--notebooks", "5,02"]) == 0
    assert ran == [["02_car_conv1.ipynb", "05_class_importance.ipynb"]]
    for nb, first in (("03", "replicates conv2"), ("04", "replicates conv2"), ("06", "retraining conv2")):
        assert reproduce.main(["--profile", "full", "--notebooks", nb]) == 2 and len(ran) == 1
        assert f"not computed yet (first: {first}," in capsys.readouterr().err
