"""Structural pruning where channels are coupled (residual sums, depthwise convolutions,
concatenations), with Torch-Pruning, held to the masked network.

:func:`carlib.prune_filters` rewrites sequential chains itself. Everything else goes through
:func:`prune_coupled`: Torch-Pruning's ``DependencyGraph`` finds the *group* of channels that
must go together (``get_pruning_group``) and removes them. Removing is not always the network
that masking computes (:mod:`carlib.masking`), so carlib checks what it gets:

* **Coupled filters.** When the filter's output is summed with other convolutions' outputs (a
  residual block) or concatenated, the same channels of those convolutions go too. The result
  then equals the network with *all* of them masked, not the requested filters alone. Unless
  ``coupled=True`` this is refused; otherwise :class:`PruneRecord` ``.masked`` lists every
  convolution and filter removed together. A coupled convolution whose channels reach the
  rest of the network only through the requested (depthwise) layer changes nothing once that
  layer is masked, and does not count as coupled.
* **Constant channels.** A depthwise convolution after the layer loses the same channels. In
  the masked network such a channel is not zero: the depthwise convolution of a zero map is
  its bias, shifted by its BatchNorm and passed through its activation, the same value at
  every position for every image. That constant is measured in the masked network and added
  to the bias of the next channel-mixing layer (a 1x1 convolution or a linear layer), so the
  pruned network computes the same function. A non-zero constant entering a larger
  convolution (whose zero padding makes its effect depend on the position) is refused.
* **A final check.** The pruned copy and the masked network run on the same random probe
  images (``input_size``); a pruned copy that fails to run or differs is refused with one line
  naming the layer, rather than returned.

Only ``nn.Conv2d`` (plain, :class:`~carlib.convs.SamePadConv2d`, or depthwise),
``BatchNorm2d``, ``Linear`` inputs and parameter-free operations may be in the group; Torch-
Pruning edits modules in place, so a ``SamePadConv2d`` keeps its class and its padding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from .convs import is_rewritable_conv
from .errors import CarlibError
from .graph import LayerPlan, analyze
from .masking import FilterMask

__all__ = ["PruneRecord", "prune_coupled"]

#: Torch-Pruning's operation types that carry channels through unchanged (no parameters)
PASS_THROUGH_OPS = ("ELEMENTWISE", "CONCAT", "SPLIT", "RESHAPE", "SLICE", "UNBIND", "EXPAND")


@dataclass
class PruneRecord:
    """What :func:`carlib.prune_filters` removed; the pruned model's ``pruning_record``.

    Attributes:
        layer: module path of the requested convolution.
        filters: the requested filter indices, sorted.
        masked: ``{convolution path: filters}``: the pruned model computes what the original
            computes with all of these filters masked (:func:`carlib.mask_filters` on each).
            ``{layer: filters}`` unless the filters were coupled with others.
        removed: ``{convolution path: output channels}`` of every convolution that lost
            channels: ``masked`` plus the depthwise convolutions that went with them.
        folded: ``{layer path: input channels}``: channels that are constant in the masked
            network, added to that layer's bias when removed.
        method: ``"carlib"`` (sequential chain, rewritten by carlib) or ``"torch-pruning"``.
    """

    layer: str
    filters: list[int]
    masked: dict[str, list[int]]
    removed: dict[str, list[int]]
    folded: dict[str, list[int]] = field(default_factory=dict)
    method: str = "carlib"

    @property
    def coupled(self) -> bool:
        """Whether filters of other convolutions were removed (and masked) too."""
        return set(self.masked) != {self.layer}


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _check_member(path: str, m: nn.Module, out_side: bool, layer: str) -> None:
    """Refuse group members whose removal carlib cannot prove equal to masking."""
    fix = f"carlib cannot remove the filters of {layer} exactly; use carlib.mask_filters"
    if isinstance(m, nn.Conv2d):
        if not is_rewritable_conv(m):
            raise CarlibError(f"{path} is a {type(m).__name__}, a Conv2d subclass carlib cannot "
                              f"rewrite; {fix}")
        if m.groups != 1 and not _is_depthwise(m):
            raise CarlibError(f"{path} is a grouped convolution ({m.groups} groups); {fix}")
    elif isinstance(m, nn.Linear):
        if out_side:
            raise CarlibError(f"the outputs of linear layer {path} are coupled with {layer}; {fix}")
    elif not isinstance(m, nn.BatchNorm2d):
        raise CarlibError(f"Torch-Pruning would also prune {path} ({type(m).__name__}); {fix}")


def _absorbed(dg, start: nn.Module, root: nn.Module) -> bool:
    """Whether every path from ``start``'s output to a channel-mixing layer or the model's
    output passes through ``root`` (whose mask then zeroes whatever ``start`` sends)."""
    todo, seen = [dg.module2node[start]], set()
    while todo:
        node = todo.pop()
        for nxt in node.outputs:
            m = nxt.module
            if m is root or nxt in seen:
                continue
            if nxt.type.name == "OUTPUT" or (isinstance(m, (nn.Conv2d, nn.Linear)) and not _is_depthwise(m)):
                return False
            seen.add(nxt)
            todo.append(nxt)
    return True


def _modes(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def _restore_modes(model: nn.Module, modes: dict[str, bool]) -> None:
    for name, m in model.named_modules():
        m.training = modes.get(name, m.training)


@torch.no_grad()
def _masked_run(model: nn.Module, masked: dict[str, list[int]], consumers: list[str],
                x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The masked network's output on ``x`` (eval mode) and the inputs of ``consumers``."""
    hooks, seen = [], {}
    modes = _modes(model)
    model.eval()
    try:
        for path, idx in masked.items():
            plan = analyze(model, path)
            h = FilterMask(model, plan)
            h.mask = torch.ones(plan.layer.filters)
            h.mask[idx] = 0.0
            hooks.append(h)
        for c in consumers:
            hooks.append(model.get_submodule(c).register_forward_pre_hook(
                lambda m, inp, c=c: seen.__setitem__(c, inp[0].detach().clone())))
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
        _restore_modes(model, modes)
    return out, seen


