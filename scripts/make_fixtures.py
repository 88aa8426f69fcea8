"""Make the stored cases that the exercise checkers in ``course/checks.py`` run.

Every expected answer comes from the library's reference implementation (the loop versions
where there is one), never typed in by hand. Run from the repository root:

    python scripts/make_fixtures.py          # or: make fixtures

A unit test rebuilds the cases in memory and compares them with the files, so the stored
fixtures cannot drift from the library.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from course import data, masks, matching
from course.checks import Case, save_cases

FIXTURES = Path(__file__).resolve().parent.parent / "course" / "fixtures"


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int, p: float = 0.4) -> np.ndarray:
    return rng.random((n, h, w)) < p


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w]
    return (ys + 0.5 - cy) ** 2 + (xs + 0.5 - cx) ** 2 <= r**2


def _ratio_pair(inter: int, only_a: int, only_b: int, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Two one-mask sets on a ``[1, 3, w]`` grid with the given pixel counts (row by row)."""
    a, b = np.zeros((1, 3, w), bool), np.zeros((1, 3, w), bool)
    a[0, 0, :inter] = b[0, 0, :inter] = True
    a[0, 1, :only_a] = True
    b[0, 2, :only_b] = True
    return a, b


def overlap_pairs() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(name, hint, a, b) mask-set pairs shared by the IoU and Dice exercises."""
    rng = _rng(1)
    h, w = 8, 8
    base = _random_masks(rng, 3, h, w)
    empty = np.zeros((1, h, w), bool)
    big = np.stack([_disc(300, 300, 150, 150, 140), _disc(300, 300, 120, 180, 100)])
    inner = np.stack([_disc(20, 20, 10, 10, 4)])
    outer = np.stack([_disc(20, 20, 10, 10, 8)])
    one = np.zeros((1, 4, 4), bool)
    one[0, 2, 1] = True
    return [
        ("random masks, 3 predictions x 2 ground truth", "rows are the first argument",
         base, _random_masks(rng, 2, h, w)),
        ("identical masks", "a mask compared with itself scores 1", base, base.copy()),
        ("disjoint masks", "masks that do not touch score 0",
         np.stack([np.pad(np.ones((4, 8), bool), ((0, 4), (0, 0)))]),
         np.stack([np.pad(np.ones((4, 8), bool), ((4, 0), (0, 0)))])),
        ("two empty masks", "two empty masks score 0 (as in pycocotools), not NaN", empty, empty),
        ("an empty prediction against a non-empty mask", "no overlap scores 0", empty, base[:1]),
        ("no predictions", "zero rows in, zero rows out: shape [0, M]",
         np.zeros((0, h, w), bool), base),
        ("no ground truth", "zero columns: shape [N, 0]", base, np.zeros((0, h, w), bool)),
        ("H != W", "masks are [N, H, W]; keep H and W apart",
         _random_masks(rng, 2, 5, 9), _random_masks(rng, 3, 5, 9)),
        ("a ratio of exactly 7 / 10", "count pixels as integers and divide once in float64",
         *_ratio_pair(7, 3, 0)),
        ("a ratio of 1 / 3", "count pixels as integers and divide once in float64",
         *_ratio_pair(1, 1, 1)),
        ("more predictions than ground truth", "the result is [N, M], not [M, N]",
         _random_masks(rng, 5, h, w), _random_masks(rng, 2, h, w)),
        ("masks as 0/1 uint8", "0/1 integers mean the same as booleans",
         _random_masks(rng, 2, h, w).astype(np.uint8),
         _random_masks(rng, 2, h, w).astype(np.uint8)),
        ("large masks (300 x 300)", "counts exceed 65535: count in int64, not a small integer type",
         big, big[::-1].copy()),
        ("one mask inside the other", "the intersection is the smaller mask", inner, outer),
        ("a single pixel each, the same pixel", "one shared pixel is a perfect match",
         one, one.copy()),
    ]


def build_mask_area() -> list[Case]:
    rng = _rng(0)
    sets = [
        ("three random masks", "count the True pixels of each mask", _random_masks(rng, 3, 8, 8)),
        ("an empty mask", "an empty mask has area 0",
         np.concatenate([np.zeros((1, 6, 6), bool), _random_masks(rng, 1, 6, 6)])),
        ("no masks at all", "zero masks in, zero counts out", np.zeros((0, 6, 6), bool)),
        ("H != W", "sum over both image axes", _random_masks(rng, 2, 5, 9)),
        ("a large mask (40 x 40, all set)", "1600 does not fit in a uint8",
         np.ones((1, 40, 40), bool)),
        ("one pixel", "a single True pixel has area 1", np.pad(np.ones((1, 1, 1), bool),
                                                              ((0, 0), (2, 1), (0, 3)))),
    ]
    return [Case(name, hint, [m], {"value": masks.mask_area(torch.from_numpy(m)).numpy()})
            for name, hint, m in sets]


def _overlap_cases(reference: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> list[Case]:
    cases = []
    for name, hint, a, b in overlap_pairs():
        value = reference(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        cases.append(Case(name, hint, [a, b], {"value": value}))
    return cases


def build_mask_iou() -> list[Case]:
    return _overlap_cases(masks.mask_iou_loop)


def build_mask_dice() -> list[Case]:
    return _overlap_cases(masks.mask_dice_loop)


def _scene_iou(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IoU, labels and scores of simulated predictions on a synthetic scene."""
    scene = data.make_scene(seed=seed, num_objects=(4, 7))
    pred = data.simulate_predictions(scene, seed=seed + 100, duplicate_rate=0.3,
                                     label_flip_rate=0.15, false_positives=(1, 2))
    iou = masks.mask_iou(pred.masks, scene.masks).numpy()
    return iou, pred.labels.numpy(), scene.labels.numpy(), pred.scores.numpy().astype(np.float64)


