"""Checks of what the engine is given, before anything is computed: sizes, images, model fit.

Bad input fails here with one :class:`~carlib.errors.CarlibError` line naming the problem and
the fix, instead of a raw torch error deep in a pass or a silently wrong accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import DataLike, FolderDataset, ImageDataset, as_batches
from ..errors import CarlibError

__all__ = ["check_count", "check_images", "check_model_fits", "image_shape"]


def check_count(value: object, name: str, *, optional: bool = True) -> int | None:
    """Check a positive integer setting such as ``batch_size`` (``None`` allowed when
    ``optional``: the default is used).

    Args:
        value: the setting.
        name: its name, for the message.
        optional: whether ``None`` is accepted.

    Returns:
        ``value``.

    Raises:
        CarlibError: not a positive integer (``0``, ``True`` and ``2.0`` included).

    Example:
        >>> check_count(256, "batch_size")
        256
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CarlibError(f"{name} must be a positive integer, got {value!r}; "
                          f"pass at least 1{' or leave it unset for the default' if optional else ''}")
    return value


def _first_image(data: DataLike) -> torch.Tensor:
    """One normalized image ``(1, C, H, W)`` of ``data`` (decoding a single file at most)."""
    if isinstance(data, (ImageDataset, FolderDataset)):
        return data[0][0].unsqueeze(0)
    return next(as_batches(data, 1))[0]


def image_shape(data: DataLike) -> tuple[int, ...]:
    """One image's ``(C, H, W)`` (decoding a single file at most).

    Example:
        >>> image_shape((torch.zeros(5, 3, 8, 8), torch.arange(5)))
        (3, 8, 8)
    """
    return tuple(_first_image(data).shape[1:])


def check_images(model: nn.Module, data: DataLike) -> None:
    """Check images given as tensors: float32, their channel count that of the model's first
    convolution, every value finite.

    Args:
        model: the network.
        data: a carlib dataset (checked by construction) or ``(images, labels)``.

    Raises:
        CarlibError: another dtype; channels-last or wrongly sized channels; NaN or infinite
            values.

    Example:
        >>> check_images(nn.Conv2d(3, 4, 3), (torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)))
    """
    if isinstance(data, (ImageDataset, FolderDataset)):
        return
    x = next(as_batches(data, 1))[0]
    if x.dtype != torch.float32:
        raise CarlibError(f"images are {str(x.dtype).replace('torch.', '')}; the engine computes "
                          "in float32: pass images.float()")
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and x.shape[1] != conv.in_channels:
        shape = tuple(x.shape[1:])
        if x.shape[-1] == conv.in_channels:
            raise CarlibError(f"images of shape {shape} look channels-last (H, W, C); the model "
                              f"takes (N, C, H, W): pass images.permute(0, 3, 1, 2)")
        raise CarlibError(f"images of shape {shape} have {x.shape[1]} channels but the model "
                          f"takes {conv.in_channels} input channels; pass images shaped "
                          f"(N, {conv.in_channels}, H, W)")
    for xb, _ in as_batches(data, 4096):
        if not bool(torch.isfinite(xb).all()):
            raise CarlibError("the images hold NaN or infinite values; pass finite, normalized "
                              "images (check the preprocessing)")


@torch.no_grad()
def check_model_fits(model: nn.Module, data: DataLike, device: torch.device) -> int:
    """Run the model (in eval mode, by the caller) on an empty batch shaped like ``data``'s
    images (every shape check, no arithmetic): their size must suit the model, which must
    return a batch of logits.

    Args:
        model: the network, on ``device``.
        data: the images.
        device: where the model is.

    Returns:
        The number of logits per image (the model's classes).

    Raises:
        CarlibError: the model fails on an image of that size, or does not return logits.

    Example:
        >>> check_model_fits(nn.Sequential(nn.Conv2d(3, 2, 8), nn.Flatten()),
        ...                  (torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)),
        ...                  torch.device("cpu"))
        2
    """
    x = _first_image(data)[:0]
    shape = tuple(x.shape[1:])
    try:
        out = model(x.to(device))
    except (RuntimeError, ValueError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise CarlibError(f"the model cannot classify images of shape {shape} ({first}); "
                          "pass images of the size the model was built for") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 0:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CarlibError(f"the model returns {got} for images of shape {shape}, not "
                          "(images, classes) logits; pass a classification model")
    return int(out.shape[1])
