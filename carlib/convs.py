"""Convolutions beyond ``nn.Conv2d`` that carlib understands: TensorFlow's ``"SAME"`` padding.

Networks converted from TensorFlow pad a strided convolution asymmetrically: the padding a
``"SAME"`` convolution needs is split with the smaller half on the top and left, so a 3x3
stride-2 convolution of an even-sized input pads one row at the bottom and one column on the
right only. PyTorch's ``padding=1`` pads both sides, which shifts every output by one pixel.

:class:`SamePadConv2d` is an ``nn.Conv2d`` (so carlib's layer aliases count it, and its
``weight``, ``bias``, ``groups`` mean what they always mean) whose forward pads its input
first. :mod:`carlib.graph` traces it as one leaf module, the fast path pads a consumer's
input with :meth:`SamePadConv2d.pad_input`, and :func:`carlib.prune_filters` rebuilds it as
the same class. Other ``nn.Conv2d`` subclasses are masked like any convolution, but carlib
does not rewrite them (see :func:`is_rewritable_conv`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SamePadConv2d", "same_padding", "is_rewritable_conv", "copy_conv"]


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``"SAME"`` padding of one spatial dimension.

    Args:
        size: the input size along the dimension.
        kernel, stride, dilation: the convolution's, along the dimension.

    Returns:
        ``(before, after)``: rows (or columns) of zeros before and after the input; the output
        has ``ceil(size / stride)`` positions.

    Example:
        >>> same_padding(224, 3, 2), same_padding(7, 3, 2), same_padding(56, 3, 1)
        ((0, 1), (1, 1), (1, 1))
    """
    extent = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


class SamePadConv2d(nn.Conv2d):
    """A convolution with TensorFlow's ``"SAME"`` padding, computed from the input size.

    Takes ``nn.Conv2d``'s arguments; ``padding`` must be 0 (the module pads by itself) and
    ``padding_mode`` ``"zeros"``.

    Example:
        >>> conv = SamePadConv2d(3, 8, 3, stride=2)
        >>> conv(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 8, 112, 112])
        >>> conv.pad_input(torch.zeros(1, 3, 224, 224)).shape  # one row and column, bottom right
        torch.Size([1, 3, 225, 225])
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if any(p != 0 for p in self.padding) or self.padding_mode != "zeros":
            raise ValueError("SamePadConv2d pads by itself: pass padding=0 and padding_mode='zeros'")

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "SamePadConv2d":
        """A ``SamePadConv2d`` with ``conv``'s shape and a copy of its parameters (its own
        ``padding`` is dropped: the padding is computed from the input instead).

        Example:
            >>> SamePadConv2d.from_conv(nn.Conv2d(3, 8, 3, 2, 1)).padding
            (0, 0)
        """
        return copy_conv(conv, cls, padding=0, padding_mode="zeros")

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` zero-padded as ``"SAME"`` needs (bottom and right get the larger half)."""
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad_input(x))


def is_rewritable_conv(module: nn.Module) -> bool:
    """Whether carlib can rebuild ``module`` with other channel counts and compute its output
    from parts of its input: a plain ``nn.Conv2d`` or a :class:`SamePadConv2d`.

    Example:
        >>> is_rewritable_conv(nn.Conv2d(3, 8, 3)), is_rewritable_conv(SamePadConv2d(3, 8, 3))
        (True, True)
    """
    return type(module) in (nn.Conv2d, SamePadConv2d)


def copy_conv(conv: nn.Conv2d, cls: type | None = None, **changes: object) -> nn.Conv2d:
    """A new convolution of class ``cls`` (default: ``conv``'s) with ``conv``'s hyper-parameters,
    but ``changes``, and a copy of its weight and bias, in ``conv``'s mode.

    Args:
        conv: the convolution to copy (its ``weight`` may be computed by a parametrization).
        cls: ``nn.Conv2d`` or a subclass taking ``nn.Conv2d``'s arguments.
        changes: constructor arguments to change (``padding``, ``padding_mode``).

    Returns:
        The new module.

    Example:
        >>> copy_conv(nn.Conv2d(3, 8, 3, padding=1), padding=0).padding
        (0, 0)
    """
    args = dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
                kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                padding_mode=conv.padding_mode)
    new = (cls or type(conv))(**{**args, **changes}, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new.train(conv.training)
