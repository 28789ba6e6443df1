"""Training of the default network, ``alexnet-tiny``, on Tiny ImageNet (CPU friendly).

The network is trained with BatchNorm after each convolution (fast, stable on a short CPU
budget), then the BatchNorms are folded into the convolutions, so the released network has
AlexNet's plain conv -> ReLU -> pool topology: pruning a filter is deleting its weights and bias.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import ImageDataset, load_dataset
from .files import atomic_path, sha256_file, write_text_atomic
from .models import AlexNetTiny, DEFAULT_WEIGHTS, fold_batchnorm

__all__ = ["TrainConfig", "train_alexnet_tiny", "evaluate", "augment", "sgd_one_cycle",
           "run_epochs"]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_alexnet_tiny` (the defaults made the committed weights)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.08
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    pad: int = 4
    seed: int = 0
    threads: int = 0  # 0: all cores


def augment(pixels: np.ndarray, gen: torch.Generator, pad: int, ds: ImageDataset) -> torch.Tensor:
    """Random crop (zero padding of ``pad``) and horizontal flip of a uint8 batch."""
    x = ds.normalize(pixels)
    b, c, h, w = x.shape
    if pad:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        rows = (oy[:, None] + torch.arange(h)[None, :])  # (b, h)
        cols = (ox[:, None] + torch.arange(w)[None, :])  # (b, w)
        bi = torch.arange(b)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = torch.rand(b, generator=gen) < 0.5
    x[flip] = x[flip].flip(3)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model: nn.Module, ds: ImageDataset, batch_size: int = 500) -> tuple[float, float]:
    """Top-1 and top-5 accuracy of ``model`` on ``ds``.

    Args:
        model: a classifier.
        ds: an in-memory dataset.
        batch_size: images per forward pass.

    Returns:
        ``(top1, top5)`` as fractions.
    """
    model.eval()
    c1 = c5 = 0
    for i in range(0, len(ds), batch_size):
        x = ds.normalize(ds.images[i : i + batch_size]).contiguous(memory_format=torch.channels_last)
        y = torch.as_tensor(ds.labels[i : i + batch_size])
        logits = model(x)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        c1 += int((top[:, 0] == y).sum())
        c5 += int((top == y[:, None]).any(1).sum())
    return c1 / len(ds), c5 / len(ds)


def _save_atomic(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sgd_one_cycle(model: nn.Module, cfg: TrainConfig,
                  steps_per_epoch: int) -> tuple[torch.optim.Optimizer, object]:
    """The optimizer and schedule of the recipe: Nesterov SGD, weight decay on every parameter
    but the vectors (biases, BatchNorm terms, weight-sharing codebooks), one-cycle
    learning rate peaking at ``cfg.lr`` a quarter of the way.

    Args:
        model: the network whose parameters are trained.
        cfg: the hyper-parameters (``lr``, ``momentum``, ``weight_decay``, ``epochs``).
        steps_per_epoch: optimizer steps in one epoch.

    Returns:
        ``(optimizer, scheduler)``; call ``scheduler.step()`` after every optimizer step.

    Example:
        >>> opt, sched = sgd_one_cycle(nn.Linear(2, 2), TrainConfig(epochs=1), 10)
        >>> round(sched.get_last_lr()[0], 4)
        0.008
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25,
        div_factor=10.0, final_div_factor=200.0)
    return opt, sched


