"""Compute a profile's long tables ahead of the notebooks, in a fixed order, resumably.

``python -m carlib.analysis.precompute --profile full`` computes every table the notebooks read:
the per-class accuracy, then for ``conv1`` then ``conv2`` the per-class CAR (on each half with
``held_out_orders``), the response color index and the three-class labels, then per layer the
greedy loop, the curves on the greedy images and the held-out accuracy of notebooks 02/03, with
``held_out_orders`` the selection-half orders, the test-half curves and the paired tests, the
greedy loop on disjoint parts of the greedy images (with ``replicates``), then, for the layers
the profile retrains (``retrain``), the retraining runs and Deep Compression of notebook 06.
Every table is cached under ``results/<profile>/`` (greedy steps journaled, CAR in shards,
curves per order), so a killed run restarts where it stopped; progress bars show an ETA.
``--status`` shows which steps are cached and the greedy journals' steps, computing nothing.
``--steps`` runs only some kinds of step (e.g. ``--steps replicates`` beside a run busy with the
greedy loop): a step computes what it needs first, and two processes never compute one table
at once (the second waits for the first and reads its table).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Iterator

import pandas as pd

from ..errors import CarlibError
from ..files import lock_held
from .cached_study import CachedStudy, MissingTable
from .study import Study

__all__ = ["STEPS", "step_kind", "plan", "precompute", "status", "main"]

#: the kinds of step of :func:`plan`, in its order (a step's description less its layer)
STEPS = ("accuracy per class", "CAR", "color responses", "labels", "greedy", "curves", "held-out accuracy",
         "orders", "test curves", "paired tests", "replicates", "retraining", "deep compression")


def step_kind(description: str) -> str:
    """The kind of a step of :func:`plan`: its description without the layer and image set.

    Example:
        >>> step_kind("CAR conv2 (selection)"), step_kind("deep compression conv1")
        ('CAR', 'deep compression')
    """
    kinds = [k for k in STEPS if description == k or description.startswith(k + " ")]
    if not kinds:
        raise CarlibError(f"no kind of step for {description!r}; the kinds are: {', '.join(STEPS)}")
    return max(kinds, key=len)


def _check_steps(steps: tuple[str, ...] | None) -> None:
    unknown = [s for s in steps or () if s not in STEPS]
    if unknown:
        raise CarlibError(f"unknown step {unknown[0]!r}; choose among: {', '.join(STEPS)}")


def plan(study: Study, layers: tuple[str, ...] = ("conv1", "conv2")) -> Iterator[tuple[str, Callable[[], object]]]:
    """The steps of :func:`precompute`, in order: ``(description, call)``.

    Example:
        >>> [d for d, _ in plan(Study("smoke"), ("conv1",))][:6]  # doctest: +SKIP
        ['accuracy per class', 'CAR conv1 (all)', 'color responses conv1', 'labels conv1',
         'greedy conv1', 'curves conv1']
    """
    from . import heldout, retraining

    split = study.profile.held_out_orders
    retrained = (study.profile.retrain or {}).get("layers", []) if study.profile.has_test else []
    yield "accuracy per class", study.accuracy_per_class
    for layer in layers:
        halves = ("selection", "test", "all") if split else ("all",)  # "all": the halves' shards summed
        for images in halves:
            yield f"CAR {layer} ({images})", lambda layer=layer, images=images: study.car_per_class(layer, images)
        yield f"color responses {layer}", lambda layer=layer: study.color_responses(layer)
        yield f"labels {layer}", lambda layer=layer: study.labels(layer)
    for layer in layers:
        yield f"greedy {layer}", lambda layer=layer: study.greedy(layer)
        yield f"curves {layer}", lambda layer=layer: study.curves(layer)
        yield f"held-out accuracy {layer}", lambda layer=layer: study.heldout_accuracy(layer)
        if split:
            yield f"orders {layer}", lambda layer=layer: heldout.selection_orders(study, layer)
            yield f"test curves {layer}", lambda layer=layer: heldout.test_curves(study, layer)
            yield f"paired tests {layer}", lambda layer=layer: heldout.paired_tests(study, layer)
        if study.profile.replicates:
            yield f"replicates {layer}", lambda layer=layer: heldout.replicate_greedy(study, layer)
        if layer in retrained:
            yield f"retraining {layer}", lambda layer=layer: retraining.retraining(study, layer)
            yield f"deep compression {layer}", lambda layer=layer: retraining.deep_compression(study, layer)


def precompute(profile: str, layers: tuple[str, ...] = ("conv1", "conv2"), *, progress: bool = True,
               log: Callable[[str], None] = print, device: str | None = None,
               steps: tuple[str, ...] | None = None) -> None:
    """Run every step of :func:`plan` (cached ones are read back at once).

    Args:
        profile: a profile name.
        layers: the roles to compute.
        progress: progress bars.
        log: where the one-line step reports go.
        device: overrides the profile's device for CAR and the greedy loop (e.g. ``cuda``;
            fine-tuning runs on the CPU); the tables keep their cache keys.
        steps: only the steps of these kinds (:data:`STEPS`; ``None``: all); each still computes
            the tables it needs first.

    Raises:
        CarlibError: a kind not in :data:`STEPS`.

    Example:
        >>> precompute("smoke", ("conv1",), progress=False)  # doctest: +SKIP
        >>> precompute("full", ("conv2",), steps=("replicates",))  # doctest: +SKIP
    """
    _check_steps(steps)
    study = Study(profile, progress=progress, device=device)
    t0 = time.time()
    for what, call in plan(study, layers):
        if steps is not None and step_kind(what) not in steps:
            continue
        t = time.time()
        call()
        log(f"[{(time.time() - t0) / 60:6.1f} min] {what}: {time.time() - t:.0f} s")


def status(profile: str, layers: tuple[str, ...] = ("conv1", "conv2")) -> pd.DataFrame:
    """Where a (long) run stands: every step of :func:`plan`, read from the cache, nothing computed.

    Args:
        profile: a profile name.
        layers: the roles.

    Returns:
        One row per step: ``step``, ``state`` (``"cached"``, ``"to compute"`` or
        ``"computing"``: another process holds the table's lock now) and
        ``first_missing`` (the table the step would compute first). ``attrs["parts"]``: how many
        parts (CAR shards, curves per order, retraining runs) are cached under
        ``results/<profile>/parts/``, of finished tables and of those a resumed run completes;
        ``attrs["journals"]``: each greedy journal there, with the steps it holds (a resumed run
        starts after them).

    Example:
        >>> status("full").loc[0, ["step", "state"]].tolist()  # doctest: +SKIP
        ['accuracy per class', 'cached']
    """
    study = CachedStudy(profile, progress=False)  # nothing is computed or written
    rows = []
    for what, call in plan(study, layers):
        try:
            call()
            rows.append({"step": what, "state": "cached", "first_missing": ""})
        except MissingTable as e:
            busy = lock_held(study.dir / f"{e.name}.csv")  # another process computing it now
            rows.append({"step": what, "state": "computing" if busy else "to compute", "first_missing": e.name})
    out = pd.DataFrame(rows)
    out.attrs["parts"] = len(list((study.dir / "parts").rglob("*.csv")))
    out.attrs["journals"] = {str(j.relative_to(study.dir)): sum(1 for _ in j.open()) - 1  # less the header
                             for j in sorted(study.dir.rglob("*.journal.jsonl"))}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m carlib.analysis.precompute", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="full")
    p.add_argument("--layers", default="conv1,conv2", help="comma-separated roles (default conv1,conv2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default=None, help="override the profile's device (cpu, cuda, auto)")
    p.add_argument("--status", action="store_true", help="show which steps are cached and stop (computes nothing)")
    p.add_argument("--steps", default=None,
                   help=f"comma-separated kinds of step to run (default: all): {', '.join(STEPS)}")
    args = p.parse_args(argv)
    steps = tuple(s.strip() for s in args.steps.split(",")) if args.steps else None
    try:
        _check_steps(steps)
        if args.status:
            table = status(args.profile, tuple(args.layers.split(",")))
            print(table.to_string(index=False))
            print(f"cached parts (shards, curves per order, runs): {table.attrs['parts']}")
            for name, done in table.attrs["journals"].items():
                print(f"journal {name}: {done} steps")
            return 0
        precompute(args.profile, tuple(args.layers.split(",")), progress=not args.quiet, device=args.device,
                   steps=steps)
    except CarlibError as e:
        print(f"carlib: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
