"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations

__all__ = ["CarlibError", "DataNotFoundError", "CheckpointError"]


class CarlibError(ValueError):
    """Bad input or a missing resource. ``str(err)`` is one line: the problem, then the fix.

    The command line prints it on stderr and exits with code 2.
    """


class DataNotFoundError(CarlibError, FileNotFoundError):
    """A dataset or weights file that is not on this machine and cannot be downloaded."""


class CheckpointError(CarlibError):
    """A checkpoint that is corrupt, or does not match the model it is loaded into."""
