"""The naive reference every fast path is held to.

Prune one filter with forward hooks, run the whole network over every image, count the
correct images, repeat for the next filter. Slow on purpose and obviously right:
:func:`car_index_naive` is what the tests compare :func:`carlib.car_index` against, and what
``make bench`` times. It shares no code with the engine: it finds the mask point, masks,
counts and builds its tables on its own, so a bug in one cannot hide in both sides of a test.

Masking rule (the definition of *pruning a filter*, as in :mod:`carlib.masking`): the
filter's feature map is zero after the BatchNorm and activation that directly follow its
convolution. Here that is done by hooks alone: the convolution's output channel is zeroed,
and so is the output of every BatchNorm or activation module whose input is an output
zeroed this way (a BatchNorm's shift, or an activation with f(0) != 0, would otherwise make
the channel non-zero again).
"""

from __future__ import annotations

import copy
from typing import Iterable

import pandas as pd
import torch
from torch import nn

from .data import DataLike, as_batches
from .layers import check_filters, resolve_layer

__all__ = ["car_index_naive", "greedy_prune_naive", "accuracy_counts_naive"]

_FOLLOWERS = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish,
              nn.ELU, nn.Tanh, nn.Hardtanh, nn.Mish, nn.CELU, nn.SELU, nn.Softsign, nn.Sigmoid,
              nn.Hardsigmoid, nn.Softplus, nn.LogSigmoid, nn.PReLU)


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place version counter (-1 for inference tensors, which have none)."""
    try:
        return t._version
    except RuntimeError:
        return -1


class _HookMask:
    """Zero channels ``pruned`` at the convolution and at the BatchNorm / activation modules
    that consume its (zeroed) output directly."""

    def __init__(self, model: nn.Module, conv: nn.Module, pruned: list[int]):
        self.keep: torch.Tensor | None = None
        if pruned:
            self.keep = torch.ones(conv.out_channels)
            self.keep[pruned] = 0
        # the zeroed outputs of the current forward pass and their version counters, kept
        # alive so that their ids stay theirs (a freed tensor's id may be reused by an
        # unrelated one); a tensor changed in place since (``out += identity`` in a residual
        # block) is no longer a zeroed output
        self.marked: dict[int, tuple[torch.Tensor, int]] = {}
        self.handles = [conv.register_forward_hook(self._conv_hook)]
        for m in model.modules():
            if isinstance(m, _FOLLOWERS) and m is not conv:
                self.handles.append(m.register_forward_hook(self._follower_hook))

    def _zero(self, out: torch.Tensor) -> torch.Tensor:
        if self.keep is not None:
            out = out * self.keep.to(out.device, out.dtype).view(1, -1, *([1] * (out.dim() - 2)))
        self.marked[id(out)] = (out, _version(out))
        return out

    def _conv_hook(self, module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        self.marked = {}
        return self._zero(out)

    def _follower_hook(self, module: nn.Module, inputs: tuple, out: torch.Tensor):
        if inputs and id(inputs[0]) in self.marked:
            # unchanged since it was zeroed, or changed only by this module in place
            changes = _version(inputs[0]) - self.marked[id(inputs[0])][1]
            if changes == 0 or (changes == 1 and out is inputs[0]):
                return self._zero(out)
        return None

    def remove(self) -> None:
        self.marked = {}
        for h in self.handles:
            h.remove()


def _correct(logits: torch.Tensor, y: torch.Tensor, topk: int) -> torch.Tensor:
    """Label is the argmax (lowest index on ties) or among the ``topk`` largest logits."""
    if topk == 1:
        return logits.argmax(dim=1) == y
    return (logits.topk(topk, dim=1).indices == y[:, None]).any(dim=1)


@torch.no_grad()
def accuracy_counts_naive(model: nn.Module, layer: str, data: DataLike, pruned: Iterable[int],
                          *, batch_size: int = 256, topk: int = 1,
                          device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct images per class and images per class of ``model`` with ``pruned`` zeroed.

    Args:
        model: the network (left as it was: its mode, its device, no hooks).
        layer: alias or module path of the convolution.
        data: a carlib dataset or ``(images, labels)``.
        pruned: filters to prune.
        batch_size: images per forward pass.
        topk: 1 or k.
        device: where to run (default: the CPU).

    Returns:
        ``(correct (classes,), counts (classes,))`` as int64 tensors.

    Example:
        >>> from torchvision.models import alexnet
        >>> x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
        >>> accuracy_counts_naive(alexnet(), "conv1", (x, y), [0])[1][:2].tolist()
        [1, 1]
    """
    dev = torch.device(device or "cpu")
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != dev:
        model = copy.deepcopy(model).to(dev)
    conv = resolve_layer(model, layer)
    masker = _HookMask(model, conv.module, check_filters(pruned, conv.filters, layer))
    was = model.training
    model.eval()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if dev.type == "cuda":  # full fp32, as the engine computes
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    correct = counts = None
    try:
        for x, y in as_batches(data, batch_size, device=dev):
            logits = model(x)
            if correct is None:
                correct = torch.zeros(logits.shape[1], dtype=torch.long)
                counts = torch.zeros(logits.shape[1], dtype=torch.long)
            ok = _correct(logits, y, topk).cpu()
            yc = y.cpu()
            correct += torch.bincount(yc[ok], minlength=logits.shape[1])
            counts += torch.bincount(yc, minlength=logits.shape[1])
    finally:
        masker.remove()
        model.train(was)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return correct, counts


