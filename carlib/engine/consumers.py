"""How pruning one filter changes a consumer's output: the per-consumer rules of the fast path.

A *consumer* (:mod:`carlib.graph`) reads the pruned layer's output, possibly after channel-wise
operations, so pruning filter *k* zeroes channel *k* of its input. Each rule writes, for a
batch of images and a list of filters, the consumer's output with each filter pruned in turn,
from its input and its unpruned output, without running the consumer again:

* :class:`LinearConsumer`: a ``groups=1`` convolution or a ``Linear`` after flattening. It is
  linear in its input channels, so the output without filter *k* is the output minus filter
  *k*'s contribution alone, which costs 1/C of the consumer.
* :class:`GroupedConsumer`: a convolution with ``groups > 1``. Channel *k* reaches only the
  outputs of its group, which are recomputed from the group's input with channel *k* zeroed;
  for a depthwise convolution (one input channel per group) they are the convolution of a zero
  channel, i.e. its bias (or 0) everywhere. The other output channels are copied unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..convs import SamePadConv2d

__all__ = ["LinearConsumer", "GroupedConsumer", "consumer_rule"]


def _padded(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` padded as a :class:`~carlib.convs.SamePadConv2d` pads its input itself (other
    convolutions pad by their ``padding``)."""
    return conv.pad_input(x) if isinstance(conv, SamePadConv2d) else x


class LinearConsumer:
    """A ``groups=1`` convolution or a ``Linear`` fed by a flattened map (see the module
    docstring).

    Args:
        module: the consumer.
        flatten: it is a ``Linear`` fed by a flattened ``(N, C * S)`` map.
        filters: the pruned layer's filter count ``C``.
        channels_last: the consumer's output is channels-last.

    Example:
        >>> rule = LinearConsumer(nn.Conv2d(4, 6, 3, padding=1), False, 4, False)
        >>> p = torch.randn(2, 4, 5, 5)
        >>> _ = torch.set_grad_enabled(False)  # as in the engine
        >>> z = rule.module(p)
        >>> out = torch.empty(2, 3, 6, 5, 5)
        >>> rule.without_each(p, z, [0, 2, 3], out)
        >>> q = p.clone(); q[:, 2] = 0
        >>> torch.allclose(out[:, 1], rule.module(q), atol=1e-5)
        True
        >>> _ = torch.set_grad_enabled(True)
    """

    linear = True

    def __init__(self, module: nn.Module, flatten: bool, filters: int, channels_last: bool):
        self.module = module
        self.flatten = flatten
        self.filters = filters
        self.channels_last = channels_last

    def contributions(self, p: torch.Tensor, ks: list[int]) -> torch.Tensor:
        """Each filter's contribution to the output: ``(N, G, ...)``, image-major (channels-last
        like the output when :attr:`channels_last`).

        Args:
            p: the consumer's input ``(N, ...)``; ks: the filters.

        Returns:
            The contributions, bias excluded.
        """
        cons, g = self.module, len(ks)
        if self.flatten:
            x = p.view(p.shape[0], self.filters, -1)[:, ks]  # (N, G, S)
            w = cons.weight.view(cons.out_features, self.filters, -1)[:, ks]  # (O, G, S)
            return torch.einsum("ngs,ogs->ngo", x, w)
        x = _padded(cons, p[:, ks])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        w = cons.weight[:, ks]  # (O, G, kh, kw)
        wg = w.transpose(0, 1).reshape(g * cons.out_channels, 1, *w.shape[2:])
        out = F.conv2d(x, wg, None, cons.stride, cons.padding, cons.dilation, groups=g)
        return out.unflatten(1, (g, cons.out_channels))

    def without_each(self, p: torch.Tensor, z: torch.Tensor, ks: list[int],
                     out: torch.Tensor) -> None:
        """Write the output with each filter of ``ks`` pruned in turn into ``out``.

        For a convolution with numeric padding each filter's contribution is an im2col matrix
        product subtracted from ``z`` by the same call (``baddbmm``): one pass over the output
        instead of a single-input-channel convolution and a subtraction (measured in
        ``bench/README.md``; identical values).

        Args:
            p: the consumer's input ``(N, ...)``; z: its output ``(N, ...)``.
            ks: the filters.
            out: ``(N, G, ...)``, a view of the image-major pairs buffer (written).
        """
        cons = self.module
        if self.flatten or isinstance(cons.padding, str):
            torch.sub(z.unsqueeze(1), self.contributions(p, ks), out=out)
            return
        n, g = z.shape[0], len(ks)
        o, (kh, kw) = cons.out_channels, cons.kernel_size
        cols = F.unfold(_padded(cons, p[:, ks]), cons.kernel_size, cons.dilation, cons.padding,
                        cons.stride)
        cols = cols.view(n, g, kh * kw, -1)  # (N, G, kh*kw, L)
        w = cons.weight[:, ks].reshape(o, g, kh * kw)
        if self.channels_last:  # rows are (position, channel): z - cols^T @ w^T
            z3 = z.permute(0, 2, 3, 1).view(n, -1, o)
            for j in range(g):
                torch.baddbmm(z3, cols[:, j].transpose(1, 2), w[:, j].t().expand(n, -1, -1),
                              alpha=-1, out=out[:, j].permute(0, 2, 3, 1).view(n, -1, o))
        else:  # rows are (channel, position): z - w @ cols
            z3 = z.view(n, o, -1)
            for j in range(g):
                torch.baddbmm(z3, w[:, j].expand(n, -1, -1), cols[:, j], alpha=-1,
                              out=out[:, j].view(n, o, -1))

    def pair_macs(self, out_numel: int) -> int:
        """Multiply-accumulates per (image, filter): 1/C of the consumer's.

        Args:
            out_numel: elements of one image's output.
        """
        cons = self.module
        if self.flatten:
            return out_numel * cons.in_features // self.filters
        return out_numel * cons.kernel_size[0] * cons.kernel_size[1]


