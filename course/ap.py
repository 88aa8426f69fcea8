"""COCO Average Precision: the numbers pycocotools' ``COCOeval`` gives, computed faster.

**From a ranked list to AP.** Sort one class's detections by score. Going down the list,
each detection is a true positive (TP) if it matches a still-unmatched ground-truth object
with IoU at least the threshold, else a false positive; after the first ``k`` detections,

    precision_k = TP_k / k,        recall_k = TP_k / (number of ground-truth objects).

The precision-recall curve zig-zags; its *envelope* (the best precision at this recall or
any higher one) is a staircase, and COCO samples it at the 101 recalls 0, 0.01, ..., 1
(zero beyond the last recall reached). The mean is the AP at that threshold. COCO's AP
averages it over 10 IoU thresholds 0.50, 0.55, ..., 0.95, over classes, and over the images
all at once (the ranked list holds every image's detections).

:func:`precision_recall`, :func:`average_precision` and :func:`ap_over_thresholds` are
these steps for one list (chapter 03). :func:`coco_evaluate` is the whole of ``COCOeval``
(``evaluate``, ``accumulate``, ``summarize``) on many images and classes, bit for bit;
:func:`coco_evaluate_reference` is the same in plain loops, the way pycocotools writes it.
Read this file beside the chapter: the loop version is here in full. The fast
:func:`coco_evaluate` (re-exported here from :mod:`course.cocoeval.evaluate`) checks the
inputs with :func:`course.cocoeval.dataset.prepare` and hands the work to the engine,
:mod:`course.cocoeval.engine` (every image and class at once in numpy); :class:`COCOParams`
and :class:`COCOResult`, which both evaluators share, are in :mod:`course.cocoeval.result`;
:mod:`course.coco` holds the COCO formats (json and RLE).

**COCOeval's rules, which both follow exactly:**

- IoU thresholds ``np.linspace(.5, .95, 10)``, recall points ``np.linspace(0, 1, 101)``;
- per image and class: detections by descending score (a stable sort: ties keep their
  order), at most ``max_dets[-1]`` of them; each takes the best still-free ground truth with
  ``IoU >= threshold`` (the later one among equal IoUs), preferring objects that count over
  ignored ones;
- a crowd object (``iscrowd``) is ignored: a detection matched to it is neither TP nor FP,
  it can absorb any number of detections, and its IoU is ``|d & g| / |d|``;
- area ranges all / small / medium / large are ``[0, 1e10]``, ``[0, 32**2]``,
  ``[32**2, 96**2]``, ``[96**2, 1e10]``, bounds included (an area of exactly 1024 is both
  small and medium); objects outside the range are ignored, and so are unmatched detections
  outside it; a ground-truth object's area is the one given (default: its pixel count);
- every listed image is evaluated, so detections on an image without objects are false
  positives; a class without (non-ignored) objects gets -1 and is left out of the means;
- ``precision = TP / (TP + FP + eps)`` with ``eps = np.spacing(1)``, recall at ``max_dets``
  ``[1, 10, 100]`` per image and class.

**Keypoints** (``iou_type="keypoints"``, :meth:`COCOParams.for_keypoints`) follow the same
rules with the Object Keypoint Similarity in IoU's place (:mod:`course.cocoeval.keypoints`),
20 detections per image, area ranges all / medium / large and 10 stats; a person whose
``num_keypoints`` is 0 is ignored, yet unlike a crowd region absorbs one detection at most.

Two quirks of ``COCOeval.summarize`` are kept by default (``COCOParams.coco_quirks``): the
first stat (AP) always reads ``maxDets=100``, so with ``max_dets`` without 100 it is -1;
and AP50 / AP75 look the thresholds 0.5 / 0.75 up with ``==``, so with thresholds that only
come near them (``np.arange``) they are -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course.cocoeval import engine
from course.cocoeval.common import coco_box_iou, to_numpy
from course.cocoeval.dataset import Image, prepare, select
from course.cocoeval.evaluate import coco_evaluate
from course.cocoeval.keypoints import keypoint_similarity
from course.cocoeval.result import (
    AREA_NAMES,
    KEYPOINT_STAT_NAMES,
    STAT_NAMES,
    COCOParams,
    COCOResult,
    default_params,
    make_result,
)
from course.masks import mask_iou
from course.matching import greedy_match

__all__ = ["AREA_NAMES", "KEYPOINT_STAT_NAMES", "STAT_NAMES", "COCOParams", "COCOResult",
           "ap_over_thresholds", "average_precision", "coco_evaluate", "coco_evaluate_reference",
           "precision_envelope", "precision_recall"]

ArrayLike = Tensor | np.ndarray



# ---------------------------------------------------------------------------------------------
# One ranked list: precision, recall, the envelope, 101-point AP (chapter 03's steps)
# ---------------------------------------------------------------------------------------------


def precision_recall(tp: ArrayLike | Sequence[bool], num_gt: int) -> tuple[Tensor, Tensor]:
    """Precision and recall after each detection of a ranked list.

    Args:
        tp (Tensor[D]): bool, whether each detection (in descending score order) is a true
            positive.
        num_gt (int): how many ground-truth objects there are (at least 1).

    Returns:
        ``(precision, recall)``, each Tensor[D] float64: ``TP_k / k`` and ``TP_k / num_gt``.
        (COCOeval divides by ``TP_k + FP_k + eps``, which differs in the last bit.)
    """
    flags = torch.as_tensor(to_numpy(tp))
    if flags.ndim != 1:
        raise ValueError(f"tp must have shape [D], got {list(flags.shape)}")
    if isinstance(num_gt, bool) or not isinstance(num_gt, int | np.integer) or num_gt < 1:
        raise ValueError(f"num_gt must be an int >= 1 (recall needs objects), got {num_gt!r}")
    hits = torch.cumsum(flags.bool().to(torch.int64), 0)  # [D]
    ranks = torch.arange(1, len(flags) + 1)
    return hits.double() / ranks.double(), hits.double() / int(num_gt)


def precision_envelope(precision: ArrayLike) -> Tensor:
    """The best precision at each position or any later one (a running max from the right).

    Args:
        precision (Tensor[D]).

    Returns:
        Tensor[D] float64, never increasing.
    """
    p = torch.as_tensor(to_numpy(precision), dtype=torch.float64)
    if p.ndim != 1:
        raise ValueError(f"precision must have shape [D], got {list(p.shape)}")
    return torch.flip(torch.cummax(torch.flip(p, [0]), 0).values, [0])


def average_precision(precision: ArrayLike, recall: ArrayLike,
                      recall_thresholds: ArrayLike | None = None) -> float:
    """COCO's interpolated AP of one precision-recall curve.

    At each recall threshold ``r`` (default the 101 points ``np.linspace(0, 1, 101)``) take
    the envelope's precision at the first position whose recall is ``>= r``, or 0 where the
    recall never gets there; return the mean.

    Args:
        precision (Tensor[D]), recall (Tensor[D]): after each detection of a ranked list
            (recall never decreasing).

    Returns:
        float. An empty list gives 0.
    """
    p = torch.as_tensor(to_numpy(precision), dtype=torch.float64)
    r = torch.as_tensor(to_numpy(recall), dtype=torch.float64)
    if p.ndim != 1 or p.shape != r.shape:
        raise ValueError(f"precision and recall must both have shape [D], got {list(p.shape)} "
                         f"and {list(r.shape)}")
    if len(r) and bool((r[1:] < r[:-1]).any()):
        raise ValueError("recall must never decrease along the ranked list")
    for name, values in (("precision", p), ("recall", r)):
        if len(values) and not bool(((values >= 0) & (values <= 1)).all()):
            raise ValueError(f"{name} must lie in [0, 1], got values from "
                             f"{float(values.min()):.4g} to {float(values.max()):.4g}")
    points = np.linspace(0, 1, 101) if recall_thresholds is None else \
        np.asarray(to_numpy(recall_thresholds), dtype=np.float64)
    if not len(p):
        return 0.0
    envelope = precision_envelope(p).numpy()
    first = np.searchsorted(r.numpy(), points, side="left")  # first position with recall >= r
    sampled = np.zeros(len(points))
    reached = first < len(p)  # beyond the last recall reached, the precision is 0
    sampled[reached] = envelope[first[reached]]
    return float(np.mean(sampled))


def ap_over_thresholds(iou: ArrayLike, scores: ArrayLike,
                       thresholds: ArrayLike | None = None) -> float:
    """AP of one image and one class, averaged over IoU thresholds (COCO's AP@[.5:.95]).

    At each threshold (default ``np.linspace(.5, .95, 10)``), COCO's greedy matching
    (:func:`course.matching.greedy_match`) marks each detection TP or FP; the ranked list
    gives :func:`precision_recall`, and :func:`average_precision` its 101-point AP.

    Args:
        iou (Tensor[D, G]): IoU of each detection (row) with each ground-truth object.
        scores (Tensor[D]): detection confidences.

    Returns:
        float, the mean AP over the thresholds. Needs ``G >= 1``; no detections give 0.
    """
    iou_t = torch.as_tensor(to_numpy(iou), dtype=torch.float64)
    if iou_t.ndim != 2 or iou_t.shape[1] < 1:
        raise ValueError(f"iou must have shape [D, G] with G >= 1, got {list(iou_t.shape)}")
    s = torch.as_tensor(to_numpy(scores), dtype=torch.float64)
    order = torch.from_numpy(np.argsort(-s.numpy(), kind="stable"))
    levels = np.linspace(0.5, 0.95, 10) if thresholds is None else \
        np.asarray(to_numpy(thresholds), dtype=np.float64).reshape(-1)
    aps = []
    for t in levels:
        matched = greedy_match(iou_t, s, float(t)).pairs[:, 0]
        tp = torch.zeros(len(s), dtype=torch.bool)
        tp[matched] = True
        precision, recall = precision_recall(tp[order], iou_t.shape[1])
        aps.append(average_precision(precision, recall))
    return float(np.mean(aps))


# ---------------------------------------------------------------------------------------------
# The reference evaluator: COCOeval's loops
# ---------------------------------------------------------------------------------------------


def coco_evaluate_reference(ground_truth: Sequence[dict[str, Any]],
                            predictions: Sequence[dict[str, Any]], iou_type: str = "segm",
                            categories: Sequence[int] | None = None,
                            params: COCOParams | None = None) -> COCOResult:
    """:func:`coco_evaluate` written as COCOeval's loops read (slow; for teaching and tests).

    Per class and image: IoU of the score-sorted detections with the objects
    (:func:`course.masks.mask_iou` on decoded masks, COCO's box formula, or the OKS of
    keypoints, :func:`course.cocoeval.keypoints.keypoint_similarity`); per area range
    and threshold, the greedy matching one detection at a time; then, per class, area range
    and ``max_dets``, one ranked list over all images, its precision and recall, the envelope
    and the 101-point sampling. Same arguments and result as :func:`coco_evaluate`.
    """
    params = params or default_params(iou_type)
    params.check_iou_type(iou_type)
    dataset = prepare(ground_truth, predictions, iou_type, categories, None)
    dataset = select(dataset, params.image_ids, params.use_cats)
    num_k, num_a = len(dataset.categories), len(params.area_ranges)
    evaluations = [[[] for _ in range(num_a)] for _ in range(num_k)]  # [K][A] -> per image
    for k, category in enumerate(dataset.categories.tolist()):
        for image in dataset.images:
            gt = [j for j, c in enumerate(image.gt.labels.tolist()) if c == category]
            dt = [j for j, c in enumerate(image.dt.labels.tolist()) if c == category]
            dt = sorted(dt, key=lambda j: -image.dt.scores[j])  # sorted() is stable
            dt = dt[:params.max_dets[-1]]
            if not gt and not dt:
                continue
            ious = _reference_ious(image, dt, gt, dataset.iou_type, params)
            for a, (low, high) in enumerate(params.area_ranges):
                evaluations[k][a].append(
                    _evaluate_image(image, dt, gt, ious, low, high, params.iou_thresholds))
    precision = -np.ones((len(params.iou_thresholds), len(params.recall_thresholds), num_k,
                          num_a, len(params.max_dets)))
    recall = -np.ones((len(params.iou_thresholds), num_k, num_a, len(params.max_dets)))
    for k in range(num_k):
        for a in range(num_a):
            for m, max_det in enumerate(params.max_dets):
                curves = _accumulate_reference(evaluations[k][a], max_det, params)
                if curves is not None:
                    precision[:, :, k, a, m], recall[:, k, a, m] = curves
    return make_result(dataset, precision, recall, params)


def _reference_ious(image: Image, dt: list[int], gt: list[int], iou_type: str,
                    params: COCOParams) -> np.ndarray:
    """IoU (OKS) ``[len(dt), len(gt)]`` of the chosen detections and objects of one image."""
    if iou_type == "keypoints":
        d, g = image.dt.geometry, image.gt.geometry
        return np.array([[keypoint_similarity(d.points[i], g.points[j], g.boxes[j],
                                              image.gt.area[j], params.keypoint_sigmas)
                          for j in gt] for i in dt]).reshape(len(dt), len(gt))
    if iou_type == "segm":
        d = image.dt.geometry.select(dt).to_dense()
        g = image.gt.geometry.select(gt).to_dense()
        return mask_iou(torch.from_numpy(d), torch.from_numpy(g),
                        torch.from_numpy(image.gt.crowd[gt])).numpy()
    d = image.dt.geometry[dt].reshape(-1, 1, 4)  # [D, 1, 4] COCO (x, y, w, h)
    g = image.gt.geometry[gt].reshape(1, -1, 4)  # [1, G, 4]
    return coco_box_iou(d, g, image.gt.crowd[gt])  # [D, G], pycocotools' bbIou


def _evaluate_image(image: Image, dt: list[int], gt: list[int], ious: np.ndarray,
                    low: float, high: float, thresholds: Sequence[float]) -> dict[str, Any]:
    """COCOeval.evaluateImg for one image, class and area range."""
    gt_ignore = [bool(image.gt.ignore[j]) or not low <= image.gt.area[j] <= high for j in gt]
    gt_order = sorted(range(len(gt)), key=lambda j: gt_ignore[j])  # counted objects first
    crowd = [bool(image.gt.crowd[gt[j]]) for j in gt_order]
    ignored = [gt_ignore[j] for j in gt_order]
    matches, matched_ignored = [], []  # per threshold, per detection
    for t in thresholds:
        taken = [False] * len(gt_order)
        match_row, ignored_row = [], []
        for d in range(len(dt)):
            best, m = min(t, 1 - 1e-10), -1
            for pos, j in enumerate(gt_order):
                if taken[pos] and not crowd[pos]:
                    continue  # already matched, and not a crowd
                if m > -1 and not ignored[m] and ignored[pos]:
                    break  # a counted object is matched; ignored ones come after
                if ious[d, j] < best:
                    continue
                best, m = ious[d, j], pos
            if m > -1:
                taken[m] = True
            match_row.append(m > -1)
            ignored_row.append(m > -1 and ignored[m])
        matches.append(match_row)
        matched_ignored.append(ignored_row)
    outside = [not low <= image.dt.area[j] <= high for j in dt]
    return {"scores": [float(image.dt.scores[j]) for j in dt], "matches": matches,
            "matched_ignored": matched_ignored, "outside": outside,
            "num_counted": sum(not g for g in gt_ignore)}


def _accumulate_reference(evaluations: list[dict[str, Any]], max_det: int, params: COCOParams
                          ) -> tuple[np.ndarray, np.ndarray] | None:
    """One ranked list over all images; precision at the recall points and final recall."""
    num_gt = sum(e["num_counted"] for e in evaluations)
    if num_gt == 0:
        return None
    entries = []  # (score, image position, rank, index into evaluations)
    for i, e in enumerate(evaluations):
        for d, score in enumerate(e["scores"][:max_det]):
            entries.append((-score, i, d))
    entries.sort()  # by score, then image, then rank: COCOeval's stable merge sort
    precision = np.zeros((len(params.iou_thresholds), len(params.recall_thresholds)))
    recall = np.zeros(len(params.iou_thresholds))
    for t in range(len(params.iou_thresholds)):
        tp = fp = 0
        prec, rec = [], []
        for _, i, d in entries:
            e = evaluations[i]
            if e["matches"][t][d] and not e["matched_ignored"][t][d]:
                tp += 1
            elif not e["matches"][t][d] and not e["outside"][d]:
                fp += 1
            rec.append(tp / num_gt)
            prec.append(tp / (fp + tp + engine.EPS))
        recall[t] = rec[-1] if rec else 0
        for i in range(len(prec) - 1, 0, -1):  # the envelope, from the right
            prec[i - 1] = max(prec[i - 1], prec[i])
        for r, point in enumerate(params.recall_thresholds):
            first = next((i for i, value in enumerate(rec) if value >= point), None)
            precision[t, r] = prec[first] if first is not None else 0.0
    return precision, recall
