"""Several processes, one result: CAR and greedy pruning split over images with ``torch.distributed``.

The counts behind CAR decompose exactly over images: under an initialised process group every
process (*rank*) counts the correct images of its own *shard* and the integer counts per
(filter, class) are summed with ``all_reduce``, so every rank holds the counts a single
process computes, and every rank takes the same greedy decision from them. Shards are
contiguous blocks of whole batches in dataset order (:func:`shard_bounds`): of the ``B``
batches, rank ``r`` of ``W`` takes batches ``[r * B // W, (r + 1) * B // W)``, so every batch
is computed exactly as one process computes it. Rank 0 alone writes results, journals and checkpoints
(:func:`is_writer`); a file it reads or checks for the run (a greedy journal) reaches the other
ranks through :func:`from_writer`, errors included, so no rank waits for one that failed.

Without a process group (or with one process) every function here is the identity: one
process computes everything, as before.

``python -m carlib car|prune`` started by ``torchrun`` (``RANK``, ``WORLD_SIZE`` ... in the
environment) sets the process group up itself (:func:`init_from_env`): ``gloo`` on CPUs,
``nccl`` on GPUs with each rank on ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from .errors import CarlibError

__all__ = ["RankFailed", "active", "rank", "world_size", "is_writer", "shard_bounds", "shard",
           "all_reduce_sum", "from_writer", "launched", "init_from_env", "finish"]

T = TypeVar("T")


class RankFailed(RuntimeError):
    """Another rank of the process group failed (died, or left): this one cannot go on.

    Example:
        >>> raise RankFailed("connection closed")  # doctest: +SKIP
    """


@contextmanager
def _collective() -> Iterator[None]:
    """Turn a failed collective (a peer that died closes its connections) into
    :class:`RankFailed` with the backend's first line."""
    try:
        yield
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise RankFailed(first) from None


def active() -> bool:
    """Whether a process group is initialised (the work is then split over its ranks).

    Example:
        >>> active()
        False
    """
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group).

    Example:
        >>> rank()
        0
    """
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group).

    Example:
        >>> world_size()
        1
    """
    return dist.get_world_size() if active() else 1


def is_writer() -> bool:
    """Whether this process writes results, journals and checkpoints (rank 0).

    Example:
        >>> is_writer()
        True
    """
    return rank() == 0


