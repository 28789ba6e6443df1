"""Where a filter's output goes: the graph analysis behind masking, pruning and fast CAR.

For a convolution, :func:`analyze` finds

* the *mask point*: the convolution's output after the normalization and activation that
  directly follow it (pruning a filter zeroes its channel there, for every consumer);
* the *consumer*: the next layer that mixes channels (a ``Conv2d`` with ``groups=1``, or a
  ``Linear`` after flattening), reached from the mask point only through channel-wise,
  zero-preserving operations (pooling, dropout, ReLU-like activations, flatten);
* the *suffix*: everything after the consumer, when it depends on nothing but the
  consumer's output.

The consumer is linear in its input channels, which is what :mod:`carlib.car` exploits.
The analysis uses ``torch.fx`` (:func:`trace`: every ``nn.Conv2d``, subclasses such as
:class:`carlib.convs.SamePadConv2d` included, is one ``call_module`` node); a model that
cannot be traced falls back to the registration order of modules (masking still works;
structural pruning and the fast path do not). Of the ``nn.Conv2d`` subclasses, carlib
rewrites (prunes, or uses as a fast-path consumer) only :class:`~carlib.convs.SamePadConv2d`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .convs import is_rewritable_conv
from .errors import CarlibError
from .layers import ConvLayer, resolve_layer

__all__ = ["LayerPlan", "analyze", "run_nodes", "trace"]

# activations with f(0) == 0: zeroing before them equals zeroing after them
ZERO_ACT_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.ELU,
                    nn.Tanh, nn.Hardtanh, nn.Mish, nn.CELU, nn.SELU, nn.Softsign)
OTHER_ACT_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid)
ZERO_ACT_FUNCS: set[Any] = {F.relu, torch.relu, torch.relu_, F.relu_, F.relu6, F.gelu, F.silu,
                            F.hardswish, F.leaky_relu, F.elu, torch.tanh, F.hardtanh, F.mish}
ZERO_ACT_METHODS = {"relu", "relu_", "tanh", "tanh_"}
CHANNELWISE_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                       nn.Dropout, nn.Dropout2d, nn.Identity) + ZERO_ACT_MODULES
CHANNELWISE_FUNCS: set[Any] = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                               F.adaptive_max_pool2d, F.dropout} | ZERO_ACT_FUNCS
NORM_MODULES = (nn.BatchNorm2d,)


@dataclass
class LayerPlan:
    """The analysis of one convolution (see the module docstring).

    Attributes:
        model: the analyzed network.
        layer: the convolution (alias, path, module).
        norm: module path of the BatchNorm that follows it, if any.
        mask_module: module path whose forward output is masked to prune filters.
        gm: the traced graph (``None`` if the model could not be traced).
        mask_node, consumer_node: graph nodes (fast path only).
        between: channel-wise nodes from the mask point to the consumer.
        consumer: module path of the consumer (``Conv2d`` or ``Linear``), if found.
        flatten: the consumer is a ``Linear`` fed by a flattened feature map.
        suffix: nodes after the consumer, in order, ending with the output.
        fast_reason: why the fast path is unavailable (``None`` when it is available).
    """

    model: nn.Module = field(repr=False)
    layer: ConvLayer
    norm: str | None
    mask_module: str
    gm: fx.GraphModule | None = field(default=None, repr=False)
    prefix: list[fx.Node] = field(default_factory=list)
    mask_node: fx.Node | None = None
    between: list[fx.Node] = field(default_factory=list)
    consumer_node: fx.Node | None = None
    consumer: str | None = None
    flatten: bool = False
    suffix: list[fx.Node] = field(default_factory=list)
    fast_reason: str | None = "not analyzed"
    prune_reason: str | None = "not analyzed"

    @property
    def fast(self) -> bool:
        return self.fast_reason is None


def _matches(node: fx.Node, mods: dict[str, nn.Module], modules: tuple, funcs: set,
             methods: set) -> bool:
    """Whether a node calls one of ``modules``, ``funcs`` or tensor ``methods``."""
    if node.op == "call_module":
        return isinstance(mods[node.target], modules)
    if node.op == "call_function":
        return node.target in funcs
    if node.op == "call_method":
        return node.target in methods
    return False


def _is_zero_act(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    return _matches(node, mods, ZERO_ACT_MODULES, ZERO_ACT_FUNCS, ZERO_ACT_METHODS)


def _is_act(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    if _is_zero_act(node, mods):
        return True
    return node.op == "call_module" and isinstance(mods[node.target], OTHER_ACT_MODULES)


def _is_channelwise(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    return _matches(node, mods, CHANNELWISE_MODULES, CHANNELWISE_FUNCS, ZERO_ACT_METHODS)


def _is_flatten(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    if node.op == "call_module" and isinstance(mods[node.target], nn.Flatten):
        m = mods[node.target]
        return m.start_dim == 1 and m.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    if node.op == "call_method" and node.target == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return start == 1
    return False


class _ConvLeafTracer(fx.Tracer):
    """torch.fx's tracer, keeping every ``nn.Conv2d`` (subclasses too) as a leaf module."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace``, except that every ``nn.Conv2d`` -- a subclass whose forward
    pads or otherwise does more than ``nn.Conv2d`` included -- stays one ``call_module`` node.

    Args:
        model: the network.

    Returns:
        The traced ``GraphModule`` (sharing the model's modules and parameters).

    Raises:
        Whatever ``torch.fx`` raises for a model it cannot trace.

    Example:
        >>> from carlib.convs import SamePadConv2d
        >>> gm = trace(nn.Sequential(SamePadConv2d(3, 4, 3, stride=2), nn.ReLU()))
        >>> [(n.op, n.target) for n in gm.graph.nodes][1]
        ('call_module', '0')
    """
    tracer = _ConvLeafTracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, model.__class__.__name__)


def _module_calls(gm: fx.GraphModule) -> dict[str, int]:
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    return calls


def _sequential_fallback(model: nn.Module, layer: ConvLayer, why: str) -> LayerPlan:
    """Registration-order analysis: conv [BN] [activation] as siblings in one Sequential."""
    parent_path, _, leaf = layer.path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    mask, norm = layer.path, None
    if isinstance(parent, nn.Sequential):
        names = [n for n, _ in parent.named_children()]
        i = names.index(leaf) + 1
        prefix = parent_path + "." if parent_path else ""
        if i < len(names) and isinstance(parent[i], NORM_MODULES):
            norm = mask = prefix + names[i]
            i += 1
        if i < len(names) and isinstance(parent[i], ZERO_ACT_MODULES + OTHER_ACT_MODULES):
            mask = prefix + names[i]
    reason = f"the model cannot be traced with torch.fx ({why})"
    return LayerPlan(model, layer, norm, mask, fast_reason=reason, prune_reason=reason)


def analyze(model: nn.Module, layer: "str | LayerPlan") -> LayerPlan:
    """Analyze where the filters of ``layer`` go (see the module docstring).

    Args:
        model: the network.
        layer: alias (``conv2``) or module path; or a plan of this model, returned as it is
            (so a run traces its layer once and passes the plan along).

    Returns:
        A :class:`LayerPlan`; ``plan.fast`` tells whether the fast CAR path applies and
        ``plan.prune_reason`` whether structural pruning does.

    Raises:
        CarlibError: unknown layer, or a filter output that cannot be masked (for example an
        activation with f(0) != 0 applied as a function).

    Example:
        >>> from torchvision.models import alexnet
        >>> p = analyze(alexnet(), "conv1")
        >>> p.mask_module, p.consumer, p.fast
        ('features.1', 'features.3', True)
    """
    if isinstance(layer, LayerPlan):
        if layer.model is not model:
            raise CarlibError(f"the plan of {layer.layer.alias} was made for another model; "
                              "pass the layer's name, or analyze this model")
        return layer
    info = resolve_layer(model, layer)
    try:
        gm = trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: fall back
        return _sequential_fallback(model, info, f"{exc.__class__.__name__}")
    mods = dict(gm.named_modules())
    calls = _module_calls(gm)
    conv_nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == info.path]
    if len(conv_nodes) != 1:
        raise CarlibError(
            f"layer {layer!r} ({info.path}) is called {len(conv_nodes)} times in the forward pass; "
            "carlib can only prune a convolution that is used exactly once"
        )
    node = conv_nodes[0]
    norm: str | None = None
    mask_module = info.path
    mask_node = node
    # conv -> [BN] -> [activation]
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(mods[users[0].target], NORM_MODULES):
        node = users[0]
        norm = node.target
        mask_node = node
        if calls[norm] == 1:
            mask_module = norm
        users = list(node.users)
    if len(users) == 1 and _is_act(users[0], mods):
        act = users[0]
        if act.op == "call_module" and calls[act.target] == 1:
            mask_module = act.target
            mask_node = act
        elif _is_zero_act(act, mods):
            mask_node = act  # masking before a zero-preserving activation is the same
        else:
            raise CarlibError(
                f"the activation after {info.path} does not map 0 to 0 and is not a module "
                "called once; carlib cannot mask its filters (use an nn.Module activation)"
            )
    elif mask_module != (norm or info.path):
        mask_module = norm or info.path
    plan = LayerPlan(model, info, norm, mask_module, gm=gm, mask_node=mask_node)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    plan.prefix = [n for n in gm.graph.nodes if order[n] <= order[mask_node]]

    # from the mask point to the consumer, through channel-wise ops and flatten
    cur = mask_node
    between: list[fx.Node] = []
    flat = False
    while True:
        users = list(cur.users)
        if len(users) != 1:
            reason = f"the output of {info.path} is used by {len(users)} operations (e.g. a skip connection)"
            plan.fast_reason = plan.prune_reason = reason
            return plan
        nxt = users[0]
        if nxt.op == "call_module" and isinstance(mods[nxt.target], nn.Conv2d) and not flat:
            conv = mods[nxt.target]
            if not is_rewritable_conv(conv):
                reason = (f"its consumer {nxt.target} is a {type(conv).__name__}, a Conv2d subclass "
                          "carlib cannot rewrite")
                plan.fast_reason = plan.prune_reason = reason
                return plan
            if conv.groups != 1 or conv.padding_mode != "zeros":
                reason = f"its consumer {nxt.target} is a grouped or non-zero-padded convolution"
                plan.fast_reason = plan.prune_reason = reason
                return plan
            break
        if nxt.op == "call_module" and isinstance(mods[nxt.target], nn.Linear) and flat:
            break
        if _is_flatten(nxt, mods) and not flat:
            flat = True
        elif not _is_channelwise(nxt, mods):
            what = nxt.target if nxt.op == "call_module" else getattr(nxt.target, "__name__", str(nxt.target))
            reason = f"the output of {info.path} reaches {what}, which carlib cannot rewrite"
            plan.fast_reason = plan.prune_reason = reason
            return plan
        between.append(nxt)
        cur = nxt
    plan.between, plan.consumer_node, plan.consumer, plan.flatten = between, nxt, nxt.target, flat
    if calls[nxt.target] != 1:
        plan.fast_reason = plan.prune_reason = f"its consumer {nxt.target} is called more than once"
        return plan
    plan.prune_reason = None
    if not is_rewritable_conv(info.module):
        plan.prune_reason = (f"{info.path} is a {type(info.module).__name__}, a Conv2d subclass "
                             "carlib cannot rebuild")
    # the suffix must depend on nothing before the consumer but parameters
    after = [n for n in gm.graph.nodes if order[n] > order[nxt]]
    allowed = set(after) | {nxt}
    for n in after:
        for inp in n.all_input_nodes:
            if inp not in allowed and inp.op != "get_attr":
                plan.fast_reason = f"layers after {nxt.target} also read {inp.name} (a skip connection)"
                return plan
    plan.suffix = after
    plan.fast_reason = None
    return plan


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def run_nodes(gm: fx.GraphModule, nodes: list[fx.Node], env: dict[fx.Node, Any]) -> Any:
    """Execute ``nodes`` of ``gm`` in order, reading inputs from and writing results to ``env``.

    Args:
        gm: the traced module.
        nodes: nodes in topological order; an ``output`` node ends the run.
        env: values of nodes already computed (e.g. the placeholder or a cut point).

    Returns:
        The value of the last node executed (the model output for an ``output`` node).
    """
    mods = dict(gm.named_modules())
    last: Any = None

    def load(a: Any) -> Any:
        return fx.node.map_arg(a, lambda n: env[n])

    for n in nodes:
        if n.op == "placeholder":
            last = env[n]
            continue
        if n.op == "get_attr":
            last = _fetch_attr(gm, n.target)
        elif n.op == "call_module":
            last = mods[n.target](*load(n.args), **load(n.kwargs))
        elif n.op == "call_function":
            last = n.target(*load(n.args), **load(n.kwargs))
        elif n.op == "call_method":
            args = load(n.args)
            last = getattr(args[0], n.target)(*args[1:], **load(n.kwargs))
        elif n.op == "output":
            return load(n.args[0])
        env[n] = last
    return last
