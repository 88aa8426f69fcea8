"""The fast COCOeval: every image and class at once, in numpy arrays.

:func:`evaluate` computes what pycocotools' ``COCOeval.evaluate()`` and ``accumulate()``
compute, bit for bit, from a :class:`~course.cocoeval.dataset.Dataset`; the steps are

1. :func:`pack`: all objects of all images in flat arrays sorted by (class, image), the
   detections by descending score within each, cut at ``max_dets[-1]``;
2. :func:`pair_ious`: every (detection, ground truth) pair of the same image and class, and
   its IoU: boxes by :func:`course.cocoeval.common.coco_box_iou`, masks from run lengths
   without decoding them, keypoints by their OKS (:func:`course.cocoeval.keypoints.pair_oks`),
   which takes IoU's place;
3. :func:`match`: COCO's greedy matching for every area range and IoU threshold at once;
4. :func:`accumulate`: precision at the 101 recall points and the recall reached.

Chapter 03 teaches the same steps on one ranked list, and :mod:`course.ap` holds them in
readable form, with ``coco_evaluate_reference``, COCOeval's loops, which the tests hold this
engine to. numpy only: nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from course.cocoeval.common import coco_box_iou, ragged_arange
from course.cocoeval.dataset import Dataset
from course.cocoeval.keypoints import Keypoints, pair_oks

if TYPE_CHECKING:  # the parameters live with the chapter's code; only their fields are read
    from course.cocoeval.result import COCOParams

EPS = np.spacing(1)
"""What COCOeval adds to ``TP + FP`` when it divides: ``precision = TP / (TP + FP + eps)``."""


def evaluate(dataset: Dataset, params: COCOParams) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's ``evaluate`` and ``accumulate`` on a prepared dataset.

    Returns:
        ``(precision [T, R, K, A, M], recall [T, K, A, M])`` in COCOeval's layout, -1 where
        a class has no objects that count.
    """
    gt, dt = pack(dataset, params)
    pair_dt, pair_gt, pair_iou = pair_ious(gt, dt, dataset.iou_type, params)
    matched_gt = match(gt, dt, pair_dt, pair_gt, pair_iou, params)
    return accumulate(gt, dt, matched_gt, len(dataset.categories), params)


@dataclass
class Packed:
    """All objects of all images in flat arrays, sorted by (class, image, own order).

    Detections are also sorted by descending score within each (class, image) group
    (``rank`` is the position there) and cut at ``max_dets[-1]``. ``geometry`` stays in the
    images' order; ``source`` maps each sorted object to its place there.
    """

    group: np.ndarray  # [N] class index * num_images + image index
    cls: np.ndarray  # [N] class index
    area: np.ndarray  # [N] for the area ranges
    crowd: np.ndarray  # [N]
    ignore: np.ndarray  # [N] COCOeval's gt['ignore']: crowd, or a person without keypoints
    score: np.ndarray  # [N]
    rank: np.ndarray  # [N] position within the group (detections)
    source: np.ndarray  # [N] index into geometry
    geometry: Any  # (counts, offsets, heights, pixels) segm, [N0, 4] xywh bbox, Keypoints


def _concat_geometry(parts: list[Any], iou_type: str) -> Any:
    if iou_type == "bbox":
        return np.concatenate(parts) if parts else np.zeros((0, 4))
    if iou_type == "keypoints":
        return Keypoints.concatenate(parts)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(1, dtype=np.int64), empty, empty
    counts = np.concatenate([p.counts for p in parts])
    lengths = np.concatenate([np.diff(p.offsets) for p in parts])
    sizes = np.array([(len(p), p.height, p.width) for p in parts], dtype=np.int64)
    heights = np.repeat(sizes[:, 1], sizes[:, 0])
    pixels = np.repeat(sizes[:, 1] * sizes[:, 2], sizes[:, 0])
    return counts, np.concatenate([[0], np.cumsum(lengths)]), heights, pixels


def pack(dataset: Dataset, params: COCOParams) -> tuple[Packed, Packed]:
    """The ground truth and the detections of every image as two :class:`Packed`."""
    num_images = len(dataset.images)
    cats = dataset.categories
    packed = []
    for side in ("gt", "dt"):
        objs = [getattr(im, side) for im in dataset.images]
        image = np.repeat(np.arange(num_images), [len(o.labels) for o in objs])
        labels = np.concatenate([o.labels for o in objs] + [np.zeros(0, np.int64)])
        group = np.searchsorted(cats, labels) * num_images + image
        score = np.concatenate([o.scores for o in objs] + [np.zeros(0)])
        if side == "gt":
            order = np.argsort(group, kind="stable")
        else:
            by_score = np.argsort(-score, kind="stable")  # mutation site: the stable score sort
            order = by_score[np.argsort(group[by_score], kind="stable")]
        group = group[order]
        rank = np.arange(len(group)) - np.searchsorted(group, group, side="left")
        if side == "dt":  # at most max_dets[-1] detections per image and class
            within = rank < params.max_dets[-1]
            order, group, rank = order[within], group[within], rank[within]
        packed.append(Packed(
            group=group, cls=group // max(num_images, 1),
            area=np.concatenate([o.area for o in objs] + [np.zeros(0)])[order],
            crowd=np.concatenate([o.crowd for o in objs] + [np.zeros(0, bool)])[order],
            ignore=np.concatenate([o.ignore for o in objs] + [np.zeros(0, bool)])[order],
            score=score[order], rank=rank, source=order,
            geometry=_concat_geometry([o.geometry for o in objs], dataset.iou_type)))
    return packed[0], packed[1]


