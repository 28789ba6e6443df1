"""The paper profile's greedy cost, extrapolated from the engine's measured speed.

The paper profile prunes torchvision's AlexNet greedily to half of conv1 and of conv2 on the
50,000 ImageNet val images. :func:`paper_estimate` times the engine per (image, filter) pair
and per image on random 224x224 inputs, labeled with the model's own predictions as in
workload 4 (with checked bf16 the recomputed share, and so the time per pair, depends on how
close the decisions are; the table records it), and scales to that size.
"""

from __future__ import annotations

import pandas as pd
import torch

from carlib.engine import Engine

from bench.inputs import random_alexnet
from bench.timing import timed

__all__ = ["PAPER_IMAGES", "paper_estimate"]

#: ImageNet val images of the paper profile.
PAPER_IMAGES = 50_000


def paper_estimate(device: torch.device, n_images: int, candidates: int, *, precision: str,
                   seed: int = 0) -> pd.DataFrame:
    """Extrapolate the greedy loop of the paper profile from the engine's speed.

    Args:
        device: where to time.
        n_images: random 224x224 inputs timed.
        candidates: filters per timed evaluate call (at most the layer's).
        precision: the engine precision.
        seed: seed of the weights and inputs.

    Returns:
        One row per layer (conv1, conv2): the measured time per pair and per image, the
        precision and recomputed share, and the estimated seconds and hours on 50,000 images.

    Example:
        >>> paper_estimate(torch.device("cpu"), 128, 64, precision="auto")  # doctest: +SKIP
    """
    tv, x, y = random_alexnet(n_images, device, seed)
    rows = []
    for layer, filters in (("conv1", 64), ("conv2", 192)):
        ks = list(range(min(candidates, filters)))
        eng = Engine(tv, layer, (x, y), device=device, precision=precision)
        eng.evaluate([], ks[:2])  # warm-up, fills the consumer-input cache
        t_base, _ = timed(lambda: eng.evaluate([], []), device)
        eng.screen_stats.update(pairs=0, recomputed=0)  # count the timed call only
        t_all, _ = timed(lambda: eng.evaluate([], ks), device)
        per_pair = max(t_all - t_base, 0.0) / (n_images * len(ks))
        per_image = t_base / n_images
        steps = filters // 2
        pairs = sum(filters - s for s in range(steps))
        total = PAPER_IMAGES * (per_pair * pairs + per_image * steps)
        rows.append({"layer": layer, "filters": filters, "greedy_steps": steps,
                     "measured_images": n_images, "measured_candidates": len(ks),
                     "precision": eng.precision,
                     "screen_recomputed": eng.screen_summary().get("screen_recomputed", float("nan")),
                     "us_per_pair": round(per_pair * 1e6, 2),
                     "us_per_image_base": round(per_image * 1e6, 2),
                     "pairs_50k": PAPER_IMAGES * pairs, "estimated_s_50k": round(total, 1),
                     "estimated_h_50k": round(total / 3600, 2)})
        print(f"[paper] greedy {layer} to half ({steps} steps) on {PAPER_IMAGES:,} images: "
              f"{per_pair * 1e6:.1f} us per (image, filter) -> {total / 3600:.2f} h", flush=True)
    return pd.DataFrame(rows)
