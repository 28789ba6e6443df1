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

__all__ = ["main", "run_notebooks", "strip_noise", "check_precomputed", "NOTEBOOKS"]

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


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


def check_precomputed(profile: str) -> None:
    """Refuse to run the notebooks of a :data:`~carlib.analysis.profiles.PRECOMPUTE_FIRST`
    profile whose tables are not all cached: inside a notebook they would compute for hours,
    without progress bars, and not resumably from the notebook.

    Raises:
        CarlibError: naming how many steps are missing, the first of them and its table, and
            the command that computes them.

    Example:
        >>> check_precomputed("default")  # other profiles: nothing checked
    """
    if profile not in PRECOMPUTE_FIRST:
        return
    from .precompute import status

    table = status(profile)
    missing = table[table["state"] != "cached"]
    if len(missing):
        first = missing.iloc[0]
        raise CarlibError(
            f"profile {profile!r} has {len(missing)} of {len(table)} steps not computed yet (first: "
            f"{first['step']}, table {first['first_missing']}); run `make precompute PROFILE={profile}` "
            "first (resumable, with progress), or pass --compute to let the notebooks compute them")


def run_notebooks(profile: str, *, device: str | None = None, force: bool = False,
                  update_committed: bool | None = None) -> float:
    """Execute every notebook for ``profile``; returns the total seconds.

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
    for name in NOTEBOOKS:
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
    print(f"\nall {len(NOTEBOOKS)} notebooks ran for profile {prof.name} in {total / 60:.1f} min")
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
        if not (args.compute or args.force):
            check_precomputed(args.profile)
    except CarlibError as exc:
        print(f"carlib: error: {exc}", file=sys.stderr)
        return 2
    run_notebooks(args.profile, device=args.device, force=args.force,
                  update_committed=False if args.no_update else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
