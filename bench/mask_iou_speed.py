"""Mask IoU of every prediction with every object: ours against pycocotools, in one run.

    .venv/bin/python bench/mask_iou_speed.py [--cpu-time]

Both start from the same dense boolean masks in memory. pycocotools is timed twice: on RLE
it has already encoded (its best case) and including the encoding (what it costs from dense
masks). ``product`` is the definition as one matrix product (``course.masks.product_counts``,
what runs on a GPU) with torch's default threads, timed after the others (median of 3). The
results are checked bit-identical first, with and without crowd. Each other figure is the
median of 7 rounds, the contestants taking turns so that a busy spell hits all of them. With
``--cpu-time`` the clock is the calling thread's CPU time, which leaves out the time spent
waiting for a core on a shared machine (ours and pycocotools are single-threaded).
"""

from __future__ import annotations

import statistics
import sys
import time
from functools import partial

import numpy as np
import torch
from pycocotools import mask as mask_utils

from course.masks import mask_iou, product_counts


def encode(masks: np.ndarray):
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def iou_from_dense(pred: np.ndarray, gt: np.ndarray, crowd: list[int]) -> np.ndarray:
    return mask_utils.iou(encode(pred), encode(gt), crowd)


def random_discs(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """``[k, size, size]`` discs of random centre and radius."""
    ys, xs = np.mgrid[:size, :size]
    c = rng.uniform(0, size, (k, 2, 1, 1))
    r = rng.uniform(size / 40, size / 6, (k, 1, 1))
    return (ys - c[:, 0]) ** 2 + (xs - c[:, 1]) ** 2 <= r**2


CLOCK = time.perf_counter  # --cpu-time: time.thread_time


def taking_turns(tools: dict, rounds: int = 7) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(rounds):
        for name, fn in tools.items():
            start = CLOCK()
            fn()
            times[name].append(CLOCK() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    global CLOCK
    if "--cpu-time" in sys.argv[1:]:
        CLOCK = time.thread_time
        print("CPU time of the calling thread (product: torch's other threads left out)")
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'case':<30} {'ours':>9} {'coco RLE':>9} {'coco+enc':>9} {'product':>9} "
          f"{'ratio':>6}")
    for n, m, size in ((20, 20, 256), (100, 50, 256), (100, 100, 512)):
        pred, gt = random_discs(rng, n, size), random_discs(rng, m, size)
        pred_t, gt_t = torch.from_numpy(pred), torch.from_numpy(gt)
        rle_p, rle_g = encode(pred), encode(gt)
        crowd = [0] * m
        for flags in (crowd, (rng.random(m) < 0.3).astype(int).tolist()):
            ours = mask_iou(pred_t, gt_t, iscrowd=torch.tensor(flags)).numpy()
            assert np.array_equal(ours, mask_utils.iou(rle_p, rle_g, flags)), "results differ"
        t = taking_turns({"ours": partial(mask_iou, pred_t, gt_t),
                          "rle": partial(mask_utils.iou, rle_p, rle_g, crowd),
                          "enc": partial(iou_from_dense, pred, gt, crowd)})
        # apart: torch's threads spin a while after a product and slow whatever runs next
        t["product"] = taking_turns({"p": partial(product_counts, pred_t, gt_t)}, rounds=3)["p"]
        name = f"{n} x {m} masks of {size}x{size}"
        print(f"{name:<30} " + " ".join(f"{1e3 * t[k]:7.2f}ms" for k in t)
              + f" {t['enc'] / t['ours']:5.1f}x")
    print("ratio = pycocotools from dense masks (encode + iou) / ours; above 1: ours is faster")


if __name__ == "__main__":
    main()
