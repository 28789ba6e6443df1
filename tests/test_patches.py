"""carlib.analysis.patches: receptive fields and the image patches that drive a filter."""

from __future__ import annotations

from carlib.analysis.patches import receptive_field, top_patches

from conftest import uint8_dataset


def test_patches_are_receptive_field_crops(bn_net):
    model, _, _ = bn_net
    assert receptive_field(model, "conv1") == (3, 1, 1)
    assert receptive_field(model, "conv2") == (8, 2, 3)
    ds = uint8_dataset()
    out = top_patches(model, "conv1", ds, [0, 3], n=2)
    for f, ps in out.items():
        assert len(ps) == 2 and ps[0].value >= ps[1].value
        p = ps[0]
        top, left = p.y - 1, p.x - 1
        for dy in range(3):
            for dx in range(3):
                yy, xx = top + dy, left + dx
                expect = ds.images[p.image, yy, xx] if 0 <= yy < 32 and 0 <= xx < 32 else 0
                assert (p.pixels[dy, dx] == expect).all()


def test_patches_of_images_decoded_from_files(bn_net, tmp_path):
    """Images read from files (as ImageNet is): the same patches as the same pixels in memory."""
    import numpy as np
    import pytest

    from carlib.errors import CarlibError
    from conftest import folder_copy

    model, x, y = bn_net
    ds = uint8_dataset()
    folder = folder_copy(ds, tmp_path)
    assert folder.image_size == ds.image_size and (folder.pixels([0, 5]) == ds.images[[0, 5]]).all()
    mem = top_patches(model, "conv2", ds, [0, 3, 7], n=3)
    files = top_patches(model, "conv2", folder, [0, 3, 7], n=3, batch_size=5)
    for f in mem:
        assert [(p.image, p.y, p.x) for p in files[f]] == [(p.image, p.y, p.x) for p in mem[f]]
        assert all((a.pixels == b.pixels).all() for a, b in zip(files[f], mem[f]))
        np.testing.assert_allclose([p.value for p in files[f]], [p.value for p in mem[f]], rtol=1e-5)
    with pytest.raises(CarlibError, match="pair of tensors"):
        top_patches(model, "conv1", (x, y), [0])


def _seen_rows(model, layer_index: int, n: int, unit: int) -> tuple[int, int]:
    """The input rows one output unit of the conv at ``layer_index`` depends on (by autograd)."""
    import torch

    x = torch.ones(1, 3, n, n, requires_grad=True)
    out = model[: layer_index + 1](x)
    out[0, 0, unit, unit].backward()
    rows = torch.nonzero(x.grad[0].abs().sum(dim=(0, 2))).flatten()
    return int(rows.min()), int(rows.max())


def test_receptive_fields_match_autograd_with_same_and_tensorflow_padding():
    import pytest
    import torch
    from torch import nn

    from carlib.convs import SamePadConv2d
    from carlib.errors import CarlibError

    for first, second in [(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1)),
                          (SamePadConv2d(3, 4, 3, stride=2), SamePadConv2d(4, 4, 3, stride=1)),
                          (nn.Conv2d(3, 4, 5, padding="same"), nn.Conv2d(4, 4, 4, padding="same"))]:
        model = nn.Sequential(first, nn.AvgPool2d(2), second)  # autograd sees all of an average
        for conv in (first, second):
            torch.nn.init.constant_(conv.weight, 1.0)
        n = 32
        size, jump, pad = receptive_field(model, "conv2", n)
        for unit in (0, 3):  # at the border (clipped by the image) and inside
            lo, hi = unit * jump - pad, unit * jump - pad + size - 1
            assert _seen_rows(model, 2, n, unit) == (max(lo, 0), min(hi, n - 1)), (first, unit)
    with pytest.raises(CarlibError, match="pass input_size="):
        receptive_field(nn.Sequential(SamePadConv2d(3, 4, 3, stride=2), nn.Conv2d(4, 4, 3)), "conv2")
