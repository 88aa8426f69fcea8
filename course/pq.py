"""Panoptic Quality (PQ), exactly as panopticapi's ``pq_compute`` computes it.

A panoptic segmentation gives every pixel at most one segment: an ``[H, W]`` map of segment
ids (``void``, 0, where unlabelled) and, for each map, its segments ``{id: (category_id,
iscrowd)}`` or panopticapi's ``segments_info`` list. How these are read, written as PNG
colours and converted from the ``(category, instance)`` pair encoding is
:mod:`course.panoptic_format`; its functions are importable from here too.

Per image, :func:`pq_stats` counts, for each category, ``iou_sum``, ``tp``, ``fp`` and ``fn``:

- a ground-truth segment ``g`` and a predicted segment ``p`` **match** when they have the same
  category, ``g`` is not crowd, and ``IoU > 0.5`` strictly, where the pixels of ``p`` on
  unlabelled ground truth do not count:
  ``IoU = |g & p| / (|p| + |g| - |g & p| - |p & void|)``. Above 0.5 a segment can match at most
  one partner (chapter 04 proves it), so no assignment problem is solved;
- every unmatched non-crowd ground-truth segment is a false negative;
- an unmatched prediction is a false positive unless more than half of it lies on void and on
  the crowd region of its own category, the two **summed**:
  ``(|p & void| + |p & crowd(category of p)|) / |p| > 0.5`` means ignored.

Over images, :func:`panoptic_quality` adds the counts and gives per category

    PQ = iou_sum / (tp + fp / 2 + fn / 2),   SQ = iou_sum / tp,   RQ = tp / (tp + fp / 2 + fn / 2)

so ``PQ = SQ x RQ`` for each category. The reported PQ, SQ and RQ are plain means over the
categories with ``tp + fp + fn > 0``, and a mean of products is not the product of means:
the averaged PQ is *not* the averaged SQ times the averaged RQ.

Three details of panopticapi are kept so that the numbers agree with it:

- the area of a ground-truth segment in the union is the ``area`` its ``segments_info`` entry
  lists, where it lists one (COCO's json files do), not its pixels in the map; the two agree
  on well-made files. A predicted segment's area is always counted in the map;
- one crowd region per category and image: when several crowd segments share a category, only
  the last one listed counts for the false-positive rule (panopticapi keeps them in a dict
  keyed by category);
- a ground-truth segment listed but absent from the map is a false negative; a predicted
  segment listed but absent from the map is an error.

Where torchmetrics' ``PanopticQuality`` differs (``rule="torchmetrics"`` reproduces it):

- it has no crowd: every segment is an ordinary one, and can match or be a false negative;
- the union also leaves out the ground-truth pixels that are *predicted* void,
  ``IoU = |g & p| / (|p| - |p & void_gt| + |g| - |g & void_pred| - |g & p|)``, and an
  unmatched ground-truth segment more than half predicted void is not a false negative;
- it divides two int64 tensors, which gives float32, so its ``iou_sum`` differs from ours in
  about the seventh digit (the counts are the same).

The per-image work is NumPy: for one image's maps, single-threaded NumPy is several times
faster than torch's thread pool. Results are torch tensors.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course.panoptic_format import (
    IdMap,
    Segments,
    SegmentTable,
    as_categories,
    as_id_map,
    as_segments,
    check_void,
    id_array,
    id_to_rgb,
    pairs_to_panoptic,
    panoptic_to_pairs,
    rgb_to_id,
    segment_rows,
    semantic_map,
)

__all__ = [
    "RULES", "IdMap", "PQStats", "SegmentTable", "Segments", "as_id_map", "as_segments",
    "classify_failures", "id_to_rgb", "overlap_counts", "pairs_to_panoptic", "panoptic_quality",
    "panoptic_to_pairs", "pq_from_counts", "pq_stats", "pq_stats_loop", "pq_table", "rgb_to_id",
    "semantic_map",
]

RULES = ("panopticapi", "torchmetrics")
_INT64_MAX = np.iinfo(np.int64).max


# ---------------------------------------------------------------------------------------------
# The pixel counts of every pair of segments
# ---------------------------------------------------------------------------------------------


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    return rule


def _check_same_shape(gt_ids: np.ndarray, pred_ids: np.ndarray) -> None:
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"gt_ids and pred_ids must have the same shape, got "
                         f"{list(gt_ids.shape)} and {list(pred_ids.shape)}")


def _pixel_pairs(gt_ids: np.ndarray, pred_ids: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``(ground-truth id, predicted id)`` found together on a pixel, with its count.

    panopticapi packs each pixel's two ids into one integer and counts the distinct values
    with ``np.unique``, a sort of every pixel. A panoptic map is made of regions, so along
    the rows the pair changes only a few thousand times in a 512x512 image: here the pixels
    are cut into runs of one pair first, and only the runs are packed, sorted and added up.

    Returns:
        ``(gt, pred, count)``: ndarray[T] int64 each, in ascending ``(gt, pred)`` order.
    """
    g, p = gt_ids.ravel(), pred_ids.ravel()  # [HW]
    if not g.size:
        return g[:0], p[:0], np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero((g[1:] != g[:-1]) | (p[1:] != p[:-1])) + 1  # where a run starts
    starts = np.concatenate((np.zeros(1, dtype=starts.dtype), starts))  # [R]
    lengths = np.empty_like(starts)  # [R]
    lengths[:-1] = starts[1:] - starts[:-1]
    lengths[-1] = len(g) - starts[-1]
    run_g, run_p = g[starts], p[starts]  # [R] every id of a map appears at some run's start
    g_top, p_top = int(run_g.max()), int(run_p.max())
    if g_top * (p_top + 1) + p_top > _INT64_MAX:  # too large to pack: number the ids first
        (g_values, run_g), (p_values, run_p) = (np.unique(r, return_inverse=True)
                                                for r in (run_g, run_p))
        g_top, p_top = len(g_values) - 1, len(p_values) - 1
    else:
        g_values = p_values = None
    keys = run_g * (p_top + 1) + run_p  # [R] one key per (gt id, pred id)
    order = np.argsort(keys)  # [R]
    keys = keys[order]
    first = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    first = np.concatenate((np.zeros(1, dtype=first.dtype), first))  # [T] first run of a key
    count = np.add.reduceat(lengths[order], first)  # [T]
    gt, pred = np.divmod(keys[first], p_top + 1)
    if g_values is not None:
        gt, pred = g_values[gt], p_values[pred]
    return gt, pred, count