def _candidate_pairs(gt: Packed, dt: Packed) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, ground truth) pair of the same image and class: two [P] index arrays."""
    first = np.searchsorted(gt.group, dt.group, side="left")
    count = np.searchsorted(gt.group, dt.group, side="right") - first
    pair_dt = np.repeat(np.arange(len(dt.group)), count)
    pair_gt = np.repeat(first, count) + ragged_arange(count)
    return pair_dt, pair_gt


def pair_ious(gt: Packed, dt: Packed, iou_type: str, params: COCOParams
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU (OKS for keypoints) of every candidate pair: ``(pair_dt, pair_gt, iou)``, pairs
    sorted by detection."""
    pair_dt, pair_gt = _candidate_pairs(gt, dt)
    d, g = dt.source[pair_dt], gt.source[pair_gt]
    if iou_type == "bbox":
        iou = coco_box_iou(dt.geometry[d], gt.geometry[g], gt.crowd[pair_gt])
    elif iou_type == "keypoints":  # crowd regions have no rule of their own here
        iou = pair_oks(dt.geometry.points[d], gt.geometry.points[g], gt.geometry.boxes[g],
                       gt.area[pair_gt], params.keypoint_sigmas)
    else:
        iou = _mask_iou_pairs(dt.geometry, gt.geometry, d, g, gt.crowd[pair_gt])
    return pair_dt, pair_gt, iou


@dataclass
class _Line:
    """Packed masks laid end to end on one line of pixels, mask ``i`` in block ``base[i]``.

    The counts of all masks, read in a row, are then the runs of that line; ``start`` and
    ``length`` are its foreground runs, ``first[i]:first[i + 1]`` those of mask ``i``.
    """

    base: np.ndarray  # [N] where each mask's block starts
    start: np.ndarray  # [K] first pixel of each foreground run, on the line
    length: np.ndarray  # [K]
    owner: np.ndarray  # [K] mask of each run
    first: np.ndarray  # [N + 1]
    area: np.ndarray  # [N] pixel count
    box: np.ndarray  # [N, 4] inclusive (col0, row0, col1, row1); empty: (0, 0, -1, -1)


def _line(geometry: Any) -> _Line:
    counts, offsets, heights, pixels = geometry
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    before = np.cumsum(counts) - counts  # each mask's counts add up to its pixels
    odd = (np.arange(len(counts)) - np.repeat(offsets[:-1], lengths)) % 2 == 1
    fg = np.flatnonzero(odd & (counts > 0))
    start, length = before[fg], counts[fg]
    owner = np.repeat(np.arange(n), lengths)[fg]
    base = np.cumsum(pixels) - pixels
    first = np.searchsorted(owner, np.arange(n + 1))
    area = np.bincount(owner, weights=length, minlength=n).astype(np.int64)
    return _Line(base, start, length, owner, first, area,
                 _tight_boxes(start - base[owner], length, owner, first, heights))


def _tight_boxes(start: np.ndarray, length: np.ndarray, owner: np.ndarray, first: np.ndarray,
                 heights: np.ndarray) -> np.ndarray:
    """Inclusive ``(col0, row0, col1, row1)`` of each mask from its runs (column-major)."""
    n = len(first) - 1
    out = np.tile(np.array([0, 0, -1, -1]), (n, 1))
    if not len(start):
        return out
    h = heights[0] if (heights == heights[0]).all() else heights[owner]
    c0, r0 = np.divmod(start, h)
    c1, r1 = np.divmod(start + length - 1, h)
    wraps = c1 > c0  # a run over a column boundary touches the top and the bottom row
    r0[wraps], r1[wraps] = 0, (h if np.ndim(h) == 0 else h[wraps]) - 1
    has = np.flatnonzero(first[1:] > first[:-1])
    at = first[has]
    out[has, 0] = np.minimum.reduceat(c0, at)
    out[has, 1] = np.minimum.reduceat(r0, at)
    out[has, 2] = np.maximum.reduceat(c1, at)
    out[has, 3] = np.maximum.reduceat(r1, at)
    return out