class GroupedConsumer:
    """A convolution with ``groups > 1`` (see the module docstring).

    Args:
        module: the consumer.

    Example:
        >>> dw = nn.Conv2d(4, 8, 3, padding=1, groups=4)
        >>> p = torch.randn(2, 4, 5, 5)
        >>> out = torch.empty(2, 1, 8, 5, 5)
        >>> GroupedConsumer(dw).without_each(p, dw(p), [1], out)
        >>> q = p.clone(); q[:, 1] = 0
        >>> torch.equal(out[:, 0], dw(q))
        True
    """

    linear = False

    def __init__(self, module: nn.Conv2d):
        self.module = module
        self.in_per_group = module.in_channels // module.groups
        self.out_per_group = module.out_channels // module.groups

    def without_each(self, p: torch.Tensor, z: torch.Tensor, ks: list[int],
                     out: torch.Tensor) -> None:
        """Write the output with each filter of ``ks`` pruned in turn into ``out``.

        Args:
            p: the consumer's input ``(N, C, H, W)``; z: its output.
            ks: the filters (input channels of the consumer).
            out: ``(N, G, O, H', W')``, a view of the image-major pairs buffer (written).
        """
        cons, ipg, opg = self.module, self.in_per_group, self.out_per_group
        out.copy_(z.unsqueeze(1).expand_as(out))
        for j, k in enumerate(ks):
            grp = k // ipg
            o = slice(grp * opg, (grp + 1) * opg)
            if ipg == 1:  # the convolution of a zero channel: the bias, or 0
                b = cons.bias[o] if cons.bias is not None else torch.zeros(opg, dtype=z.dtype,
                                                                          device=z.device)
                out[:, j, o] = b.view(1, opg, 1, 1)
                continue
            x = p[:, grp * ipg : (grp + 1) * ipg].clone()
            x[:, k - grp * ipg] = 0
            b = cons.bias[o] if cons.bias is not None else None
            out[:, j, o] = F.conv2d(_padded(cons, x), cons.weight[o], b, cons.stride, cons.padding,
                                    cons.dilation)

    def pair_macs(self, out_numel: int) -> int:
        """Multiply-accumulates per (image, filter): none for a depthwise convolution, else the
        outputs of one group.

        Args:
            out_numel: elements of one image's output.
        """
        if self.in_per_group == 1:
            return 0
        cons = self.module
        return out_numel // cons.groups * self.in_per_group * cons.kernel_size[0] * cons.kernel_size[1]


def consumer_rule(module: nn.Module, flatten: bool, filters: int,
                  channels_last: bool) -> "LinearConsumer | GroupedConsumer":
    """The rule of a consumer module.

    Args:
        module: the consumer (``Conv2d`` or ``Linear``).
        flatten: it reads a flattened map.
        filters: the pruned layer's filter count.
        channels_last: its output is channels-last.

    Returns:
        A :class:`GroupedConsumer` for a convolution with ``groups > 1``, else a
        :class:`LinearConsumer`.

    Example:
        >>> type(consumer_rule(nn.Conv2d(4, 4, 3, groups=4), False, 4, False)).__name__
        'GroupedConsumer'
    """
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        return GroupedConsumer(module)
    return LinearConsumer(module, flatten, filters, channels_last)
