"""carlib.graph_pruning: residual and depthwise graphs, pruned with Torch-Pruning, compute the
masked network; what cannot be removed exactly is refused in one line naming the layer.

Tolerance: 1e-4 of the logit scale (the largest |logit| of the masked network). The pruned
network drops channels that are exactly zero, or folds a constant into a bias, so the two differ
by fp32 rounding only: in float64 both agree to 1e-7-5e-7 of the scale (the fold constant is
measured, and stored, in fp32), while in fp32 each of them is 1e-5-3e-5 of the scale away from
its own float64 result in these 20-layer random networks. 1e-4 is a few times that; masking
moves the logits by 3-130 % of the scale, and an unfolded constant by far more than 1e-4
(both checked, so equality cannot be trivial).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from carlib import mask_filters, prune_filters
from carlib.convs import SamePadConv2d
from carlib.errors import CarlibError

SIZE = (3, 32, 32)
TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """32x32 images: one thread is faster than two that wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def calibrated(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm affine terms (shifts included, so a zero channel becomes a non-zero
    constant after a BatchNorm), running statistics measured on random images: a random
    network whose outputs depend on every layer."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn((16,) + SIZE, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def nets():
    from torchvision.models import mobilenet_v2, resnet18

    from carlib.mobilenet import CoralMobileNetV2

    torch.manual_seed(0)
    x = torch.randn((8,) + SIZE, generator=torch.Generator().manual_seed(5))
    return {"resnet18": calibrated(resnet18(num_classes=10)),
            "mobilenet_v2": calibrated(mobilenet_v2(num_classes=10)),
            "coral": calibrated(CoralMobileNetV2(num_classes=10))}, x


def masked_output(model, masked: dict, x):
    with torch.no_grad(), contextlib.ExitStack() as stack:
        for path, filters in masked.items():
            stack.enter_context(mask_filters(model, path, filters))
        return model(x)


def check(model, layer, filters, x, **kw):
    """Prune, and compare with the masked network the record names (and with the original)."""
    small = prune_filters(model, layer, filters, input_size=SIZE, **kw)
    rec = small.pruning_record
    want = masked_output(model, rec.masked, x)
    with torch.no_grad():
        got, base = small(x), model(x)
    scale = want.abs().max().item()
    assert (want - base).abs().max().item() > 0.05 * scale, "masking must change the output"
    torch.testing.assert_close(got, want, rtol=0, atol=TOL * scale)
    assert torch.equal(got.argmax(1), want.argmax(1))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert rec.method == "torch-pruning" and rec.layer == layer and rec.filters == sorted(filters)
    return small, rec


@pytest.mark.parametrize("layer,coupled_with", [
    ("layer1.0.conv2", {"conv1", "layer1.1.conv2"}),
    ("layer2.0.conv2", {"layer2.0.downsample.0", "layer2.1.conv2"}),
])
def test_resnet_residual_filters_go_together(nets, layer, coupled_with):
    (models, x) = nets
    model = models["resnet18"]
    with pytest.raises(CarlibError, match="coupled with the same channels of") as err:
        prune_filters(model, layer, [1, 6], input_size=SIZE)
    assert all(c in str(err.value) for c in coupled_with) and "\n" not in str(err.value)
    small, rec = check(model, layer, [1, 6], x, coupled=True)
    assert rec.coupled and rec.masked == {p: [1, 6] for p in {layer} | coupled_with}
    assert rec.removed == rec.masked and rec.folded == {}
    # not the network with the requested filters alone masked: that is why it is refused
    alone = masked_output(model, {layer: [1, 6]}, x)
    assert (small(x) - alone).abs().max() > 1e-2
    width = small.get_submodule(layer).out_channels
    assert width == model.get_submodule(layer).out_channels - 2
    assert all(small.get_submodule(c).out_channels == width for c in coupled_with)


def test_resnet_first_conv_of_a_block_stays_carlibs_rewrite(nets):
    (models, x) = nets
    small = prune_filters(models["resnet18"], "layer1.0.conv1", [0, 3], input_size=SIZE)
    assert small.pruning_record.method == "carlib" and not small.pruning_record.coupled
    assert small.layer1[0].conv2.in_channels == 62


def test_mobilenet_first_conv_folds_the_depthwise_constant(nets):
    (models, x) = nets
    model = models["mobilenet_v2"]
    # what depthwise channel k outputs in the masked network: BatchNorm and ReLU6 of zero
    with torch.no_grad():
        const = model.features[1].conv[0][1](torch.zeros(1, 32, 1, 1)).clamp(0, 6).flatten()
    drop = sorted([int(k) for k in torch.nonzero(const > 0)[:2]] + [int(torch.nonzero(const == 0)[0])])
    small, rec = check(model, "features.0.0", drop, x)
    assert not rec.coupled and rec.masked == {"features.0.0": drop}
    assert rec.removed == {"features.0.0": drop, "features.1.conv.0.0": drop}
    assert rec.folded == {"features.1.conv.1": drop}  # two non-zero constants were folded
    dw = small.features[1].conv[0][0]
    assert (dw.in_channels, dw.out_channels, dw.groups) == (29, 29, 29)
    assert small.features[1].conv[1].bias is not None
    small.features[1].conv[1].bias = None  # without the fold: not the masked network
    with torch.no_grad():
        unfolded, want = small(x), masked_output(model, rec.masked, x)
    assert (unfolded - want).abs().max() > 100 * TOL * want.abs().max()


def test_mobilenet_projection_in_a_residual_block(nets):
    (models, x) = nets
    model = models["mobilenet_v2"]
    small, rec = check(model, "features.2.conv.2", [0, 7], x, coupled=True)
    assert rec.masked == {"features.2.conv.2": [0, 7], "features.3.conv.2": [0, 7]}
    assert small.features[4].conv[0][0].in_channels == 22


def test_mobilenet_coral_same_padding_and_depthwise_layer(nets):
    (models, x) = nets
    model = models["coral"]
    small, rec = check(model, "features.2.conv.0.0", [2, 4], x)
    dw = small.features[2].conv[1][0]
    assert type(dw) is SamePadConv2d and dw.stride == (2, 2) and dw.out_channels == 94
    assert rec.folded == {"features.2.conv.2": [2, 4]}
    # a depthwise layer: the expansion conv feeding only it goes too, which masking the
    # depthwise filters makes irrelevant, so the removal is not coupled
    small, rec = check(model, "features.2.conv.1.0", [2, 4], x)
    assert not rec.coupled and set(rec.removed) == {"features.2.conv.0.0", "features.2.conv.1.0"}


class BufferScaled(nn.Module):
    """conv1 -> relu -> times a per-channel buffer -> conv2: Torch-Pruning leaves the buffer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1))
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)) * self.scale).mean((2, 3))


class GroupNormed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.gn(self.conv1(x)))).mean((2, 3))


def test_graphs_that_cannot_be_pruned_exactly_are_refused_in_one_line():
    torch.manual_seed(0)
    cases = [(BufferScaled(), SIZE, "Torch-Pruning cannot rewrite the graph after conv1"),
             (GroupNormed(), SIZE, "would also prune gn \\(GroupNorm\\)"),
             (BufferScaled(), (5, 8, 8), "cannot trace the graph of conv1 on a \\(5, 8, 8\\) input")]
    for model, size, msg in cases:
        with pytest.raises(CarlibError, match=msg) as err:
            prune_filters(model.eval(), "conv1", [2], input_size=size)
        assert "\n" not in str(err.value) and "conv1" in str(err.value)


@pytest.fixture
def cli_env(tmp_path, monkeypatch, nets):
    """Tiny ImageNet in miniature (64x64, 3 classes); the model names load the test networks."""
    from test_data import make_tiny

    src = tmp_path / "shared"
    src.mkdir()
    make_tiny(src, train_per_class=1, val_per_class=1)
    monkeypatch.setenv("CARLIB_DATA_DIR", str(src))
    monkeypatch.setenv("CARLIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARLIB_NO_DOWNLOAD", "1")
    models, _ = nets
    monkeypatch.setattr("carlib.models.load_model", lambda name, weights=None: models[name])
    return tmp_path


def test_cli_saves_a_model_pruned_by_torch_pruning_or_refuses_in_one_line(cli_env, capsys):
    from carlib.cli import main

    out, small = cli_env / "steps.csv", cli_env / "small.pt"
    common = ["--n-remove", "1", "--out", str(out), "--save-model", str(small), "--quiet"]
    assert main(["prune", "--model", "resnet18", "--layer", "layer1.0.conv2"] + common) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "coupled with the same channels of conv1" in err
    assert not out.exists() and not small.exists()  # refused before the greedy run
    assert main(["prune", "--model", "mobilenet_v2", "--layer", "features.0.0"] + common) == 0
    state = torch.load(small, weights_only=True)
    assert state["features.0.0.weight"].shape[0] == 31
    assert state["features.1.conv.0.0.weight"].shape[0] == 31
    assert state["features.1.conv.1.weight"].shape[1] == 31


class DepthwiseThen(nn.Module):
    """conv1 -> BN -> ReLU -> depthwise -> BN -> ReLU -> a linear layer (after pooling and
    flattening) or a 3x3 convolution."""

    def __init__(self, head: str):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.dw, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6)
        self.head = head
        self.fc = nn.Linear(24, 5) if head == "linear" else nn.Conv2d(6, 5, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.bn2(self.dw(torch.relu(self.bn1(self.conv1(x))))))
        if self.head == "linear":
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 2), 1))
        return self.fc(x).mean((2, 3))


def test_depthwise_constants_fold_into_a_linear_layer_and_not_into_a_3x3_convolution():
    torch.manual_seed(0)
    model = calibrated(DepthwiseThen("linear"))
    x = torch.randn((4,) + SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the constants of the removed depthwise channels: two non-zero
        const = torch.relu(model.bn2(model.dw(torch.zeros(1, 6, 1, 1)))).flatten()
    drop = [int(k) for k in torch.nonzero(const > 0)[:2]]
    small = prune_filters(model, "conv1", drop, input_size=SIZE)
    feats = sorted(4 * k + j for k in drop for j in range(4))  # 2x2 positions per channel
    assert small.pruning_record.folded == {"fc": feats} and small.fc.in_features == 16
    want = masked_output(model, {"conv1": drop}, x)
    torch.testing.assert_close(small(x), want, rtol=0, atol=TOL * want.abs().max().item())
    conv_head = calibrated(DepthwiseThen("conv"))
    conv_head.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc")},
                              strict=False)
    with pytest.raises(CarlibError, match="constant non-zero channel entering the 3x3 convolution fc"):
        prune_filters(conv_head, "conv1", drop, input_size=SIZE)
