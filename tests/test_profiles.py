"""carlib.analysis.profiles and carlib.paths: one place for settings and folders."""

from __future__ import annotations

import pytest

from carlib import PROFILES, figures_dir, get_profile, results_dir
from carlib.errors import CarlibError


def test_profiles():
    assert set(PROFILES) == {"default", "paper", "smoke"}
    paper = get_profile("paper")
    assert (paper.model, paper.dataset, paper.per_class, paper.device) == ("alexnet", "imagenet", 50, "auto")
    assert paper.greedy_steps == {"conv1": 32, "conv2": 96}  # half of torchvision's 64 and 192
    assert get_profile("smoke").per_class < get_profile("default").per_class
    assert get_profile("default").with_(per_class=3).per_class == 3
    with pytest.raises(CarlibError, match="unknown profile"):
        get_profile("fast")


def test_output_folders_do_not_depend_on_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARLIB_HOME", raising=False)
    r = results_dir("smoke")
    assert r.is_absolute() and r.parts[-2:] == ("results", "smoke") and tmp_path not in r.parents
    monkeypatch.setenv("CARLIB_HOME", str(tmp_path))
    assert figures_dir("x") == tmp_path / "figures" / "x"
