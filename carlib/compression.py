"""Deep Compression of one convolution (Han, Mao & Dally, ICLR 2016), after structural pruning.

The pipeline on a layer that :func:`carlib.prune_filters` has already made smaller:

1. :func:`prune_weights`: the smallest weights by magnitude are held at zero (a mask), the rest
   are fine-tuned (:func:`carlib.finetune.finetune`: the gradient of a pruned weight is zero
   and its value stays exactly 0).
2. :func:`share_weights`: the surviving weights are clustered by k-means in one dimension,
   centroids initialised linearly over ``[min, max]`` of the survivors, ``2**bits`` codes; each
   weight becomes its centroid. Fine-tuning then trains the centroids (the codebook): the
   gradient of a shared value is the sum of the gradients of its weights, so weights that
   share a value keep sharing it, and pruned weights stay 0.
3. :func:`compression_row`: the bits the layer takes, counted as the paper stores it, against
   the original fp32 layer (every filter, bias included).

Storage, as counted here. Original: ``(filters x in x kh x kw + filters) x 32`` bits (the
layer before any pruning). Compressed: the cheaper of two formats. Sparse (the paper's): one
entry per surviving weight, in the flattened ``(filter, in, kh, kw)`` order of the kept filters,
holding its code (``bits``; 32 for unshared fp32 values) and the distance from the previous
entry (``index_bits``, 8 for convolutions as in the paper; distances 1 to ``2**index_bits``); a
longer distance is bridged by filler entries whose value is zero, counted like any entry.
Dense: one code per weight of the kept filters, a pruned weight coded as the zero. In either
case a layer with pruned weights gives one of its ``2**bits`` codes to the zero, and k-means
fits ``2**bits - 1`` values. Plus the codebook, ``2**bits x 32`` bits, and the bias of the kept
filters in fp32. Filters removed structurally cost nothing; the kept shape is stated in the row,
and the few integers of a shape header are not counted. Huffman coding of the code streams
(values; positions when sparse), the paper's last stage, is a separate column: the coded
lengths plus, per stream, one 8-bit code length for every symbol of its alphabet (a canonical
code's table).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from .convs import copy_conv
from .data import ImageDataset
from .errors import CarlibError
from .finetune import finetune
from .layers import resolve_layer
from .storage import check_bits, storage_bits
from .train import TrainConfig

__all__ = ["WeightMask", "SharedWeights", "magnitude_mask", "kmeans_1d", "prune_weights",
           "share_weights", "materialize", "storage_bits", "compression_row", "deep_compress"]


class WeightMask(nn.Module):
    """Parametrization ``weight = original * mask`` (a pruned weight is exactly 0, its gradient 0).

    Args:
        mask: bool tensor of the weight's shape, ``True`` where the weight survives.
    """

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.bool().clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


class SharedWeights(nn.Module):
    """Parametrization ``weight = codebook[index]`` where ``mask``, else 0: the trained parameter
    is the codebook, and the gradient of one shared value is the sum of its weights' gradients.

    Args:
        mask: bool tensor of the weight's shape, ``True`` where the weight survives.
        index: int64 tensor of the weight's shape, the code of each surviving weight.
        codebook: the initial shared values (what :func:`torch.nn.utils.parametrize` trains).
        bits: bits of one code; ``2**bits`` codes in all.
        index_bits: bits of one relative position (the storage format, :func:`storage_bits`).
    """

    def __init__(self, mask: torch.Tensor, index: torch.Tensor, codebook: torch.Tensor,
                 bits: int, index_bits: int):
        super().__init__()
        self.register_buffer("mask", mask.bool().clone())
        self.register_buffer("index", index.long().clone())
        self.initial = codebook.detach().clone()
        self.bits, self.index_bits = int(bits), int(index_bits)

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, codebook[self.index], torch.zeros((), dtype=codebook.dtype))

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return self.initial.to(weight.device, weight.dtype)


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The mask keeping the largest weights by magnitude: ``round(sparsity * n)`` are pruned,
    ties broken by pruning the lower flat index first.

    Args:
        weight: any tensor.
        sparsity: the share of weights to prune, in ``[0, 1)``.

    Returns:
        A bool tensor of ``weight``'s shape, ``True`` for the weights kept.

    Raises:
        CarlibError: ``sparsity`` outside ``[0, 1)``.

    Example:
        >>> magnitude_mask(torch.tensor([0.5, -0.1, 0.1, 2.0]), 0.5).tolist()
        [True, False, False, True]
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise CarlibError(f"sparsity must be a number in [0, 1), got {sparsity!r}; "
                          "e.g. 0.8 prunes 80 % of the layer's weights")
    flat = weight.detach().abs().flatten()
    order = torch.argsort(flat, stable=True)
    mask = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[order[: int(round(sparsity * flat.numel()))]] = False
    return mask.view(weight.shape)


def kmeans_1d(values: torch.Tensor, k: int, max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of scalars, centroids initialised linearly over ``[min, max]``.

    Deterministic: a value halfway between two centroids goes to the lower one; a centroid
    that loses all its values keeps its place. Computed in float64.

    Args:
        values: a 1-D tensor (at least one value).
        k: the number of centroids.
        max_iter: the most assignment rounds (it stops earlier when nothing moves).

    Returns:
        ``(centroids, assignment)``: ``k`` sorted centroids (``values``' dtype) and the int64
        centroid of each value.

    Example:
        >>> c, a = kmeans_1d(torch.tensor([0.0, 0.1, 1.0, 1.2]), 2)
        >>> [round(v, 2) for v in c.tolist()], a.tolist()
        ([0.05, 1.1], [0, 0, 1, 1])
    """
    v = values.detach().double().flatten()
    c = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64, device=v.device)
    assign = None
    for _ in range(max_iter):
        c = torch.sort(c).values
        new = torch.bucketize(v, (c[1:] + c[:-1]) / 2)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros(k, dtype=torch.float64, device=v.device).index_add_(0, assign, v)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    return c.to(values.dtype), assign


