"""carlib.baselines: baseline orders, and pruning curves against the naive reference."""

from __future__ import annotations

import numpy as np
import pytest

from carlib.baselines import car_order, l1_order, order_curve, random_order
from carlib.reference import accuracy_counts_naive


@pytest.mark.parametrize("method", ["fast", "masked"])
def test_order_curve_matches_naive(bn_net, method):
    from carlib.engine import Engine

    model, x, y = bn_net
    order = random_order(12, 3)
    eng = Engine(model, "conv2", (x, y), method=method, pair_batch=96 * 4)
    curve = order_curve(model, "conv2", (x, y), order, 10, engine=eng)
    want = [float(accuracy_counts_naive(model, "conv2", (x, y), order[:k])[0].sum()) / len(y)
            for k in range(11)]
    np.testing.assert_array_equal(curve["accuracy"].to_numpy(), np.array(want))
    assert list(curve["filter"]) == [-1] + order[:10]


def test_orders(bn_net):
    import pandas as pd

    model, _, _ = bn_net
    w = model.features[4].weight.detach().abs().sum(dim=(1, 2, 3))
    assert l1_order(model, "conv2") == sorted(range(12), key=lambda i: (float(w[i]), i))
    assert random_order(12, 0) == random_order(12, 0) != random_order(12, 1)
    assert sorted(random_order(12, 0)) == list(range(12))
    car = pd.DataFrame({"filter": [0, 1, 2, 3], "car": [0.1, 0.0, 0.1, -0.2]})
    assert car_order(car) == [3, 1, 0, 2]
