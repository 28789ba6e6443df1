"""carlib.analysis.profiles and carlib.paths: one place for settings and folders."""

from __future__ import annotations

import pytest
import torch

from carlib import PROFILES, figures_dir, get_profile, results_dir
from carlib.errors import CarlibError


def test_profiles():
    assert set(PROFILES) == {"default", "paper", "imagenet", "full", "smoke"}
    full = get_profile("full")
    assert (full.per_class, full.greedy_per_class, full.held_out_orders) == (50, 25, True)  # 5,000 / 5,000
    assert full.greedy_steps == {"conv1": 32, "conv2": 96}  # half of alexnet-tiny's 64 and 192
    paper = get_profile("paper")
    assert (paper.model, paper.dataset, paper.per_class, paper.device) == ("alexnet", "imagenet", 50, "auto")
    assert paper.greedy_steps == {"conv1": 32, "conv2": 96}  # half of torchvision's 64 and 192
    assert get_profile("smoke").per_class < get_profile("default").per_class
    assert get_profile("default").with_(per_class=3).per_class == 3
    with pytest.raises(CarlibError, match="unknown profile"):
        get_profile("fast")


def test_notebook_06_settings():
    """default: a test set after the CAR images and a short retraining; full: the test half and
    one epoch over all of Tiny ImageNet train; both >= 3 seeds; the settings leave the cache keys
    of the other tables alone."""
    default, full, smoke = get_profile("default"), get_profile("full"), get_profile("smoke")
    assert default.test_per_class > 0 and not default.held_out_orders
    assert full.held_out_orders and full.retrain["per_class"] is None and full.retrain["epochs"] >= 1
    for p in (default, full):
        assert len(p.retrain["seeds"]) >= 3 and "conv1" in p.retrain["layers"]
    assert smoke.retrain["depth"] == smoke.greedy_steps["conv1"]  # the greedy order reaches it
    assert default.cache_key() == default.with_(test_per_class=0, curve_points=None, retrain=None).cache_key()


def test_output_folders_do_not_depend_on_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARLIB_HOME", raising=False)
    r = results_dir("smoke")
    assert r.is_absolute() and r.parts[-2:] == ("results", "smoke") and tmp_path not in r.parents
    monkeypatch.setenv("CARLIB_HOME", str(tmp_path))
    assert figures_dir("x") == tmp_path / "figures" / "x"


def test_layer_roles():
    """``conv1``/``conv2`` name the profile's layers; any other name passes through."""
    from torchvision.models import mobilenet_v2

    from carlib.layers import resolve_layer

    net = get_profile("imagenet")
    assert get_profile("default").layer_path("conv2") == "conv2"
    assert net.layer_path("conv7") == "conv7"
    m = mobilenet_v2()
    c1, c2 = (resolve_layer(m, net.layer_path(r)).module for r in ("conv1", "conv2"))
    # conv1: the first convolution, on RGB; conv2: the first whose filters mix all channels
    assert (c1.in_channels, c1.out_channels, c1.groups) == (3, 32, 1)
    assert c2.kernel_size == (1, 1) and c2.groups == 1 and c2.in_channels == 32
    between = [mod for name, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d)][1]
    assert between.groups == between.in_channels == 32  # the depthwise conv filters channels alone
    # sized for a 2-core CPU: greedy shallower than the curves, curves at most half of a layer
    for role, conv in (("conv1", c1), ("conv2", c2)):
        assert 0 < net.greedy_steps[role] < net.curve_depth_for(role, conv.out_channels) <= conv.out_channels // 2


def test_cache_key_leaves_out_what_does_not_change_results():
    p = get_profile("default")
    assert "shard_images" not in p.cache_key() and "layers" not in p.cache_key()
    assert p.with_(shard_images=50).cache_key() == p.cache_key()
    assert p.with_(replicates={"parts": 3}).cache_key() == p.cache_key()  # its tables carry it
    assert p.with_(layers={"conv2": "features.6"}).cache_key() != p.cache_key()
    assert p.with_(per_class=3).cache_key() != p.cache_key()
    assert "class_step" not in p.cache_key() and p.with_(class_step=2).cache_key() != p.cache_key()


def test_class_subsets():
    import numpy as np

    labels = np.arange(20)
    p = get_profile("default")
    assert p.keeps_class(labels).all()
    assert np.flatnonzero(p.with_(class_step=6).keeps_class(labels)).tolist() == [0, 6, 12, 18]
    assert np.flatnonzero(p.with_(class_step=6, max_classes=12).keeps_class(labels)).tolist() == [0, 6]
