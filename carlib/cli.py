"""The command line: ``python -m carlib {info,train,finetune,car,prune}`` (also installed as ``carlib``).

Started by ``torchrun`` (or ``srun`` with the same environment), ``car`` and ``prune`` split the
images over the processes (:mod:`carlib.distributed`); rank 0 writes the results.

Bad input (unknown model, dataset, layer or split, missing data, a corrupt or mismatched
checkpoint, an unwritable output path) prints one line on stderr naming the problem and the
fix, and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from . import distributed
from .engine.core import PRECISIONS
from .errors import CarlibError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="alexnet-tiny",
                   help="alexnet-tiny (default), alexnet, mobilenet_v2-coral, or any torchvision "
                        "classification model")
    p.add_argument("--weights", type=Path, default=None,
                   help="a state-dict checkpoint for alexnet-tiny instead of the committed weights "
                        "(checked against <file>.sha256 when that file exists)")
    p.add_argument("--dataset", default="tiny-imagenet",
                   help="tiny-imagenet (default), imagenet, or imagenet-sample (1,398 ImageNet val images)")
    p.add_argument("--split", default="val", help="train or val (default val)")
    p.add_argument("--per-class-images", type=int, default=None, metavar="K",
                   help="use the first K images of every class (default: all)")
    p.add_argument("--layer", required=True, help="conv1, conv2, ... or a module path such as features.0")
    p.add_argument("--topk", type=int, default=1, choices=(1, 5), help="top-1 (default) or top-5 accuracy")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per batch (default: 256 on a CPU, 16 at 224x224; 1024 on a GPU)")
    p.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N or auto (the GPU when present)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="arithmetic after the pruned layer's consumer: fp32, or bf16 with every "
                        "undecided image recomputed in fp32 (same results); auto (default) uses "
                        "checked bf16 on CPUs with AMX-BF16 or AVX512-BF16")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m carlib``."""
    p = _Parser(prog="carlib",
                description="CAR filter importance and greedy structural pruning of CNNs "
                            "(Abbasi-Asl & Yu, 2017).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    i = sub.add_parser("info", help="models and datasets; a model's convolution layers")
    i.add_argument("--model", default=None, help="list this model's convolution layers")
    i.add_argument("--weights", type=Path, default=None)

    t = sub.add_parser("train", help="train the default network alexnet-tiny on Tiny ImageNet")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.08)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=None,
                   help="weights file (default: carlib/weights/alexnet-tiny.pt)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    f = sub.add_parser("finetune", help="fine-tune a (pruned) alexnet-tiny on Tiny ImageNet train "
                                        "with the training recipe")
    f.add_argument("--weights", type=Path, required=True,
                   help="the network to start from: a state dict of alexnet-tiny, pruned or not "
                        "(e.g. from prune --save-model)")
    f.add_argument("--out", type=Path, required=True,
                   help="the fine-tuned state dict (.pt), its sha256 beside it (<file>.sha256)")
    f.add_argument("--epochs", type=int, default=1)
    f.add_argument("--lr", type=float, default=0.001,
                   help="peak learning rate (default 0.001, an eightieth of train's; carlib.finetune.FINETUNE_LR)")
    f.add_argument("--batch-size", type=int, default=128)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--per-class-images", type=int, default=None, metavar="K",
                   help="train on the first K images of every class (default: all 500)")
    f.add_argument("--no-val", action="store_true",
                   help="skip the evaluation on Tiny ImageNet val after each epoch")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.add_argument("--work-dir", type=Path, default=None,
                   help="folder of the per-epoch checkpoint <stem>.ckpt.pt and log <stem>.log.csv "
                        "(default: the folder of --out); a run started again resumes from it")
    f.add_argument("--checkpoint-every", type=int, default=200, metavar="STEPS",
                   help="optimizer steps between checkpoints within an epoch (default 200; "
                        "0: at the ends of epochs only)")

    c = sub.add_parser("car", help="the CAR index of every filter of a layer")
    _add_common(c)
    c.add_argument("--per-class", action="store_true", help="one row per filter and class")
    c.add_argument("--out", type=Path, required=True, help="results.csv or results.parquet")

    g = sub.add_parser("prune", help="greedy CAR pruning of a layer (the paper's loop)")
    _add_common(g)
    g.add_argument("--n-remove", type=int, required=True, help="number of filters to prune")
    g.add_argument("--out", type=Path, required=True, help="steps.csv or steps.parquet")
    g.add_argument("--journal", type=Path, default=None,
                   help="journal file for resuming (default: <out>.journal.jsonl)")
    g.add_argument("--save-model", type=Path, default=None,
                   help="also save the physically pruned network's state dict here (.pt), its "
                        "sha256 beside it (<file>.sha256)")
    return p