def _mask_iou_pairs(dt_geometry: Any, gt_geometry: Any, d: np.ndarray, g: np.ndarray,
                    crowd: np.ndarray) -> np.ndarray:
    """Mask IoU of the pairs ``(d[p], g[p])`` from run lengths, where their boxes overlap.

    On the ground truth's line (:class:`_Line`), ``F(x)``, the number of foreground pixels
    before ``x``, is piecewise linear with a kink at each run end. A detection's run
    ``[s, e)`` moved into the block of ground truth ``g`` overlaps ``g`` in ``F(e) - F(s)``
    pixels, so the intersection of a pair is a sum of ``F`` differences over the
    detection's runs: one ``searchsorted`` answers all pairs at once.
    """
    dl, gl = _line(dt_geometry), _line(gt_geometry)
    a, b = dl.box[d], gl.box[g]
    near = np.flatnonzero((np.minimum(a[:, 2], b[:, 2]) >= np.maximum(a[:, 0], b[:, 0])) &
                          (np.minimum(a[:, 3], b[:, 3]) >= np.maximum(a[:, 1], b[:, 1])))
    nd, ng = d[near], g[near]
    runs = dl.first[nd + 1] - dl.first[nd]  # [P'] runs of each pair's detection
    run = np.repeat(dl.first[nd], runs) + ragged_arange(runs)  # [Q]
    s = dl.start[run] + np.repeat(gl.base[ng] - dl.base[nd], runs)  # into g's block
    line_start = np.concatenate([[-1], gl.start])  # a sentinel run before everything
    line_len = np.concatenate([[0], gl.length])
    line_before = np.cumsum(line_len) - line_len

    def coverage(x: np.ndarray) -> np.ndarray:  # F(x); run i starts at or before x
        i = np.searchsorted(line_start, x, side="right") - 1
        return line_before[i] + np.minimum(x - line_start[i], line_len[i])

    inside = coverage(s + dl.length[run]) - coverage(s)
    inter = np.zeros(len(d), dtype=np.int64)
    inter[near] = np.bincount(np.repeat(np.arange(len(near)), runs), weights=inside,
                              minlength=len(near)).astype(np.int64)
    area_d, area_g = dl.area[d], gl.area[g]
    union = np.where(crowd, area_d, area_d + area_g - inter)
    out = np.zeros(len(d))
    hit = inter > 0
    out[hit] = inter[hit] / union[hit]
    return out


def _outside(area: np.ndarray, low: float, high: float) -> np.ndarray:
    """Whether each area falls outside ``[low, high]`` (bounds included in the range)."""
    return (area < low) | (area > high)  # mutation site: inclusive area bounds


def match(gt: Packed, dt: Packed, pair_dt: np.ndarray, pair_gt: np.ndarray,
           pair_iou: np.ndarray, params: COCOParams) -> np.ndarray:
    """COCO's greedy matching for every area range and IoU threshold at once.

    Detections are visited rank by rank (the best-scored of every image and class first,
    then the second, ...), so the loop runs at most ``max_dets[-1]`` times; within a step
    every (area range, threshold, detection) is decided by array operations.

    Returns:
        np.ndarray[A, T, D] int64: the matched ground truth of each detection, -1 if none.
    """
    thresholds = np.minimum(np.asarray(params.iou_thresholds), 1 - 1e-10)  # as COCOeval
    num_a, num_t = len(params.area_ranges), len(thresholds)
    ignore = np.stack([gt.ignore | _outside(gt.area, *r) for r in params.area_ranges])  # [A, G]
    keep = pair_iou >= thresholds.min()  # pairs that can match at some threshold
    e_dt, e_gt, e_iou = pair_dt[keep], pair_gt[keep], pair_iou[keep]
    e_rank = dt.rank[e_dt]
    # per area range: edges by (rank, detection), then by preference within a detection:
    # ignored objects before counted ones, then IoU, then position (the last one wins)
    order = np.stack([np.lexsort((e_gt, e_iou, ~ignore[a, e_gt], e_dt, e_rank))
                      for a in range(num_a)])  # [A, E]
    by_rank = e_rank[order[0]]
    matched = np.full((num_a, num_t, len(dt.group)), -1, dtype=np.int64)
    taken = np.zeros((num_a, num_t, len(gt.group)), dtype=bool)
    a_ix, t_ix = np.arange(num_a)[:, None, None], np.arange(num_t)[None, :, None]
    for r in np.unique(by_rank):
        lo, hi = np.searchsorted(by_rank, [r, r + 1])
        edges = order[:, lo:hi]  # [A, E_r]
        det = e_dt[edges[0]]
        seg = np.flatnonzero(np.diff(det, prepend=-1))  # where each detection's edges start
        g = e_gt[edges]  # [A, E_r]
        ok = e_iou[edges][:, None, :] >= thresholds[None, :, None]  # mutation site: IoU >= t
        ok &= gt.crowd[g][:, None, :] | ~taken[a_ix, t_ix, g[:, None, :]]  # [A, T, E_r]
        pos = np.where(ok, np.arange(hi - lo), -1)
        best = np.maximum.reduceat(pos, seg, axis=2)  # [A, T, S]: last eligible edge
        aa, tt, ss = np.nonzero(best >= seg)
        chosen = g[aa, best[aa, tt, ss]]
        taken[aa, tt, chosen] = True
        matched[aa, tt, det[seg[ss]]] = chosen
    return matched


