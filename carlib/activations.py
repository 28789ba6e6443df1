"""A layer's feature maps at its mask point, and the activation-based importance criteria.

The *mask point* is the convolution's output after the BatchNorm and activation that directly
follow it (:mod:`carlib.graph`): the map that pruning a filter zeroes. Every criterion here reads
that map, on any layer carlib resolves, batch by batch, in eval mode:

* ``mean_activation``: the mean of the filter's map over images and positions;
* ``apoz``: the average percentage of zeros of the map (Hu et al. 2016, *Network Trimming*);
  the score is ``1 - APoZ``, so the filter with the most zeros comes first;
* ``taylor``: the first-order Taylor criterion of Molchanov et al. 2017 (*Pruning Convolutional
  Neural Networks for Resource Efficient Inference*, eq. 8): for image ``n`` and filter ``k``,
  ``t[n, k] = (1/M) sum_m a[n,k,m] * dC_n/da[n,k,m]`` over the ``M = H x W`` positions of the
  map, with ``C_n`` the cross-entropy (natural log) of image ``n`` against its label; the score is
  ``mean_n |t[n, k]|`` (the paper computes the criterion per example and averages over them).
  The paper's layer-wise L2 normalisation rescales every filter of a layer alike, so it is left
  out (it changes no order). The derivative is taken through carlib's mask: the map is
  multiplied by a per-image channel mask ``m`` (all ones) and ``t = dC/dm / M``, which is
  ``sum_m a * dC/da / M`` exactly.

Only the layers up to the mask point run for the activation statistics when the model can be
traced (the rest of the network too for ``taylor``, through the traced graph); otherwise the
whole model runs with a hook at the mask module.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import DataLike, as_batches
from .engine import eval_mode, model_on, resolve_device
from .errors import CarlibError
from .graph import LayerPlan, analyze, run_nodes

__all__ = ["mask_point_activations", "mask_point_taylor", "mean_activation_scores", "apoz_scores",
           "taylor_scores"]


@torch.no_grad()
def mask_point_activations(model: nn.Module, layer: str | LayerPlan, x: torch.Tensor) -> torch.Tensor:
    """The layer's output after its normalization and activation, for a batch ``x``.

    Only the layers up to that point run when the model can be traced; otherwise the whole
    model runs with a hook at the mask point. The model runs in eval mode and is left in the
    mode it had.

    Args:
        model: the network.
        layer: alias, module path, or the layer's :class:`~carlib.graph.LayerPlan` (pass the
            plan when calling batch after batch: the graph is then traced once).
        x: normalized images ``(N, C, H, W)``.

    Returns:
        ``(N, filters, H', W')``.

    Example:
        >>> from torchvision.models import alexnet
        >>> mask_point_activations(alexnet(), "conv1", torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 64, 55, 55])
    """
    plan = analyze(model, layer)
    with eval_mode(model):
        if plan.gm is not None and plan.mask_node is not None:
            placeholder = next(n for n in plan.gm.graph.nodes if n.op == "placeholder")
            return run_nodes(plan.gm, plan.prefix, {placeholder: x}).detach().clone()
        out: dict[str, torch.Tensor] = {}
        h = model.get_submodule(plan.mask_module).register_forward_hook(
            lambda m, i, o: out.__setitem__("a", o.detach().clone()))
        try:
            model(x)
        finally:
            h.remove()
        return out["a"]


def mask_point_taylor(model: nn.Module, layer: str | LayerPlan, x: torch.Tensor,
                      y: torch.Tensor) -> torch.Tensor:
    """Molchanov's first-order Taylor term of every (image, filter) pair, before the absolute
    value: ``t[n, k] = (1/M) sum_m a[n,k,m] * dC_n/da[n,k,m]`` (see the module docstring).

    Args:
        model: the network (eval mode is used; no parameter gradient is stored).
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        x: normalized images ``(N, C, H, W)``.
        y: their labels ``(N,)``.

    Returns:
        float32 ``(N, filters)``.

    Raises:
        CarlibError: a label outside the model's outputs.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
        >>> mask_point_taylor(net, "conv1", torch.zeros(2, 3, 8, 8), torch.tensor([0, 1])).shape
        torch.Size([2, 4])
    """
    plan = analyze(model, layer)
    shape: dict[str, torch.Size] = {}
    with eval_mode(model), torch.enable_grad():
        if plan.gm is not None and plan.mask_node is not None:
            nodes = list(plan.gm.graph.nodes)
            env = {next(n for n in nodes if n.op == "placeholder"): x}
            with torch.no_grad():
                a = run_nodes(plan.gm, plan.prefix, env)
            mask = torch.ones(a.shape[:2] + (1,) * (a.ndim - 2), device=a.device, dtype=a.dtype,
                              requires_grad=True)
            shape["a"] = a.shape
            env[plan.mask_node] = a.detach() * mask
            prefix = set(plan.prefix)
            logits = run_nodes(plan.gm, [n for n in nodes if n not in prefix], env)
        else:
            holder: dict[str, torch.Tensor] = {}

            def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
                shape["a"] = out.shape
                holder["m"] = torch.ones(out.shape[:2] + (1,) * (out.ndim - 2), device=out.device,
                                         dtype=out.dtype, requires_grad=True)
                return out * holder["m"]

            h = model.get_submodule(plan.mask_module).register_forward_hook(hook)
            try:
                logits = model(x)
            finally:
                h.remove()
            mask = holder["m"]
        if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
            raise CarlibError(f"the labels run from {int(y.min())} to {int(y.max())} but the model "
                              f"has {logits.shape[1]} outputs; use labels in 0..{logits.shape[1] - 1}")
        loss = F.cross_entropy(logits, y.to(logits.device), reduction="sum")
        (grad,) = torch.autograd.grad(loss, mask)
    positions = int(np.prod(shape["a"][2:])) if len(shape["a"]) > 2 else 1
    return grad.reshape(grad.shape[0], grad.shape[1]).detach().float() / positions


def _batches(model: nn.Module, layer: str | LayerPlan, data: DataLike, batch_size: int,
             device: str | torch.device | None):
    """The model on ``device``, its plan, and the data's batches there."""
    dev = resolve_device(device)
    moved = model_on(model, dev)
    name = layer.layer.path if isinstance(layer, LayerPlan) and moved is not model else layer
    plan = analyze(moved, name)
    return moved, plan, as_batches(data, batch_size, device=dev)