def run_epochs(model: nn.Module, train: ImageDataset, val: ImageDataset | None, cfg: TrainConfig,
               *, ckpt_path: Path, log_path: Path, key: dict | None = None,
               progress: bool = True, checkpoint_every: int = 200) -> tuple[list[dict], float]:
    """Train ``model`` in place for ``cfg.epochs`` epochs with the recipe, resumably.

    Every epoch shuffles the images with a generator seeded by ``cfg.seed`` and the epoch,
    augments them (:func:`augment`), takes one optimizer step per batch (:func:`sgd_one_cycle`,
    label-smoothed cross-entropy), evaluates on ``val`` when given, then atomically writes a
    checkpoint (model, optimizer, schedule, torch's random state, log) to ``ckpt_path`` and the
    log so far to ``log_path`` (CSV). Every ``checkpoint_every`` optimizer steps within an
    epoch the checkpoint is also written, with the step, the epoch's shuffling and augmentation
    generator and its running sums. A checkpoint whose ``key`` matches is resumed: a run killed
    at any point and started again ends with the weights of an uninterrupted run.

    Args:
        model: the network, trained in place (channels-last inputs).
        train: training images (in memory).
        val: images evaluated after each epoch (``val_top1``, ``val_top5`` in the log), or ``None``.
        cfg: the hyper-parameters.
        ckpt_path: the per-epoch checkpoint.
        log_path: the per-epoch log (``.csv``).
        key: what must match for a checkpoint to be resumed (default ``asdict(cfg)``).
        progress: show a tqdm bar and a JSON line (the log row) per epoch.
        checkpoint_every: optimizer steps between checkpoints within an epoch (0: at the ends
            of epochs only).

    Returns:
        ``(log_rows, train_seconds)``: one dict per epoch, and the seconds spent in all epochs.

    Example:
        >>> rows, seconds = run_epochs(model, train, None, TrainConfig(epochs=1),
        ...                            ckpt_path=Path("w.ckpt.pt"), log_path=Path("w.log.csv"))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    key = asdict(cfg) if key is None else key
    steps_per_epoch = len(train) // cfg.batch_size
    opt, sched = sgd_one_cycle(model, cfg, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    start_epoch, log_rows, elapsed, within = 0, [], 0.0, None
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("config") == key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            if "rng" in state:
                torch.set_rng_state(state["rng"])
            start_epoch, log_rows, elapsed = state["epoch"], state["log"], state["elapsed"]
            within = state.get("within")  # a checkpoint written inside epoch start_epoch + 1
            where = f", step {within['step']} of epoch {start_epoch + 1}" if within else ""
            print(f"resuming from epoch {start_epoch}{where} ({ckpt_path})", file=sys.stderr)

    def save(epoch_done: int, inside: dict | None) -> None:
        _save_atomic({"config": key, "model": model.state_dict(), "opt": opt.state_dict(),
                      "sched": sched.state_dict(), "epoch": epoch_done, "log": log_rows,
                      "elapsed": elapsed, "rng": torch.get_rng_state(), "within": inside}, ckpt_path)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(len(train), generator=gen).numpy()
        tot_loss, tot_correct, seen, first, before = 0.0, 0, 0, 0, 0.0
        if within is not None:  # the same order; the generator where the augmentation left it
            gen.set_state(within["gen"])
            first, before = within["step"], within["seconds"]
            tot_loss, tot_correct, seen = within["loss"], within["correct"], within["seen"]
            within = None
        bar = tqdm(range(first, steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, mininterval=30.0, initial=first, total=steps_per_epoch)
        for s in bar:
            idx = np.sort(order[s * cfg.batch_size : (s + 1) * cfg.batch_size])
            x = augment(train.images[idx], gen, cfg.pad, train)
            y = torch.as_tensor(train.labels[idx])
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += float(loss.detach()) * len(idx)
            tot_correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if s % 50 == 0:
                bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{tot_correct / seen:.3f}")
            if checkpoint_every and (s + 1) % checkpoint_every == 0 and s + 1 < steps_per_epoch:
                save(epoch, {"step": s + 1, "gen": gen.get_state(), "loss": tot_loss,
                             "correct": tot_correct, "seen": seen,
                             "seconds": before + time.time() - t0})
        row = {"epoch": epoch + 1, "train_loss": round(tot_loss / seen, 4),
               "train_top1": round(tot_correct / seen, 4)}
        if val is not None:
            top1, top5 = evaluate(model, val)
            row.update(val_top1=round(top1, 4), val_top5=round(top5, 4))
        seconds = before + time.time() - t0
        elapsed += seconds
        row.update(lr_end=float(sched.get_last_lr()[0]), seconds=round(seconds, 1))
        log_rows.append(row)
        if progress:  # one JSON line per epoch, silenced with the bars
            print(json.dumps(row), file=sys.stderr, flush=True)
        save(epoch + 1, None)
        with atomic_path(log_path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(log_rows[0]))
            w.writeheader()
            w.writerows(log_rows)
    return log_rows, elapsed


def train_alexnet_tiny(
    config: TrainConfig | None = None,
    *,
    out: Path = DEFAULT_WEIGHTS,
    work_dir: Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Train ``alexnet-tiny`` on Tiny ImageNet train, evaluate on val, save folded weights.

    Resumable: a checkpoint is written after each epoch to ``work_dir`` and picked up by the
    next call with the same configuration.

    Args:
        config: hyper-parameters (defaults: the committed run).
        out: the final weights file (a state dict of ``AlexNetTiny()``); beside it go
            ``<stem>.sha256``, ``<stem>.json`` (command, seed, config, accuracy) and
            ``<stem>.log.csv`` (one row per epoch).
        work_dir: where the per-epoch checkpoint lives (default ``data/train``).
        progress: show tqdm bars.
        command: the command line recorded in the metadata.

    Returns:
        The metadata dictionary written to ``<stem>.json``.

    Example:
        >>> train_alexnet_tiny(TrainConfig(epochs=1), out=Path("/tmp/a.pt"))  # doctest: +SKIP
    """
    from .paths import data_dir

    cfg = config or TrainConfig()
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir else data_dir() / "train"
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / f"{out.stem}.ckpt.pt"
    log_path = out.with_name(out.stem + ".log.csv")

    train = load_dataset("tiny-imagenet", "train", progress=progress)
    val = load_dataset("tiny-imagenet", "val", progress=progress)
    assert isinstance(train, ImageDataset) and isinstance(val, ImageDataset)

    model = AlexNetTiny(num_classes=train.num_classes, batch_norm=True).to(
        memory_format=torch.channels_last)
    _, elapsed = run_epochs(model, train, val, cfg, ckpt_path=ckpt_path, log_path=log_path,
                            progress=progress)

    folded = fold_batchnorm(model.eval())
    top1, top5 = evaluate(folded, val)
    _save_atomic(folded.state_dict(), out)
    digest = sha256_file(out)
    write_text_atomic(out.with_suffix(".sha256"), f"{digest}  {out.name}\n")
    meta = {
        "model": "alexnet-tiny",
        "command": command or "python -m carlib train",
        "config": asdict(cfg),
        "val_top1": round(top1, 4),
        "val_top5": round(top5, 4),
        "train_seconds": round(elapsed, 1),
        "sha256": digest,
        "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores".strip(),
        "torch": torch.__version__,
        "dataset": "tiny-imagenet train (100,000 images), evaluated on val (10,000)",
    }
    write_text_atomic(out.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return meta
