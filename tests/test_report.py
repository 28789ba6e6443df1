"""carlib.analysis.report: one self-contained page from the cached tables and figures, or a clear
error when they are missing or stale."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import carlib.analysis.report as R  # noqa: E402
from carlib.errors import CarlibError  # noqa: E402
from conftest import requires_tiny  # noqa: E402


def smoke_report(tmp_path, monkeypatch):
    """The smoke profile's report (its tables computed once if missing) with one figure."""
    from carlib.analysis import figures
    from carlib.analysis.plotting import save_figure
    from carlib.analysis.study import Study

    study = Study("smoke", progress=False)  # computes whatever the smoke cache lacks
    from carlib.analysis.heldout import paired_tests

    for layer in ("conv1", "conv2"):
        study.curves(layer), study.heldout_accuracy(layer), paired_tests(study, layer)
    study.accuracy_per_class(), study.color_responses("conv2")
    figs = tmp_path / "figures"
    monkeypatch.setattr(R, "figures_dir", lambda name: figs)
    monkeypatch.setattr("carlib.analysis.plotting.figures_dir", lambda name: figs)
    figs.mkdir()
    save_figure(figures.car_sorted(study.car("conv1"), "conv1"), "smoke", "02_conv1_car_sorted")
    return R.build_report("smoke", tmp_path / "report" / "index.html"), study, figs


@requires_tiny
def test_report_is_self_contained_and_generated_from_the_tables(tmp_path, monkeypatch):
    from carlib.data import data_fingerprint
    from carlib.models import model_fingerprint

    path, study, figs = smoke_report(tmp_path, monkeypatch)
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and not re.search(r"(src|href)=['\"](?!data:)", page)
    # every figure inline, byte for byte
    srcs = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert [base64.b64decode(s) for s in srcs] == [(figs / "02_conv1_car_sorted.png").read_bytes()]
    # the claims table is generated from the same tables
    claims = R.claims(R.CachedStudy("smoke", progress=False))
    assert list(claims["notebook"]) == list(R.CLAIMS) and len(claims) == 6
    assert "conv1, 8 filters pruned: car-oneshot" in claims["this run"][5]  # notebook 06's paired tests
    for text in claims["this run"]:
        assert text in page
    car = study.car("conv1")
    assert f"CAR from {100 * car['car'].min():+.2f} % to {100 * car['car'].max():+.2f} %" in claims["this run"][1]
    assert model_fingerprint(study.model) in page and data_fingerprint(study.data) in page
    assert "time: car_per_class_conv1" in page


def test_report_refuses_missing_or_stale_results(tmp_path, monkeypatch, capsys):
    with pytest.raises(CarlibError, match="unknown profile"):
        R.build_report("nope")
    monkeypatch.setattr(R, "figures_dir", lambda name: tmp_path)
    assert R.main(["--profile", "smoke", "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no figures in figures/smoke/" in err and "make reproduce" in err
    assert not (tmp_path / "x.html").exists()
