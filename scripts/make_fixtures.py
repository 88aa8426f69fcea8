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
from scipy.optimize import linear_sum_assignment

from course import ap, boxes, data, fpn, losses, masks, matching, pq, roi_align
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
        ("a valid pair displaced by an invalid one", "a pair below the threshold cannot "
         "match, whatever the total IoU it would bring",
         np.array([[0.55, 0.95], [0.45, 0.6]]), [1, 1], [1, 1], 0.5),
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
        faults = {"strict": matching.tp_fp_fn(iou, pl, gl, _just_above(t)).tp,
                  "match_then_threshold": _tp_threshold_after_matching(iou, pl, gl, t),
                  "across_classes": matching.tp_fp_fn(iou, 0 * pl, 0 * gl, t).tp}
        expected |= {f"fault/{k}": np.array(v) for k, v in faults.items() if v != r.tp}
        cases.append(Case(name, hint, [iou, pl, gl, np.array(t)], expected))
    return cases


def _just_above(threshold: float) -> float:
    """The next float above ``threshold``: ``>=`` there is ``>`` at ``threshold``."""
    return float(np.nextafter(threshold, np.inf))


def _tp_threshold_after_matching(iou: np.ndarray, pred_labels: np.ndarray,
                                 gt_labels: np.ndarray, threshold: float) -> int:
    """A known wrong convention: match on the raw IoU, then drop the pairs below threshold."""
    tp = 0
    for c in set(pred_labels.tolist()) & set(gt_labels.tolist()):
        sub = iou[pred_labels == c][:, gt_labels == c]
        rows, cols = linear_sum_assignment(sub, maximize=True)
        tp += int((sub[rows, cols] >= threshold).sum())
    return tp


def _greedy_wrong(iou: np.ndarray, scores: np.ndarray, threshold: float, *,
                  keep_below: bool = False, first: bool = False) -> np.ndarray:
    """Known wrong conventions of the greedy rule, as ``[K, 2]`` pairs: an object taken even
    by a prediction below the threshold (``keep_below``), or the first free object at or above
    the threshold instead of the best (``first``)."""
    free, pairs = np.ones(iou.shape[1], bool), []
    for d in np.argsort(-scores, kind="stable"):
        candidates = np.flatnonzero(free & (iou[d] >= threshold))
        if first:
            g = int(candidates[0]) if len(candidates) else None
        elif keep_below and free.any():
            g = int(np.flatnonzero(free)[np.argmax(iou[d][free])])
        else:
            g = int(candidates[np.argmax(iou[d][candidates])]) if len(candidates) else None
        if g is not None:
            free[g] = False
            if iou[d, g] >= threshold:
                pairs.append((int(d), g))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


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
        ("the highest score overlaps too little", "a prediction below the threshold takes "
         "nothing: the object stays free", np.array([[0.3], [0.8]]), [0.9, 0.5], 0.5),
    ]
    for seed, threshold in ((21, 0.5), (22, 0.3), (23, 0.7)):
        iou, _, _, scores = _scene_iou(seed)
        rows.append((f"a synthetic scene (seed {seed}) at threshold {threshold}",
                     "score order, best free object, one-to-one", iou, scores, threshold))
    cases = []
    for name, hint, iou, scores, t in rows:
        iou, scores = np.asarray(iou, np.float64), np.asarray(scores, np.float64)
        pairs = matching.greedy_match(iou, scores, t).pairs.numpy()
        faults = {"strict": matching.greedy_match(iou, scores, _just_above(t)).pairs.numpy(),
                  "index_order": matching.greedy_match(iou, 0 * scores, t).pairs.numpy(),
                  "takes_below": _greedy_wrong(iou, scores, t, keep_below=True),
                  "first_above": _greedy_wrong(iou, scores, t, first=True)}
        right = {*map(tuple, pairs.tolist())}
        expected = {"pairs": pairs} | {f"fault/{k}": v for k, v in faults.items()
                                       if {*map(tuple, v.tolist())} != right}
        cases.append(Case(name, hint, [iou, scores, np.array(t)], expected))
    return cases


# --- Chapter 06: losses ---------------------------------------------------------------------


def _square_target(h: int, w: int, y: int, x: int, side: int) -> np.ndarray:
    t = np.zeros((h, w), bool)
    t[y:y + side, x:x + side] = True
    return t


def build_dice_loss() -> list[Case]:
    rng = _rng(60)
    g3 = rng.random((3, 6, 7)) < 0.4
    sizes = np.stack([_square_target(12, 12, 3, 4, 2), _disc(12, 12, 6, 6, 5)])
    g1 = _disc(9, 9, 4.5, 4.5, 3)[None]
    rows = [
        ("three random masks (H != W)", "one loss per mask, from the probabilities: "
         "apply the sigmoid to the logits", rng.normal(0, 2, (3, 6, 7)), g3),
        ("a tiny and a large object in one batch", "sum over the pixels of each mask "
         "separately, not over the whole batch", rng.normal(0, 2, (2, 12, 12)), sizes),
        ("an empty target, confidently empty prediction", "with eps = 1 an empty prediction on "
         "an empty target scores (nearly) 0", np.full((1, 8, 8), -20.0), np.zeros((1, 8, 8), bool)),
        ("an empty target, unsure prediction", "logits 0 mean p = 0.5 on every pixel",
         np.zeros((1, 5, 5)), np.zeros((1, 5, 5), bool)),
        ("a confident, correct prediction", "apply the sigmoid to the logits first",
         15.0 * (2 * g1 - 1), g1),
        ("a confident, wrong prediction", "apply the sigmoid to the logits first",
         -15.0 * (2 * g1 - 1), g1),
        ("every pixel is object", "the target may cover the whole mask",
         rng.normal(0, 2, (2, 4, 4)), np.ones((2, 4, 4), bool)),
        ("no masks", "zero masks in, zero losses out: shape [0]",
         np.zeros((0, 5, 5)), np.zeros((0, 5, 5), bool)),
        ("a single pixel", "a 1 x 1 mask is a set too", np.array([[[0.3]]]),
         np.ones((1, 1, 1), bool)),
        ("targets as 0/1 floats", "0/1 numbers mean the same as booleans",
         rng.normal(0, 2, (2, 5, 5)), (rng.random((2, 5, 5)) < 0.5).astype(np.float64)),
        ("very large logits", "the sigmoid of +-40 saturates to 0 or 1 without NaN",
         rng.normal(0, 40, (2, 6, 6)), rng.random((2, 6, 6)) < 0.5),
    ]
    cases = []
    for name, hint, logits, targets in rows:
        value = losses.dice_loss_loop(torch.from_numpy(logits), torch.from_numpy(targets))
        cases.append(Case(name, hint, [logits, targets], {"value": value.numpy()}))
    return cases


