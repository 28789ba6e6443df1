"""The paper's greedy structural compression loop, journaled and resumable.

At every step the CAR of each remaining filter is recomputed on the network pruned so far,
and the filter with the lowest CAR is pruned (ties go to the lower filter index).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from . import distributed
from .data import DataLike, data_fingerprint
from .engine import Engine
from .errors import CarlibError
from .faults import crash_point
from .files import check_writable, write_text_atomic
from .graph import LayerPlan
from .models import model_fingerprint

__all__ = ["greedy_prune", "check_n_remove", "JOURNAL_VERSION"]

JOURNAL_VERSION = 1


def _header(engine: Engine, model: nn.Module, data: DataLike, topk: int) -> dict:
    return {"kind": "carlib-greedy-journal", "version": JOURNAL_VERSION,
            "model": model_fingerprint(model), "layer": engine.plan.layer.path,
            "data": data_fingerprint(data), "n_images": engine.n_images, "topk": topk}


STEP_FIELDS = ("step", "filter", "car", "accuracy", "remaining")


def _bad(path: Path, line: int, what: str) -> CarlibError:
    return CarlibError(f"journal {path} line {line} {what}; the journal is damaged or was edited: "
                       "delete it to start over, or pass another journal path")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_step(path: Path, line: int, row: object, done: list[dict], n_filters: int) -> dict:
    """One journal step, every field checked against the run and the steps before it."""
    if not isinstance(row, dict) or sorted(row) != sorted(STEP_FIELDS):
        raise _bad(path, line, f"is not a step (an object with exactly {', '.join(STEP_FIELDS)})")
    k = len(done) + 1
    if not _is_int(row["step"]) or row["step"] != k:
        raise _bad(path, line, f"has step {row['step']!r} where step {k} belongs")
    f = row["filter"]
    if not _is_int(f) or not 0 <= f < n_filters:
        raise _bad(path, line, f"names filter {f!r}, outside 0..{n_filters - 1}")
    if any(s["filter"] == f for s in done):
        raise _bad(path, line, f"prunes filter {f} a second time")
    if not _is_number(row["accuracy"]) or not 0 <= row["accuracy"] <= 1:
        raise _bad(path, line, f"has accuracy {row['accuracy']!r}, not a fraction in 0..1")
    if not _is_number(row["car"]) or not -1 <= row["car"] <= 1:
        raise _bad(path, line, f"has car {row['car']!r}, not a difference of accuracies")
    if not _is_int(row["remaining"]) or row["remaining"] != n_filters - k:
        raise _bad(path, line, f"has remaining {row['remaining']!r} where {n_filters - k} belongs")
    return row


def _read_journal(path: Path, header: dict, n_filters: int) -> list[dict]:
    """Steps already done, after checking the journal belongs to this run and every line.

    Only a last line without its newline (a write cut short) may be unreadable: that step is
    redone. Any other unreadable or inconsistent line is an error naming the file and line.
    """
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines.pop() if lines else b""  # the bytes after the last newline: b"" when intact
    if not lines:
        return []
    steps: list[dict] = []
    for i, data in enumerate(lines, start=1):
        try:
            row = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise _bad(path, i, "is not UTF-8 text") from None
        except json.JSONDecodeError:
            raise _bad(path, i, "is not valid JSON") from None
        if i == 1:
            if not isinstance(row, dict) or row.get("kind") != header["kind"]:
                raise _bad(path, 1, "is not the header of a carlib greedy journal")
            if row != header:
                diff = [k for k in header if row.get(k) != header[k]]
                raise CarlibError(
                    f"journal {path} belongs to another run (different "
                    f"{', '.join(diff) or 'format'}); delete it to start over, or pass another "
                    "journal path")
            continue
        steps.append(_check_step(path, i, row, steps, n_filters))
    del torn  # a step cut short while being written: redone
    return steps


def _write_journal(path: Path, header: dict, steps: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in [header, *steps]))


def _open_journal(path: Path, header: dict, n_filters: int) -> list[dict]:
    """The steps a journal holds (none when it does not exist), its folder made and its file
    checked writable."""
    steps = _read_journal(path, header, n_filters) if path.is_file() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    check_writable(path)
    return steps


def check_n_remove(n_remove: object, filters: int, layer: str) -> int:
    """Check how many filters a greedy run may prune: ``0 <= n_remove < filters``.

    Args:
        n_remove: the requested count.
        filters: the layer's filter count.
        layer: the layer's name, for the message.

    Returns:
        ``n_remove``.

    Raises:
        CarlibError: not an integer in range.

    Example:
        >>> check_n_remove(3, 64, "conv1")
        3
    """
    if not isinstance(n_remove, int) or isinstance(n_remove, bool) or not 0 <= n_remove < filters:
        raise CarlibError(f"n_remove must be between 0 and {filters - 1} for {layer} ({filters} filters), "
                          f"got {n_remove!r}")
    return n_remove


class _StepProgress:
    """One greedy step's share of the run's bar: the engine advances it by pairs; :meth:`reset`
    (an out-of-memory retry) takes the step's pairs back; :meth:`finish` tops the step up."""

    def __init__(self, bar) -> None:
        self.bar, self.done = bar, 0

    def update(self, n: int = 1) -> None:
        self.done += n
        self.bar.update(n)

    def reset(self) -> None:
        self.bar.update(-self.done)
        self.done = 0

    def finish(self, pairs: int) -> None:
        self.update(pairs - self.done)


