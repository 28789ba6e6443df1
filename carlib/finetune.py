"""Fine-tuning (retraining) a pruned network with the recipe of ``python -m carlib train``.

The network given is trained as it is: a physically smaller network from
:func:`carlib.prune_filters`, with or without BatchNorm (the committed ``alexnet-tiny`` has its
BatchNorms folded into the convolutions), and with the weight parametrizations of
:mod:`carlib.compression` (pruned weights stay 0, shared weights stay shared). Same
augmentation, optimizer, one-cycle schedule and label smoothing as :mod:`carlib.train`; the
peak learning rate defaults to an eightieth of training's (a trained network is refined, not
retrained from scratch, as Han et al. 2015 advise for retraining after pruning; the committed
``alexnet-tiny`` has no BatchNorm left to steady larger steps: at a tenth of training's peak
one pass over a few thousand images lowers the unpruned network's accuracy, at an eightieth it
keeps it).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .data import ImageDataset
from .errors import CarlibError, CheckpointError, DataNotFoundError
from .files import check_writable
from .models import AlexNetTiny, expected_sha256, load_checkpoint, model_fingerprint
from .train import TrainConfig, run_epochs

__all__ = ["FINETUNE_LR", "finetune_config", "finetune", "load_alexnet_tiny"]

FINETUNE_LR = 0.001  # an eightieth of TrainConfig().lr


def finetune_config(epochs: int = 1, *, lr: float = FINETUNE_LR, seed: int = 0,
                    batch_size: int = 128, threads: int = 0) -> TrainConfig:
    """The fine-tuning hyper-parameters: :class:`~carlib.train.TrainConfig` with the peak
    learning rate ``lr`` and the rest of the training recipe, every value checked.

    Args:
        epochs: passes over the training images (at least 1).
        lr: peak learning rate of the one-cycle schedule (positive).
        seed: seeds the shuffling, augmentation and dropout.
        batch_size: images per optimizer step (at least 1).
        threads: CPU threads (0: all cores).

    Returns:
        The :class:`~carlib.train.TrainConfig`.

    Raises:
        CarlibError: a value out of range.

    Example:
        >>> finetune_config(3).lr
        0.001
    """
    for name, v, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("threads", threads, 0),
                         ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise CarlibError(f"{name} must be an integer of at least {low}, got {v!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
        raise CarlibError(f"lr must be a positive number, got {lr!r}; e.g. {FINETUNE_LR}")
    return TrainConfig(epochs=epochs, lr=float(lr), seed=seed, batch_size=batch_size, threads=threads)


def finetune(model: nn.Module, train: ImageDataset, val: ImageDataset | None = None,
             config: TrainConfig | None = None, *, work_dir: str | Path, name: str = "finetune",
             progress: bool = True, checkpoint_every: int = 200) -> tuple[nn.Module, pd.DataFrame]:
    """Fine-tune a copy of ``model`` on ``train`` for ``config.epochs`` epochs on the CPU, resumably.

    After every epoch, and every ``checkpoint_every`` optimizer steps within one, a checkpoint
    (``<work_dir>/<name>.ckpt.pt``) is written atomically, and after every epoch the log so far
    (``<work_dir>/<name>.log.csv``). Called again with the same model, images and configuration,
    the run resumes from the last checkpoint and ends with the weights an uninterrupted run ends
    with (bit for bit, on the same machine and threads).

    Args:
        model: the network to start from (not modified): plain, physically pruned, and/or with
            :mod:`carlib.compression` parametrizations (kept through training).
        train: the training images (in memory, e.g. ``load_dataset("tiny-imagenet", "train")``);
            a batch is ``config.batch_size`` images, the last partial batch of an epoch is left out.
        val: images evaluated after each epoch (``val_top1``, ``val_top5``), or ``None``.
        config: hyper-parameters (default :func:`finetune_config`: one epoch, lr 0.001).
        work_dir: the folder of the checkpoint and log (created).
        name: the run's name (file stem in ``work_dir``).
        progress: show a tqdm bar per epoch.
        checkpoint_every: optimizer steps between checkpoints within an epoch (0: at the ends
            of epochs only; one epoch of Tiny ImageNet in batches of 128 is 781 steps).

    Returns:
        ``(model, log)``: the fine-tuned copy (on the CPU, in eval mode), and one row per epoch (``epoch``,
        ``train_loss``, ``train_top1``, [``val_top1``, ``val_top5``], ``lr_end``, ``seconds``).

    Raises:
        CarlibError: an unwritable ``work_dir``, fewer than 5 optimizer steps in all, images
        whose classes the network does not have, or a training loss that is not finite.

    Example:
        >>> small = carlib.prune_filters(carlib.load_model(), "conv1", range(32))  # doctest: +SKIP
        >>> tuned, log = finetune(small, load_dataset("tiny-imagenet", "train"),
        ...                       config=finetune_config(2), work_dir="runs/ft")   # doctest: +SKIP
    """
    cfg = config or finetune_config()
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise CarlibError(f"checkpoint_every must be an integer of at least 0, got {checkpoint_every!r}")
    work = Path(work_dir)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CarlibError(f"cannot create the folder {work} ({exc.strerror or exc.__class__.__name__}); "
                          "choose a writable work_dir") from None
    ckpt_path = check_writable(work / f"{name}.ckpt.pt")
    log_path = check_writable(work / f"{name}.log.csv")
    steps = cfg.epochs * (len(train) // cfg.batch_size)
    if steps < 5:  # fewer leave the one-cycle schedule a warm-up of no step
        raise CarlibError(f"{len(train)} training images in batches of {cfg.batch_size} for "
                          f"{cfg.epochs} epoch(s) make {steps} optimizer steps, fewer than the 5 the "
                          "schedule needs; pass more images or epochs, or a smaller batch_size")
    tuned = copy.deepcopy(model).cpu().to(memory_format=torch.channels_last)
    with torch.no_grad():
        n_out = tuned.eval()(train.normalize(train.images[:1])).shape[1]
    if int(train.labels.max()) >= n_out:
        raise CarlibError(f"the images have {int(train.labels.max()) + 1} classes but the network "
                          f"has {n_out} outputs; fine-tune on the dataset the network was trained for")
    key = {**asdict(cfg), "start": model_fingerprint(model), "data": train.fingerprint()}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    try:
        rows, _ = run_epochs(tuned, train, val, cfg, ckpt_path=ckpt_path, log_path=log_path, key=key,
                             progress=progress, checkpoint_every=checkpoint_every)
    finally:
        torch.set_num_threads(threads)
    diverged = [r["epoch"] for r in rows if not math.isfinite(r["train_loss"])]
    if diverged:
        raise CarlibError(f"fine-tuning diverged (training loss not finite in epoch {diverged[0]}, "
                          f"peak lr {cfg.lr}); fine-tune again with a lower lr")
    return tuned.eval(), pd.DataFrame(rows)


def load_alexnet_tiny(path: str | Path) -> AlexNetTiny:
    """An :class:`~carlib.models.AlexNetTiny` sized after a checkpoint: a physically pruned one
    (``python -m carlib prune --save-model``) has fewer filters in some convolution and fewer
    inputs in its consumer. Checked against ``<file>.sha256`` when that file exists.

    Args:
        path: a state dict of ``AlexNetTiny`` (BatchNorm folded), pruned or not.

    Returns:
        The network in eval mode.

    Raises:
        DataNotFoundError: no such file. CheckpointError: corrupt, not a state dict, checksum
        mismatch, or not an ``AlexNetTiny`` with fewer filters.

    Example:
        >>> small = load_alexnet_tiny("pruned.pt")  # doctest: +SKIP
        >>> small.features[0].out_channels          # doctest: +SKIP
        32
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} not found; save one with "
                                "`python -m carlib prune ... --save-model FILE`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickled objects
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.__class__.__name__}); it is "
                              "corrupt or not a state dict") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict; save model.state_dict()")
    model = AlexNetTiny()
    for name, m in list(model.named_modules()):
        w = state.get(f"{name}.weight")
        if w is None or w.ndim < 2 or w.shape == m.weight.shape:
            continue
        if isinstance(m, nn.Conv2d):
            new: nn.Module = nn.Conv2d(w.shape[1], w.shape[0], m.kernel_size, m.stride, m.padding)
        elif isinstance(m, nn.Linear):
            new = nn.Linear(w.shape[1], w.shape[0])
        else:
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, new)
    return load_checkpoint(model, path, sha256=expected_sha256(path))
