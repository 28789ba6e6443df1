"""carlib.importance: one interface for every criterion, orders, and BatchNorm folding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from carlib import car_index, greedy_prune
from carlib.baselines import car_order, l1_order
from carlib.errors import CarlibError
from carlib.importance import (CRITERIA, bn_scale, importance, importance_order, order_by_score,
                               random_order, score_table, weight_norms)
from carlib.models import AlexNetTiny, fold_batchnorm

from conftest import randomize_bn

QUIET = {"progress": False}
#: one set of options serves every criterion (each ignores the others')
SHARED = {"seed": 0, "batch_size": 5, "progress": False}


@pytest.fixture(scope="module")
def conv1_greedy(_bn_net):
    """The full greedy order of conv1 (8 filters) on 12 images, computed once."""
    model, x, y = _bn_net
    return greedy_prune(model, "conv1", (x[:12], y[:12]), n_remove=7, progress=False)


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_every_criterion_ranks_every_filter_once(bn_net, conv1_greedy, name):
    model, x, y = bn_net
    data = (x[:12], y[:12])
    table = importance(name, model, "conv1", data, **SHARED)
    assert list(table.columns) == ["filter", "score"] and table.attrs["criterion"] == name
    assert table["filter"].tolist() == list(range(8))
    order = order_by_score(table)
    assert sorted(order) == list(range(8))
    s = table.set_index("filter")["score"]
    for a, b in zip(order, order[1:]):  # ascending score, equal scores by index
        assert (s[a], a) < (s[b], b)
    if name == "greedy":  # computed by the criterion itself: the greedy loop's order
        assert order[:7] == conv1_greedy["filter"].tolist()


def test_ties_go_to_the_lower_filter(bn_net):
    assert order_by_score(score_table([1.0, 0.0, 1.0, 0.0])) == [1, 3, 0, 2]
    model, _, _ = bn_net
    with torch.no_grad():  # filters 9 and 4 identical and the smallest: 4 first, then 9
        model.features[4].weight[4] = 1e-3
        model.features[4].weight[9] = 1e-3
    for name in ("l1", "l2", "l1-folded"):
        if name == "l1-folded":
            with torch.no_grad():
                model.features[5].weight[9] = model.features[5].weight[4]
                model.features[5].running_var[9] = model.features[5].running_var[4]
        assert importance_order(name, model, "conv2")[:2] == [4, 9], name
    const = lambda model, layer, data=None, **_: score_table(np.zeros(12))  # noqa: E731
    assert importance_order(const, model, "conv2") == list(range(12))


def test_l1_and_l2_are_the_weight_norms(bn_net):
    model, _, _ = bn_net
    w = model.features[4].weight.detach().double()
    np.testing.assert_allclose(weight_norms(model, "conv2", 1), w.abs().sum(dim=(1, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(weight_norms(model, "conv2", 2), w.pow(2).sum(dim=(1, 2, 3)).sqrt().numpy(),
                               rtol=1e-6)
    assert importance_order("l1", model, "conv2") == l1_order(model, "conv2")
    assert importance_order("l1", model, "conv2") != importance_order("l2", model, "conv2")


def test_folded_and_unfolded_norms_differ_by_the_batchnorm_scale(bn_net):
    model, _, _ = bn_net
    randomize_bn(model, seed=3)
    bn = model.features[1]
    with torch.no_grad():
        bn.weight[2] = -bn.weight[2]  # a negative gamma: the norm takes |scale|
    scale = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).detach().numpy()
    np.testing.assert_allclose(bn_scale(model, "conv1"), scale, rtol=1e-12)
    for p in (1, 2):
        unfolded = weight_norms(model, "conv1", p)
        folded = weight_norms(model, "conv1", p, folded=True)
        np.testing.assert_allclose(folded, unfolded * np.abs(scale), rtol=1e-12)
        # and they are the norms of the weights the folded convolution holds
        w = (model.features[0].weight.detach().double() * torch.tensor(scale).view(-1, 1, 1, 1)).flatten(1)
        want = w.abs().sum(1) if p == 1 else w.pow(2).sum(1).sqrt()
        np.testing.assert_allclose(folded, want.numpy(), rtol=1e-6)
        assert (importance_order(f"l{p}-folded", model, "conv1")
                == [int(i) for i in np.lexsort((np.arange(8), want.numpy()))])
    assert importance_order("l1-folded", model, "conv1") != importance_order("l1", model, "conv1")
    with pytest.raises(CarlibError, match="no BatchNorm"):
        importance("l1-folded", model, "conv3")  # conv3 -> ReLU: nothing to fold


def test_folded_reading_of_a_batchnorm_network_is_its_folded_checkpoint():
    torch.manual_seed(0)
    trained = randomize_bn(AlexNetTiny(num_classes=10, batch_norm=True), seed=1)
    folded = fold_batchnorm(trained)  # what carlib train saves for alexnet-tiny
    for layer in ("conv1", "conv2"):
        np.testing.assert_allclose(weight_norms(folded, layer, 1),
                                   weight_norms(trained, layer, 1, folded=True), rtol=1e-5)
        assert importance_order("l1", folded, layer) != importance_order("l1", trained, layer)
    with pytest.raises(CarlibError, match="no BatchNorm"):
        bn_scale(folded, "conv1")


def test_random_car_and_greedy_criteria(bn_net, conv1_greedy):
    model, x, y = bn_net
    data = (x[:24], y[:24])
    assert importance_order("random", model, "conv2", seed=5) == random_order(12, 5)
    assert importance_order("random", model, "conv2", seed=5) != importance_order("random", model, "conv2")
    car = car_index(model, "conv2", data, progress=False)
    assert importance_order("car", model, "conv2", data, **QUIET) == car_order(car)
    assert importance_order("car", model, "conv2", car=car) == car_order(car)
    assert importance_order("greedy", model, "conv1", steps=conv1_greedy) == (
        conv1_greedy["filter"].tolist() + sorted(set(range(8)) - set(conv1_greedy["filter"])))
    steps = conv1_greedy.head(3)  # a shallower table: the filters it never pruned follow, by index
    rest = sorted(set(range(8)) - set(steps["filter"]))
    assert importance_order("greedy", model, "conv1", steps=steps) == steps["filter"].tolist() + rest


def test_bad_input_is_one_clear_error(bn_net):
    model, x, y = bn_net
    with pytest.raises(CarlibError, match="unknown criterion"):
        importance("l3", model, "conv2")
    with pytest.raises(CarlibError, match="needs images"):
        importance("taylor", model, "conv2")
    with pytest.raises(CarlibError, match="unknown layer"):
        importance("l1", model, "conv9")
    with pytest.raises(CarlibError, match="one score per filter"):
        importance(lambda *a, **k: score_table([0.0, 1.0]), model, "conv2")
    with pytest.raises(CarlibError, match="NaN"):
        score_table([0.0, float("nan")])
    with pytest.raises(CarlibError, match="does not cover"):
        importance("car", model, "conv2", car=pd.DataFrame({"filter": [0, 1], "car": [0.0, 0.1]}))
    with pytest.raises(CarlibError, match="twice"):
        importance("greedy", model, "conv2", steps=pd.DataFrame({"step": [1, 2], "filter": [3, 3]}))
