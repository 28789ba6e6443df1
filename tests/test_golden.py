"""Golden results: the smoke profile's numbers, pinned, so an unintended change fails CI.

Regenerate deliberately (after a change that is meant to alter results, e.g. new weights) with
``CARLIB_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and commit ``tests/golden/smoke.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_tiny

GOLDEN = Path(__file__).parent / "golden" / "smoke.json"


def _smoke_results() -> dict:
    from carlib.analysis.study import Study

    # force: computed now by this code, never read from an older cache; the tables it stores
    # under results/smoke/ are the ones the report, explorer and notebook tests then read
    study = Study("smoke", progress=False, force=True)
    out = {"n_images": len(study.data), "model_fingerprint": study.cache.key["model"]}
    for layer in ("conv1", "conv2"):
        car = study.car(layer)
        steps = study.greedy(layer)
        assert car["filter"].tolist() == list(range(len(car)))
        out[layer] = {"base_accuracy": car.attrs["base_accuracy"],
                      "car": [round(float(c), 10) for c in car["car"]],
                      "greedy_filters": [int(f) for f in steps["filter"]],
                      "greedy_accuracy": [round(float(a), 10) for a in steps["accuracy"]]}
    return out


@requires_tiny
def test_smoke_profile_numbers_are_pinned():
    from carlib.models import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("default weights not trained yet")
    got = _smoke_results()
    if os.environ.get("CARLIB_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert got["n_images"] == want["n_images"]
    for layer in ("conv1", "conv2"):
        assert got[layer]["greedy_filters"] == want[layer]["greedy_filters"], layer
        np.testing.assert_array_equal(got[layer]["car"], want[layer]["car"])
        np.testing.assert_array_equal(got[layer]["greedy_accuracy"], want[layer]["greedy_accuracy"])
        assert got[layer]["base_accuracy"] == want[layer]["base_accuracy"]
