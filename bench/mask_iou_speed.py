"""Mask IoU of every prediction with every object: ours against pycocotools, in one run.

    .venv/bin/python bench/mask_iou_speed.py

Both start from the same dense boolean masks in memory. pycocotools is timed twice: on RLE
it has already encoded (its best case) and including the encoding (what it costs from dense
masks). Each figure is the median of 5 runs; the results are checked equal first.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from pycocotools import mask as mask_utils
from timing import median_time

from course.masks import mask_iou


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


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'case':<34} {'ours':>9} {'coco RLE':>9} {'coco+enc':>9} {'ratio':>7}")
    for n, m, size in ((20, 20, 256), (100, 50, 256), (100, 100, 512)):
        pred, gt = random_discs(rng, n, size), random_discs(rng, m, size)
        pred_t, gt_t = torch.from_numpy(pred), torch.from_numpy(gt)
        rle_p, rle_g = encode(pred), encode(gt)
        crowd = [0] * m
        ours = mask_iou(pred_t, gt_t).numpy()
        assert np.array_equal(ours, mask_utils.iou(rle_p, rle_g, crowd)), "results differ"
        t_ours = median_time(partial(mask_iou, pred_t, gt_t))
        t_rle = median_time(partial(mask_utils.iou, rle_p, rle_g, crowd))
        t_enc = median_time(partial(iou_from_dense, pred, gt, crowd))
        name = f"{n} x {m} masks of {size}x{size}"
        print(f"{name:<34} {1e3 * t_ours:7.2f}ms {1e3 * t_rle:7.2f}ms {1e3 * t_enc:7.2f}ms "
              f"{t_enc / t_ours:6.1f}x")
    print("ratio = pycocotools from dense masks (encode + iou) / ours; above 1: ours is faster")


if __name__ == "__main__":
    main()
