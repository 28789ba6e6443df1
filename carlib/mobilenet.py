"""``mobilenet_v2-coral``: an ImageNet MobileNetV2 converted from TensorFlow, made to take
carlib's normalized input.

The weights file ``mobilenet_v2_imagenet1k_coral.pth`` is a ``torchvision.models.mobilenet_v2``
state dict (BatchNorm folded into the convolutions: every BatchNorm keeps only a bias) for a
network trained in TensorFlow. Two things differ from torchvision's MobileNetV2, and
:class:`CoralMobileNetV2` restores both without changing a module path:

* the input: the network expects RGB pixels ``p`` in 0..255 scaled as ``p / 128 - 1``.
  :class:`InputRescale`, applied in ``forward`` before ``features.0.0``, maps carlib's
  ImageNet mean/std-normalized input ``x = (p / 255 - mean) / std`` to exactly that, so the
  model takes the same input as every other carlib ImageNet model. It is not folded into the
  first convolution's weights: that would change what the convolution's zero padding means.
* the padding: the stride-2 3x3 convolutions (``features.0.0`` and the stride-2 depthwise
  convolutions) use TensorFlow's ``"SAME"`` padding (:class:`carlib.convs.SamePadConv2d`:
  one row and column of zeros at the bottom and right for even-sized inputs), not
  torchvision's symmetric ``padding=1``.

On ``imagenet-sample`` (1,398 images, resize 256, center crop 224) it scores top-1 78.0 %
(1,091 correct; Wilson 95 % interval 75.8-80.1 %) and top-5 93.9 %; with symmetric padding
instead, top-1 falls to 74.6 % and top-5 to 91.4 %.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import MobileNetV2

from .convs import SamePadConv2d
from .data import IMAGENET_MEAN, IMAGENET_STD
from .errors import CheckpointError, DataNotFoundError
from .files import sha256_file
from .models import load_checkpoint
from .paths import data_dir, data_search_dirs

__all__ = ["MOBILENET_V2_CORAL_FILE", "MOBILENET_V2_CORAL_SHA256", "InputRescale",
           "CoralMobileNetV2", "find_mobilenet_v2_coral", "load_mobilenet_v2_coral"]

#: The weights file, looked up in ``$CARLIB_DATA_DIR`` then ``data/``.
MOBILENET_V2_CORAL_FILE = "mobilenet_v2_imagenet1k_coral.pth"
#: Its sha256, checked before the file is unpickled.
MOBILENET_V2_CORAL_SHA256 = "3dd2cb9a790260d2efc7f60563acb810f4241fcae93f411288bdb03648ae92c7"


class InputRescale(nn.Module):
    """Map mean/std-normalized images to pixels scaled as ``p / 128 - 1``.

    With ``x = (p / 255 - mean) / std`` the output is ``(x * std + mean) * 255 / 128 - 1``,
    computed as ``x * a + b`` per channel (``a = std * 255 / 128``, ``b = mean * 255 / 128 - 1``).
    The constants are non-persistent buffers: they follow ``.to(device)`` but are not part of
    the state dict.

    Args:
        mean, std: the normalization of the input (default: ImageNet's, as carlib's datasets).
        scale, offset: the target scaling ``p * scale + offset`` of 0..255 pixels.

    Example:
        >>> r = InputRescale()
        >>> p = torch.tensor([0.0, 128.0, 255.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
        >>> x = (p / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        >>> [round(v, 5) for v in r(x)[0, :, 0, 0].tolist()]  # p / 128 - 1
        [-1.0, 0.0, 0.99219]
    """

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 scale: float = 1 / 128, offset: float = -1.0):
        super().__init__()
        m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        self.register_buffer("a", (s * 255 * scale).float(), persistent=False)
        self.register_buffer("b", (m * 255 * scale + offset).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.b.to(x.dtype), x, self.a.to(x.dtype))


def _tf_padded(model: nn.Module) -> nn.Module:
    """Replace every strided 3x3 convolution of ``model`` by a :class:`SamePadConv2d` in place
    (same module path, same parameters)."""
    for name, m in list(model.named_modules()):
        if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.stride == (2, 2):
            parent_path, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent_path) if parent_path else model, leaf,
                    SamePadConv2d.from_conv(m))
    return model


class CoralMobileNetV2(MobileNetV2):
    """torchvision's ``MobileNetV2`` with TensorFlow padding, taking mean/std-normalized input.

    Module paths are torchvision's (``features.0.0`` is the first convolution, alias ``conv1``);
    the model gains one module, ``input_rescale`` (no parameters, nothing in the state dict),
    applied before ``features``.

    Args:
        num_classes: output classes.

    Example:
        >>> m = CoralMobileNetV2().eval()
        >>> type(m.features[0][0]).__name__, m(torch.zeros(1, 3, 224, 224)).shape
        ('SamePadConv2d', torch.Size([1, 1000]))
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(num_classes=num_classes)
        self.input_rescale = InputRescale()
        _tf_padded(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.input_rescale(x))


def find_mobilenet_v2_coral() -> Path:
    """The weights file, from ``$CARLIB_DATA_DIR`` or ``data/``.

    Raises:
        DataNotFoundError: not found (one line naming the file and where to put it).

    Example:
        >>> find_mobilenet_v2_coral().name  # doctest: +SKIP
        'mobilenet_v2_imagenet1k_coral.pth'
    """
    for d in data_search_dirs():
        if (d / MOBILENET_V2_CORAL_FILE).is_file():
            return d / MOBILENET_V2_CORAL_FILE
    raise DataNotFoundError(
        f"weights of mobilenet_v2-coral not found; place {MOBILENET_V2_CORAL_FILE} in "
        f"{data_dir()} or in a folder named by $CARLIB_DATA_DIR"
    )


def load_mobilenet_v2_coral(path: str | Path | None = None) -> nn.Module:
    """``mobilenet_v2-coral`` with its weights, checked by sha256 before they are read.

    Args:
        path: the weights file (default: :func:`find_mobilenet_v2_coral`).

    Returns:
        The network in eval mode on the CPU, taking ImageNet mean/std-normalized 224x224 images.

    Raises:
        DataNotFoundError: the file is missing. CheckpointError: wrong checksum, or a file
        that does not fit.

    Example:
        >>> m = load_mobilenet_v2_coral()  # doctest: +SKIP
    """
    path = Path(path) if path is not None else find_mobilenet_v2_coral()
    if not path.is_file():
        raise DataNotFoundError(f"weights file {path} not found; place {MOBILENET_V2_CORAL_FILE} there")
    if sha256_file(path) != MOBILENET_V2_CORAL_SHA256:
        raise CheckpointError(
            f"{path} does not match the sha256 of {MOBILENET_V2_CORAL_FILE} (corrupt or another "
            "file); replace it with an intact copy"
        )
    return load_checkpoint(CoralMobileNetV2(), path)
