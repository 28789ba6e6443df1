"""carlib.analysis.activations: class-mean responses."""

from __future__ import annotations

import numpy as np
import torch

from carlib.analysis.activations import class_mean_activations, mask_point_activations

from conftest import SmallBNNet, randomize_bn, uint8_dataset


def _net():
    torch.manual_seed(0)
    x, y = torch.randn(40, 3, 16, 16), torch.arange(40) % 7
    return randomize_bn(SmallBNNet()), x, y


def test_class_mean_activations_match_the_mask_point():
    model, x, y = _net()
    got = class_mean_activations(model, "conv2", (x[:40], y[:40]), batch_size=16)
    peaks = mask_point_activations(model, "conv2", x[:40]).amax(dim=(2, 3)).double().numpy()
    classes = np.unique(y[:40].numpy())
    assert got.shape == (12, len(classes)) and got.index.name == "filter"
    want = np.stack([peaks[y[:40].numpy() == c].mean(0) for c in classes], axis=1)
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-12)
    assert got.columns.tolist() == classes.tolist()


def test_class_mean_activations_of_a_dataset():
    model, _, _ = _net()
    ds = uint8_dataset()
    got = class_mean_activations(model, "conv1", ds)
    assert got.shape == (8, 3) and np.isfinite(got.to_numpy()).all()
    assert (got.to_numpy() >= 0).all()  # after ReLU


def test_docstring_example():
    import doctest

    from carlib.analysis import activations

    runner = doctest.DocTestRunner()
    for t in doctest.DocTestFinder().find(activations.class_mean_activations, "class_mean_activations",
                                          globs=vars(activations).copy()):
        runner.run(t)
    assert runner.summarize(verbose=False).failed == 0 and runner.summarize(verbose=False).attempted == 3
