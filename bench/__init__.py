"""The benchmark of carlib's CAR engine against the naive loop.

Run it as a script, ``.venv/bin/python bench/bench.py [--quick] ...`` (or ``make bench``); the
modules hold one job each:

* :mod:`bench.naive`: the naive reference loop (a hook zeroes one filter, the whole network runs);
* :mod:`bench.workloads`: the four workloads and the scaling run, timed on both sides;
* :mod:`bench.estimate`: the paper profile's cost extrapolated from the engine's speed;
* :mod:`bench.counting`: multiply-accumulates executed, checked against PyTorch's FLOP counter;
* :mod:`bench.timing`: device synchronization, timings, memory peaks, the machine's peak rate;
* :mod:`bench.report`: the machine description, the result files and the scaling figure.
"""

__all__: list[str] = []
