"""carlib.layers: naming layers, and checking filter indices."""

from __future__ import annotations

import pytest
from torchvision.models import alexnet

from carlib import AlexNetTiny, conv_layers, layer_table, resolve_layer
from carlib.errors import CarlibError
from carlib.layers import check_filters


def test_aliases_and_paths():
    m = AlexNetTiny()
    assert [(c.alias, c.path, c.filters) for c in conv_layers(m)] == [
        ("conv1", "features.0", 64), ("conv2", "features.3", 192), ("conv3", "features.6", 384),
        ("conv4", "features.8", 256), ("conv5", "features.10", 256)]
    assert resolve_layer(m, "features.3").alias == "conv2"
    assert list(layer_table(m)["filters"]) == [64, 192, 384, 256, 256]


def test_unknown_layer_lists_the_convolutions():
    with pytest.raises(ValueError) as err:
        resolve_layer(alexnet(), "conv6")
    msg = str(err.value)
    assert "conv6" in msg and "conv1=features.0 (64)" in msg and "conv5=features.10 (256)" in msg
    assert "\n" not in msg
    with pytest.raises(ValueError, match="not a convolution"):
        resolve_layer(alexnet(), "features.1")


def test_filter_indices_are_checked_sorted_and_deduplicated():
    assert check_filters([5, 1, 5, 0], 8, "conv1") == [0, 1, 5]
    with pytest.raises(CarlibError, match=r"filter index 8 is out of range for conv1, which has 8 filters"):
        check_filters([2, 8], 8, "conv1")
    with pytest.raises(CarlibError, match="filter index -1"):
        check_filters([-1], 8, "conv1")
