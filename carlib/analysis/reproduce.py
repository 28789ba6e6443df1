"""``python -m carlib.analysis.reproduce``: run the notebooks headless with papermill (``make reproduce``).

Runs ``notebooks/01_*.ipynb`` ... ``06_*.ipynb`` in order for a profile, stops at the first
failure naming the notebook and the cell, and prints where the figures are and the total time.
For the ``default`` profile the executed notebooks replace the committed ones (so a reader on
the web sees every figure), with run-to-run noise (timings, kernel metadata) stripped and the
execution counts renumbered 1, 2, 3, ... in cell order (nbval refuses a reference cell that
has outputs but no execution count, so they cannot simply be removed).
For the profiles of :data:`~carlib.analysis.profiles.PRECOMPUTE_FIRST` (hours of computing) it
first checks that every table the notebooks read is cached, and otherwise stops, naming the
first missing step and the command that computes it (``--compute`` runs the notebooks anyway).
``--notebooks 01,02`` runs some of them; the check then covers the steps they read
(:data:`NOTEBOOK_STEPS`), so ``conv1``'s notebooks run once its steps are cached.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ..errors import CarlibError
from ..paths import REPO_ROOT, figures_dir
from .profiles import PRECOMPUTE_FIRST, PROFILES, get_profile

__all__ = ["main", "run_notebooks", "strip_noise", "check_precomputed", "select_notebooks", "NOTEBOOKS",
           "NOTEBOOK_STEPS", "needed_steps"]

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
_GREEDY = ("CAR", "greedy", "curves", "held-out accuracy", "replicates")
#: the precomputed steps each notebook reads (by number): the layers it studies and the kinds
#: of step (:data:`~carlib.analysis.precompute.STEPS`) of those layers; every notebook but 01
#: also reads the accuracy per class, which every check includes
NOTEBOOK_STEPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "01": ((), ()),
    "02": (("conv1",), _GREEDY),
    "03": (("conv2",), _GREEDY),
    "04": (("conv1", "conv2"), ("CAR", "color responses", "labels", "greedy", "replicates")),
    "05": (("conv1", "conv2"), ("CAR", "color responses")),
    "06": (("conv1", "conv2"), ("greedy", "orders", "test curves", "paired tests", "retraining",
                                "deep compression")),
}


def needed_steps(notebooks: list[str]) -> set[tuple[str, str]]:
    """The ``(layer, kind of step)`` pairs the notebooks read (:data:`NOTEBOOK_STEPS`).

    Example:
        >>> sorted(needed_steps(["03_car_conv2.ipynb"]))[:2]
        [('conv2', 'CAR'), ('conv2', 'curves')]
    """
    return {(layer, kind) for nb in notebooks for layer in NOTEBOOK_STEPS[nb[:2]][0]
            for kind in NOTEBOOK_STEPS[nb[:2]][1]}


def _step_needed(step: str, needed: set[tuple[str, str]]) -> bool:
    from .precompute import step_kind

    kind = step_kind(step)
    rest = step[len(kind):].split()
    return not rest or (rest[0], kind) in needed  # a step of no layer: the accuracy per class


def select_notebooks(names: str | None) -> list[str]:
    """The notebooks named by a comma-separated list of numbers or file names (``None``: all).

    Raises:
        CarlibError: a name that matches no notebook, with the names there are.

    Example:
        >>> select_notebooks("2,03_car_conv2.ipynb")
        ['02_car_conv1.ipynb', '03_car_conv2.ipynb']
    """
    if names is None:
        return list(NOTEBOOKS)
    chosen = set()
    for name in (n.strip() for n in names.split(",") if n.strip()):
        hits = [nb for nb in NOTEBOOKS if nb == name or (name.isdigit() and nb[:2] == name.zfill(2))]
        if not hits:
            raise CarlibError(f"no notebook {name!r}; choose among: "
                              f"{', '.join(nb[:2] for nb in NOTEBOOKS)} (numbers or file names)")
        chosen.update(hits)
    if not chosen:
        raise CarlibError("--notebooks names no notebook; pass e.g. --notebooks 02,03")
    return sorted(chosen)


def strip_noise(path: Path) -> None:
    """Remove what changes from run to run: papermill timings and kernel metadata.

    Execution counts are renumbered 1, 2, 3, ... over the code cells in order (the same
    numbers on every run). They are not removed: nbval treats a cell with outputs and no
    execution count as an unrun reference cell and fails it.

    Args:
        path: an executed notebook, rewritten in place.

    Example:
        >>> strip_noise(Path("notebooks/01_baseline.ipynb"))  # doctest: +SKIP
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    # papermill's injected-parameters cell is dropped: the parameters cell documents them
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:  # papermill adds empty tag lists
            del cell.metadata["tags"]
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        for out in cell.get("outputs", []):
            if "execution_count" in out:
                out["execution_count"] = count
            out.get("metadata", {}).pop("needs_background", None)
    nbformat.write(nb, path)


