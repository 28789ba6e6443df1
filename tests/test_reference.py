"""carlib.reference: the naive reference, held to carlib's definition of pruning on its own."""

from __future__ import annotations

import torch
from torch import nn

from carlib import car_index_naive, greedy_prune_naive, mask_filters
from carlib.reference import accuracy_counts_naive

from conftest import SmallBNNet, prototype_data, randomize_bn


class SigmoidNet(nn.Module):
    """conv -> BN -> Sigmoid (f(0) != 0) -> conv -> linear: masking must come after the sigmoid."""

    def __init__(self):
        super().__init__()
        self.c1, self.bn, self.act = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Sigmoid()
        self.c2, self.fc = nn.Conv2d(6, 4, 3), nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.c2(self.act(self.bn(self.c1(x)))), 1))


def _preds_naive(model, layer, x, pruned):
    """The reference's predictions, one image per class so that counts are predictions."""
    out = []
    for i in range(len(x)):
        correct = [int(accuracy_counts_naive(model, layer, (x[i : i + 1], torch.tensor([c])),
                                             pruned)[0].sum()) for c in range(5)]
        out.append(correct.index(1))
    return out


def test_hook_masking_equals_the_library_definition():
    for model in (randomize_bn(SmallBNNet(classes=5)), randomize_bn(SigmoidNet())):
        x, _ = prototype_data(6, 5, 8)
        for layer in ("conv1", "conv2"):
            with mask_filters(model, layer, [0, 2]), torch.no_grad():
                expected = model(x).argmax(1).tolist()
            assert _preds_naive(model, layer, x, [0, 2]) == expected


def test_zeroing_only_the_convolution_would_differ():
    """The BatchNorm shift makes a zeroed convolution output non-zero again: the test data
    must be able to tell the two definitions apart, or the test above proves nothing."""
    model = randomize_bn(SigmoidNet())
    x, _ = prototype_data(64, 5, 8)
    with torch.no_grad():
        h = model.c1.register_forward_hook(lambda m, i, o: o * torch.tensor([0.0] + [1.0] * 5).view(1, -1, 1, 1))
        wrong = model(x)
        h.remove()
        with mask_filters(model, "conv1", [0]):
            right = model(x)
    assert not torch.allclose(wrong, right)


def test_the_model_is_left_as_it_was():
    model = randomize_bn(SmallBNNet()).train()
    x, y = prototype_data(14, 7, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    car_index_naive(model, "conv1", (x, y), filters=[0, 1])
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())


def test_tables_and_greedy_shape():
    model = randomize_bn(SmallBNNet())
    x, y = prototype_data(28, 7, 8)
    overall = car_index_naive(model, "conv2", (x, y))
    long = car_index_naive(model, "conv2", (x, y), per_class=True)
    assert list(overall.columns) == ["filter", "accuracy", "car"] and len(overall) == 12
    assert list(long.columns) == ["filter", "class", "n", "accuracy", "car"] and len(long) == 12 * 7
    assert overall.attrs["n_images"] == 28
    steps = greedy_prune_naive(model, "conv2", (x, y), n_remove=3)
    assert list(steps["step"]) == [1, 2, 3] and steps["filter"].is_unique


def test_a_zeroed_output_changed_in_place_is_no_longer_zeroed():
    """ResNet's ``out += identity`` adds to the BatchNorm output the mask zeroed: the ReLU after
    the addition must not zero the channel again (an in-place activation right after the
    BatchNorm still does)."""
    from torch import nn

    from carlib.reference import accuracy_counts_naive

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.act = nn.Hardsigmoid(inplace=True)  # f(0) != 0, in place
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(4)
            self.relu = nn.ReLU(inplace=True)
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            a = self.act(self.bn(self.conv(x)))
            out = self.bn2(self.conv2(a))
            out += a
            return self.fc(self.relu(out).mean((2, 3)))

    model = Net().eval()
    with torch.no_grad():  # the logits are the pooled channels: a channel's change shows
        model.fc.weight.copy_(torch.eye(4))
        model.fc.bias.zero_()
    x = torch.randn(32, 3, 8, 8)

    def masked_labels(module, k):
        """The predictions with channel k zeroed at ``module``'s output, by a plain hook."""
        def hook(m, i, o):
            o = o.clone()
            o[:, k] = 0
            return o
        h = module.register_forward_hook(hook)
        with torch.no_grad():
            labels = model(x).argmax(1)
        h.remove()
        return labels

    for k in range(4):  # conv: masked after the in-place activation; conv2: after bn2 only
        for layer, module in (("conv", model.act), ("conv2", model.bn2)):
            y = masked_labels(module, k)
            assert int(accuracy_counts_naive(model, layer, (x, y), [k])[0].sum()) == len(y)
