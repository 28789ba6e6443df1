"""carlib.activations: mean activation, APoZ and Taylor against hand computations, on traced,
functional-activation and untraceable networks; carlib.analysis.activations: class-mean responses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from carlib.activations import (apoz_scores, mask_point_activations, mask_point_taylor,
                                mean_activation_scores, taylor_scores)
from carlib.analysis.activations import class_mean_activations
from carlib.errors import CarlibError
from carlib.graph import analyze

from conftest import SmallBNNet, prototype_data, randomize_bn, uint8_dataset


class FunctionalNet(nn.Module):
    """conv -> BN -> F.relu (a function, not a module) -> conv -> linear; ``tap`` sees the map."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.fc = nn.Conv2d(6, 4, 3, stride=2), nn.Linear(4 * 7 * 7, 5)
        self.tap = None

    def forward(self, x):
        a = F.relu(self.bn(self.conv1(x)))
        if self.tap is not None:
            a = self.tap(a)
        return self.fc(torch.flatten(F.relu(self.conv2(a)), 1))


class Untraceable(SmallBNNet):
    """SmallBNNet with data-dependent control flow: torch.fx cannot trace it."""

    def forward(self, x):
        if float(x.abs().max()) < 0:  # never true, but fx cannot know
            x = -x
        return super().forward(x)


def _brute_force(model, x, y, tap_module=None):
    """Per image: its activation map ``a``, its loss alone, ``a.grad`` by autograd; the mean
    over positions of ``a * grad``, as Molchanov et al. write it (eq. 8)."""
    terms = []
    for i in range(x.shape[0]):
        box = {}

        def keep(a):
            a.retain_grad()
            box["a"] = a
            return a

        if tap_module is None:
            model.tap = keep
        else:
            h = tap_module.register_forward_hook(lambda m, inp, out: keep(out))
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        loss.backward()
        if tap_module is None:
            model.tap = None
        else:
            h.remove()
        a = box["a"]
        terms.append((a * a.grad)[0].detach().double().mean(dim=(1, 2)))
    return torch.stack(terms)


@torch.no_grad()
def _maps(model, x, tap_module, batch):
    """The maps after the ReLU, from full forward passes on batches of ``batch`` images."""
    out = []
    for i in range(0, x.shape[0], batch):
        if tap_module is None:
            model.tap = lambda a: out.append(a.clone()) or a
        else:
            h = tap_module.register_forward_hook(lambda m, inp, o: out.append(o.clone()))
        model.eval()(x[i : i + batch])
        model.tap = None
        if tap_module is not None:
            h.remove()
    return torch.cat(out).double()


def _models():
    torch.manual_seed(0)
    fn = randomize_bn(FunctionalNet(), seed=1)
    bn = randomize_bn(SmallBNNet(), seed=2)
    un = randomize_bn(Untraceable(), seed=2)
    return {"functional": (fn, "conv1", None), "traced": (bn, "conv2", bn.features[6]),
            "untraceable": (un, "conv2", un.features[6])}


@pytest.mark.parametrize("kind", ["traced", "functional", "untraceable"])
def test_taylor_mean_activation_and_apoz_equal_hand_computations(kind):
    model, layer, tap = _models()[kind]
    x, _ = prototype_data(20, 5, 16, seed=4)
    y = torch.randint(0, 5, (20,), generator=torch.Generator().manual_seed(0))
    plan = analyze(model, layer)
    assert (plan.gm is None) == (kind == "untraceable")
    terms = _brute_force(model, x, y, tap)
    maps = _maps(model, x, tap, 7)
    data = (x, y)
    # Taylor: mean over images of |mean over positions of a * dC/da|, batch by batch
    np.testing.assert_allclose(taylor_scores(model, layer, data, batch_size=7),
                               terms.abs().mean(dim=0).numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(mask_point_taylor(model, layer, x, y).double().numpy(), terms.numpy(),
                               rtol=1e-4, atol=1e-8)
    # the absolute value is taken per image: the mean of the signed terms is another ranking
    assert not np.allclose(terms.abs().mean(dim=0).numpy(), terms.mean(dim=0).abs().numpy())
    # mean activation and APoZ of the map after the ReLU
    np.testing.assert_allclose(mean_activation_scores(model, layer, data, batch_size=7),
                               maps.mean(dim=(0, 2, 3)).numpy(), rtol=1e-12)
    zeros = (maps == 0).double().mean(dim=(0, 2, 3)).numpy()
    assert ((zeros > 0) & (zeros < 1)).sum() >= 3  # zeros in some maps, not all of them
    np.testing.assert_allclose(apoz_scores(model, layer, data, batch_size=7), 1 - zeros, rtol=1e-12)


def test_taylor_leaves_the_model_as_it_was():
    model, layer, _ = _models()["traced"]
    model.train()
    x, y = prototype_data(6, 5, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    taylor_scores(model, layer, (x, y))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_labels_and_empty_data():
    model, layer, _ = _models()["traced"]
    x, _ = prototype_data(4, 5, 16)
    with pytest.raises(CarlibError, match="labels run from"):
        mask_point_taylor(model, layer, x, torch.tensor([0, 1, 2, 9]))
    with pytest.raises(CarlibError, match="no images"):
        mean_activation_scores(model, layer, (x[:0], torch.zeros(0, dtype=torch.long)))


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