def accumulate(gt: Packed, dt: Packed, matched: np.ndarray, num_classes: int,
                params: COCOParams) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.accumulate: precision [T, R, K, A, M] and recall [T, K, A, M]."""
    ranges, max_dets = params.area_ranges, params.max_dets
    num_t, num_r = len(params.iou_thresholds), len(params.recall_thresholds)
    num_a, num_m = len(ranges), len(max_dets)
    rec_thr = np.asarray(params.recall_thresholds, dtype=np.float64)
    precision = -np.ones((num_t, num_r, num_classes, num_a, num_m))
    recall = -np.ones((num_t, num_classes, num_a, num_m))
    gt_ignore = np.stack([gt.ignore | _outside(gt.area, *r) for r in ranges])  # [A, G]
    dt_outside = np.stack([_outside(dt.area, *r) for r in ranges])  # [A, D]
    hit = matched >= 0  # [A, T, D]
    spare = np.pad(gt_ignore, ((0, 0), (0, 1)))  # one more column: there may be no object
    hit_ignored = hit & spare[np.arange(num_a)[:, None, None], np.maximum(matched, 0)]
    tp_all = hit & ~hit_ignored  # matched to an object that counts
    fp_all = ~hit & ~dt_outside[:, None, :]  # unmatched, and of a size that counts
    npig = np.stack([np.bincount(gt.cls[~gt_ignore[a]], minlength=num_classes)
                     for a in range(num_a)], axis=1)  # [K, A] objects that count
    # all images' detections of a class by descending score; ties by image, then rank
    order = np.lexsort((-dt.score, dt.cls))
    bounds = np.searchsorted(dt.cls[order], np.arange(num_classes + 1))
    for k in range(num_classes):
        ranked = order[bounds[k]:bounds[k + 1]]
        for a in np.flatnonzero(npig[k] > 0):
            for m, max_det in enumerate(max_dets):
                keep = ranked[dt.rank[ranked] < max_det]  # the first max_det of each image
                q, rc = _interpolated_precision(tp_all[a][:, keep], fp_all[a][:, keep],
                                                int(npig[k, a]), rec_thr)
                precision[:, :, k, a, m] = q
                recall[:, k, a, m] = rc
    return precision, recall


def _interpolated_precision(tp: np.ndarray, fp: np.ndarray, num_gt: int, rec_thr: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Precision at the recall points, and the recall reached, for one ranked list per threshold.

    Args:
        tp, fp (np.ndarray[T, n]): flags along the list (an ignored detection is neither).
        num_gt: objects that count (> 0).

    Returns:
        ``(q [T, R], recall [T])``, as COCOeval.accumulate computes them.
    """
    num_t, n = tp.shape
    if n == 0:
        return np.zeros((num_t, len(rec_thr))), np.zeros(num_t)
    tp_sum = np.cumsum(tp, axis=1).astype(float)
    fp_sum = np.cumsum(fp, axis=1).astype(float)
    pr = tp_sum / (fp_sum + tp_sum + EPS)
    envelope = np.flip(np.maximum.accumulate(np.flip(pr, 1), axis=1), 1)
    # np.searchsorted(recall, r, "left") for every row without a loop: recall takes only the
    # values j / num_gt, so the first position reaching r is where the TP count first reaches
    # the smallest j with j / num_gt >= r (position 0 for j = 0)
    need = np.searchsorted(np.arange(num_gt + 1) / num_gt, rec_thr, side="left")  # [R]
    row_of, col_of = np.nonzero(tp)  # TP positions, row by row
    row_start = np.searchsorted(row_of, np.arange(num_t))
    num_tp = np.bincount(row_of, minlength=num_t)
    at = np.clip(row_start[:, None] + need[None, :] - 1, 0, max(len(col_of) - 1, 0))  # [T, R]
    first = col_of[at] if len(col_of) else np.full(at.shape, n)
    first = np.where(need[None, :] == 0, 0, first)
    first = np.where(need[None, :] <= num_tp[:, None], first, n)  # never reached: 0 below
    q = np.where(first < n, np.take_along_axis(envelope, np.minimum(first, n - 1), axis=1), 0.0)
    return q, tp_sum[:, -1] / num_gt

