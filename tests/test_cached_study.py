"""carlib.analysis.cached_study: a study that reads its cached tables and never computes one."""

from __future__ import annotations

import pytest

import carlib.analysis.study as S
from carlib.analysis.cached_study import CachedStudy, MissingTable
from carlib.errors import CarlibError

from conftest import requires_tiny


@requires_tiny
def test_cached_study_never_computes(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "results_dir", lambda name: tmp_path)
    study = CachedStudy("smoke", progress=False)
    with pytest.raises(CarlibError, match=r"car_per_class_conv1.csv is missing or was computed from other inputs") as e:
        study.car("conv1")
    assert isinstance(e.value, MissingTable) and e.value.name == "car_per_class_conv1"
    assert "make reproduce PROFILE=smoke" in str(e.value) and "\n" not in str(e.value)
    assert not list(tmp_path.iterdir())