def _map_statistics(model: nn.Module, layer: str | LayerPlan, data: DataLike, batch_size: int,
                    device: str | torch.device | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and share of exact zeros of each filter's map over images and positions (float64)."""
    moved, plan, batches = _batches(model, layer, data, batch_size, device)
    total = zeros = None
    count = 0
    for x, _ in batches:
        a = mask_point_activations(moved, plan, x).double()
        dims = [0] + list(range(2, a.ndim))
        s, z = a.sum(dim=dims).cpu(), (a == 0).sum(dim=dims).cpu().double()
        total, zeros = (s, z) if total is None else (total + s, zeros + z)
        count += a.numel() // a.shape[1]
    if total is None:
        raise CarlibError("the dataset has no images; choose a split or subset with images")
    return (total / count).numpy(), (zeros / count).numpy()


def mean_activation_scores(model: nn.Module, layer: str | LayerPlan, data: DataLike, *,
                           batch_size: int = 256, device: str | torch.device | None = None) -> np.ndarray:
    """The mean of each filter's map at the mask point over all images and positions.

    Args:
        model: the network.
        layer: alias, module path or :class:`~carlib.graph.LayerPlan`.
        data: a carlib dataset or ``(images, labels)``.
        batch_size: images per forward pass.
        device: where to compute (default: the CPU).

    Returns:
        float64 ``(filters,)``; the lowest is pruned first.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.copy_(torch.tensor([0.0, -1.0]))
        >>> mean_activation_scores(net, "conv1", (torch.ones(1, 3, 2, 2), torch.zeros(1).long()))
        array([3., 2.])
    """
    return _map_statistics(model, layer, data, batch_size, device)[0]


def apoz_scores(model: nn.Module, layer: str | LayerPlan, data: DataLike, *, batch_size: int = 256,
                device: str | torch.device | None = None) -> np.ndarray:
    """``1 - APoZ``: the share of non-zero outputs of each filter's map (Hu et al. 2016).

    Args:
        model, layer, data, batch_size, device: as :func:`mean_activation_scores`.

    Returns:
        float64 ``(filters,)`` in [0, 1]; the filter with the highest APoZ (lowest score) is
        pruned first.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(1.0)
        >>> x = torch.tensor([[[[1.0, -1.0], [-2.0, -3.0]]]])
        >>> apoz_scores(net, "conv1", (x, torch.zeros(1).long()))  # 3 of 4 positions are zero
        array([0.25])
    """
    return 1.0 - _map_statistics(model, layer, data, batch_size, device)[1]


def taylor_scores(model: nn.Module, layer: str | LayerPlan, data: DataLike, *, batch_size: int = 256,
                  device: str | torch.device | None = None) -> np.ndarray:
    """Molchanov et al.'s first-order Taylor criterion ``mean_n |t[n, k]|`` of every filter
    (:func:`mask_point_taylor`; the cross-entropy of each image against its label).

    Args:
        model, layer, data, batch_size, device: as :func:`mean_activation_scores`.

    Returns:
        float64 ``(filters,)``, non-negative; the lowest is pruned first.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
        >>> s = taylor_scores(net, "conv1", (torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 0, 1, 1])))
        >>> s.shape, bool((s >= 0).all())
        ((4,), True)
    """
    moved, plan, batches = _batches(model, layer, data, batch_size, device)
    total, count = None, 0
    for x, y in batches:
        s = mask_point_taylor(moved, plan, x, y).double().abs().sum(dim=0).cpu()
        total = s if total is None else total + s
        count += x.shape[0]
    if total is None:
        raise CarlibError("the dataset has no images; choose a split or subset with images")
    return (total / count).numpy()