def build_dice_grad_pixel() -> list[Case]:
    rng = _rng(61)
    g = _disc(8, 8, 4, 4, 2.5).ravel().astype(np.float64)
    p = rng.uniform(0.05, 0.95, g.size)
    far = _square_target(16, 16, 1, 1, 2).ravel().astype(np.float64)
    p_far = np.where(far > 0, 0.7, 0.1)
    inside, outside = int(np.flatnonzero(g)[3]), int(np.flatnonzero(g == 0)[5])
    last = np.zeros_like(g)
    last[[10, -1]] = 1.0  # the last pixel is object, its neighbour is not
    rows = [
        ("a pixel inside the object", "differentiate the loss (1 minus the coefficient), "
         "through both the numerator and the denominator", p, g, inside),
        ("a pixel outside the object", "outside (g_k = 0) the gradient is positive: lower p_k",
         p, g, outside),
        ("a background pixel far from a tiny object", "the gradient is not local: at every pixel "
         "it depends on sums over the whole mask", p_far, far, 255),
        ("an empty target", "with no object pixel at all", p, np.zeros_like(g), 10),
        ("a perfect hard prediction", "probabilities may be exactly 0 or 1 here", g.copy(), g,
         inside),
        ("every pixel is object", "g_k = 1 everywhere", p[:9], np.ones(9), 4),
        ("a single pixel", "P = 1 is allowed", np.array([0.25]), np.array([1.0]), 0),
        ("the last pixel, an object pixel", "k indexes the flat vector, 0-based", p, last,
         g.size - 1),
    ]
    cases = []
    for name, hint, probs, target, k in rows:
        grad = losses.dice_grad(torch.from_numpy(probs).reshape(1, 1, -1),
                                torch.from_numpy(target).reshape(1, 1, -1))[0, 0, k]
        cases.append(Case(name, hint, [probs, target, np.array(k)],
                          {"value": grad.numpy()}))
    return cases


def build_pick_weighting() -> list[Case]:
    rows = [
        ("a clear winner", "the best mean wins when the mean +- spread bars do not overlap",
         [0.0, 1.0, 2.0], [[0.50, 0.52, 0.51], [0.60, 0.61, 0.62], [0.70, 0.71, 0.69]]),
        ("overlapping spreads", "no verdict (None) when the difference is within the spreads",
         [1.0, 2.0], [[0.60, 0.70, 0.65], [0.62, 0.66, 0.71]]),
        ("the winner in the middle row", "look at every row, not only the last",
         [0.0, 0.5, 1.0], [[0.40, 0.42, 0.41], [0.80, 0.81, 0.79], [0.50, 0.55, 0.52]]),
        ("ratios in no particular order", "return the winner's ratio, not its row index",
         [0.5, 4.0, 1.0], [[0.30, 0.31, 0.32], [0.90, 0.91, 0.90], [0.40, 0.41, 0.39]]),
        ("one weighting only", "with nothing to beat, the only weighting wins",
         [2.0], [[0.55, 0.60, 0.58]]),
        ("seeds that agree exactly", "a zero spread is allowed",
         [1.0, 2.0], [[0.50, 0.50, 0.50], [0.60, 0.60, 0.60]]),
        ("Bessel's correction decides", "the spread is the standard deviation over seeds with "
         "Bessel's correction (n - 1), as torch.std computes it",
         [1.0, 2.0], [[0.665, 0.685, 0.705], [0.70, 0.72, 0.74]]),
        ("a noisy third weighting", "the winner must beat every other weighting, not only the "
         "runner-up", [0.0, 1.0, 2.0], [[0.72, 0.73, 0.71], [0.700, 0.701, 0.699],
                                        [0.64, 0.69, 0.74]]),
        ("two identical rows", "a tie is no verdict", [1.0, 2.0],
         [[0.60, 0.62, 0.61], [0.60, 0.62, 0.61]]),
        ("five weightings, four seeds", "the chapter's table, one row per weighting",
         [0.0, 0.5, 1.0, 2.0, 4.0], [[0.61, 0.63, 0.60, 0.62], [0.64, 0.66, 0.65, 0.63],
                                     [0.70, 0.72, 0.71, 0.73], [0.66, 0.67, 0.65, 0.68],
                                     [0.50, 0.62, 0.58, 0.41]]),
    ]
    cases = []
    for name, hint, ratios, ious in rows:
        ratios, ious = np.asarray(ratios, np.float64), np.asarray(ious, np.float64)
        winner = losses.pick_weighting(ratios, ious)
        expected = {"has_winner": np.array(winner is not None),
                    "winner": np.array(0.0 if winner is None else winner)}  # 0: unused
        cases.append(Case(name, hint, [ratios, ious], expected))
    return cases


# --- Chapter 07: receptive fields, dilation, FPN levels ---------------------------------------


