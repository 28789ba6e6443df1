"""Models: the default ``alexnet-tiny`` (trained by carlib on Tiny ImageNet), torchvision's
AlexNet with ImageNet weights, any other torchvision classification model by name, and
``mobilenet_v2-coral`` (an ImageNet MobileNetV2 from a weights file, :mod:`carlib.mobilenet`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import torch
from torch import nn

from .errors import CarlibError, CheckpointError, DataNotFoundError
from .files import atomic_path, sha256_file, write_text_atomic
from .paths import WEIGHTS_DIR

__all__ = [
    "MODELS",
    "AlexNetTiny",
    "alexnet_tiny",
    "load_model",
    "load_checkpoint",
    "fold_batchnorm",
    "model_fingerprint",
    "DEFAULT_WEIGHTS",
    "save_checkpoint",
    "checksum_path",
    "expected_sha256",
]

MODELS = ("alexnet-tiny", "alexnet", "mobilenet_v2-coral")
DEFAULT_WEIGHTS: Path = WEIGHTS_DIR / "alexnet-tiny.pt"


class AlexNetTiny(nn.Module):
    """torchvision AlexNet's topology sized for 64x64 inputs.

    Five convolutions with 64, 192, 384, 256 and 256 filters (11x11 stride 3, 5x5, 3x3, 3x3,
    3x3), ReLU after each, 3x3/2 max pooling after conv1, conv2 and conv5, then three fully
    connected layers (2304 -> 1024 -> 1024 -> classes) with dropout, exactly as torchvision's
    ``AlexNet`` names them (``features.*``, ``classifier.*``). With ``batch_norm=True`` a
    BatchNorm follows each convolution (used for training; :func:`fold_batchnorm` removes it).

    Args:
        num_classes: output classes (200 for Tiny ImageNet).
        batch_norm: insert BatchNorm2d after every convolution.
        dropout: dropout probability in the classifier.

    Example:
        >>> AlexNetTiny()(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 200])
    """

    def __init__(self, num_classes: int = 200, batch_norm: bool = False, dropout: float = 0.25):
        super().__init__()
        spec = [(3, 64, 11, 3, 5, True), (64, 192, 5, 1, 2, True), (192, 384, 3, 1, 1, False),
                (384, 256, 3, 1, 1, False), (256, 256, 3, 1, 1, True)]
        layers: list[nn.Module] = []
        for cin, cout, k, s, p, pool in spec:
            layers.append(nn.Conv2d(cin, cout, k, s, p))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 3 * 3, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def alexnet_tiny(num_classes: int = 200, batch_norm: bool = False) -> AlexNetTiny:
    """An untrained :class:`AlexNetTiny`."""
    return AlexNetTiny(num_classes=num_classes, batch_norm=batch_norm)


@torch.no_grad()
def fold_batchnorm(model: AlexNetTiny) -> AlexNetTiny:
    """Fold every BatchNorm of a trained ``AlexNetTiny(batch_norm=True)`` into its convolution.

    Args:
        model: a model in eval semantics (running statistics are used).

    Returns:
        A new ``AlexNetTiny(batch_norm=False)`` computing the same function (to float rounding).
    """
    out = AlexNetTiny(num_classes=model.classifier[-1].out_features, batch_norm=False)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    new_convs = [m for m in out.features if isinstance(m, nn.Conv2d)]
    for conv, bn, new in zip(convs, bns, new_convs):
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        new.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    out.classifier.load_state_dict(model.classifier.state_dict())
    return out.eval()


def load_checkpoint(model: nn.Module, path: Path, *, sha256: str | None = None) -> nn.Module:
    """Load a state dict into ``model`` safely (``weights_only=True``, ``strict=True``).

    Args:
        model: the module to fill.
        path: the checkpoint file (a state dict, or a dict with a ``"state_dict"`` entry).
        sha256: expected digest of the file; checked before anything is unpickled.

    Returns:
        ``model`` in eval mode.

    Raises:
        DataNotFoundError: the file is missing.
        CheckpointError: checksum mismatch, a corrupt file, or keys/shapes that do not match.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} not found; place the weights file there")
    if sha256 is not None and sha256_file(path) != sha256:
        fix = ("restore it with `git checkout -- " + path.name + "` or retrain with `python -m carlib train`"
               if path == DEFAULT_WEIGHTS else "restore an intact copy (or save the model again)")
        raise CheckpointError(f"checkpoint {path} does not match its sha256 (corrupt or replaced); {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickled objects
        raise CheckpointError(
            f"cannot read checkpoint {path} ({exc.__class__.__name__}); it is corrupt or not a "
            "state dict saved with torch.save(model.state_dict())"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no state dict; save model.state_dict()")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit model {type(model).__name__} ({detail}); "
            "pass the model the checkpoint was trained as"
        ) from None
    return model.eval()


def checksum_path(path: str | Path) -> Path:
    """The sha256 file beside a checkpoint: ``<file>.sha256``.

    Example:
        >>> checksum_path("runs/small.pt").name
        'small.pt.sha256'
    """
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Save a state dict atomically, and its sha256 in :func:`checksum_path` (which
    :func:`load_model` checks when it loads ``weights=path``).

    Args:
        state: ``model.state_dict()``.
        path: the checkpoint file; its folder must exist.

    Returns:
        ``path``.

    Example:
        >>> save_checkpoint(AlexNetTiny().state_dict(), "small.pt")  # doctest: +SKIP
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        digest = sha256_file(tmp)
    write_text_atomic(checksum_path(path), f"{digest}  {path.name}\n")
    return path


def expected_sha256(path: str | Path) -> str | None:
    """The sha256 recorded for a checkpoint, or ``None`` when none is recorded.

    Read from ``<file>.sha256`` (:func:`save_checkpoint`) or ``<stem>.sha256`` (``python -m
    carlib train``); a checksum file naming another file is ignored.

    Raises:
        CheckpointError: the checksum file is not ``<64 hex digits>  <file name>``.

    Example:
        >>> expected_sha256("/no/such/file.pt") is None
        True
    """
    path = Path(path)
    for side in (checksum_path(path), path.with_suffix(".sha256")):
        if side == path or not side.is_file():
            continue
        try:
            parts = side.read_text().split()
        except (OSError, UnicodeDecodeError):
            parts = []
        if len(parts) >= 2 and parts[1] != path.name:
            continue
        if not parts or len(parts[0]) != 64 or any(c not in "0123456789abcdef" for c in parts[0]):
            raise CheckpointError(f"{side} is not a sha256 line for {path.name}; delete it or "
                                  "save the checkpoint again")
        return parts[0]
    return None


def _default_weights_sha256() -> str | None:
    meta = DEFAULT_WEIGHTS.with_suffix(".sha256")
    if meta.is_file():
        return meta.read_text().split()[0]
    return None


def _torchvision_model(name: str) -> nn.Module:
    from torchvision import models as tvm

    try:
        builder = tvm.get_model_builder(name)
        weights_enum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        available = ", ".join(MODELS) + ", or a torchvision classification model (e.g. vgg16, resnet18)"
        raise CarlibError(f"unknown model {name!r}; choose {available}") from None
    weights = weights_enum.DEFAULT
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    fname = Path(weights.url).name
    if not (hub / fname).is_file():
        # torchvision would download; offline that fails with a long traceback.
        try:
            quiet = io.StringIO()  # torch.hub prints a "Downloading" line
            with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
                model = builder(weights=weights, progress=False)
        except Exception:
            raise DataNotFoundError(
                f"weights for {name} are not cached and cannot be downloaded; place {fname} "
                f"(from {weights.url}) in {hub}"
            ) from None
    else:
        try:
            model = builder(weights=weights, progress=False)
        except Exception as exc:  # noqa: BLE001 - truncated, corrupt or mismatched file
            raise CheckpointError(
                f"cached weights {hub / fname} cannot be loaded ({exc.__class__.__name__}); "
                f"delete the file and place a fresh copy of {weights.url} there"
            ) from None
    return model.eval()


def load_model(name: str | nn.Module = "alexnet-tiny", *, weights: str | Path | None = None) -> nn.Module:
    """Load a model by name (a module passes through unchanged).

    Args:
        name: ``"alexnet-tiny"`` (the default network, trained on Tiny ImageNet, weights
            committed with carlib), ``"alexnet"`` (torchvision, ``IMAGENET1K_V1``),
            ``"mobilenet_v2-coral"`` (ImageNet MobileNetV2 converted from TensorFlow; weights
            file ``mobilenet_v2_imagenet1k_coral.pth`` looked up in ``$CARLIB_DATA_DIR`` then
            ``data/``, sha256-checked), any other torchvision classification model name
            (default weights), or an ``nn.Module``. Every ImageNet model takes 224x224 images
            normalized with the ImageNet mean/std.
        weights: for ``alexnet-tiny``, another checkpoint (a state dict) to load instead of
            the committed one; checked against its sha256 file when there is one
            (:func:`expected_sha256`).

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        CarlibError: unknown name. DataNotFoundError: weights missing offline.
        CheckpointError: corrupt or mismatched weights.

    Example:
        >>> m = load_model("alexnet-tiny")  # doctest: +SKIP
        >>> m(torch.zeros(1, 3, 64, 64)).shape  # doctest: +SKIP
        torch.Size([1, 200])
    """
    if isinstance(name, nn.Module):
        return name.eval()
    if name == "alexnet-tiny":
        model = AlexNetTiny()
        if weights is not None:
            return load_checkpoint(model, Path(weights), sha256=expected_sha256(weights))
        return load_checkpoint(model, DEFAULT_WEIGHTS, sha256=_default_weights_sha256())
    if weights is not None:
        raise CarlibError(f"weights= is only supported for alexnet-tiny, not {name!r}; "
                          "load the model yourself and pass the module")
    if name == "mobilenet_v2-coral":
        from .mobilenet import load_mobilenet_v2_coral

        return load_mobilenet_v2_coral()
    return _torchvision_model(name)


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of a model's parameters and buffers (for journals and caches).

    Example:
        >>> len(model_fingerprint(nn.Linear(2, 2)))
        16
    """
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1)[:: max(1, t.numel() // 4096)].float().numpy().tobytes())
    return h.hexdigest()[:16]
