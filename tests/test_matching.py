import contextlib
import io
import itertools

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course.matching import MatchResult, greedy_match, hungarian_match, tp_fp_fn


def coco_greedy_pairs(iou, scores, threshold):
    """Pairs that pycocotools' own evaluateImg makes, given our IoU matrix for one image/class."""
    num_pred, num_gt = iou.shape
    if num_pred == 0:
        return set()
    box = {"bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0, "image_id": 1, "category_id": 1}
    gt = COCO()
    gt.dataset = {"images": [{"id": 1}], "categories": [{"id": 1}],
                  "annotations": [dict(box, id=j + 1) for j in range(num_gt)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([dict(box, score=float(s)) for s in scores])
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = np.array([threshold])
        ev.params.maxDets = [num_pred + 1]
        order = np.argsort(-np.asarray(scores), kind="mergesort")  # the rows COCOeval expects
        ev.computeIoU = lambda img, cat: iou[order] if num_gt else []
        ev.evaluate()
    img = next(e for e in ev.evalImgs if e is not None and e["aRng"] == [0, 1e10])
    matched = img["dtMatches"][0]  # gt id matched by each score-sorted detection, 0 if none
    return {(int(order[k]), int(g) - 1) for k, g in enumerate(matched) if g > 0}


def brute_force_best_total(iou, threshold):
    """Largest total IoU over one-to-one matchings that use only pairs >= threshold."""
    num_pred, num_gt = iou.shape
    best = 0.0
    for k in range(min(num_pred, num_gt) + 1):
        for rows in itertools.permutations(range(num_pred), k):
            for cols in itertools.combinations(range(num_gt), k):
                if all(iou[r, c] >= threshold for r, c in zip(rows, cols)):
                    best = max(best, sum(iou[r, c] for r, c in zip(rows, cols)))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_greedy_match_equals_pycocotools_matching(seed):
    rng = np.random.default_rng(seed)
    num_pred, num_gt = rng.integers(0, 7), rng.integers(0, 6)
    # few distinct values, so ties in IoU and in score happen often
    iou = rng.choice([0.0, 0.3, 0.5, 0.55, 0.7, 0.9, 1.0], size=(num_pred, num_gt))
    scores = rng.choice([0.2, 0.5, 0.5, 0.9], size=num_pred)
    for threshold in (0.5, 0.55, 0.75):
        ours = {tuple(p) for p in greedy_match(iou, scores, threshold).pairs.tolist()}
        assert ours == coco_greedy_pairs(iou, scores, threshold)


@pytest.mark.parametrize("seed", range(40))
def test_hungarian_match_finds_the_best_total_iou(seed):
    rng = np.random.default_rng(seed)
    iou = rng.random((rng.integers(0, 5), rng.integers(0, 5))) ** 2
    threshold = float(rng.choice([0.0, 0.2, 0.4, 0.5]))
    result = hungarian_match(iou, threshold)
    assert result.ious.sum().item() == pytest.approx(brute_force_best_total(iou, threshold))
    assert bool((result.ious >= threshold).all())
    assert result.tp + result.fp == iou.shape[0] and result.tp + result.fn == iou.shape[1]


def test_hungarian_removes_subthreshold_pairs_before_assigning():
    iou = torch.tensor([[0.6, 0.4], [0.45, 0.0]])
    result = hungarian_match(iou, 0.5)
    assert result.pairs.tolist() == [[0, 0]]
    assert (result.tp, result.fp, result.fn) == (1, 1, 1)


def test_greedy_and_hungarian_disagree_where_one_prediction_covers_two_objects():
    iou = torch.tensor([[0.6, 0.7], [0.0, 0.65]])  # row 0 has the higher score
    greedy = greedy_match(iou, scores=torch.tensor([0.9, 0.8]), threshold=0.5)
    optimal = hungarian_match(iou, 0.5)
    assert greedy.tp == 1 and optimal.tp == 2


def test_threshold_is_inclusive():
    assert hungarian_match(torch.tensor([[0.5]]), 0.5).tp == 1
    assert greedy_match(torch.tensor([[0.5]]), torch.tensor([1.0]), 0.5).tp == 1


def test_match_result_counts_and_complements():
    result = MatchResult(torch.tensor([[0, 2], [3, 0]]), torch.tensor([0.9, 0.6]), 5, 3)
    assert (result.tp, result.fp, result.fn) == (2, 3, 1)
    assert result.unmatched_pred().tolist() == [1, 2, 4]
    assert result.unmatched_gt().tolist() == [1]
    assert repr(result) == "MatchResult(tp=2, fp=3, fn=1, pairs=[(0, 2), (3, 0)])"


def test_tp_fp_fn_matches_only_within_a_class():
    iou = torch.tensor([[1.0, 0.0], [0.0, 0.9]])
    result = tp_fp_fn(iou, pred_labels=[2, 2], gt_labels=[1, 2])
    assert result.pairs.tolist() == [[1, 1]]
    assert (result.tp, result.fp, result.fn) == (1, 1, 1)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_tp_fp_fn_equals_matching_each_class_alone(seed, method):
    rng = np.random.default_rng(seed)
    num_pred, num_gt = rng.integers(0, 8), rng.integers(0, 8)
    iou = rng.random((num_pred, num_gt))
    pl, gl = rng.integers(1, 4, num_pred), rng.integers(1, 4, num_gt)
    scores = rng.random(num_pred)
    result = tp_fp_fn(iou, pl, gl, 0.3, scores=scores, method=method)
    tp = 0
    for c in (1, 2, 3):
        sub = iou[pl == c][:, gl == c]
        tp += (greedy_match(sub, scores[pl == c], 0.3) if method == "greedy"
               else hungarian_match(sub, 0.3)).tp
    assert result.tp == tp
    for p, g in result.pairs.tolist():
        assert pl[p] == gl[g] and iou[p, g] >= 0.3


def test_empty_inputs():
    for iou in (torch.zeros(0, 0), torch.zeros(0, 3), torch.zeros(2, 0)):
        for result in (hungarian_match(iou), greedy_match(iou, torch.ones(len(iou)))):
            assert result.tp == 0 and result.pairs.shape == (0, 2)
            assert result.fp == iou.shape[0] and result.fn == iou.shape[1]
    assert tp_fp_fn(torch.zeros(0, 2), [], [1, 1]).fn == 2


@pytest.mark.parametrize("call, error, words", [
    (lambda: hungarian_match(torch.tensor([[float("nan")]])), ValueError, "iou contains NaN"),
    (lambda: hungarian_match(torch.tensor([[1.5]])), ValueError, r"iou values must lie in \[0, 1"),
    (lambda: hungarian_match(torch.zeros(3)), ValueError, r"iou must have shape \[P, G\]"),
    (lambda: hungarian_match([[0.5]]), TypeError, "iou must be"),
    (lambda: hungarian_match(torch.zeros(1, 1), 1.5), ValueError, r"threshold must lie in \[0, 1"),
    (lambda: hungarian_match(torch.zeros(1, 1), -0.1), ValueError, "threshold"),
    (lambda: hungarian_match(torch.zeros(1, 1), float("nan")), ValueError, "threshold"),
    (lambda: hungarian_match(torch.zeros(1, 1), "0.5"), TypeError, "threshold must be a number"),
    (lambda: greedy_match(torch.zeros(2, 1), torch.ones(3)), ValueError,
     r"scores must have shape \[2\]"),
    (lambda: greedy_match(torch.zeros(1, 1), torch.tensor([float("nan")])), ValueError,
     "scores contains NaN"),
    (lambda: tp_fp_fn(torch.zeros(2, 1), [1], [1]), ValueError, r"pred_labels must have shape \[2"),
    (lambda: tp_fp_fn(torch.zeros(1, 1), [1], [1], method="greedy"), ValueError, "needs scores"),
    (lambda: tp_fp_fn(torch.zeros(1, 1), [1], [1], method="best"), ValueError, "method must be"),
])
def test_bad_input_is_named(call, error, words):
    with pytest.raises(error, match=words):
        call()