def _conv(model: nn.Module, layer: str) -> tuple[str, nn.Conv2d]:
    c = resolve_layer(model, layer)
    return c.path, c.module


def _state(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor, nn.Module | None]:
    """(effective weight, survivors mask, parametrization or None) of a convolution."""
    weight = conv.weight.detach()
    if parametrize.is_parametrized(conv, "weight"):
        p = conv.parametrizations.weight[0]
        return weight, p.mask.clone(), p
    return weight, torch.ones_like(weight, dtype=torch.bool), None


def _plain(conv: nn.Conv2d) -> nn.Conv2d:
    """A new convolution of ``conv``'s class (before parametrization) computing what it computes.

    A deep copy of a parametrized module shares its class with the original, so removing the
    parametrization in place would break the original too: modules are replaced instead.
    """
    return copy_conv(conv, type(conv).__bases__[0] if parametrize.is_parametrized(conv) else None)


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def prune_weights(model: nn.Module, layer: str, sparsity: float) -> nn.Module:
    """A copy of ``model`` whose ``layer`` keeps only its largest weights (:class:`WeightMask`).

    Args:
        model: the network (not modified); ``layer`` unpruned or magnitude-pruned before.
        layer: alias (``conv1``) or module path of the convolution.
        sparsity: the share of the layer's (kept filters') weights held at 0, in ``[0, 1)``; at
            least the share already pruned.

    Returns:
        The copy; fine-tune it with :func:`carlib.finetune.finetune`.

    Raises:
        CarlibError: unknown layer, bad sparsity, a lower sparsity than the layer has, or a
        layer whose weights are already shared.

    Example:
        >>> from torchvision.models import alexnet
        >>> m = prune_weights(alexnet(), "conv1", 0.75)
        >>> float((m.features[0].weight == 0).float().mean())
        0.75
    """
    out = copy.deepcopy(model)
    path, conv = _conv(out, layer)
    weight, mask, p = _state(conv)
    if isinstance(p, SharedWeights):
        raise CarlibError(f"the weights of {layer} are already shared; prune before sharing")
    new = magnitude_mask(weight, sparsity)
    if int(new.sum()) > int(mask.sum()):
        raise CarlibError(f"{layer} already has sparsity {1 - float(mask.float().mean()):.4f}; "
                          f"ask for at least that much, not {sparsity}")
    conv = _plain(conv)
    parametrize.register_parametrization(conv, "weight", WeightMask(new & mask))
    _replace(out, path, conv)
    return out


