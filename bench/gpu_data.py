"""Copy the Tiny ImageNet val images the benchmark uses to a small folder a GPU machine can take.

A GPU machine that receives a copy of the repository only (not the data folder) can run
workloads 1-3 from this small copy. Workloads 1-3 of ``bench/bench.py`` read the first 10 val images
of every class (2,000 images); this script writes exactly those, with ``wnids.txt``, ``words.txt``
and a ``val_annotations.txt`` that lists only them, to ``.gpu-data/tiny-imagenet-200`` (about
8 MB, git-ignored). ``load_dataset("tiny-imagenet", "val", per_class=10)`` with
``CARLIB_DATA_DIR=.gpu-data`` then returns the same images in the same order (checked at the end).

Usage (then copy ``.gpu-data`` along with the repository)::

    CARLIB_DATA_DIR=/path/to/data .venv/bin/python bench/gpu_data.py [--per-class 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import carlib
from carlib.data import find_tiny_imagenet, subset_per_class, tiny_imagenet_listing

__all__ = ["OUT", "main"]

#: The copy's folder (git-ignored): ``CARLIB_DATA_DIR=.gpu-data`` reads it.
OUT = Path(__file__).resolve().parents[1] / ".gpu-data"


def main(argv: list[str] | None = None) -> int:
    """Write the copy and check it decodes to the same images and labels.

    Args:
        argv: the command line (default ``sys.argv[1:]``): ``[--per-class N]``.

    Returns:
        0 when the copy is identical to the full set's ``per_class`` subset, else 1.

    Example:
        >>> main(["--per-class", "1"])  # doctest: +SKIP
        0
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=10)
    args = p.parse_args(argv)
    src = find_tiny_imagenet(progress=False)
    wnids = sorted(w.strip() for w in (src / "wnids.txt").read_text().split() if w.strip())
    # the loader's own listing and subset: the copy holds exactly what per_class selects
    paths, labels = tiny_imagenet_listing(src, "val", wnids)
    keep = subset_per_class(labels, args.per_class, len(wnids))
    dst = OUT / "tiny-imagenet-200"
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "val" / "images").mkdir(parents=True)
    for name in ("wnids.txt", "words.txt"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    (dst / "val" / "val_annotations.txt").write_text(
        "".join(f"{paths[i].name}\t{wnids[labels[i]]}\n" for i in keep))
    for i in keep:
        shutil.copy2(paths[i], dst / "val" / "images" / paths[i].name)
    full = carlib.load_dataset("tiny-imagenet", "val", per_class=args.per_class, progress=False)
    # decode the copy afresh: a decoded-pixel cache of an earlier copy at this path would
    # otherwise answer for it
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(CARLIB_DATA_DIR=str(OUT), CARLIB_HOME=home)
        small = carlib.load_dataset("tiny-imagenet", "val", per_class=args.per_class,
                                    progress=False)
    same = np.array_equal(full.images, small.images) and np.array_equal(full.labels, small.labels)
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"{len(keep)} images, {size / 2**20:.1f} MiB in {dst}; identical to the full set's "
          f"per_class={args.per_class} subset: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
