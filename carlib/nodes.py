"""What a traced operation does to channels: the node classes :mod:`carlib.graph` relies on.

A ``torch.fx`` node is *channel-wise and zero-preserving* when each output channel depends
only on the same input channel and a zero channel stays zero (pooling, dropout, ReLU-like
activations): zeroing a filter's map before it equals zeroing the channel after it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["ZERO_ACT_MODULES", "OTHER_ACT_MODULES", "ZERO_ACT_FUNCS", "ZERO_ACT_METHODS",
           "CHANNELWISE_MODULES", "CHANNELWISE_FUNCS", "NORM_MODULES", "matches", "is_zero_act",
           "is_act", "is_channelwise", "is_flatten", "is_inplace"]

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
_INPLACE_FUNCS: set[Any] = {torch.relu_, F.relu_}


def matches(node: fx.Node, mods: dict[str, nn.Module], modules: tuple, funcs: set,
            methods: set) -> bool:
    """Whether a node calls one of ``modules``, ``funcs`` or tensor ``methods``.

    Args:
        node: the node; mods: the traced module's ``dict(named_modules())``.
        modules, funcs, methods: module classes, functions and method names to look for.

    Returns:
        True when the node calls one of them.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
        >>> node = list(gm.graph.nodes)[1]
        >>> matches(node, dict(gm.named_modules()), (nn.ReLU,), set(), set())
        True
    """
    if node.op == "call_module":
        return isinstance(mods[node.target], modules)
    if node.op == "call_function":
        return node.target in funcs
    if node.op == "call_method":
        return node.target in methods
    return False


def is_zero_act(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether the node is an activation with f(0) == 0 (see :func:`matches` for the arguments).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU6()))
        >>> is_zero_act(list(gm.graph.nodes)[1], dict(gm.named_modules()))
        True
    """
    return matches(node, mods, ZERO_ACT_MODULES, ZERO_ACT_FUNCS, ZERO_ACT_METHODS)


def is_act(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether the node is an activation, whatever its f(0).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Sigmoid()))
        >>> mods, sigmoid = dict(gm.named_modules()), list(gm.graph.nodes)[1]
        >>> is_act(sigmoid, mods), is_zero_act(sigmoid, mods)
        (True, False)
    """
    if is_zero_act(node, mods):
        return True
    return node.op == "call_module" and isinstance(mods[node.target], OTHER_ACT_MODULES)


def is_channelwise(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether the node is channel-wise and zero-preserving (see the module docstring).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.MaxPool2d(2)))
        >>> [is_channelwise(n, dict(gm.named_modules())) for n in gm.graph.nodes]
        [False, True, False]
    """
    return matches(node, mods, CHANNELWISE_MODULES, CHANNELWISE_FUNCS, ZERO_ACT_METHODS)


def is_flatten(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether the node flattens all but the batch dimension.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Flatten()))
        >>> is_flatten(list(gm.graph.nodes)[1], dict(gm.named_modules()))
        True
    """
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


def is_inplace(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether the node may overwrite its input (an ``inplace=True`` module or keyword, a
    ``relu_``-style function or method).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU(inplace=True)))
        >>> is_inplace(list(gm.graph.nodes)[1], dict(gm.named_modules()))
        True
    """
    if node.op == "call_module":
        return bool(getattr(mods[node.target], "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        return node.target in _INPLACE_FUNCS or bool(node.kwargs.get("inplace", False))
    return False