def shard_bounds(n: int, r: int, w: int, batch: int = 1) -> tuple[int, int]:
    """The images ``[start, stop)`` of rank ``r`` of ``w``: a contiguous block of whole batches
    of ``batch`` images in dataset order (numbers of batches differing by at most one; a rank
    gets none when there are fewer batches than ranks).

    Whole batches, so that every rank computes exactly the batches one process computes: the
    arithmetic of a batch can depend on the batch (its size, its other images), and a decision
    on the edge of a tie may follow.

    Args:
        n: images in the dataset.
        r: the rank.
        w: the number of ranks.
        batch: images per batch.

    Returns:
        ``(start, stop)``.

    Example:
        >>> [shard_bounds(10, r, 3) for r in range(3)]
        [(0, 3), (3, 6), (6, 10)]
        >>> [shard_bounds(10, r, 2, batch=4) for r in range(2)]
        [(0, 4), (4, 10)]
    """
    batches = -(-n // batch)
    return min(n, r * batches // w * batch), min(n, (r + 1) * batches // w * batch)


def shard(data, n: int, batch: int = 1):
    """This rank's images of ``data`` (``data`` itself without a process group).

    Args:
        data: a carlib dataset or a pair ``(images, labels)`` of tensors.
        n: its image count.
        batch: images per batch (shards are made of whole batches, :func:`shard_bounds`).

    Returns:
        The same kind of dataset holding images :func:`shard_bounds` of this rank (possibly
        none).

    Example:
        >>> x, y = torch.zeros(4, 3, 8, 8), torch.arange(4)
        >>> shard((x, y), 4)[1].tolist()
        [0, 1, 2, 3]
    """
    w = world_size()
    if w == 1:
        return data
    start, stop = shard_bounds(n, rank(), w, batch)
    if hasattr(data, "subset"):
        return data.subset(list(range(start, stop)))
    x, y = data
    return x[start:stop], y[start:stop]


def all_reduce_sum(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sum integer count tensors over the ranks (exact); unchanged without a process group.

    One ``all_reduce`` for all of them, on the CPU with ``gloo`` and on this rank's GPU with
    ``nccl``. Every rank must pass tensors of the same shapes.

    Args:
        tensors: int64 tensors on any device.

    Returns:
        The sums, with the shapes, dtype and devices of ``tensors``.

    Raises:
        RankFailed: another rank failed.

    Example:
        >>> all_reduce_sum(torch.tensor([1, 2]))[0].tolist()
        [1, 2]
    """
    if world_size() == 1:
        return tensors
    nccl = dist.get_backend() == "nccl"
    where = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    flat = torch.cat([t.reshape(-1).to(where, torch.int64) for t in tensors])
    with _collective():
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, i = [], 0
    for t in tensors:
        out.append(flat[i : i + t.numel()].reshape(t.shape).to(t.device, t.dtype))
        i += t.numel()
    return tuple(out)


def from_writer(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result handed to every rank (``compute()`` itself without a
    process group). A :class:`~carlib.errors.CarlibError` it raises is raised on every rank.

    Args:
        compute: what only the writer does (read or check a file); its result must pickle.

    Returns:
        Rank 0's result, on every rank.

    Example:
        >>> from_writer(lambda: 3)
        3
    """
    if world_size() == 1:
        return compute()
    box: list = [None]
    if is_writer():
        try:
            box[0] = ("ok", compute())
        except CarlibError as exc:
            box[0] = ("error", str(exc))
    with _collective():
        dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise CarlibError(value)
    return value


def launched() -> bool:
    """Whether a launcher (``torchrun``, or ``srun`` setting the same variables) started this
    process as one rank of several: ``WORLD_SIZE`` above 1 in the environment.

    Example:
        >>> launched()  # doctest: +SKIP
        False
    """
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def init_from_env(device: torch.device, timeout_s: float | None = None) -> bool:
    """Initialise the process group from the launcher's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``; ``LOCAL_RANK`` picks the GPU), unless one exists or
    this is a single process.

    Args:
        device: where this rank computes: ``gloo`` on the CPU, ``nccl`` on a GPU (which must
            be ``cuda:LOCAL_RANK``, made the current device).
        timeout_s: how long a collective waits for the other ranks (default
            ``$CARLIB_DIST_TIMEOUT`` or 1800 s).

    Returns:
        Whether a process group was created here (then :func:`finish` it).

    Raises:
        CarlibError: a launcher variable is missing or not an integer.

    Example:
        >>> init_from_env(torch.device("cpu"))  # one process: nothing to do
        False
    """
    if active() or not launched():
        return False
    try:
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(var):
                raise CarlibError(f"WORLD_SIZE is set but {var} is not; start the processes with "
                                  "torchrun (or set RANK, MASTER_ADDR and MASTER_PORT)")
        int(os.environ["RANK"])
        int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise CarlibError("RANK and LOCAL_RANK must be integers; start the processes with "
                          "torchrun") from None
    timeout = timeout_s or float(os.environ.get("CARLIB_DIST_TIMEOUT", "1800"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    return True


def finish(wait: bool = True) -> None:
    """Destroy the process group (nothing without one), after every rank got here if ``wait``
    (the ranks then end together, once rank 0 has written the results).

    Args:
        wait: wait for the other ranks first (``False`` after an error on this rank).

    Example:
        >>> finish()
    """
    if active():
        try:
            if wait:
                with _collective():
                    dist.barrier()
        finally:
            dist.destroy_process_group()