def share_weights(model: nn.Module, layer: str, bits: int = 5, *, index_bits: int = 8) -> nn.Module:
    """A copy of ``model`` whose ``layer``'s surviving weights share ``2**bits`` values
    (k-means, linear initialisation; :class:`SharedWeights`); pruned weights stay 0.

    Args:
        model: the network (not modified); ``layer`` magnitude-pruned or not.
        layer: alias (``conv1``) or module path of the convolution.
        bits: bits of one code (default 5: 32 codes).
        index_bits: bits of one relative position in the stored layer (default 8). When
            weights are pruned, one code is the zero and k-means fits ``2**bits - 1`` values.

    Returns:
        The copy; fine-tune it with :func:`carlib.finetune.finetune` to train the codebook.

    Raises:
        CarlibError: unknown layer, bad ``bits`` or ``index_bits``, weights already shared.

    Example:
        >>> from torchvision.models import alexnet
        >>> m = share_weights(prune_weights(alexnet(), "conv1", 0.5), "conv1", bits=3)
        >>> len(torch.unique(m.features[0].weight)) <= 7 + 1   # 7 values and the pruned zeros
        True
    """
    check_bits(bits)
    check_bits(index_bits, "index_bits")
    out = copy.deepcopy(model)
    path, conv = _conv(out, layer)
    weight, mask, p = _state(conv)
    if isinstance(p, SharedWeights):
        raise CarlibError(f"the weights of {layer} are already shared; share them once")
    k = 2 ** bits - (0 if bool(mask.all()) else 1)
    survivors = weight[mask]
    if survivors.numel() == 0:
        raise CarlibError(f"{layer}: {bits} bit(s) leave no code for its weights; use more bits")
    codebook, assign = kmeans_1d(survivors, k)
    index = torch.zeros(weight.shape, dtype=torch.long, device=weight.device)
    index[mask] = assign
    conv = _plain(conv)
    parametrize.register_parametrization(
        conv, "weight", SharedWeights(mask, index, codebook, bits, index_bits), unsafe=True)
    _replace(out, path, conv)
    return out