def build_receptive_field() -> list[Case]:
    rows = [
        ("one 3x3 conv", "a k x k kernel sees k pixels", [(3, 1, 1)]),
        ("two 3x3 convs", "at stride 1 every layer widens the field", [(3, 1, 1), (3, 1, 1)]),
        ("a strided conv, then a 3x3", "after a stride-2 layer each tap is 2 input pixels apart",
         [(3, 2, 1), (3, 1, 1)]),
        ("ResNet's stem", "7x7 stride 2, then a 3x3 max pool of stride 2",
         [(7, 2, 1), (3, 2, 1)]),
        ("a VGG-like stack", "strides multiply", [(3, 1, 1), (3, 1, 1), (2, 2, 1), (3, 1, 1),
                                                  (3, 1, 1), (2, 2, 1), (3, 1, 1)]),
        ("one dilated conv", "dilation d leaves gaps between a kernel's taps", [(3, 1, 2)]),
        ("dilation rates 1, 2, 5", "each layer widens the field by its own reach, measured "
         "in input pixels",
         [(3, 1, 1), (3, 1, 2), (3, 1, 5)]),
        ("dilation after a stride", "dilation and stride both scale a layer's growth",
         [(3, 2, 1), (3, 1, 2), (3, 2, 1), (3, 1, 3)]),
        ("no layers", "an empty stack: each output pixel is one input pixel, stride 1",
         np.zeros((0, 3), np.int64)),
        ("1x1 convs with stride", "1x1 kernels add nothing to the field but multiply the stride",
         [(1, 2, 1), (1, 2, 1)]),
    ]
    cases = []
    for name, hint, layers in rows:
        layers = np.asarray(layers, np.int64).reshape(-1, 3)
        rf = fpn.receptive_field(layers)
        cases.append(Case(name, hint, [layers], {"size": np.array(rf.size),
                                                 "stride": np.array(rf.stride)}))
    return cases


def build_conv_output_size() -> list[Case]:
    rows = [
        ("'same' padding", "padding 1 keeps the size of a 3x3 conv at stride 1", (32, 3, 1, 1, 1)),
        ("stride 2", "divide by the stride, rounding down", (32, 3, 2, 1, 1)),
        ("an odd size at stride 2", "count the positions the kernel can take", (33, 3, 2, 1, 1)),
        ("dilation 2 with padding 2", "padding equal to the dilation keeps the size",
         (32, 3, 1, 2, 2)),
        ("dilation 2, no padding", "a dilated kernel covers more input pixels than it has "
         "taps", (32, 3, 1, 0, 2)),
        ("ResNet's first conv", "7x7, stride 2, padding 3", (64, 7, 2, 3, 1)),
        ("a kernel that just fits", "the taps and the gaps between them must fit", (7, 3, 1, 0, 3)),
        ("a 1x1 conv of stride 3", "a 1x1 kernel spans one pixel", (10, 1, 3, 0, 1)),
        ("everything at once", "padding is added on both sides", (28, 5, 2, 4, 3)),
        ("more padding than dilation", "padding is added on both sides", (16, 3, 1, 4, 2)),
    ]
    cases = []
    for name, hint, args in rows:
        value = fpn.conv_output_size(*args)
        cases.append(Case(name, hint, [np.array(a) for a in args], {"value": np.array(value)}))
    return cases


def build_fpn_level() -> list[Case]:
    def sides(*s: float) -> np.ndarray:
        return np.array([[10.0, 20.0, 10.0 + v, 20.0 + v] for v in s]).reshape(-1, 4)

    default = (2, 5, 224.0, 4)
    rows = [
        ("the canonical box", "a box of side canonical_size goes to canonical_level",
         sides(224), default),
        ("half and double the canonical size", "each halving of the side is one level finer",
         sides(112, 448), default),
        ("small boxes", "clamp to k_min", sides(8, 30, 60), default),
        ("large boxes", "clamp to k_max", sides(1000, 3000), default),
        ("a long thin box", "use sqrt(area), not the width or the height",
         np.array([[0.0, 0.0, 56.0, 896.0], [0.0, 0.0, 896.0, 56.0]]), default),
        ("sides between two levels", "floor, do not round", sides(300, 160, 440), default),
        ("an empty box", "an empty box goes to k_min", np.array([[5.0, 5.0, 5.0, 5.0]]),
         default),
        ("other parameters", "use k_min, k_max, canonical_size and canonical_level as given",
         sides(56, 112, 300, 900), (3, 6, 112.0, 3)),
        ("exact powers of two", "an exact power of two must land on its own level",
         sides(28, 56, 14), (1, 5, 224.0, 4)),
        ("no boxes", "zero boxes in, zero levels out", np.zeros((0, 4)), default),
    ]
    cases = []
    for name, hint, boxes_, params in rows:
        value = boxes.fpn_level(torch.from_numpy(boxes_), *params)
        args = [boxes_] + [np.array(p) for p in params]
        cases.append(Case(name, hint, args, {"value": value.numpy()}))
    return cases


# --- Chapters 04-05: Panoptic Quality and failure modes -------------------------------------


def _rows(segments: dict[int, tuple[int, bool]]) -> np.ndarray:
    """``{id: (category_id, iscrowd)}`` -> ``[S, 3]`` int64 rows, as the checker stores them."""
    return np.array([[i, c, int(k)] for i, (c, k) in segments.items()], np.int64).reshape(-1, 3)


def _strip(*rows: str) -> np.ndarray:
    """A small id map from strings of digits, one string per row (0 is void)."""
    return np.array([[int(ch) for ch in r] for r in rows], np.int64)


def _pq_case(name: str, hint: str, gt_ids: np.ndarray, gt_segs: dict, pred_ids: np.ndarray,
             pred_segs: dict) -> Case:
    stats = pq.pq_stats_loop(gt_ids, gt_segs, pred_ids, pred_segs)
    expected = {"categories": stats.categories.numpy(), "iou_sum": stats.iou_sum.numpy(),
                "tp": stats.tp.numpy(), "fp": stats.fp.numpy(), "fn": stats.fn.numpy()}
    return Case(name, hint, [gt_ids, _rows(gt_segs), pred_ids, _rows(pred_segs)], expected)


