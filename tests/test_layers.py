"""carlib.layers and carlib.graph: naming layers and finding where filters go."""

from __future__ import annotations

import pytest
from torchvision.models import alexnet, mobilenet_v2, resnet18, vgg11_bn

from carlib import AlexNetTiny, conv_layers, layer_table, resolve_layer
from carlib.graph import analyze


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


def test_analysis_of_common_architectures():
    p = analyze(alexnet(), "conv5")
    assert (p.mask_module, p.consumer, p.flatten, p.fast) == ("features.11", "classifier.1", True, True)
    p = analyze(vgg11_bn(), "conv1")
    assert (p.norm, p.mask_module, p.consumer, p.fast) == ("features.1", "features.2", "features.4", True)
    p = analyze(resnet18(), "conv2")  # inside a residual block: prunable, not the fast path
    assert p.mask_module == "layer1.0.bn1" and p.prune_reason is None and not p.fast
    p = analyze(mobilenet_v2(), "conv1")  # consumer is a depthwise convolution
    assert not p.fast and "grouped" in p.prune_reason