@dataclass(frozen=True)
class _Overlaps:
    """The pixel counts :func:`pq_stats` reads, by row of the segment tables.

    ``gt``, ``pred``, ``inter`` (ndarray[T]): the pairs of segments that share pixels and how
    many; ``gt_area``, ``predicted_void`` (ndarray[G]); ``pred_area``, ``on_void`` (ndarray[P]):
    each segment's pixels, and those on the other map's void.
    """

    gt: np.ndarray
    pred: np.ndarray
    inter: np.ndarray
    gt_area: np.ndarray
    predicted_void: np.ndarray
    pred_area: np.ndarray
    on_void: np.ndarray


def _overlaps(gt_ids: np.ndarray, gt: SegmentTable, pred_ids: np.ndarray, pred: SegmentTable,
              void: int) -> _Overlaps:
    """Count the pixel pairs of the two maps and sort them by segment; checks every id."""
    g_id, p_id, n = _pixel_pairs(gt_ids, pred_ids)  # [T']
    g = segment_rows(g_id, gt, void, "gt_ids")  # [T'] row + 1, 0 for void
    p = segment_rows(p_id, pred, void, "pred_ids")  # [T']

    def pixels(rows: np.ndarray, where: np.ndarray | None, size: int) -> np.ndarray:
        rows, weights = (rows, n) if where is None else (rows[where], n[where])
        return np.bincount(rows, weights=weights, minlength=size)[1:].astype(np.int64)

    on_gt_void, on_pred_void = g == 0, p == 0  # [T']
    both = ~(on_gt_void | on_pred_void)
    return _Overlaps(g[both] - 1, p[both] - 1, n[both],
                     pixels(g, None, len(gt) + 1), pixels(g, on_pred_void, len(gt) + 1),
                     pixels(p, None, len(pred) + 1), pixels(p, on_gt_void, len(pred) + 1))