def check_precomputed(profile: str, notebooks: list[str] | None = None) -> None:
    """Refuse to run the notebooks of a :data:`~carlib.analysis.profiles.PRECOMPUTE_FIRST`
    profile whose tables are not all cached: inside a notebook they would compute for hours,
    without progress bars, and not resumably from the notebook.

    Args:
        profile: a profile name.
        notebooks: the notebooks to run (default: all); only the steps they read
            (:data:`NOTEBOOK_STEPS`) are checked.

    Raises:
        CarlibError: naming how many steps are missing, the first of them and its table, and
            the command that computes them.

    Example:
        >>> check_precomputed("default")  # other profiles: nothing checked
    """
    if profile not in PRECOMPUTE_FIRST:
        return
    from .precompute import status

    if notebooks is None:
        table = status(profile)
    else:
        needed = needed_steps(notebooks)
        table = status(profile, tuple(sorted({layer for layer, _ in needed})))
        table = table[[_step_needed(step, needed) for step in table["step"]]].reset_index(drop=True)
    missing = table[table["state"] != "cached"]
    if len(missing):
        first = missing.iloc[0]
        raise CarlibError(
            f"profile {profile!r} has {len(missing)} of {len(table)} steps not computed yet (first: "
            f"{first['step']}, table {first['first_missing']}); run `make precompute PROFILE={profile}` "
            "first (resumable, with progress), or pass --compute to let the notebooks compute them")


def run_notebooks(profile: str, *, device: str | None = None, force: bool = False,
                  update_committed: bool | None = None, notebooks: list[str] | None = None) -> float:
    """Execute every notebook (or those of ``notebooks``, in order) for ``profile``; returns the
    total seconds.

    Raises:
        SystemExit(1): a notebook failed (its name and the failing cell are printed).
    """
    import papermill as pm

    prof = get_profile(profile)
    update = (profile == "default") if update_committed is None else update_committed
    out_dir = Path(tempfile.mkdtemp(prefix=f"carlib-{profile}-"))
    # no progress bars in executed notebooks (their outputs would change from run to run)
    params = {"profile": profile, "force": force, "progress": False}
    if device:
        params["device"] = device
    t0 = time.time()
    chosen = notebooks or NOTEBOOKS
    for name in chosen:
        src = NOTEBOOK_DIR / name
        dst = out_dir / name
        t = time.time()
        print(f"[{profile}] {name} ...", flush=True)
        try:
            pm.execute_notebook(src, dst, parameters=params, kernel_name="python3",
                                progress_bar=True, cwd=str(NOTEBOOK_DIR))
        except pm.PapermillExecutionError as exc:
            print(f"FAILED: {name}, cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                  f"the executed notebook with the error is {dst}", file=sys.stderr)
            raise SystemExit(1)
        print(f"[{profile}] {name} done in {time.time() - t:.0f} s", flush=True)
        if update:
            strip_noise(dst)
            dst.replace(src)
    total = time.time() - t0
    print(f"\n{'all ' if len(chosen) == len(NOTEBOOKS) else ''}{len(chosen)} notebooks ran for profile "
          f"{prof.name} in {total / 60:.1f} min")
    print(f"figures: {figures_dir(prof.name)}")
    if not update:
        print(f"executed notebooks: {out_dir}")
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m carlib.analysis.reproduce", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default", help=" | ".join(PROFILES) + " (see --list)")
    p.add_argument("--list", action="store_true", help="list the profiles and exit")
    p.add_argument("--device", default=None, help="override the profile's device")
    p.add_argument("--force", action="store_true", help="recompute cached results")
    p.add_argument("--compute", action="store_true",
                   help=f"run the notebooks of {', '.join(PRECOMPUTE_FIRST)} even when tables are missing "
                        "(they compute them; `python -m carlib.analysis.precompute` is the resumable way)")
    p.add_argument("--notebooks", default=None, metavar="LIST",
                   help="comma-separated notebooks to run, by number or file name (default: all), "
                        "e.g. 02,03; a long profile then needs only their layers' tables")
    p.add_argument("--no-update", action="store_true",
                   help="do not replace the committed notebooks (default profile only)")
    args = p.parse_args(argv)
    if args.list:
        for name, prof in PROFILES.items():
            print(f"profile {name}: {prof.model} on {prof.dataset} {prof.split}, "
                  f"{prof.per_class} images/class, greedy {prof.greedy_steps}, device {prof.device}")
        return 0
    try:
        get_profile(args.profile)
        chosen = select_notebooks(args.notebooks) if args.notebooks is not None else None
        if not (args.compute or args.force):
            check_precomputed(args.profile, chosen)
    except CarlibError as exc:
        print(f"carlib: error: {exc}", file=sys.stderr)
        return 2
    run_notebooks(args.profile, device=args.device, force=args.force,
                  update_committed=False if args.no_update else None, notebooks=chosen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
