"""Crash points for fault-injection tests of resumability.

With ``CARLIB_CRASH_AT=<point>:<n>`` in the environment, the process kills itself with
SIGKILL (as ``kill -9`` would, no cleanup at all) the ``n``-th time it reaches ``<point>``.
Without that variable :func:`crash_point` does nothing. Points: ``greedy-step`` (a step
computed, not yet journaled), ``greedy-journaled`` (a step journaled, the next not started)
and ``atomic-write`` (a file written under its temporary name, not yet renamed: journals,
result tables, checkpoints).
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point", "CRASH_POINTS"]

#: The named points (see the module docstring).
CRASH_POINTS = ("greedy-step", "greedy-journaled", "atomic-write")

_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``$CARLIB_CRASH_AT`` names this point and count.

    Args:
        name: one of :data:`CRASH_POINTS`.

    Example:
        >>> crash_point("greedy-step")  # no CARLIB_CRASH_AT: nothing happens
    """
    spec = os.environ.get("CARLIB_CRASH_AT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
