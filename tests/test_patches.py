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
