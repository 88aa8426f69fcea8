"""Panoptic fusion: the fast version against the loop that reads like the definition, in one run.

    .venv/bin/python bench/fusion_speed.py

``panoptic_fusion`` (NumPy, each thing in its bounding-box window) against
``panoptic_fusion_loop`` (whole-image torch masks, one thing and one category at a time) on
random detector-like output: ellipses and rectangles of sides log-uniform between 1/32 and
3/8 of the image (8 to 96 pixels at 256x256), overlapping freely, scores uniform in
[0.5, 1) so that every instance passes the default ``score_threshold`` and is visited, and
C = 4 semantic channels (``categories=(0, 11, 12, 13)``: "no stuff" and three stuff classes)
from smooth random logits through a softmax. Both policies, default thresholds. The two are
asserted equal before timing. ``fast`` and ``loop`` are each timed in a block of their own
(median of 21 and of 7 runs); ``turns`` is the fast version's median of 7 runs taking turns
with the loop: right after torch's multi-threaded work, torch's idle OpenMP threads may keep
spinning and, on a busy machine, take the CPU from the NumPy code (see ``bench/README.md``).
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import torch
from timing import median_time, median_times

from course.boxes import masks_to_boxes
from course.fusion import POLICIES, panoptic_fusion, panoptic_fusion_loop
from course.structures import Instances

CATEGORIES = (0, 11, 12, 13)


def detections(size: int, n: int, rng: np.random.Generator) -> Instances:
    """``n`` random overlapping things on a ``size x size`` image, scores in [0.5, 1)."""
    ys, xs = np.mgrid[:size, :size] + 0.5
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        h, w = np.exp(rng.uniform(np.log(size / 32), np.log(size * 3 / 8), size=2))
        cy, cx = rng.uniform(0, size, size=2)
        if rng.random() < 0.5:
            masks[i] = ((ys - cy) / (h / 2)) ** 2 + ((xs - cx) / (w / 2)) ** 2 <= 1
        else:
            masks[i] = (np.abs(ys - cy) <= h / 2) & (np.abs(xs - cx) <= w / 2)
    masks = torch.from_numpy(masks)
    return Instances(masks_to_boxes(masks).float(), torch.from_numpy(rng.integers(1, 4, n)),
                     torch.from_numpy(rng.uniform(0.5, 1.0, n)).float(), masks)


def semantic(size: int, channels: int, rng: np.random.Generator) -> torch.Tensor:
    """Smooth random probabilities [C, H, W] float32: blobs of stuff."""
    logits = torch.from_numpy(3 * rng.normal(size=(1, channels, size // 16, size // 16)))
    logits = torch.nn.functional.interpolate(logits.float(), size=(size, size), mode="bilinear")
    return logits[0].softmax(dim=0)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'case':<44} {'fast':>8} {'loop':>9} {'ratio':>6} {'turns':>8} {'segments':>9}")
    rng = np.random.default_rng(0)
    for size, n in ((256, 100), (128, 20)):
        instances, probs = detections(size, n, rng), semantic(size, len(CATEGORIES), rng)
        for policy in POLICIES:
            fast = partial(panoptic_fusion, instances, probs, policy, categories=CATEGORIES)
            loop = partial(panoptic_fusion_loop, instances, probs, policy, categories=CATEGORIES)
            (ids, segments), (ids_loop, segments_loop) = fast(), loop()
            assert torch.equal(ids, ids_loop) and segments == segments_loop
            things = sum(c not in CATEGORIES for c, _ in segments.values())
            t_fast, t_loop = median_time(fast, repeats=21), median_time(loop, repeats=7)
            t_turns = median_times({"fast": fast, "loop": loop}, lambda: (), repeats=7)["fast"]
            name = f"{size}x{size}, {n} things, C=4, {policy}"
            print(f"{name:<44} {1e3 * t_fast:6.2f}ms {1e3 * t_loop:7.2f}ms "
                  f"{t_loop / t_fast:5.1f}x {1e3 * t_turns:6.2f}ms {things:>5} + "
                  f"{len(segments) - things}")
    print("ratio = loop / fast; above 1: the fast version is faster. turns = fast, timed "
          "taking turns with the loop.\nsegments = things kept + stuff segments")


if __name__ == "__main__":
    main()