def build_pq_stats() -> list[Case]:
    thing, crowd = (1, False), (1, True)
    cases = [
        _pq_case("a perfect prediction", "same pixels and category: IoU 1, a true positive",
                 _strip("1122", "1122", "3333"), {1: thing, 2: (2, False), 3: (4, False)},
                 _strip("5566", "5566", "7777"), {5: thing, 6: (2, False), 7: (4, False)}),
        _pq_case("IoU exactly 1/2", "a match needs IoU strictly above 0.5",
                 _strip("1111"), {1: thing}, _strip("2200"), {2: thing}),
        _pq_case("a prediction partly on void", "pixels of the prediction on void (gt id 0) "
                 "leave the union", _strip("11000"), {1: thing}, _strip("22222"), {2: thing}),
        _pq_case("a prediction mostly on void", "an unmatched prediction more than half on void "
                 "is not a false positive", _strip("000011", "000011"), {1: (2, False)},
                 _strip("222200", "222233"), {2: thing, 3: (2, False)}),
        _pq_case("a prediction on a crowd region of its class", "an unmatched prediction more "
                 "than half on a crowd region of its own category is ignored; crowd is never a "
                 "false negative", _strip("1111", "1111"), {1: crowd}, _strip("2200", "2200"),
                 {2: thing}),
        _pq_case("a prediction on a crowd region of another class", "only the crowd region of "
                 "the prediction's own category excuses it", _strip("1111"), {1: crowd},
                 _strip("2222"), {2: (2, False)}),
        _pq_case("void and crowd together", "add the void and the crowd pixels before comparing "
                 "with half the prediction", _strip("0011444444"), {1: crowd, 4: (4, False)},
                 _strip("2222255555"), {2: thing, 5: (4, False)}),
        _pq_case("the wrong category", "a prediction matches only its own category",
                 _strip("1111"), {1: thing}, _strip("2222"), {2: (2, False)}),
        _pq_case("nothing predicted", "every non-crowd gt segment is a false negative",
                 _strip("1122", "3333"), {1: thing, 2: thing, 3: (4, False)},
                 np.zeros((2, 4), np.int64), {}),
        _pq_case("nothing labelled", "predictions entirely on void are ignored",
                 np.zeros((2, 4), np.int64), {}, _strip("1122", "1122"), {1: thing, 2: (3, False)}),
        _pq_case("one object, two predictions", "each segment matches at most one partner; the "
                 "smaller piece is a false positive", _strip("111111"), {1: thing},
                 _strip("222233"), {2: thing, 3: thing}),
    ]
    big = _strip("1111222", "1111222", "3333333") * 4_000_000  # ids far beyond the pixel count
    cases.append(_pq_case("large segment ids", "ids are labels, not indices",
                          big, {4_000_000: thing, 8_000_000: thing, 12_000_000: (4, False)},
                          _strip("1111220", "1111222", "3333333") * 999_999,
                          {999_999: thing, 1_999_998: thing, 2_999_997: (4, False)}))
    for seed in (41, 42, 43):
        scene = data.make_panoptic_scene(48, 48, num_objects=(3, 5), crowd_rate=0.8, seed=seed)
        ids, segs = data.simulate_panoptic_prediction(scene, seed=seed + 100)
        cases.append(_pq_case(f"a synthetic scene (seed {seed})", "things, stuff, crowd and void "
                              "together", scene.ids.numpy(), scene.segments, ids.numpy(), segs))
    return cases


def build_pq_from_counts() -> list[Case]:
    rows = [
        ("one class", "PQ, SQ and RQ of one class's counts, as the chapter "
         "defines them", [2.7], [3], [1], [2]),
        ("two classes", "average PQ, SQ and RQ over the classes, each on its own: the mean PQ is "
         "not the mean SQ times the mean RQ", [1.0, 0.6], [1, 1], [1, 0], [1, 0]),
        ("a class with no segments at all", "leave out classes with tp + fp + fn = 0",
         [0.0, 3.6], [0, 4], [0, 1], [0, 0]),
        ("a class with no true positives", "its SQ is 0 (not NaN), and it still counts",
         [0.0, 0.9], [0, 1], [2, 0], [1, 0]),
        ("three classes, whole-number counts", "counts may arrive as integers: divide in float",
         [4.2, 0.55, 7.0], [5, 1, 7], [0, 3, 0], [1, 0, 0]),
    ]
    stats = pq.PQStats.empty()
    for seed in range(20):
        scene = data.make_panoptic_scene(64, 64, seed=300 + seed)
        stats = stats + pq.pq_stats(scene.ids, scene.segments,
                                    *data.simulate_panoptic_prediction(scene, seed=400 + seed),
                                    categories=data.THING_IDS + data.STUFF_IDS)
    rows.append(("counts of 20 synthetic scenes", "six classes of things and stuff",
                 stats.iou_sum.tolist(), *(getattr(stats, k).tolist() for k in ("tp", "fp", "fn"))))
    cases = []
    for name, hint, iou, tp, fp, fn in rows:
        args = [np.array(iou, np.float64), *(np.array(v, np.int64) for v in (tp, fp, fn))]
        r = pq.pq_from_counts(*args)
        cases.append(Case(name, hint, args, {k: np.array(r[k]) for k in ("pq", "sq", "rq")}))
    return cases


def build_classify_failures() -> list[Case]:
    rows = [
        ("two equal objects under one blob", "a prediction that covers most of two objects "
         "merges them", [[10], [10]], [10, 10], [20]),
        ("a big and a small object under one blob", "it is a merge even where the blob matches "
         "the bigger one", [[14], [6]], [14, 6], [20]),
        ("one object cut in two halves", "two predictions lying mostly inside one object split "
         "it", [[5, 5]], [10], [5, 5]),
        ("one object cut 7 : 3", "a split even where the bigger piece matches", [[7, 3]], [10],
         [7, 3]),
        ("a good prediction", "IoU > 0.5 with no merge or split is a match", [[9]], [10], [11]),
        ("a poor prediction", "IoU 0.5 or less, no merge or split: a miss", [[5]], [10], [10]),
        ("one small piece inside a big object", "a split needs two or more pieces; one small "
         "piece is a miss", [[3]], [10], [3]),
        ("no predictions", "an object nothing found is a miss", np.zeros((2, 0)), [8, 9], []),
        ("no ground truth", "no objects, no labels", np.zeros((0, 2)), [], [4, 5]),
        ("a scene with one of each", "merge first, then split, then match, then miss",
         [[10, 0, 0, 0], [9, 0, 0, 0], [0, 6, 5, 0], [0, 0, 0, 9], [0, 0, 0, 1]],
         [10, 10, 12, 10, 10], [20, 7, 6, 10]),
        ("a blob that covers one object and a corner of another", "a merge needs most of both "
         "objects", [[10, 0], [3, 0]], [10, 10], [13, 5]),
    ]
    cases = []
    for name, hint, inter, ga, pa in rows:
        inter = np.asarray(inter, np.int64).reshape(len(ga), len(pa))
        ga, pa = np.asarray(ga, np.int64), np.asarray(pa, np.int64)
        labels = pq.classify_failures(inter, ga, pa)
        cases.append(Case(name, hint, [inter, ga, pa], {"labels": np.array(labels, dtype=str)}))
    return cases


