"""``python -m carlib``: the command line (see :mod:`carlib.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