def car_index_naive(model: nn.Module, layer: str, data: DataLike, *, per_class: bool = False,
                    filters: Iterable[int] | None = None, batch_size: int = 256, topk: int = 1,
                    device: str | torch.device | None = None, pruned: Iterable[int] = ()) -> pd.DataFrame:
    """CAR the naive way: one full pass over the data per filter (same table as car_index).

    Args:
        pruned: filters pruned in every evaluated network (CAR relative to that network).
        Other arguments as :func:`carlib.car_index`.

    Returns:
        ``filter, accuracy, car`` or, with ``per_class``, ``filter, class, n, accuracy, car``;
        ``attrs`` ``base_accuracy`` and ``n_images``.

    Example:
        >>> from torchvision.models import alexnet
        >>> x, y = torch.randn(4, 3, 64, 64), torch.arange(4)
        >>> car_index_naive(alexnet(), "conv1", (x, y), filters=[0]).shape
        (1, 3)
    """
    n = resolve_layer(model, layer).filters
    pruned = list(pruned)
    ks = check_filters(filters, n, layer) if filters is not None else [
        k for k in range(n) if k not in pruned]
    kw = dict(batch_size=batch_size, topk=topk, device=device)
    base, counts = accuracy_counts_naive(model, layer, data, pruned, **kw)
    total = int(counts.sum())
    base_acc = float(base.sum()) / total
    rows = []
    for k in ks:
        correct, _ = accuracy_counts_naive(model, layer, data, pruned + [k], **kw)
        if not per_class:
            acc = float(correct.sum()) / total
            rows.append({"filter": k, "accuracy": acc, "car": base_acc - acc})
            continue
        for c in torch.nonzero(counts).flatten().tolist():
            nc = int(counts[c])
            acc = int(correct[c]) / nc
            rows.append({"filter": k, "class": c, "n": nc, "accuracy": acc,
                         "car": int(base[c]) / nc - acc})
    cols = ["filter", "class", "n", "accuracy", "car"] if per_class else ["filter", "accuracy", "car"]
    df = pd.DataFrame(rows, columns=cols)
    df.attrs.update({"base_accuracy": base_acc, "n_images": total})
    return df


def greedy_prune_naive(model: nn.Module, layer: str, data: DataLike, *, n_remove: int,
                       batch_size: int = 256, topk: int = 1,
                       device: str | torch.device | None = None) -> pd.DataFrame:
    """The paper's greedy loop, naively: recompute every CAR with full passes at each step.

    Returns:
        ``step, filter, car, accuracy``, one row per step (ties: the lower filter index).

    Example:
        >>> steps = greedy_prune_naive(model, "conv1", val, n_remove=2)  # doctest: +SKIP
    """
    n = resolve_layer(model, layer).filters
    removed: list[int] = []
    rows = []
    for step in range(1, n_remove + 1):
        remaining = [k for k in range(n) if k not in removed]
        df = car_index_naive(model, layer, data, filters=remaining, batch_size=batch_size,
                             topk=topk, device=device, pruned=removed)
        best = df.sort_values(["car", "filter"], kind="stable").iloc[0]
        removed.append(int(best["filter"]))
        rows.append({"step": step, "filter": int(best["filter"]), "car": float(best["car"]),
                     "accuracy": float(best["accuracy"])})
    return pd.DataFrame(rows)
