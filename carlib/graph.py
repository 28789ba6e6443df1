"""Where a filter's output goes: the graph analysis behind masking, pruning and fast CAR.

For a convolution, :func:`analyze` finds

* the *mask point*: the convolution's output after the normalization and activation that
  directly follow it (pruning a filter zeroes its channel there, for every consumer);
* the *between* operations: everything reached from the mask point through channel-wise,
  zero-preserving operations (pooling, dropout, ReLU-like activations, flatten; module
  :mod:`carlib.nodes`). Each of their outputs, with the filter pruned, is the unpruned output
  with the filter's channel zeroed;
* the *consumers*: every ``nn.Conv2d`` (any ``groups``, zero padding; of the subclasses only
  :class:`~carlib.convs.SamePadConv2d`) or ``Linear`` after flattening that reads the mask
  point or a between output. A convolution is linear in its input channels, and a grouped one
  mixes a channel only into the outputs of its group, which is what :mod:`carlib.engine`
  exploits;
* the *suffix*: everything else after the mask point, any graph (residual additions,
  concatenations, depthwise convolutions ...). It may read the consumers' outputs, the
  between outputs (with the pruned channel zeroed) and anything that does not depend on the
  pruned layer.

The fast CAR path (``plan.fast``) applies when at least one consumer is found; it falls back
(``plan.fast_reason``) when the mask point reaches a non-zero-padded convolution or a
``Conv2d`` subclass carlib does not know ("its consumer X is a ..."), reaches no consumer
("reaches no convolution or linear layer through channel-wise operations"), or when an
in-place operation after the mask point overwrites a tensor that something else reads.
Structural pruning (``plan.prune_reason`` is ``None``) needs more: a single chain from the
mask point to one ``groups=1`` consumer called once, as in AlexNet or VGG.

The analysis uses ``torch.fx`` (:func:`trace`: every ``nn.Conv2d``, subclasses such as
:class:`carlib.convs.SamePadConv2d` included, is one ``call_module`` node); a model that
cannot be traced falls back to the registration order of modules (masking still works;
structural pruning and the fast path do not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
from torch import nn

from .convs import is_rewritable_conv
from .errors import CarlibError
from .layers import ConvLayer, resolve_layer
from .nodes import (NORM_MODULES, OTHER_ACT_MODULES, ZERO_ACT_MODULES, is_act, is_channelwise,
                    is_flatten, is_inplace, is_zero_act)

__all__ = ["LayerPlan", "analyze", "run_nodes", "trace"]


@dataclass
class LayerPlan:
    """The analysis of one convolution (see the module docstring).

    Attributes:
        model: the analyzed network.
        layer: the convolution (alias, path, module).
        norm: module path of the BatchNorm that follows it, if any.
        mask_module: module path whose forward output is masked to prune filters.
        gm: the traced graph (``None`` if the model could not be traced).
        prefix: the nodes up to the mask point, in order.
        mask_node: the mask point's node.
        between: channel-wise nodes after the mask point (see the module docstring).
        consumers: the consumer nodes, in order (fast path only); ``consumer_node`` and
            ``consumer`` (its module path) name the first one.
        flatten: the first consumer is a ``Linear`` fed by a flattened feature map.
        front: the nodes the fast path runs once per image: the prefix, the between nodes and
            every node that does not depend on the pruned layer, in order.
        cut: the nodes of ``front`` whose values the consumers and the suffix read.
        zeroed: the mask point and the between nodes, each mapped to whether it is flattened
            (their values carry the pruned channels).
        suffix: the remaining nodes, in order, ending with the output.
        fast_reason: why the fast path is unavailable (``None`` when it is available).
        prune_reason: why structural pruning is unavailable (``None`` when it is available).
    """

    model: nn.Module = field(repr=False)
    layer: ConvLayer
    norm: str | None
    mask_module: str
    gm: fx.GraphModule | None = field(default=None, repr=False)
    prefix: list[fx.Node] = field(default_factory=list)
    mask_node: fx.Node | None = None
    between: list[fx.Node] = field(default_factory=list)
    consumers: list[fx.Node] = field(default_factory=list)
    consumer_node: fx.Node | None = None
    consumer: str | None = None
    flatten: bool = False
    front: list[fx.Node] = field(default_factory=list)
    cut: list[fx.Node] = field(default_factory=list)
    zeroed: dict[fx.Node, bool] = field(default_factory=dict)
    suffix: list[fx.Node] = field(default_factory=list)
    fast_reason: str | None = "not analyzed"
    prune_reason: str | None = "not analyzed"

    @property
    def fast(self) -> bool:
        return self.fast_reason is None


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
    if len(users) == 1 and is_act(users[0], mods):
        act = users[0]
        if act.op == "call_module" and calls[act.target] == 1:
            mask_module = act.target
            mask_node = act
        elif is_zero_act(act, mods):
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

    plan.prune_reason = _prune_reason(plan, mods, calls)
    plan.fast_reason = _fast_plan(plan, mods, order)
    return plan


def _prune_reason(plan: LayerPlan, mods: dict[str, nn.Module], calls: dict[str, int]) -> str | None:
    """Why carlib cannot rewrite the layer (``None``: it can): its mask point must reach one
    ``groups=1`` convolution (or a ``Linear`` after flattening), called once, through
    channel-wise operations used by nothing else."""
    path = plan.layer.path
    cur, flat = plan.mask_node, False
    while True:
        users = list(cur.users)
        if len(users) != 1:
            return f"the output of {path} is used by {len(users)} operations (e.g. a skip connection)"
        nxt = users[0]
        if nxt.op == "call_module" and isinstance(mods[nxt.target], nn.Conv2d) and not flat:
            conv = mods[nxt.target]
            if not is_rewritable_conv(conv):
                return (f"its consumer {nxt.target} is a {type(conv).__name__}, a Conv2d subclass "
                        "carlib cannot rewrite")
            if conv.groups != 1 or conv.padding_mode != "zeros":
                return f"its consumer {nxt.target} is a grouped or non-zero-padded convolution"
            break
        if nxt.op == "call_module" and isinstance(mods[nxt.target], nn.Linear) and flat:
            break
        if is_flatten(nxt, mods) and not flat:
            flat = True
        elif not is_channelwise(nxt, mods):
            what = nxt.target if nxt.op == "call_module" else getattr(nxt.target, "__name__", str(nxt.target))
            return f"the output of {path} reaches {what}, which carlib cannot rewrite"
        cur = nxt
    if calls[nxt.target] != 1:
        return f"its consumer {nxt.target} is called more than once"
    if not is_rewritable_conv(plan.layer.module):
        return f"{path} is a {type(plan.layer.module).__name__}, a Conv2d subclass carlib cannot rebuild"
    return None


def _fast_plan(plan: LayerPlan, mods: dict[str, nn.Module], order: dict[fx.Node, int]) -> str | None:
    """Fill the fast-path fields of ``plan``; return why the fast path does not apply (or None)."""
    path, mask = plan.layer.path, plan.mask_node
    zeroed: dict[fx.Node, bool] = {mask: False}  # node -> flattened
    between: list[fx.Node] = []
    consumers: list[fx.Node] = []
    queue = [mask]
    while queue:
        cur = queue.pop(0)
        for u in cur.users:
            if u in zeroed or u in consumers:
                continue
            mod = mods[u.target] if u.op == "call_module" else None
            if isinstance(mod, nn.Conv2d) and not zeroed[cur]:
                if not is_rewritable_conv(mod):
                    return (f"its consumer {u.target} is a {type(mod).__name__}, a Conv2d subclass "
                            "carlib cannot rewrite")
                if mod.padding_mode != "zeros":
                    return f"its consumer {u.target} is a non-zero-padded convolution"
                consumers.append(u)
            elif isinstance(mod, nn.Linear) and zeroed[cur]:
                consumers.append(u)
            elif len(u.all_input_nodes) == 1 and (
                    is_channelwise(u, mods) or (is_flatten(u, mods) and not zeroed[cur])):
                zeroed[u] = zeroed[cur] or is_flatten(u, mods)
                between.append(u)
                queue.append(u)
            # any other reader (an addition, a concatenation ...) runs after the consumers
    if not consumers:
        return (f"the output of {path} reaches no convolution or linear layer through channel-wise "
                "operations")
    nodes = list(plan.gm.graph.nodes)
    affected = {mask}
    for n in nodes[order[mask] + 1 :]:
        if any(i in affected for i in n.all_input_nodes):
            affected.add(n)
    front = [n for n in nodes if n.op != "output"
             and (order[n] <= order[mask] or n in zeroed or n not in affected)]
    front_set, cons = set(front), set(consumers)
    for n in front[len(plan.prefix):]:  # in-place operations run out of their order
        if is_inplace(n, mods) and any(len(i.users) > 1 for i in n.all_input_nodes):
            return f"{n.name} overwrites a tensor that other operations also read"
    suffix = [n for n in nodes if n not in front_set and n not in cons]
    reads = {i for n in suffix for i in n.all_input_nodes if i in front_set}
    suffix = sorted(suffix + [i for i in reads if i.op == "get_attr"], key=order.__getitem__)
    cut = reads | {c.all_input_nodes[0] for c in consumers}
    plan.between = sorted(between, key=order.__getitem__)
    plan.consumers = sorted(consumers, key=order.__getitem__)
    plan.consumer_node = plan.consumers[0]
    plan.consumer = plan.consumer_node.target
    plan.flatten = zeroed[plan.consumer_node.all_input_nodes[0]]
    plan.front = front
    plan.cut = sorted((n for n in cut if n.op != "get_attr"), key=order.__getitem__)
    plan.zeroed = zeroed
    plan.suffix = suffix
    return None


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def run_nodes(gm: fx.GraphModule, nodes: list[fx.Node], env: dict[fx.Node, Any],
              keep: "set[fx.Node] | None" = None) -> Any:
    """Execute ``nodes`` of ``gm`` in order, reading inputs from and writing results to ``env``.

    Args:
        gm: the traced module.
        nodes: nodes in topological order; an ``output`` node ends the run.
        env: values of nodes already computed (e.g. the placeholder or a cut point).
        keep: when given, a value is dropped from ``env`` after its last use by ``nodes``
            unless its node is in ``keep`` (the memory of a forward pass, not of every
            intermediate); ``None`` keeps everything.

    Returns:
        The value of the last node executed (the model output for an ``output`` node).

    Example:
        >>> import torch
        >>> gm = trace(nn.Sequential(nn.ReLU(), nn.Identity()))
        >>> nodes = list(gm.graph.nodes)
        >>> env = {nodes[0]: torch.tensor([-1.0, 2.0])}
        >>> run_nodes(gm, nodes, env, keep=set())
        tensor([0., 2.])
        >>> len(env)
        0
    """
    mods = dict(gm.named_modules())
    last: Any = None
    last_use: dict[fx.Node, int] = {}
    if keep is not None:
        for i, n in enumerate(nodes):
            for inp in n.all_input_nodes:
                last_use[inp] = i

    def load(a: Any) -> Any:
        return fx.node.map_arg(a, lambda n: env[n])

    for i, n in enumerate(nodes):
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
            out = load(n.args[0])
            if keep is not None:
                for inp in n.all_input_nodes:
                    if inp not in keep:
                        env.pop(inp, None)
            return out
        env[n] = last
        if keep is not None:
            for inp in n.all_input_nodes:
                if last_use[inp] == i and inp not in keep:
                    env.pop(inp, None)
    return last