def build_min_resolvable_size() -> list[Case]:
    rows = [
        (1, 0.5, "even a one-pixel stride needs more than a one-pixel object"),
        (4, 0.5, "find the placement where the square's best cell is covered least"),
        (8, 0.5, "more than half a cell, wherever the square lies"),
        (16, 0.5, "proportional to the stride"),
        (32, 0.5, "proportional to the stride"),
        (7, 0.5, "an odd stride"),
        (8, 0.25, "'more than' is strict: covering exactly the fraction is not enough"),
        (16, 0.9, "a stricter coverage"),
        (3, 0.75, "a stricter coverage, a small stride"),
    ]
    return [Case(f"stride {s}, coverage {c}", hint, [np.array(s), np.array(c)],
                 {"value": np.array(data.min_resolvable_size(s, c))}) for s, c, hint in rows]


# Chapter 08 (ROIAlign)


def _feature(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def build_bilinear_interpolate() -> list[Case]:
    f, tall = _feature(80, 5, 6), _feature(81, 4, 7)  # [H, W]
    inside = ("between its four neighbours the value is linear along x on each row, then linear "
              "along y between the two rows")
    zero = "outside [-1, H] x [-1, W] the value is 0"
    rows = [
        ("a point between four pixels", inside, f, 1.3, 2.6),
        ("exactly on a pixel", "at a grid point the value is that pixel's", f, 2.0, 3.0),
        ("on a row, between two columns", inside, f, 3.0, 0.25),
        ("H != W, with x beyond H", "y indexes rows (H), x indexes columns (W)", tall, 2.5, 5.5),
        ("y between -1 and 0", "a coordinate in [-1, 0) is moved to 0 (it reads row 0)", f, -0.6,
         2.5),
        ("x between -1 and 0", "a coordinate in [-1, 0) is moved to 0 (it reads column 0)", f,
         1.5, -0.3),
        ("y exactly -1", "-1 itself is still inside: it reads row 0", f, -1.0, 1.2),
        ("y just below -1", zero, f, -1.001, 1.2),
        ("y between H - 1 and H", "past the last row, read the last row (the edge is replicated)",
         f, 4.6, 2.2),
        ("y exactly H", "H itself is still inside: it reads the last row", f, 5.0, 2.2),
        ("x just beyond W", zero, f, 2.0, 6.01),
        ("past both far edges", "past the last row and column, read the corner pixel", f, 4.5,
         5.9),
        ("a map one row high", "with H = 1 the only row is both upper and lower neighbour",
         _feature(82, 1, 5), 0.4, 2.3),
        ("a map one column wide", "with W = 1 the only column is both neighbours",
         _feature(83, 6, 1), 3.7, 0.8),
        ("channels first: [3, H, W]", "keep the leading dimensions: one value per channel",
         _feature(84, 3, 4, 5), 1.25, 3.75),
    ]
    return [Case(name, hint, [feature, np.array(y), np.array(x)],
                 {"value": roi_align.bilinear_interpolate(torch.from_numpy(feature), y, x).numpy()})
            for name, hint, feature, y, x in rows]


def build_roi_align_weights() -> list[Case]:
    mean = "a row is the mean over the bin's samples: inside the map its weights sum to 1"
    where = "bin p starts at start + p * bin_size; its samples sit mid-way along equal parts"
    rows = [  # name, hint, start, bin_size, grid, bins, size
        ("two bins inside the map, 2 samples each", mean, 1.2, 1.5, 2, 2, 6),
        ("one sample per bin", "one sample sits in the middle of its bin", 0.7, 2.0, 1, 3, 8),
        ("samples on whole rows", "a sample exactly on row h puts all its weight on row h",
         -0.5, 2.0, 2, 3, 8),
        ("wide bins, 3 samples each", where, 0.3, 2.6, 3, 2, 7),
        ("7 bins on a 14-row map", where, 0.85, 1.7, 2, 7, 14),
        ("a bin over the top edge", "a sample below -1 weighs nothing but still counts in the "
         "mean", -1.4, 1.2, 2, 2, 5),
        ("samples in [-1, 0)", "a sample in [-1, 0) is read at 0: all its weight on row 0",
         -0.9, 0.8, 2, 1, 5),
        ("a sample exactly at -1", "-1 itself is still inside the map", -1.5, 2.0, 2, 1, 5),
        ("samples between H - 1 and H", "past the last row, all the weight goes to the last row",
         4.2, 0.6, 2, 1, 5),
        ("a bin beyond the map", "beyond H a sample weighs nothing but still counts in the mean",
         4.0, 1.0, 2, 2, 5),
        ("a box larger than the map", "samples outside [-1, H] count in the mean with no weight",
         -3.0, 2.5, 2, 4, 6),
        ("no samples", "a grid of 0 samples gives rows of zeros", 1.0, 1.5, 0,
         3, 6),
        ("a zero-size bin", "all the samples of a bin of size 0 sit on the same point", 2.3, 0.0,
         2, 2, 6),
        ("a map one row high", "with H = 1 the only row is both neighbours", -0.4, 0.7, 2, 2, 1),
    ]
    cases = []
    for name, hint, start, bin_size, grid, bins, size in rows:
        start_t, bin_t = (torch.tensor([v], dtype=torch.float64) for v in (start, bin_size))
        value = roi_align.interpolation_matrix(start_t, bin_t, torch.tensor([grid]), bins,
                                               size)[0].numpy()  # [bins, size]
        cases.append(Case(name, hint, [np.array(start), np.array(bin_size), np.array(grid),
                                       np.array(bins), np.array(size)], {"value": value}))
    return cases


def _multiscale_reference(features: list[torch.Tensor], rois: torch.Tensor,
                          size: int) -> torch.Tensor:
    """ROIAlign of each box on its FPN level, box by box with the loop reference."""
    level = boxes.fpn_level(rois[:, 1:], 2, 5).tolist()
    rows = [roi_align.roi_align_reference(features[k - 2], rois[i:i + 1], size, 1 / 2**k, 2)
            for i, k in enumerate(level)]
    return torch.cat(rows) if rows else torch.zeros(0, features[0].shape[1], size, size,
                                                    dtype=torch.float64)


def build_multiscale_roi_align() -> list[Case]:
    rng = _rng(95)
    features = [rng.normal(size=(2, 2, 128 // s, 128 // s)) for s in (4, 8, 16, 32)]

    def square(image: int, cx: float, cy: float, w: float, h: float | None = None) -> list[float]:
        h = w if h is None else h
        return [image, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]

    level = "route each box with course.boxes.fpn_level, pool with spatial_scale = 1 / stride"
    rows = [
        ("boxes of every size, mixed order", "put each result back in the order of the boxes",
         [square(0, 40, 50, 20), square(1, 64, 64, 300), square(0, 70, 30, 60),
          square(1, 90, 80, 150), square(0, 64, 64, 480), square(1, 20, 100, 35),
          square(0, 60, 70, 110), square(1, 64, 40, 230)], 7),
        ("small boxes only (level 2)", level,
         [square(0, 30, 30, 12), square(0, 90, 60, 40), square(1, 50, 100, 25)], 7),
        ("a very large box", "levels above 5 are clamped to 5 (the coarsest map)",
         [square(0, 64, 64, 900)], 7),
        ("a tiny box", "levels below 2 are clamped to 2 (the finest map)",
         [square(1, 33.3, 70.1, 2.0)], 7),
        ("on a level boundary", "side 112 is exactly level 3; the level uses sqrt(area)",
         [square(0, 64, 64, 112), square(0, 50, 60, 56, 224), square(1, 64, 64, 111)], 7),
        ("a long flat box", "the level comes from sqrt(area), not the longer side",
         [square(0, 64, 64, 400, 20)], 7),
        ("boxes on the second image", "the first column of boxes is the image index",
         [square(1, 30, 40, 50), square(1, 80, 90, 200)], 7),
        ("output size 3", level, [square(0, 50, 50, 70), square(1, 60, 60, 250)], 3),
        ("no boxes", "zero boxes give an empty [0, C, P, P]", [], 7),
    ]
    cases = []
    for name, hint, box_rows, size in rows:
        rois = np.array(box_rows, dtype=np.float64).reshape(-1, 5)
        value = _multiscale_reference([torch.from_numpy(f) for f in features],
                                      torch.from_numpy(rois), size).numpy()
        cases.append(Case(name, hint, [*features, rois, np.array(size)], {"value": value}))
    return cases


# --- chapter 03: COCO Average Precision --------------------------------------------------


def build_precision_recall() -> list[Case]:
    rng = _rng(30)
    rows = [
        ("hits and misses", "precision counts the hits among the detections so far",
         [True, False, True, True, False, False, True, False], 6),
        ("every detection a hit", "all hits: precision stays 1, recall climbs to 1",
         [True] * 5, 5),
        ("every detection a miss", "no hit: precision and recall stay 0", [False] * 4, 3),
        ("the first detection misses", "a miss at rank 1 gives precision 0 there",
         [False, True, True], 4),
        ("no detections", "an empty list gives two empty curves", [], 3),
        ("more objects than detections", "recall divides by the number of objects",
         [True, True, False], 10),
        ("a long list", "cumulative sums, not a loop that forgets earlier hits",
         (rng.random(150) < 0.4).tolist(), 80),
    ]
    cases = []
    for name, hint, tp, num_gt in rows:
        flags = np.array(tp, dtype=bool)
        precision, recall = ap.precision_recall(torch.from_numpy(flags), num_gt)
        cases.append(Case(name, hint, [flags, np.array(num_gt)],
                          {"precision": precision.numpy(), "recall": recall.numpy()}))
    return cases


def _ranked_curve(tp: list[bool], num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    precision, recall = ap.precision_recall(torch.tensor(tp, dtype=torch.bool), num_gt)
    return precision.numpy(), recall.numpy()


def build_average_precision() -> list[Case]:
    rng = _rng(31)
    rows = [
        ("a perfect list", "precision 1 up to recall 1 gives AP 1", _ranked_curve([True] * 4, 4)),
        ("a zig-zag curve", "sample the envelope (the best precision at this recall or beyond), "
         "not the raw curve", _ranked_curve([True, False, False, True, True, False, True], 5)),
        ("recall stops at 0.6", "beyond the last recall reached the precision counts as 0",
         _ranked_curve([True, True, False, True], 5)),
        ("recall exactly on a sample point", "at recall r take the FIRST position whose recall "
         "is >= r (np.searchsorted side='left')",
         (np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]))),
        ("no detections", "an empty list has AP 0", (np.zeros(0), np.zeros(0))),
        ("101 points, not 11", "sample at np.linspace(0, 1, 101) and average",
         _ranked_curve([True, False, True, False, False, True, False, True], 7)),
        ("a long random list", "the envelope, then 101 samples",
         _ranked_curve((rng.random(120) < 0.35).tolist(), 50)),
    ]
    return [Case(name, hint, [p, r], {"value": np.array(ap.average_precision(p, r))})
            for name, hint, (p, r) in rows]


def build_ap_over_thresholds() -> list[Case]:
    rows = [
        ("one perfect detection", "IoU 1 is a match at every threshold: AP 1",
         np.array([[1.0]]), [0.9]),
        ("IoU 0.72 with its object", "it matches at 0.50 ... 0.70 only: average over all ten "
         "thresholds", np.array([[0.72]]), [0.8]),
        ("IoU exactly 0.75", "IoU >= threshold is a match", np.array([[0.75, 0.0]]), [0.8]),
        ("two detections on one object", "the higher score takes it; the other is a false "
         "positive", np.array([[0.6], [0.95]]), [0.9, 0.4]),
        ("a confident false positive", "the ranked list starts with a miss",
         np.array([[0.0, 0.0], [0.8, 0.1], [0.1, 0.85]]), [0.99, 0.7, 0.6]),
        ("equal scores", "equal scores keep their row order (a stable sort)",
         np.array([[0.3], [0.97]]), [0.5, 0.5]),
        ("the best object is not the first", "take the free object with the highest IoU",
         np.array([[0.55, 0.8], [0.7, 0.0]]), [0.9, 0.6]),
        ("no detections", "nothing found: AP 0", np.zeros((0, 3)), []),
    ]
    for seed in (32, 33, 34):
        iou, pred_labels, gt_labels, scores = _scene_iou(seed)
        label = int(np.bincount(gt_labels).argmax())
        rows.append((f"one class of a synthetic scene (seed {seed})",
                     "score order, one object per detection, ten thresholds",
                     iou[pred_labels == label][:, gt_labels == label],
                     scores[pred_labels == label]))
    cases = []
    for name, hint, iou, scores in rows:
        iou, scores = np.asarray(iou, np.float64), np.asarray(scores, np.float64)
        value = ap.ap_over_thresholds(torch.from_numpy(iou), torch.from_numpy(scores))
        cases.append(Case(name, hint, [iou, scores], {"value": np.array(value)}))
    return cases


# ---------------------------------------------------------------------------------------------
# Chapter 09: anchors, box coding, labelling anchors
# ---------------------------------------------------------------------------------------------


def build_grid_anchors() -> list[Case]:
    from course.model.anchors import grid_anchors

    specs = [("one ratio on a 1 x 1 map", "the anchor is centred on the cell's centre",
              16.0, [1.0], 4, 1, 1),
             ("three ratios on a 2 x 3 map", "rows: position by position (row, then column), "
              "then ratio by ratio; ratio = height / width, area = size**2", 32.0,
              [0.5, 1.0, 2.0], 8, 2, 3),
             ("stride 16, a 4 x 2 map", "an anchor sits at the centre of its cell, not at its "
              "corner",
              64.0, [1.0, 2.0], 16, 4, 2),
             ("wide and tall ratios", "ratio is height / width, and every ratio keeps the area "
              "of a square of side size", 24.0,
              [0.25, 4.0], 4, 3, 3)]
    cases = []
    for name, hint, size, ratios, stride, h, w in specs:
        value = grid_anchors(size, ratios, stride, h, w).numpy()
        cases.append(Case(name, hint, [np.array(size), np.array(ratios, dtype=np.float64),
                                       np.array(stride), np.array(h), np.array(w)],
                          {"value": value}))
    return cases


def _coding_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.random((n, 2)) * 100
    return np.concatenate([xy, xy + 2 + rng.random((n, 2)) * 60], axis=1)


def build_encode_boxes() -> list[Case]:
    from course.model.box_coding import encode_boxes

    rng = _rng(90)
    ref = _coding_boxes(rng, 6)
    cases = []
    for name, hint, targets, weights in [
            ("boxes equal to the reference", "identical boxes have offsets 0", ref.copy(),
             (1.0, 1.0, 1.0, 1.0)),
            ("random boxes, unit weights", "centre offsets in reference widths and heights, "
             "sizes as log-ratios", _coding_boxes(rng, 6), (1.0, 1.0, 1.0, 1.0)),
            ("random boxes, weights (10, 10, 5, 5)", "each offset is multiplied by its weight",
             _coding_boxes(rng, 6), (10.0, 10.0, 5.0, 5.0))]:
        value = encode_boxes(torch.from_numpy(targets), torch.from_numpy(ref), weights).numpy()
        cases.append(Case(name, hint, [targets, ref, np.array(weights)], {"value": value}))
    return cases


def build_decode_boxes() -> list[Case]:
    from course.model.box_coding import decode_boxes

    rng = _rng(91)
    ref = _coding_boxes(rng, 6)
    huge = rng.normal(size=(6, 4))
    huge[:, 2:] = 8.0  # exp(8) would be a box 3000 times wider: clamped
    cases = []
    for name, hint, deltas, weights in [
            ("zero offsets", "offsets 0 give back the reference boxes", np.zeros((6, 4)),
             (1.0, 1.0, 1.0, 1.0)),
            ("random offsets, unit weights", "divide by the weights, then undo the log and the "
             "centre shift", rng.normal(size=(6, 4)) * 0.5, (1.0, 1.0, 1.0, 1.0)),
            ("random offsets, weights (10, 10, 5, 5)", "divide each offset by its weight first",
             rng.normal(size=(6, 4)) * 3, (10.0, 10.0, 5.0, 5.0)),
            ("very large dw, dh", "clamp before the exponential, after dividing by the weights",
             huge, (1.0, 1.0, 1.0, 1.0))]:
        value = decode_boxes(torch.from_numpy(deltas), torch.from_numpy(ref), weights).numpy()
        cases.append(Case(name, hint, [deltas, ref, np.array(weights)], {"value": value}))
    return cases


def build_label_anchors() -> list[Case]:
    from course.model.assign import match_boxes

    rng = _rng(92)
    tie = np.array([[0.2, 0.55, 0.55, 0.1], [0.0, 0.1, 0.2, 0.9]])
    lonely = np.array([[0.0, 0.0, 0.0], [0.1, 0.8, 0.4]])
    specs = [("random IoU, 3 objects x 40 anchors", "IoU >= high: 1; below low: 0; between: -1",
              rng.random((3, 40)) * 0.9, 0.7, 0.3),
             ("an object whose best IoU is low", "each object's best anchor is positive, "
              "whatever its IoU", np.array([[0.1, 0.45, 0.2], [0.05, 0.0, 0.75]]), 0.7, 0.3),
             ("a tie for an object's best anchor", "every anchor that ties for an object's "
              "best IoU is positive", tie, 0.7, 0.3),
             ("an object that overlaps no anchor", "an object with best IoU 0 makes no anchor "
              "positive", lonely, 0.7, 0.3),
             ("no objects", "without objects every anchor is negative", np.zeros((0, 5)), 0.7,
              0.3),
             ("high == low", "with high == low nothing is ignored", rng.random((2, 12)), 0.5,
              0.5)]
    cases = []
    for name, hint, iou, high, low in specs:
        label = match_boxes(torch.from_numpy(iou), high, low, low_quality=True).label.numpy()
        cases.append(Case(name, hint, [iou, np.array(high), np.array(low)], {"value": label}))
    return cases


def _rect_masks(h: int, w: int, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    masks = np.zeros((len(rects), h, w), dtype=bool)
    for k, (y0, y1, x0, x1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = True
    return masks


def build_paste_by_score() -> list[Case]:
    from course.fusion import paste_by_score

    rng = _rng(111)
    two = _rect_masks(4, 6, [(0, 3, 0, 4), (1, 4, 2, 6)])
    specs = [("two overlapping masks, the second scores higher", "the shared pixels go to the "
              "higher score; 0 where no mask is", two, np.array([0.6, 0.9])),
             ("the same masks, the first scores higher", "compare scores, not positions",
              two, np.array([0.9, 0.6])),
             ("equal scores", "between equal scores the earlier mask wins", two,
              np.array([0.7, 0.7])),
             ("one mask inside another", "a small high-scored mask keeps its pixels inside a "
              "large one", _rect_masks(5, 5, [(0, 5, 0, 5), (1, 3, 1, 3)]), np.array([0.5, 0.8])),
             ("no masks", "without masks every pixel is 0", np.zeros((0, 3, 4), dtype=bool),
              np.zeros(0)),
             ("eight random masks, some scores tied", "value k + 1 for mask k (1-based ids)",
              _random_masks(rng, 8, 9, 7, 0.35), np.round(rng.random(8), 1))]
    cases = []
    for name, hint, things, scores in specs:
        value = paste_by_score(torch.from_numpy(things), torch.from_numpy(scores)).numpy()
        cases.append(Case(name, hint, [things, scores], {"value": value}))
    return cases


def build_protect() -> list[Case]:
    from course.fusion import protected_pixels

    rng = _rng(112)

    def probs(c: int, h: int, w: int) -> np.ndarray:
        x = rng.random((c, h, w)) ** 3
        return x / x.sum(axis=0, keepdims=True)

    sky = np.zeros((3, 4, 5))
    sky[1, :2], sky[0, 2:] = 0.9, 0.8  # channel 1 (sky) sure in the top rows
    sky[2] = 1 - sky[:2].sum(axis=0)
    exact = np.full((2, 3, 3), 0.5)
    specs = [("a thing reaching into confident sky", "drop the pixels where a protected "
              "channel is above the threshold", _rect_masks(4, 5, [(1, 4, 1, 4)]), sky, [1],
              0.5),
             ("the same, nothing protected", "with no protected channel the masks are "
              "unchanged", _rect_masks(4, 5, [(1, 4, 1, 4)]), sky, [], 0.5),
             ("probability exactly at the threshold", "above means strictly above",
              _rect_masks(3, 3, [(0, 3, 0, 3)]), exact, [0], 0.5),
             ("two protected channels, three masks", "any protected channel forbids a pixel, "
              "for every mask", _random_masks(rng, 3, 6, 7, 0.5), probs(4, 6, 7), [1, 3], 0.4),
             ("no masks", "zero masks in, zero masks out", np.zeros((0, 4, 5), dtype=bool),
              sky, [1], 0.5)]
    cases = []
    for name, hint, things, semantic, channels, threshold in specs:
        forbidden = protected_pixels(torch.from_numpy(semantic), channels, threshold).numpy()
        cases.append(Case(name, hint, [things, semantic, np.array(channels, dtype=np.int64),
                                       np.array(threshold)], {"value": things & ~forbidden}))
    return cases


BUILDERS: dict[str, Callable[[], list[Case]]] = {
    "mask_area": build_mask_area,
    "mask_iou": build_mask_iou,
    "mask_dice": build_mask_dice,
    "tp_fp_fn": build_tp_fp_fn,
    "greedy_match": build_greedy_match,
    # chapter 03
    "precision_recall": build_precision_recall,
    "average_precision": build_average_precision,
    "ap_over_thresholds": build_ap_over_thresholds,
    # chapter 06
    "dice_loss": build_dice_loss,
    "dice_grad_pixel": build_dice_grad_pixel,
    "pick_weighting": build_pick_weighting,
    # chapter 07
    "receptive_field": build_receptive_field,
    "conv_output_size": build_conv_output_size,
    "fpn_level": build_fpn_level,
    # chapters 04-05
    "pq_stats": build_pq_stats,
    "pq_from_counts": build_pq_from_counts,
    "classify_failures": build_classify_failures,
    "min_resolvable_size": build_min_resolvable_size,
    # chapter 08
    "bilinear_interpolate": build_bilinear_interpolate,
    "roi_align_weights": build_roi_align_weights,
    "multiscale_roi_align": build_multiscale_roi_align,
    # chapter 09
    "grid_anchors": build_grid_anchors,
    "encode_boxes": build_encode_boxes,
    "decode_boxes": build_decode_boxes,
    "label_anchors": build_label_anchors,
    # chapter 11
    "paste_by_score": build_paste_by_score,
    "protect": build_protect,
}


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for name, build in BUILDERS.items():
        cases = build()
        save_cases(str(FIXTURES / f"{name}.npz"), cases)
        print(f"{name}: {len(cases)} cases")


if __name__ == "__main__":
    main()
