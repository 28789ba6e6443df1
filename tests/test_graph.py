"""carlib.graph: where a filter's output goes, and a plan made once and passed along."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import alexnet, mobilenet_v2, resnet18, vgg11_bn

from carlib import car_index, mask_filters, prune_filters
from carlib.engine import Engine
from carlib.errors import CarlibError
from carlib.graph import LayerPlan, analyze, run_nodes


def test_analysis_of_common_architectures():
    p = analyze(alexnet(), "conv5")
    assert (p.mask_module, p.consumer, p.flatten, p.fast) == ("features.11", "classifier.1", True, True)
    p = analyze(vgg11_bn(), "conv1")
    assert (p.norm, p.mask_module, p.consumer, p.fast) == ("features.1", "features.2", "features.4", True)
    p = analyze(resnet18(), "conv2")  # inside a residual block: prunable and fast
    assert p.mask_module == "layer1.0.bn1" and p.prune_reason is None and p.fast
    assert [n.name for n in p.cut] == ["maxpool", "layer1_0_relu"]  # the addition reads maxpool
    p = analyze(resnet18(), "conv1")  # the skip addition reads the pruned map: fast, not prunable
    assert p.fast and [c.target for c in p.consumers] == ["layer1.0.conv1"]
    assert "used by 2 operations" in p.prune_reason
    p = analyze(resnet18(), "conv3")  # its BatchNorm feeds the addition: no consumer
    assert not p.fast and "no convolution or linear layer" in p.fast_reason
    p = analyze(mobilenet_v2(), "conv1")  # consumer is a depthwise convolution
    assert p.fast and p.consumer == "features.1.conv.0.0" and "grouped" in p.prune_reason


def test_in_place_operations_on_shared_tensors_fall_back():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3)
            self.conv2 = torch.nn.Conv2d(4, 4, 3)

        def forward(self, x):
            a = self.conv1(x)
            b = torch.nn.functional.max_pool2d(a, 2)
            c = torch.relu_(b)  # overwrites b, which the addition below also reads
            return self.conv2(c).mean() + b.mean()

    p = analyze(Net(), "conv1")
    assert not p.fast and "overwrites" in p.fast_reason


def test_run_nodes_can_free_what_it_no_longer_needs(bn_net):
    model, x, _ = bn_net
    plan = analyze(model, "conv1")
    placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
    env = {placeholder: x}
    with torch.no_grad():
        out = run_nodes(plan.gm, list(plan.gm.graph.nodes), env, keep={plan.mask_node})
        assert torch.equal(out, model(x))
    assert set(env) == {plan.mask_node}


def test_a_plan_is_passed_along_and_belongs_to_its_model(bn_net):
    model, x, y = bn_net
    plan = analyze(model, "conv2")
    assert analyze(model, plan) is plan and isinstance(plan, LayerPlan)
    assert Engine(model, plan, (x, y)).plan is plan
    by_name = car_index(model, "conv2", (x, y), progress=False)
    by_plan = car_index(model, plan, (x, y), progress=False)
    assert by_plan.equals(by_name)
    with mask_filters(model, plan, [1]):
        masked = model(x)
    assert prune_filters(model, plan, [1])(x).allclose(masked, atol=1e-5)
    other = type(model)().eval()
    with pytest.raises(CarlibError, match="another model"):
        analyze(other, plan)
    assert "model=" not in repr(plan)  # the plan's repr stays short


def test_run_nodes_reproduces_the_forward_pass_in_pieces(bn_net):
    model, x, _ = bn_net
    plan = analyze(model, "conv1")
    placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
    env = {placeholder: x}
    run_nodes(plan.gm, plan.prefix, env)
    rest = [n for n in plan.gm.graph.nodes if n not in plan.prefix and n.op != "placeholder"]
    with torch.no_grad():
        assert torch.equal(run_nodes(plan.gm, rest, env), model(x))