def greedy_prune(
    model: nn.Module,
    layer: str | LayerPlan,
    data: DataLike,
    *,
    n_remove: int,
    topk: int = 1,
    journal: str | Path | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    method: str = "auto",
    pair_batch: int | None = None,
    callback: Callable[[dict], None] | None = None,
    precision: str = "auto",
) -> pd.DataFrame:
    """Greedily prune ``n_remove`` filters of ``layer``, lowest CAR first (the paper's loop).

    Args:
        model: the network (not modified); evaluated in eval mode whatever its mode, and every
            submodule is left in the mode it had.
        layer: alias or module path of the convolution, or its :class:`~carlib.graph.LayerPlan`.
        data: a carlib dataset or ``(images, labels)``.
        n_remove: number of filters to prune (at most the layer's filter count minus one).
        topk: accuracy used for CAR (1 or 5).
        journal: a file to journal each finished step to; an interrupted run called again
            with the same journal resumes after its last finished step (same result). Every
            line is checked first: a damaged journal is a ``CarlibError`` naming its line.
        batch_size, device, progress, method, pair_batch, precision: as
            :func:`carlib.car_index`.
        callback: called with each new step's row (for progress reporting).

    Under an initialised ``torch.distributed`` process group every rank calls this with the
    same arguments: each counts its block of the images (:mod:`carlib.distributed`), every
    rank takes the same steps from the summed counts and returns the same table, and rank 0
    alone reads and writes the journal (the other ranks receive its steps).

    Returns:
        One row per step: ``step`` (1-based), ``filter`` (pruned at that step, original
        index), ``car`` (its CAR relative to the network pruned so far), ``accuracy`` (after
        pruning it), ``remaining`` (filters left). ``attrs["base_accuracy"]`` is the accuracy
        before any pruning.

    Example:
        >>> steps = greedy_prune(load_model(), "conv1", val, n_remove=10)  # doctest: +SKIP
        >>> steps[["step", "filter", "accuracy"]].head()  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    engine = Engine(model, layer, data, device=device, batch_size=batch_size, topk=topk,
                    method=method, pair_batch=pair_batch, precision=precision)
    n = engine.n_filters
    name = engine.plan.layer.alias if isinstance(layer, LayerPlan) else layer
    check_n_remove(n_remove, n, name)
    header = _header(engine, model, data, topk)
    steps: list[dict] = []
    jpath = Path(journal) if journal is not None else None
    if jpath is not None:
        steps = distributed.from_writer(lambda: _open_journal(jpath, header, n))
    removed = [int(s["filter"]) for s in steps]
    base_accuracy = steps[0]["accuracy"] + steps[0]["car"] if steps else None
    # the bar counts (image, filter) pairs: steps get cheaper as filters go, so its ETA holds
    pairs = [(n - s) * engine.n_local for s in range(n_remove)]
    with tqdm(total=sum(pairs), initial=sum(pairs[: len(steps)]), desc=f"greedy {name}", unit="pair",
              unit_scale=True, mininterval=1.0, disable=not (progress and distributed.is_writer())) as bar:
        bar.set_postfix_str(f"step {min(len(steps), n_remove)}/{n_remove}")
        while len(steps) < n_remove:
            remaining = [k for k in range(n) if k not in removed]
            step_bar = _StepProgress(bar)
            base, cand, counts = engine.evaluate(removed, remaining, step_bar)
            n_img = int(counts.sum())
            correct = cand.sum(dim=1)
            best = int(torch.argmax(correct))  # first maximum: the lower filter index wins
            acc_before = float(base.sum()) / n_img
            if base_accuracy is None:
                base_accuracy = acc_before
            acc = float(correct[best]) / n_img
            row = {"step": len(steps) + 1, "filter": remaining[best], "car": acc_before - acc,
                   "accuracy": acc, "remaining": n - len(removed) - 1}
            steps.append(row)
            removed.append(remaining[best])
            crash_point("greedy-step")
            if jpath is not None and distributed.is_writer():
                _write_journal(jpath, header, steps)
            crash_point("greedy-journaled")
            step_bar.finish(pairs[len(steps) - 1])
            bar.set_postfix_str(f"step {len(steps)}/{n_remove}")
            if callback is not None:
                callback(row)
    df = pd.DataFrame(steps[:n_remove], columns=["step", "filter", "car", "accuracy", "remaining"])
    if base_accuracy is None:  # n_remove == 0
        base, _, counts = engine.evaluate([], [])
        base_accuracy = float(base.sum()) / int(counts.sum())
    df.attrs.update({"base_accuracy": base_accuracy, "layer": engine.plan.layer.path,
                     "n_images": engine.n_images, "topk": topk, "method": engine.method,
                     "precision": engine.precision, **engine.screen_summary(),
                     **engine.memory_summary()})
    return df
