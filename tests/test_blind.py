"""carlib.analysis.blind: the blinded sheet, the label file read back, Cohen's kappa."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from torch import nn

from carlib.analysis import blind
from carlib.errors import CarlibError


def test_positions_map_back_to_the_filters_shown_there(tmp_path):
    order = blind.blind_order(6)
    assert sorted(order.tolist()) == list(range(6)) and order.tolist() != list(range(6))
    assert (blind.blind_order(6) == order).all() and (blind.blind_order(6, seed=1) != order).any()
    labels = ["color", "edge-or-shape", "noise-or-texture", "color", "color", "edge-or-shape"]
    f = tmp_path / "l.csv"
    f.write_text("# a comment\nposition,label\n" + "".join(f"{p},{lab}\n" for p, lab in
                                                          reversed(list(enumerate(labels, 1)))))
    t = blind.read_blind_labels(f, 6)
    assert t["filter"].tolist() == list(range(6))
    for p, lab in enumerate(labels, 1):  # the filter at position p has the label written for p
        assert t.loc[t["filter"] == order[p - 1], "label"].item() == lab


@pytest.mark.parametrize("rows, match", [
    ("1,color\n2,color\n", r"positions must be 1\.\.3"),
    ("1,color\n2,color\n2,color\n", r"positions must be 1\.\.3"),
    ("1,color\n2,colour\n3,color\n", r"unknown label\(s\) \['colour'\]"),
    ("1,color\n2,\n3,color\n", r"position\(s\) \[2\] have no label"),
])
def test_a_bad_label_file_is_a_one_line_error(tmp_path, rows, match):
    f = tmp_path / "l.csv"
    f.write_text("position,label\n" + rows)
    with pytest.raises(CarlibError, match=match) as err:
        blind.read_blind_labels(f, 3)
    assert "\n" not in str(err.value)
    f.write_text("filter,label\n0,color\n")
    with pytest.raises(CarlibError, match="exactly 'position,label'"):
        blind.read_blind_labels(f, 1)


def test_cohen_kappa_matches_the_textbook_example():
    # 50 items: both yes 20, A yes B no 5, A no B yes 10, both no 15: p_o 0.7, p_e 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    k = blind.cohen_kappa(a, b)
    assert k["agreement"] == pytest.approx(0.7) and k["expected"] == pytest.approx(0.5)
    assert k["kappa"] == pytest.approx(0.4) and k["low"] < 0.4 < k["high"] and k["n"] == 50
    assert blind.cohen_kappa(a, a)["kappa"] == 1.0
    assert blind.cohen_kappa(a, b) == k  # seeded bootstrap
    rng = np.random.default_rng(0)  # independent labelings: kappa near 0
    assert abs(blind.cohen_kappa(rng.choice(list("abc"), 2000), rng.choice(list("abc"), 2000),
                                 n_boot=50)["kappa"]) < 0.05
    with pytest.raises(CarlibError, match="same items"):
        blind.cohen_kappa(["a"], ["a", "b"])


def test_the_command_line_writes_a_sheet_and_a_template_and_refuses_deeper_layers(tmp_path, capsys):
    sheet = tmp_path / "s" / "sheet.png"
    assert blind.main(["alexnet-tiny", "conv1", str(sheet)]) == 0
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    template = pd.read_csv(sheet.with_suffix(".csv"))
    assert template["position"].tolist() == list(range(1, 65)) and template["label"].isna().all()
    assert not list(sheet.parent.glob("*.tmp*"))
    assert blind.main(["alexnet-tiny", "conv2", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("carlib: error: conv2 has 64 input channels") and err.count("\n") == 1


def test_the_committed_by_eye_file_labels_every_conv1_filter():
    from carlib import load_model
    from carlib.layers import resolve_layer

    path = blind.by_eye_file("alexnet-tiny", "conv1")
    assert path is not None and blind.by_eye_file("alexnet-tiny", "conv2") is None
    n = resolve_layer(load_model("alexnet-tiny"), "conv1").module.out_channels
    t = blind.read_blind_labels(path, n)
    assert t["filter"].tolist() == list(range(n)) and set(t["label"]) == set(blind.LABELS)


def test_the_sheet_hides_the_filter_numbers():
    conv = nn.Conv2d(3, 5, 3)
    fig = blind.blinded_sheet(conv, ncols=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["1", "2", "3", "4", "5"]