def materialize(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parametrized convolutions are plain ones with the weights they
    compute (a network every carlib function, and ``torch.save``, takes as usual).

    Example:
        >>> from torchvision.models import alexnet
        >>> type(materialize(prune_weights(alexnet(), "conv1", 0.5)).features[0]).__name__
        'Conv2d'
    """
    out = copy.deepcopy(model)
    for path, m in list(out.named_modules()):
        if isinstance(m, nn.Conv2d) and parametrize.is_parametrized(m):
            _replace(out, path, _plain(m))
    return out


def compression_row(model: nn.Module, layer: str, *,
                    original: tuple[int, int, int, int] | None = None) -> dict:
    """One table row: how much smaller ``layer`` is stored than the original fp32 layer.

    Args:
        model: the network; ``layer`` plain, magnitude-pruned (:func:`prune_weights`) or shared
            (:func:`share_weights`), possibly with fewer filters than the original. A plain
            layer is counted dense in fp32: pass the parametrized network, not
            :func:`materialize`'s copy.
        layer: alias (``conv1``) or module path of the convolution.
        original: ``(filters, in_channels, kh, kw)`` of the layer before any pruning (its bias,
            if it has one, has ``filters`` entries); default: the layer's present shape.

    Returns:
        A dict: ``layer``, ``shape`` (kept), ``filters_kept``, ``filters_original``,
        ``weights`` (kept filters), ``nonzero``, ``sparsity`` (share of the kept weights pruned),
        ``bits`` (per value; 32 when not shared), ``index_bits``, then :func:`storage_bits`'s
        entries, ``original_bits``, ``factor`` (``original_bits / total_bits``) and
        ``factor_huffman``.

    Example:
        >>> from torchvision.models import alexnet
        >>> compression_row(alexnet(), "conv1")["factor"]
        1.0
    """
    path, conv = _conv(model, layer)
    weight, mask, p = _state(conv)
    shared = isinstance(p, SharedWeights)
    bits = p.bits if shared else None
    index_bits = p.index_bits if shared else 8
    has_bias = conv.bias is not None
    n_bias = conv.out_channels if has_bias else 0
    s = storage_bits(mask, bits, n_bias, index_bits=index_bits, codes=p.index if shared else None)
    shape = tuple(original) if original is not None else tuple(weight.shape)
    if len(shape) != 4 or any(int(d) < 1 for d in shape):
        raise CarlibError(f"original must be (filters, in_channels, kh, kw), got {original!r}")
    original_bits = 32 * (math.prod(shape) + (shape[0] if has_bias else 0))
    nnz = int(mask.sum())
    row = {"layer": layer, "shape": "x".join(str(d) for d in weight.shape),
           "filters_kept": conv.out_channels, "filters_original": int(shape[0]),
           "weights": weight.numel(), "nonzero": nnz, "sparsity": 1 - nnz / weight.numel(),
           "bits": bits if shared else 32, "index_bits": index_bits if s["format"] == "sparse" else 0}
    row.update(s)
    row.update(original_bits=original_bits, factor=original_bits / s["total_bits"],
               factor_huffman=original_bits / s["huffman_bits"])
    return row


def deep_compress(model: nn.Module, layer: str, train: ImageDataset, *, sparsity: float,
                  bits: int = 5, config: TrainConfig | None = None, work_dir: str | Path,
                  original: tuple[int, int, int, int] | None = None,
                  progress: bool = True) -> tuple[nn.Module, dict]:
    """The whole pipeline on one layer: :func:`prune_weights`, fine-tune, :func:`share_weights`,
    fine-tune the codebook (each :func:`carlib.finetune.finetune` run resumable in ``work_dir``),
    then :func:`compression_row`.

    Args:
        model: the network (not modified), e.g. after :func:`carlib.prune_filters`.
        layer: alias (``conv1``) or module path of the convolution.
        train: the fine-tuning images, or ``None``: no fine-tuning (the accuracy "without
            retraining").
        sparsity: the share of the layer's weights pruned by magnitude, in ``[0, 1)``.
        bits: bits of one shared value's code.
        config: the fine-tuning hyper-parameters of both runs (default
            :func:`carlib.finetune.finetune_config`).
        work_dir: folder of the two runs' checkpoints and logs.
        original: ``(filters, in_channels, kh, kw)`` of the layer before structural pruning.
        progress: show tqdm bars.

    Returns:
        ``(network, row)``: the compressed network (parametrized: fine-tune it further, or
        :func:`materialize` it) and its :func:`compression_row`.

    Example:
        >>> small = prune_filters(load_model(), "conv1", steps["filter"])        # doctest: +SKIP
        >>> net, row = deep_compress(small, "conv1", train, sparsity=0.8, bits=5,
        ...                          work_dir="runs/dc", original=(64, 3, 11, 11))  # doctest: +SKIP
    """
    tag = f"{layer}-s{sparsity:g}-b{bits}"
    check_bits(bits)
    net = prune_weights(model, layer, sparsity)
    if train is not None:
        net, _ = finetune(net, train, None, config, work_dir=work_dir, name=f"{tag}-pruned",
                          progress=progress)
    net = share_weights(net, layer, bits)
    if train is not None:
        net, _ = finetune(net, train, None, config, work_dir=work_dir, name=f"{tag}-shared",
                          progress=progress)
    return net, compression_row(net, layer, original=original)