@torch.no_grad()
def _fold_constant(m: nn.Module, path: str, idx: list[int], inp: torch.Tensor, layer: str) -> bool:
    """Add the constant value of input channels ``idx`` of ``m`` to its bias; False if zero."""
    v = inp[:, idx].double()
    ref = v[:1, :, :1, :1] if v.ndim == 4 else v[:1]
    if not torch.allclose(v, ref.expand_as(v), rtol=1e-5, atol=1e-6 * (1 + ref.abs().max().item())):
        raise CarlibError(f"input channels {idx} of {path} still depend on the image after the "
                          f"filters of {layer} are masked; carlib cannot remove them exactly; "
                          "use carlib.mask_filters")
    const = ref.flatten()
    if not bool(const.abs().max() > 0):
        return False
    w = m.weight.double()
    if isinstance(m, nn.Conv2d):
        if m.kernel_size != (1, 1) or any(p != 0 for p in m.padding):
            raise CarlibError(
                f"removing the filters of {layer} leaves a constant non-zero channel entering the "
                f"{m.kernel_size[0]}x{m.kernel_size[1]} convolution {path}, whose zero padding makes "
                "its effect depend on the position; use carlib.mask_filters")
        w = w.sum((2, 3))
    delta = (w[:, idx] @ const).to(m.weight.dtype)
    if m.bias is None:
        m.bias = nn.Parameter(delta, requires_grad=m.weight.requires_grad)
    else:
        m.bias.add_(delta)
    return True