def build_tp_fp_fn() -> list[Case]:
    eye = np.eye(3)
    rows = [
        ("perfect predictions", "every prediction matches its own object", eye,
         [1, 2, 3], [1, 2, 3], 0.5),
        ("no predictions", "with nothing predicted every object is a false negative",
         np.zeros((0, 3)), [], [1, 1, 2], 0.5),
        ("no ground truth", "with nothing to find every prediction is a false positive",
         np.zeros((2, 0)), [1, 2], [], 0.5),
        ("a perfect overlap with the wrong class", "a prediction only matches its own class",
         np.array([[1.0, 0.0], [0.0, 0.9]]), [2, 2], [1, 2], 0.5),
        ("IoU exactly at the threshold", "IoU >= threshold is a match (not only >)",
         np.array([[0.5, 0.1], [0.2, 0.75]]), [1, 1], [1, 1], 0.5),
        ("two predictions on one object", "each object can be matched once",
         np.array([[0.9], [0.8]]), [1, 1], [1], 0.5),
        ("a low threshold where the best pair is not the best matching",
         "match one-to-one to maximise total IoU (scipy.optimize.linear_sum_assignment)",
         np.array([[0.6, 0.4], [0.45, 0.0]]), [1, 1], [1, 1], 0.3),
        ("no pair reaches a strict threshold", "below the threshold nothing matches",
         np.array([[0.74, 0.2], [0.1, 0.7]]), [1, 1], [1, 1], 0.75),
    ]
    for seed, threshold in ((11, 0.5), (12, 0.5), (13, 0.75), (14, 0.3)):
        iou, pl, gl, _ = _scene_iou(seed)
        rows.append((f"a synthetic scene (seed {seed}) at threshold {threshold}",
                     "match within each class, one-to-one", iou, pl, gl, threshold))
    cases = []
    for name, hint, iou, pl, gl, t in rows:
        iou = np.asarray(iou, dtype=np.float64)
        pl, gl = np.asarray(pl, dtype=np.int64), np.asarray(gl, dtype=np.int64)
        r = matching.tp_fp_fn(iou, pl, gl, t)
        expected = {"tp": np.array(r.tp), "fp": np.array(r.fp), "fn": np.array(r.fn),
                    "num_pred": np.array(len(pl)), "num_gt": np.array(len(gl))}
        cases.append(Case(name, hint, [iou, pl, gl, np.array(t)], expected))
    return cases


def build_greedy_match() -> list[Case]:
    rows = [
        ("one prediction per object", "each prediction takes its object",
         np.array([[0.8, 0.1], [0.0, 0.9]]), [0.9, 0.8], 0.5),
        ("the higher score goes first", "visit predictions in descending score order",
         np.array([[0.6], [0.9]]), [0.3, 0.8], 0.5),
        ("the best object is not the first one", "take the free object with the highest IoU",
         np.array([[0.55, 0.85]]), [0.9], 0.5),
        ("two predictions want one object", "an object taken by a higher score is gone",
         np.array([[0.7, 0.6], [0.9, 0.0]]), [0.95, 0.5], 0.5),
        ("equal scores", "equal scores keep their row order (a stable sort)",
         np.array([[0.7], [0.8]]), [0.5, 0.5], 0.5),
        ("IoU exactly at the threshold", "IoU >= threshold is a match", np.array([[0.5]]), [0.9],
         0.5),
        ("no predictions", "nothing to match: no pairs", np.zeros((0, 2)), [], 0.5),
        ("no ground truth", "nothing to match: no pairs", np.zeros((2, 0)), [0.3, 0.9], 0.5),
        ("nothing reaches the threshold", "below the threshold nothing matches",
         np.array([[0.2, 0.4], [0.1, 0.3]]), [0.6, 0.7], 0.5),
    ]
    for seed, threshold in ((21, 0.5), (22, 0.3), (23, 0.7)):
        iou, _, _, scores = _scene_iou(seed)
        rows.append((f"a synthetic scene (seed {seed}) at threshold {threshold}",
                     "score order, best free object, one-to-one", iou, scores, threshold))
    cases = []
    for name, hint, iou, scores, t in rows:
        iou, scores = np.asarray(iou, np.float64), np.asarray(scores, np.float64)
        pairs = matching.greedy_match(iou, scores, t).pairs.numpy()
        cases.append(Case(name, hint, [iou, scores, np.array(t)], {"pairs": pairs}))
    return cases


BUILDERS: dict[str, Callable[[], list[Case]]] = {
    "mask_area": build_mask_area,
    "mask_iou": build_mask_iou,
    "mask_dice": build_mask_dice,
    "tp_fp_fn": build_tp_fp_fn,
    "greedy_match": build_greedy_match,
}


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for name, build in BUILDERS.items():
        cases = build()
        save_cases(str(FIXTURES / f"{name}.npz"), cases)
        print(f"{name}: {len(cases)} cases")


if __name__ == "__main__":
    main()