def overlap_counts(gt_ids: IdMap, pred_ids: IdMap, void: int = 0
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel counts of every ground-truth segment against every predicted segment.

    Args:
        gt_ids (Tensor[H, W]): ground-truth segment ids, ``void`` for unlabelled.
        pred_ids (Tensor[H, W]): predicted segment ids, ``void`` for unlabelled.
        void (int): the id of unlabelled pixels.

    Returns:
        ``(gt_segments, pred_segments, counts)``: the segment ids present in each map
        (``Tensor[G]``, ``Tensor[P]``, ascending, void left out) and ``Tensor[G + 1, P + 1]``
        int64 pixel counts, row 0 and column 0 being void. ``counts[1:, 1:]`` are the
        intersections; ``counts[1:].sum(1)`` the ground-truth areas.
    """
    void = check_void(void)
    gt_ids, pred_ids = id_array(gt_ids, "gt_ids"), id_array(pred_ids, "pred_ids")
    _check_same_shape(gt_ids, pred_ids)
    g_id, p_id, n = _pixel_pairs(gt_ids, pred_ids)  # [T]
    gt_present, pred_present = np.setdiff1d(g_id, [void]), np.setdiff1d(p_id, [void])  # [G], [P]
    rows = np.where(g_id == void, 0, np.searchsorted(gt_present, g_id) + 1)  # [T]
    cols = np.where(p_id == void, 0, np.searchsorted(pred_present, p_id) + 1)  # [T]
    counts = np.zeros((len(gt_present) + 1, len(pred_present) + 1), dtype=np.int64)
    counts[rows, cols] = n  # each pair once
    return (torch.from_numpy(gt_present.astype(np.int64)),
            torch.from_numpy(pred_present.astype(np.int64)), torch.from_numpy(counts))


# ---------------------------------------------------------------------------------------------
# Per image
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PQStats:
    """Per-category PQ counts, for one image or summed over many (``a + b``).

    Attributes:
        categories (Tensor[K]): int64 category ids, ascending.
        iou_sum (Tensor[K]): float64 sum of the IoUs of the matched pairs.
        tp, fp, fn (Tensor[K]): int64 counts.
    """

    categories: Tensor
    iou_sum: Tensor
    tp: Tensor
    fp: Tensor
    fn: Tensor

    @staticmethod
    def empty() -> PQStats:
        """No categories at all (the start of a sum)."""
        z = torch.zeros(0, dtype=torch.int64)
        return PQStats(z, torch.zeros(0, dtype=torch.float64), z, z, z)

    def __add__(self, other: PQStats) -> PQStats:
        if not isinstance(other, PQStats):
            return NotImplemented
        cats = torch.unique(torch.cat([self.categories, other.categories]))  # [K]
        out = []
        for field in ("iou_sum", "tp", "fp", "fn"):
            a, b = getattr(self, field), getattr(other, field)
            total = torch.zeros(len(cats), dtype=a.dtype)
            total = total.index_add(0, torch.searchsorted(cats, self.categories), a)
            out.append(total.index_add(0, torch.searchsorted(cats, other.categories), b))
        return PQStats(cats, *out)

    def as_dict(self) -> dict[int, list[float | int]]:
        """``{category_id: [iou_sum, tp, fp, fn]}``."""
        rows = zip(self.categories.tolist(), self.iou_sum.tolist(), self.tp.tolist(),
                   self.fp.tolist(), self.fn.tolist(), strict=True)
        return {c: [i, t, p, n] for c, i, t, p, n in rows}

    def __repr__(self) -> str:
        rows = ", ".join(f"{c}: iou_sum={v[0]:.4f} tp={v[1]} fp={v[2]} fn={v[3]}"
                         for c, v in self.as_dict().items())
        return f"PQStats({rows})"


def _prepare(gt_ids: IdMap, gt_segments: Segments, pred_ids: IdMap, pred_segments: Segments,
             void: int, categories: Collection[int] | None, rule: str
             ) -> tuple[np.ndarray, SegmentTable, np.ndarray, SegmentTable, np.ndarray]:
    void, rule = check_void(void), _check_rule(rule)
    gt_ids, pred_ids = id_array(gt_ids, "gt_ids"), id_array(pred_ids, "pred_ids")
    _check_same_shape(gt_ids, pred_ids)
    gt = as_segments(gt_segments, "gt_segments", void)
    pred = as_segments(pred_segments, "pred_segments", void, prediction=True)
    cats = np.array(sorted({*gt.categories.tolist(), *pred.categories.tolist()}),
                    dtype=np.int64)  # [K] every category of either list, ascending
    if categories is not None:
        known = as_categories(categories, "categories")
        bad = sorted(set(cats.tolist()) - set(known))
        if bad:
            raise ValueError(f"unknown category id(s) {bad}: not in categories {sorted(known)}")
        cats = np.array(sorted(known), dtype=np.int64)
    return gt_ids, gt, pred_ids, pred, cats


def pq_stats(gt_ids: IdMap, gt_segments: Segments, pred_ids: IdMap, pred_segments: Segments,
             void: int = 0, *, categories: Collection[int] | None = None,
             rule: str = "panopticapi") -> PQStats:
    """Per-category ``iou_sum``, ``tp``, ``fp``, ``fn`` of one image (see the module docstring).

    Vectorised: the pixel count of every pair of segments that meet, read off the maps at
    once, gives every intersection, area and void overlap; :func:`pq_stats_loop` is the same
    computation written as the definition reads. For the ``(category, instance)`` pair
    encoding, convert first:
    ``pq_stats(*pairs_to_panoptic(gt, things, stuffs), *pairs_to_panoptic(pred, things, stuffs))``.

    Args:
        gt_ids (Tensor[H, W]): ground-truth segment ids, ``void`` where unlabelled.
        gt_segments: ``{id: (category_id, iscrowd)}`` or panopticapi's ``segments_info`` list
            (whose ``area``, where given, is the segment's area in the union; see above).
        pred_ids (Tensor[H, W]): predicted segment ids, ``void`` where nothing is predicted.
        pred_segments: as ``gt_segments`` (``iscrowd`` and ``area`` are not read).
        void (int): the id of unlabelled pixels.
        categories (collection of int, optional): the known categories; a segment of another
            category is an error, and every known category gets a row (zeros if absent).
        rule (str): ``"panopticapi"`` or ``"torchmetrics"`` (see the module docstring).

    Returns:
        PQStats over the categories of both segment lists (or ``categories``).

    Raises:
        ValueError: maps of different shapes, a negative id, an id in a map but not in its
            segments, a listed prediction with no pixels, or an unknown category.
    """
    gt_ids, gt, pred_ids, pred, cats = _prepare(gt_ids, gt_segments, pred_ids, pred_segments,
                                                void, categories, rule)
    o = _overlaps(gt_ids, gt, pred_ids, pred, void)
    _check_predictions_present(o.pred_area, pred)
    panopticapi = rule == "panopticapi"
    g, p, inter = o.gt, o.pred, o.inter  # [T] the pairs of segments that share pixels

    gt_area = np.where(gt.area >= 0, gt.area, o.gt_area) if panopticapi else o.gt_area  # [G]
    union = o.pred_area[p] + gt_area[g] - inter - o.on_void[p]  # [T]
    can_match = gt.categories[g] == pred.categories[p]  # [T]
    if panopticapi:
        can_match &= ~gt.crowd[g]
    else:
        union = union - o.predicted_void[g]
    # IoU > 1/2 tested in integers; at most one partner per segment (chapter 04).
    matched = can_match & (2 * inter > union)  # [T]
    g_hit, p_hit = g[matched], p[matched]  # [M]
    ious = inter[matched] / union[matched]  # [M] float64

    gt_cat = np.searchsorted(cats, gt.categories)  # [G] row of each segment's category
    pred_cat = np.searchsorted(cats, pred.categories)  # [P]
    unmatched_gt, unmatched_pred = _unmatched(g_hit, len(gt)), _unmatched(p_hit, len(pred))
    if panopticapi:
        missed = unmatched_gt & ~gt.crowd
        crowd_part = _crowd_overlap(o, gt, pred, len(cats), gt_cat, pred_cat)  # [P]
        ignored = 2 * (o.on_void + crowd_part) > o.pred_area  # [P] void and crowd together
    else:
        missed = unmatched_gt & ~(2 * o.predicted_void > o.gt_area)
        ignored = 2 * o.on_void > o.pred_area
    k = len(cats)
    counts = (np.bincount(gt_cat[g_hit], weights=ious, minlength=k).astype(np.float64),
              np.bincount(gt_cat[g_hit], minlength=k),
              np.bincount(pred_cat[unmatched_pred & ~ignored], minlength=k),
              np.bincount(gt_cat[missed], minlength=k))
    return PQStats(torch.from_numpy(cats), *(torch.from_numpy(c) for c in counts))


def _unmatched(hit: np.ndarray, size: int) -> np.ndarray:
    out = np.ones(size, dtype=bool)
    out[hit] = False
    return out


def _check_predictions_present(pred_area: np.ndarray, pred: SegmentTable) -> None:
    absent = pred.ids[pred_area == 0]
    if len(absent):
        raise ValueError(f"pred_segments lists segment id(s) {absent[:5].tolist()} that have no "
                         "pixels in pred_ids")


def _crowd_overlap(o: _Overlaps, gt: SegmentTable, pred: SegmentTable, k: int,
                   gt_cat: np.ndarray, pred_cat: np.ndarray) -> np.ndarray:
    """Pixels of each prediction on the crowd region of its own category: ndarray[P] int64.

    As in panopticapi, a category's crowd region is its *last* listed crowd segment.
    """
    crowd_rows = np.flatnonzero(gt.crowd)  # [C]
    if not len(crowd_rows):
        return np.zeros(len(pred), dtype=np.int64)
    region = np.full(k, -1, dtype=np.int64)  # per category: the row of its crowd region
    for row in crowd_rows[np.argsort(gt.listed[crowd_rows])].tolist():  # in the listed order
        region[gt_cat[row]] = row  # a later crowd segment replaces an earlier one
    on_region = o.gt == region[pred_cat[o.pred]]  # [T] pairs of a prediction and its region
    return np.bincount(o.pred[on_region], weights=o.inter[on_region],
                       minlength=len(pred)).astype(np.int64)


def pq_stats_loop(gt_ids: IdMap, gt_segments: Segments, pred_ids: IdMap,
                  pred_segments: Segments, void: int = 0, *,
                  categories: Collection[int] | None = None,
                  rule: str = "panopticapi") -> PQStats:
    """:func:`pq_stats` written as the definition reads, one segment pair at a time (slow)."""
    gt_ids, gt, pred_ids, pred, cats = _prepare(gt_ids, gt_segments, pred_ids, pred_segments,
                                                void, categories, rule)
    _overlaps(gt_ids, gt, pred_ids, pred, void)  # the same input checks as the fast version
    panopticapi = rule == "panopticapi"
    gt_void, pred_void = gt_ids == void, pred_ids == void
    gt_masks = [gt_ids == s for s in gt.ids.tolist()]
    pred_masks = [pred_ids == s for s in pred.ids.tolist()]
    _check_predictions_present(np.array([int(m.sum()) for m in pred_masks], dtype=np.int64), pred)
    stats = {c: [0.0, 0, 0, 0] for c in cats.tolist()}  # iou_sum, tp, fp, fn
    categories_of = gt.categories.tolist(), pred.categories.tolist()

    matched_gt, matched_pred = set(), set()
    for i, g in enumerate(gt_masks):
        for j, p in enumerate(pred_masks):
            if categories_of[0][i] != categories_of[1][j] or (panopticapi and gt.crowd[i]):
                continue
            inter = int((g & p).sum())
            if inter == 0:
                continue
            listed_area = int(gt.area[i]) if panopticapi else -1
            gt_area = listed_area if listed_area >= 0 else int(g.sum())
            union = int(p.sum()) + gt_area - inter - int((p & gt_void).sum())
            if not panopticapi:
                union -= int((g & pred_void).sum())
            iou = inter / union
            if iou > 0.5:
                stats[categories_of[0][i]][0] += iou
                stats[categories_of[0][i]][1] += 1
                matched_gt.add(i)
                matched_pred.add(j)
    crowd_region = _count_misses_loop(gt_masks, gt, matched_gt, pred_void, panopticapi, stats)
    _count_false_positives_loop(pred_masks, pred, matched_pred, gt_void, crowd_region, stats)
    rows = [stats[c] for c in cats.tolist()]
    return PQStats(torch.from_numpy(cats), torch.tensor([r[0] for r in rows], dtype=torch.float64),
                   *(torch.tensor([r[k] for r in rows], dtype=torch.int64) for k in (1, 2, 3)))


def _count_misses_loop(gt_masks: list[np.ndarray], gt: SegmentTable, matched: set[int],
                       pred_void: np.ndarray, panopticapi: bool,
                       stats: dict[int, list]) -> dict[int, np.ndarray]:
    """Add the false negatives to ``stats``; return each category's crowd region (a mask)."""
    crowd_region = {}  # category -> crowd mask; a later crowd segment replaces an earlier one
    for i in np.argsort(gt.listed).tolist():  # in the order they were listed
        g, category = gt_masks[i], int(gt.categories[i])
        if i in matched:
            continue
        if panopticapi and gt.crowd[i]:
            crowd_region[category] = g
            continue
        if not panopticapi and int((g & pred_void).sum()) / max(int(g.sum()), 1) > 0.5:
            continue
        stats[category][3] += 1
    return crowd_region


def _count_false_positives_loop(pred_masks: list[np.ndarray], pred: SegmentTable,
                                matched: set[int], gt_void: np.ndarray,
                                crowd_region: dict[int, np.ndarray],
                                stats: dict[int, list]) -> None:
    """Add the false positives to ``stats``: unmatched, and not mostly on void and crowd."""
    for j, p in enumerate(pred_masks):
        if j in matched:
            continue
        category = int(pred.categories[j])
        covered = int((p & gt_void).sum())
        if category in crowd_region:
            covered += int((p & crowd_region[category]).sum())
        if covered / int(p.sum()) > 0.5:
            continue
        stats[category][2] += 1


# ---------------------------------------------------------------------------------------------
# Over a data set
# ---------------------------------------------------------------------------------------------


def _class_quality(iou_sum: float, tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """PQ, SQ, RQ of one category, in panopticapi's arithmetic."""
    denominator = tp + 0.5 * fp + 0.5 * fn
    return iou_sum / denominator, (iou_sum / tp if tp != 0 else 0.0), tp / denominator


def pq_from_counts(iou_sum: Tensor | Sequence[float], tp: Tensor | Sequence[int],
                   fp: Tensor | Sequence[int], fn: Tensor | Sequence[int]
                   ) -> dict[str, float | int]:
    """PQ, SQ and RQ averaged over categories, from per-category counts.

    A category with ``tp + fp + fn = 0`` is left out; ``n`` says how many were averaged
    (with ``n = 0`` the means are NaN). SQ of a category with ``tp = 0`` is 0. Each mean is
    taken on its own: ``pq`` is the mean of the per-category ``SQ x RQ``, which is not the
    mean SQ times the mean RQ.

    Args:
        iou_sum (Tensor[K]): summed IoU of the matches of each category.
        tp, fp, fn (Tensor[K]): counts of each category.

    Returns:
        ``{"pq": float, "sq": float, "rq": float, "n": int}``.
    """
    # float64 throughout: torch.as_tensor would make a list of Python floats float32
    columns = [torch.as_tensor(x, dtype=torch.float64).flatten() for x in (iou_sum, tp, fp, fn)]
    if len({len(c) for c in columns}) != 1:
        raise ValueError("iou_sum, tp, fp and fn must have one entry per category each, got "
                         f"lengths {[len(c) for c in columns]}")
    if any(bool((c < 0).any()) for c in columns):
        raise ValueError("iou_sum, tp, fp and fn must be non-negative")
    over = columns[0] > columns[1] * (1 + 1e-9)  # each match adds an IoU of at most 1
    if bool(over.any()):
        k = int(over.nonzero()[0, 0])
        raise ValueError(f"iou_sum must not exceed tp (each true positive adds an IoU of at most "
                         f"1), got iou_sum {float(columns[0][k]):.4g} > tp "
                         f"{float(columns[1][k]):.4g} for category position {k}")
    total = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    n = 0
    for i, t, p, f in zip(*(c.tolist() for c in columns), strict=True):
        if t + p + f == 0:
            continue
        n += 1
        for key, value in zip(("pq", "sq", "rq"), _class_quality(i, t, p, f), strict=True):
            total[key] += value
    return {**{k: (v / n if n else math.nan) for k, v in total.items()}, "n": n}


def panoptic_quality(images: Iterable[PQStats | Sequence[Any]], things: Collection[int],
                     stuffs: Collection[int], *, rule: str = "panopticapi",
                     void: int = 0) -> dict[str, Any]:
    """PQ, SQ and RQ over a data set, as panopticapi's ``pq_compute`` reports them.

    Args:
        images: one entry per image, either a :class:`PQStats` or the tuple
            ``(gt_ids, gt_segments, pred_ids, pred_segments)`` that :func:`pq_stats` takes.
        things, stuffs: the category ids of countable things and of amorphous stuff
            (disjoint). Any other category in the input is an error.
        rule (str): ``"panopticapi"`` or ``"torchmetrics"``.
        void (int): the id of unlabelled pixels.

    Returns:
        ``{"All": s, "Things": s, "Stuff": s, "per_class": {category: c}}`` with
        ``s = {"pq", "sq", "rq", "n"}`` (``n`` categories averaged; NaN means when 0) and
        ``c = {"pq", "sq", "rq", "tp", "fp", "fn"}``; a category with no segment anywhere
        has all zeros and is left out of the means.
    """
    things, stuffs = as_categories(things, "things"), as_categories(stuffs, "stuffs")
    shared = sorted(set(things) & set(stuffs))
    if shared:
        raise ValueError(f"things and stuffs share the categories {shared}")
    if not things and not stuffs:
        raise ValueError("things and stuffs are both empty")
    known = sorted(things + stuffs)
    rows = _summed_stats(images, known, rule, void).as_dict()
    per_class = {}
    for c in known:
        iou, tp, fp, fn = rows[c]
        pq, sq, rq = _class_quality(iou, tp, fp, fn) if tp + fp + fn else (0.0, 0.0, 0.0)
        per_class[c] = {"pq": pq, "sq": sq, "rq": rq, "tp": tp, "fp": fp, "fn": fn}
    result: dict[str, Any] = {}
    for name, group in (("All", known), ("Things", things), ("Stuff", stuffs)):
        columns = list(zip(*(rows[c] for c in sorted(group)), strict=True)) or [[]] * 4
        result[name] = pq_from_counts(*(list(col) for col in columns))
    result["per_class"] = per_class
    return result


def _summed_stats(images: Iterable[PQStats | Sequence[Any]], known: list[int], rule: str,
                  void: int) -> PQStats:
    """The counts of every image added up, one row per category of ``known``."""
    categories = np.array(known, dtype=np.int64)  # [K] ascending
    iou_sum, counts = np.zeros(len(known)), np.zeros((3, len(known)), dtype=np.int64)
    for i, image in enumerate(images):
        if isinstance(image, PQStats):
            bad = sorted(set(image.categories.tolist()) - set(known))
            if bad:
                raise ValueError(f"images[{i}] has unknown category id(s) {bad}")
        elif isinstance(image, Sequence) and len(image) == 4:
            image = pq_stats(*image, void=void, categories=known, rule=rule)
        else:
            raise TypeError(f"images[{i}] must be a PQStats or a tuple (gt_ids, gt_segments, "
                            f"pred_ids, pred_segments), got {type(image).__name__}")
        rows = np.searchsorted(categories, image.categories.numpy())  # [K'] distinct rows
        iou_sum[rows] += image.iou_sum.numpy()
        counts[:, rows] += np.stack([image.tp.numpy(), image.fp.numpy(), image.fn.numpy()])
    return PQStats(torch.from_numpy(categories), torch.from_numpy(iou_sum),
                   *(torch.from_numpy(c) for c in counts))


def pq_table(result: Mapping[str, Any]) -> str:
    """panopticapi's summary table (PQ, SQ, RQ in percent, and N) as text."""
    lines = [f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} {'N':>5s}", "-" * 38]
    for name in ("All", "Things", "Stuff"):
        r = result[name]
        lines.append(f"{name:10s}| {100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  "
                     f"{100 * r['rq']:5.1f} {r['n']:5d}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Failure modes
# ---------------------------------------------------------------------------------------------


def classify_failures(inter: Tensor | np.ndarray, gt_area: Tensor | np.ndarray,
                      pred_area: Tensor | np.ndarray) -> list[str]:
    """Say what happened to each ground-truth segment of one category.

    With ``covers[g, p]`` when ``p`` holds more than half of ``g`` and ``inside[g, p]`` when
    more than half of ``p`` lies on ``g``, a ground-truth segment is, in this order:

    - ``"merge"``: a prediction covers it and also covers another ground-truth segment;
    - ``"split"``: two or more predictions lie mostly inside it;
    - ``"match"``: a prediction has IoU > 0.5 with it;
    - ``"miss"``: none of these.

    Args:
        inter (Tensor[G, P]): pixel counts ``|g & p|``.
        gt_area (Tensor[G]): ``|g|``.
        pred_area (Tensor[P]): ``|p|``.

    Returns:
        One label per ground-truth segment.
    """
    inter = torch.as_tensor(inter).to(torch.int64)
    gt_area, pred_area = torch.as_tensor(gt_area).to(torch.int64), torch.as_tensor(
        pred_area).to(torch.int64)
    if inter.ndim != 2 or gt_area.shape != (inter.shape[0],) or pred_area.shape != (
            inter.shape[1],):
        raise ValueError(f"inter must be [G, P] with gt_area [G] and pred_area [P], got "
                         f"{list(inter.shape)}, {list(gt_area.shape)}, {list(pred_area.shape)}")
    covers = 2 * inter > gt_area[:, None]  # [G, P]
    inside = 2 * inter > pred_area[None, :]  # [G, P]
    union = gt_area[:, None] + pred_area[None, :] - inter  # [G, P]
    merged = (covers & (covers.sum(0, keepdim=True) >= 2)).any(1)  # [G]
    split = inside.sum(1) >= 2  # [G]
    matched = (2 * inter > union).any(1)  # [G]
    labels = []
    for m, s, t in zip(merged.tolist(), split.tolist(), matched.tolist(), strict=True):
        labels.append("merge" if m else "split" if s else "match" if t else "miss")
    return labels