def prune_coupled(model: nn.Module, plan: LayerPlan, filters: list[int], *, coupled: bool = False,
                  input_size: tuple[int, ...] = (3, 224, 224)) -> nn.Module:
    """A physically smaller copy of ``model`` without ``filters`` of ``plan``'s layer, removed
    with Torch-Pruning together with every channel coupled to them (see the module docstring).

    :func:`carlib.prune_filters` calls this for graphs it cannot rewrite itself; call that.

    Args:
        model: the network (not modified).
        plan: the layer's :class:`~carlib.graph.LayerPlan`.
        filters: valid filter indices to remove (checked by the caller).
        coupled: allow removing filters of other convolutions coupled with these (listed in
            ``pruning_record.masked``); refused otherwise.
        input_size: ``(C, H, W)`` of the probe images the graph is traced and checked with.

    Returns:
        The pruned copy, in the mode ``model`` was in, with a :class:`PruneRecord` as its
        ``pruning_record`` attribute. In eval mode it computes what ``model`` computes with
        ``pruning_record.masked`` masked, to float rounding.

    Raises:
        CarlibError: coupled filters without ``coupled=True``, a group carlib cannot remove
        exactly, or a graph Torch-Pruning cannot handle (one line naming the layer).

    Example:
        >>> from torchvision.models import mobilenet_v2
        >>> m = mobilenet_v2(num_classes=10).eval()
        >>> small = prune_coupled(m, analyze(m, "features.0.0"), [0, 1], input_size=(3, 32, 32))
        >>> small.features[1].conv[0][0].out_channels, small.pruning_record.coupled
        (30, False)
    """
    import torch_pruning as tp

    layer, conv = plan.layer.path, plan.layer.module
    drop = sorted(int(k) for k in filters)
    if not is_rewritable_conv(conv):
        raise CarlibError(f"{layer} is a {type(conv).__name__}, a Conv2d subclass carlib cannot "
                          "rebuild; use carlib.mask_filters for this model")
    p0 = next(iter(model.parameters()))
    probe = torch.randn((2,) + tuple(input_size), generator=torch.Generator().manual_seed(0))
    probe = probe.to(device=p0.device, dtype=p0.dtype)
    out = copy.deepcopy(model)
    modes = _modes(model)
    grads = {n: p.requires_grad for n, p in out.named_parameters()}
    try:
        for p in out.parameters():
            p.requires_grad_(True)
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(out, probe[:1], verbose=False)
        root = out.get_submodule(layer)
        if root not in dg.module2node:
            raise CarlibError(f"Torch-Pruning does not find {layer} on the way from the input "
                              "to the output; use carlib.mask_filters for this model")
        group = dg.get_pruning_group(root, tp.prune_conv_out_channels, drop)
    except CarlibError:
        raise
    except Exception as exc:  # noqa: BLE001 - any tracing failure: one line
        raise CarlibError(f"Torch-Pruning cannot trace the graph of {layer} on a "
                          f"{tuple(input_size)} input ({exc.__class__.__name__}); pass the "
                          "model's input_size, or use carlib.mask_filters") from None
    names = {m: n for n, m in out.named_modules()}
    sources, dws, consumers = {}, {}, {}
    for dep, idx in group:
        m, kind = dep.target.module, dep.target.type.name
        if kind in PASS_THROUGH_OPS:
            continue
        if kind == "OUTPUT":
            raise CarlibError(f"removing filters of {layer} would change the model's output; "
                              "use carlib.mask_filters")
        path = names.get(m, str(dep.target.name))
        out_side = dg.is_out_channel_pruning_fn(dep.handler)
        _check_member(path, m, out_side, layer)
        idx = sorted(int(i) for i in idx)
        if _is_depthwise(m):
            dws[path] = idx
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            (sources if out_side else consumers)[path] = idx
    if not dg.check_pruning_group(group):
        raise CarlibError(f"removing filters {drop} of {layer} would remove every channel of a "
                          "layer coupled with it; keep at least one")
    extra = {p: sources[p] for p in sorted(sources)
             if p != layer and not _absorbed(dg, out.get_submodule(p), root)}
    if extra and not coupled:
        raise CarlibError(f"filters {drop} of {layer} are coupled with the same channels of "
                          f"{', '.join(extra)} (summed or concatenated); pass coupled=True to "
                          "remove them together, or use carlib.mask_filters")
    masked = {layer: drop, **extra}
    want, seen = _masked_run(model, masked, list(consumers), probe)
    folded = {}
    for path, idx in consumers.items():
        if _fold_constant(out.get_submodule(path), path, idx, seen[path], layer):
            folded[path] = idx
    try:
        group.prune()
        out.eval()
        with torch.no_grad():
            got = out(probe)
    except Exception as exc:  # noqa: BLE001 - Torch-Pruning left a broken graph
        raise CarlibError(f"Torch-Pruning cannot rewrite the graph after {layer} "
                          f"({exc.__class__.__name__}); use carlib.mask_filters for this model") from None
    if not isinstance(got, torch.Tensor) or not isinstance(want, torch.Tensor):
        raise CarlibError(f"the model's output is not a tensor; carlib cannot check the pruning of "
                          f"{layer}; use carlib.mask_filters for this model")
    scale = want.abs().max().item()
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-3, atol=1e-3 * scale):
        raise CarlibError(f"Torch-Pruning's rewrite of the graph after {layer} does not compute the "
                          "masked network; use carlib.mask_filters for this model")
    _restore_modes(out, modes)
    for n, p in out.named_parameters():
        p.requires_grad_(grads.get(n, p0.requires_grad))
    removed = {**sources, **dws}
    out.pruning_record = PruneRecord(layer, drop, masked, {p: removed[p] for p in sorted(removed)},
                                     folded, "torch-pruning")
    return out
