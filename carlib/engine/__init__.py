"""The CAR engine: exact counts of correct images for many pruned networks at once.

:class:`Engine` (:mod:`carlib.engine.core`) picks the fast path (:mod:`~carlib.engine.fast`,
with its per-consumer rules in :mod:`~carlib.engine.consumers`) or the masked path
(:mod:`~carlib.engine.masked`); :mod:`~carlib.engine.screen` is the checked-bf16 screen,
:mod:`~carlib.engine.correct` the top-k rule, and :mod:`~carlib.engine.device` the device
policy.
"""

from .core import METHODS, PRECISIONS, Engine
from .correct import Counts, correct_rows, count_correct, decision_margin, tally
from .device import (BF16_CPU_FLAGS, bf16_flags, default_batch_size, eval_mode, fast_bf16,
                     model_on, resolve_device, strict_fp32)

__all__ = ["Engine", "PRECISIONS", "METHODS", "correct_rows", "count_correct", "tally",
           "decision_margin", "Counts", "resolve_device", "model_on", "eval_mode", "strict_fp32",
           "fast_bf16", "bf16_flags", "BF16_CPU_FLAGS", "default_batch_size"]