def _info(args: argparse.Namespace) -> None:
    from .data import DATASETS
    from .layers import layer_table
    from .models import MODELS, load_model
    from .pruning import count

    if args.model is None:
        print("models:   " + ", ".join(MODELS) + " (and any torchvision classification model)")
        print("datasets: " + ", ".join(DATASETS))
        print("profiles: python -m carlib.analysis.reproduce --list (make reproduce PROFILE=...)")
        return
    model = load_model(args.model, weights=args.weights)
    size = (3, 64, 64) if args.model == "alexnet-tiny" else (3, 224, 224)
    print(layer_table(model).to_string(index=False))
    c = count(model, size)
    print(f"parameters {c['params']:,}; multiply-accumulates per {size[1]}x{size[2]} image {c['macs']:,}")


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Every file a ``car`` or ``prune`` run will write, checked before anything is loaded."""
    from .files import check_writable
    from .tables import check_output_path

    paths = {"--out": check_output_path(args.out)}
    if args.command == "prune":
        paths["--journal"] = check_writable(args.journal or args.out.with_name(args.out.name + ".journal.jsonl"))
        if args.save_model is not None:
            paths["--save-model"] = check_writable(args.save_model)
    seen: dict[Path, str] = {}
    for flag, path in paths.items():
        key = path.resolve()
        if key in seen:
            raise CarlibError(f"{seen[key]} and {flag} name the same file {path}; give each its own file")
        seen[key] = flag
    return paths


def _load(args: argparse.Namespace):
    """The model and data of a ``car`` or ``prune`` run, every argument checked by the library
    before the model and the data are loaded."""
    from .data import load_dataset
    from .engine import resolve_device
    from .engine.inputs import check_count
    from .greedy import check_n_remove
    from .layers import resolve_layer
    from .models import load_model

    resolve_device(args.device)
    check_count(args.batch_size, "--batch-size")
    if distributed.launched() and os.environ.get("RANK", "0") != "0":
        args.quiet = True  # progress from rank 0 only
    if args.per_class_images is not None and args.per_class_images < 1:
        raise CarlibError(f"--per-class-images must be at least 1, got {args.per_class_images}; "
                          "leave it out to use every image")
    model = load_model(args.model, weights=args.weights)
    layer = resolve_layer(model, args.layer)
    if getattr(args, "n_remove", None) is not None:
        check_n_remove(args.n_remove, layer.filters, args.layer)
    data = load_dataset(args.dataset, args.split, per_class=args.per_class_images,
                        progress=not args.quiet)
    return model, data


@contextmanager
def _process_group(args: argparse.Namespace) -> Iterator[None]:
    """Under a launcher: one rank of a process group (``gloo`` on the CPU; ``nccl`` on GPUs,
    each rank on ``cuda:LOCAL_RANK``) for the block, destroyed after it."""
    from .engine import resolve_device

    device = resolve_device(args.device)
    if distributed.launched() and device.type == "cuda":
        if args.device not in ("cuda", "auto"):
            raise CarlibError(f"--device {args.device} names one GPU, but under torchrun every "
                              "process takes the GPU cuda:LOCAL_RANK; pass --device cuda")
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        device = resolve_device(args.device)
    created = distributed.init_from_env(device)
    done = False
    try:
        yield
        done = True
    finally:
        if created:
            distributed.finish(wait=done)


def _car(args: argparse.Namespace) -> None:
    from .car import car_index
    from .tables import write_table

    _outputs(args)
    model, data = _load(args)
    with _process_group(args):
        df = car_index(model, args.layer, data, per_class=args.per_class, topk=args.topk,
                       batch_size=args.batch_size, device=args.device, progress=not args.quiet,
                       precision=args.precision)
        if not distributed.is_writer():
            return
        write_table(df, args.out)
    print(f"base accuracy {df.attrs['base_accuracy']:.4f} on {df.attrs['n_images']} images; "
          f"{len(df)} rows written to {args.out}")


def _prune(args: argparse.Namespace) -> None:
    from .data import as_batches
    from .greedy import greedy_prune
    from .models import save_checkpoint
    from .pruning import prune_filters
    from .tables import write_table

    paths = _outputs(args)
    model, data = _load(args)
    if args.save_model is not None:  # a layer that cannot be pruned is refused before the run
        size = tuple(next(as_batches(data, 1))[0].shape[1:])
        prune_filters(model, args.layer, [0], input_size=size)
    with _process_group(args):
        df = greedy_prune(model, args.layer, data, n_remove=args.n_remove, topk=args.topk,
                          journal=paths["--journal"], batch_size=args.batch_size,
                          device=args.device, progress=not args.quiet, precision=args.precision)
        if not distributed.is_writer():
            return
        write_table(df, args.out)
    print(f"accuracy {df.attrs['base_accuracy']:.4f} -> "
          f"{df['accuracy'].iloc[-1] if len(df) else df.attrs['base_accuracy']:.4f} after "
          f"pruning {len(df)} filters of {args.layer}; steps written to {args.out}")
    if args.save_model is not None:
        small = prune_filters(model, args.layer, df["filter"].tolist(), input_size=size)
        save_checkpoint(small.state_dict(), args.save_model)
        print(f"pruned network saved to {args.save_model} (sha256 in {args.save_model}.sha256)")


def _train(args: argparse.Namespace, argv: list[str]) -> None:
    from .models import DEFAULT_WEIGHTS
    from .train import TrainConfig, train_alexnet_tiny

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    cmd = "python -m carlib " + " ".join(shlex.quote(a) for a in argv)
    meta = train_alexnet_tiny(cfg, out=args.out or DEFAULT_WEIGHTS, progress=not args.quiet,
                              command=cmd)
    print(f"val top-1 {meta['val_top1']:.4f}, top-5 {meta['val_top5']:.4f}")


def _finetune(args: argparse.Namespace) -> None:
    from .data import load_dataset
    from .files import check_writable
    from .finetune import finetune, finetune_config, load_alexnet_tiny
    from .models import save_checkpoint

    cfg = finetune_config(args.epochs, lr=args.lr, seed=args.seed, batch_size=args.batch_size)
    if args.per_class_images is not None and args.per_class_images < 1:
        raise CarlibError(f"--per-class-images must be at least 1, got {args.per_class_images}; "
                          "leave it out to use every image")
    if args.checkpoint_every < 0:
        raise CarlibError(f"--checkpoint-every must be at least 0, got {args.checkpoint_every}; "
                          "0 writes checkpoints at the ends of epochs only")
    out = check_writable(args.out)
    work = args.work_dir or out.parent
    if work.exists() and not work.is_dir():
        raise CarlibError(f"--work-dir {work} is a file; name a folder")
    model = load_alexnet_tiny(args.weights)
    train = load_dataset("tiny-imagenet", "train", per_class=args.per_class_images,
                         progress=not args.quiet)
    val = None if args.no_val else load_dataset("tiny-imagenet", "val", progress=not args.quiet)
    tuned, log = finetune(model, train, val, cfg, work_dir=work, name=out.stem,
                          progress=not args.quiet, checkpoint_every=args.checkpoint_every)
    save_checkpoint(tuned.state_dict(), out)
    last = log.iloc[-1]
    acc = "" if val is None else f"; val top-1 {last['val_top1']:.4f}, top-5 {last['val_top5']:.4f}"
    print(f"{len(log)} epoch(s), train loss {last['train_loss']:.4f}{acc}; saved to {out} "
          f"(sha256 in {out}.sha256)")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 1 another process of
    the run failed, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            _info(args)
        elif args.command == "train":
            _train(args, argv)
        elif args.command == "finetune":
            _finetune(args)
        elif args.command == "car":
            _car(args)
        elif args.command == "prune":
            _prune(args)
    except CarlibError as exc:
        print(f"carlib: error: {exc}", file=sys.stderr)
        return 2
    except (distributed.RankFailed, torch.distributed.DistError) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        print(f"carlib: error: another process of this run failed ({first}); start the run "
              "again (a greedy run resumes from its journal)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("carlib: interrupted; a greedy run resumes from its journal when started again",
              file=sys.stderr)
        return 130
    return 0
