"""Panoptic Quality (PQ), exactly as panopticapi's ``pq_compute`` computes it.

A panoptic segmentation gives every pixel at most one segment. The COCO panoptic encoding,
used throughout this module:

- an ``[H, W]`` integer map of segment ids, where ``void`` (0) means unlabelled; in the PNG
  files the id of a pixel is ``R + 256 G + 256**2 B`` (:func:`rgb_to_id`, :func:`id_to_rgb`);
- for each map, its segments ``{id: (category_id, iscrowd)}``; panopticapi's
  ``segments_info`` list of dicts (``id``, ``category_id``, ``iscrowd``) is accepted too, and
  so is ``{id: category_id}`` (not crowd).

The other common encoding, a ``(category, instance)`` pair per pixel (torchmetrics,
Cityscapes), converts with :func:`pairs_to_panoptic` and :func:`panoptic_to_pairs`.

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

Two details of panopticapi are kept so that the numbers agree with it:

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
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

IdMap = Tensor | np.ndarray
Segments = Mapping[int, Any] | Sequence[Mapping[str, Any]]

RULES = ("panopticapi", "torchmetrics")


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def as_id_map(ids: IdMap, name: str = "ids") -> Tensor:
    """Validate an ``[H, W]`` map of non-negative integer segment ids; return it as int64.

    Raises:
        TypeError: if ``ids`` is not a tensor or an array of integers.
        ValueError: if it is not 2-D or holds a negative id.
    """
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer segment ids, got dtype {ids.dtype}")
        if ids.dtype.kind == "u" and ids.size and int(ids.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name} holds ids beyond int64")
        ids = torch.from_numpy(ids.astype(np.int64))
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer segment ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"{name} must have shape [H, W], got {list(ids.shape)}")
    ids = ids.detach().to("cpu", torch.int64)
    lowest = int(ids.numpy().min()) if ids.numel() else 0  # NumPy: no threads to wait for
    if lowest < 0:
        raise ValueError(f"{name} holds the negative id {lowest}; segment ids are >= 0")
    return ids


@dataclass(frozen=True)
class SegmentTable:
    """The segments of one map, sorted by id.

    Attributes:
        ids (Tensor[S]): int64 segment ids, ascending, none of them void.
        categories (Tensor[S]): int64 category id of each segment.
        crowd (Tensor[S]): bool crowd flag of each segment.
        listed (Tensor[S]): int64 position of each segment in the list it was read from
            (panopticapi's crowd rule depends on that order).
    """

    ids: Tensor
    categories: Tensor
    crowd: Tensor
    listed: Tensor

    def __len__(self) -> int:
        return len(self.ids)


def as_segments(segments: Segments, name: str = "segments", void: int = 0) -> SegmentTable:
    """Read ``{id: (category_id, iscrowd)}``, ``{id: category_id}`` or a ``segments_info`` list.

    Raises:
        TypeError: on a wrong container or a non-integer id / category.
        ValueError: on a repeated id, a negative id, or the void id used as a segment.
    """
    if isinstance(segments, Mapping):
        rows = []
        for sid, value in segments.items():
            if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
                rows.append((sid, value[0], value[1]))
            else:
                rows.append((sid, value, False))
    elif isinstance(segments, Sequence) and not isinstance(segments, str):
        rows = []
        for i, info in enumerate(segments):
            if not isinstance(info, Mapping) or "id" not in info or "category_id" not in info:
                raise TypeError(f"{name}[{i}] must be a dict with 'id' and 'category_id' "
                                "(panopticapi's segments_info)")
            rows.append((info["id"], info["category_id"], info.get("iscrowd", 0)))
    else:
        raise TypeError(f"{name} must be a dict {{id: (category_id, iscrowd)}} or a list of "
                        f"segments_info dicts, got {type(segments).__name__}")
    for sid, cat, crowd in rows:
        if not _is_int(sid) or not _is_int(cat):
            raise TypeError(f"{name}: segment ids and category ids must be integers, "
                            f"got id {sid!r} with category {cat!r}")
        if crowd not in (0, 1):  # True and False compare equal to 1 and 0
            raise ValueError(f"{name}: iscrowd of segment {sid} must be 0 or 1, got {crowd!r}")
        if sid < 0:
            raise ValueError(f"{name}: segment id {sid} is negative")
        if sid == void:
            raise ValueError(f"{name}: segment id {sid} is the void id; void is not a segment")
    ids = torch.tensor([int(r[0]) for r in rows], dtype=torch.int64)
    if len(torch.unique(ids)) != len(ids):
        raise ValueError(f"{name}: a segment id is listed twice")
    order = torch.argsort(ids)
    return SegmentTable(ids[order], torch.tensor([int(r[1]) for r in rows],
                                                 dtype=torch.int64)[order],
                        torch.tensor([bool(r[2]) for r in rows], dtype=torch.bool)[order],
                        order)


def _check_void(void: int) -> int:
    if not _is_int(void) or void < 0:
        raise ValueError(f"void must be a non-negative integer id, got {void!r}")
    return int(void)


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    return rule


def _index_map(ids: Tensor, table: SegmentTable, void: int, name: str) -> np.ndarray:
    """Pixel -> row of ``table`` plus one (0 for void), flattened: ndarray[H * W] int64.

    A binary search of each pixel's id among the sorted segment ids (no sort of the pixels).
    NumPy rather than torch: single-threaded, it is the faster of the two for this work.
    """
    flat = ids.numpy().ravel()  # [HW]
    sorted_ids = table.ids.numpy()  # [S] ascending
    if len(sorted_ids):
        pos = np.minimum(np.searchsorted(sorted_ids, flat), len(sorted_ids) - 1)  # [HW]
        known = sorted_ids[pos] == flat
    else:
        pos, known = np.zeros_like(flat), np.zeros(flat.shape, dtype=bool)
    if not known.all():
        unknown = flat[~known & (flat != void)]
        if len(unknown):
            raise ValueError(f"{name} holds segment id(s) {np.unique(unknown)[:5].tolist()} that "
                             f"are not in {name.replace('ids', 'segments')}")
    return np.where(known, pos + 1, 0)


def _confusion(gt_ids: Tensor, gt: SegmentTable, pred_ids: Tensor, pred: SegmentTable,
               void: int) -> Tensor:
    """Pixel counts of every (ground truth, prediction) pair from one ``bincount``.

    Returns:
        Tensor[G + 1, P + 1] int64; row 0 is ground-truth void, column 0 predicted void, and
        row ``i + 1`` / column ``j + 1`` are the segments in ascending id order.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"gt_ids and pred_ids must have the same shape, got "
                         f"{list(gt_ids.shape)} and {list(pred_ids.shape)}")
    g = _index_map(gt_ids, gt, void, "gt_ids")  # [HW] in 0..G
    p = _index_map(pred_ids, pred, void, "pred_ids")  # [HW] in 0..P
    cols = len(pred) + 1
    counts = np.bincount(g * cols + p, minlength=(len(gt) + 1) * cols)  # pair (g, p) -> count
    return torch.from_numpy(counts.astype(np.int64)).reshape(len(gt) + 1, cols)  # [G+1, P+1]


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
    void = _check_void(void)
    gt_ids, pred_ids = as_id_map(gt_ids, "gt_ids"), as_id_map(pred_ids, "pred_ids")
    tables = []
    for ids in (gt_ids, pred_ids):
        present = torch.unique(ids)
        present = present[present != void]
        tables.append(SegmentTable(present, torch.zeros_like(present),
                                   torch.zeros_like(present, dtype=torch.bool),
                                   torch.arange(len(present))))
    return tables[0].ids, tables[1].ids, _confusion(gt_ids, tables[0], pred_ids, tables[1], void)


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
             ) -> tuple[Tensor, SegmentTable, Tensor, SegmentTable, Tensor]:
    void, rule = _check_void(void), _check_rule(rule)
    gt_ids, pred_ids = as_id_map(gt_ids, "gt_ids"), as_id_map(pred_ids, "pred_ids")
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"gt_ids and pred_ids must have the same shape, got "
                         f"{list(gt_ids.shape)} and {list(pred_ids.shape)}")
    gt = as_segments(gt_segments, "gt_segments", void)
    pred = as_segments(pred_segments, "pred_segments", void)
    cats = torch.unique(torch.cat([gt.categories, pred.categories]))  # [K]
    if categories is not None:
        known = _as_categories(categories, "categories")
        bad = sorted(set(cats.tolist()) - set(known))
        if bad:
            raise ValueError(f"unknown category id(s) {bad}: not in categories {sorted(known)}")
        cats = torch.tensor(sorted(known), dtype=torch.int64)
    return gt_ids, gt, pred_ids, pred, cats


def pq_stats(gt_ids: IdMap, gt_segments: Segments, pred_ids: IdMap, pred_segments: Segments,
             void: int = 0, *, categories: Collection[int] | None = None,
             rule: str = "panopticapi") -> PQStats:
    """Per-category ``iou_sum``, ``tp``, ``fp``, ``fn`` of one image (see the module docstring).

    Vectorised: one ``bincount`` over the paired pixel ids gives every intersection, area and
    void overlap; :func:`pq_stats_loop` is the same computation written as the definition reads.
    For the ``(category, instance)`` pair encoding, convert first:
    ``pq_stats(*pairs_to_panoptic(gt, things, stuffs), *pairs_to_panoptic(pred, things, stuffs))``.

    Args:
        gt_ids (Tensor[H, W]): ground-truth segment ids, ``void`` where unlabelled.
        gt_segments: ``{id: (category_id, iscrowd)}`` or panopticapi's ``segments_info`` list.
        pred_ids (Tensor[H, W]): predicted segment ids, ``void`` where nothing is predicted.
        pred_segments: as ``gt_segments`` (``iscrowd`` is not used for predictions).
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
    counts = _confusion(gt_ids, gt, pred_ids, pred, void)  # [G + 1, P + 1]
    inter = counts[1:, 1:]  # [G, P]
    gt_area, pred_area = counts[1:].sum(1), counts[:, 1:].sum(0)  # [G], [P]
    on_void, predicted_void = counts[0, 1:], counts[1:, 0]  # [P], [G]
    _check_predictions_present(pred_area, pred)
    panopticapi = rule == "panopticapi"

    union = pred_area[None, :] + gt_area[:, None] - inter - on_void[None, :]  # [G, P]
    can_match = gt.categories[:, None] == pred.categories[None, :]  # [G, P]
    if panopticapi:
        can_match &= ~gt.crowd[:, None]
    else:
        union = union - predicted_void[:, None]
    # IoU > 1/2 tested in integers; at most one partner per row and per column (chapter 04).
    matched = can_match & (2 * inter > union)  # [G, P]
    g_idx, p_idx = matched.nonzero(as_tuple=True)  # [T], [T]
    ious = inter[g_idx, p_idx].double() / union[g_idx, p_idx].double()  # [T]

    gt_cat = torch.searchsorted(cats, gt.categories)  # [G] row of each segment's category
    pred_cat = torch.searchsorted(cats, pred.categories)  # [P]
    unmatched_gt, unmatched_pred = ~matched.any(1), ~matched.any(0)  # [G], [P]
    if panopticapi:
        missed = unmatched_gt & ~gt.crowd
        crowd_part = _crowd_overlap(inter, gt, pred, len(cats), gt_cat, pred_cat)  # [P]
        ignored = 2 * (on_void + crowd_part) > pred_area  # [P] void and crowd together
    else:
        missed = unmatched_gt & ~(2 * predicted_void > gt_area)
        ignored = 2 * on_void > pred_area
    k = len(cats)
    return PQStats(
        cats,
        torch.bincount(gt_cat[g_idx], weights=ious, minlength=k).to(torch.float64),
        torch.bincount(gt_cat[g_idx], minlength=k),
        torch.bincount(pred_cat[unmatched_pred & ~ignored], minlength=k),
        torch.bincount(gt_cat[missed], minlength=k),
    )


def _check_predictions_present(pred_area: Tensor, pred: SegmentTable) -> None:
    absent = pred.ids[pred_area == 0]
    if len(absent):
        raise ValueError(f"pred_segments lists segment id(s) {absent[:5].tolist()} that have no "
                         "pixels in pred_ids")


def _crowd_overlap(inter: Tensor, gt: SegmentTable, pred: SegmentTable, k: int,
                   gt_cat: Tensor, pred_cat: Tensor) -> Tensor:
    """Pixels of each prediction on the crowd region of its own category: Tensor[P] int64.

    As in panopticapi, a category's crowd region is its *last* listed crowd segment.
    """
    crowd_rows = gt.crowd.nonzero().flatten()  # [C]
    if not len(crowd_rows):
        return torch.zeros(len(pred), dtype=torch.int64)
    last = torch.full((k,), -1, dtype=torch.int64)  # per category: the latest listed position
    last = last.scatter_reduce(0, gt_cat[crowd_rows], gt.listed[crowd_rows], reduce="amax")
    row_of = torch.empty_like(gt.listed)
    row_of[gt.listed] = torch.arange(len(gt))  # listed position -> row
    position = last[pred_cat]  # [P] listed position of the crowd region, -1 if none
    region = row_of[position.clamp(min=0)]  # [P]
    picked = inter[region, torch.arange(len(pred))]  # [P]
    return torch.where(position >= 0, picked, 0)


def pq_stats_loop(gt_ids: IdMap, gt_segments: Segments, pred_ids: IdMap,
                  pred_segments: Segments, void: int = 0, *,
                  categories: Collection[int] | None = None,
                  rule: str = "panopticapi") -> PQStats:
    """:func:`pq_stats` written as the definition reads, one segment pair at a time (slow)."""
    gt_ids, gt, pred_ids, pred, cats = _prepare(gt_ids, gt_segments, pred_ids, pred_segments,
                                                void, categories, rule)
    _confusion(gt_ids, gt, pred_ids, pred, void)  # the same input checks as the fast version
    panopticapi = rule == "panopticapi"
    gt_void, pred_void = gt_ids == void, pred_ids == void
    gt_masks = [gt_ids == s for s in gt.ids.tolist()]
    pred_masks = [pred_ids == s for s in pred.ids.tolist()]
    _check_predictions_present(torch.tensor([int(m.sum()) for m in pred_masks],
                                            dtype=torch.int64), pred)
    stats = {c: [0.0, 0, 0, 0] for c in cats.tolist()}  # iou_sum, tp, fp, fn

    matched_gt, matched_pred = set(), set()
    for i, g in enumerate(gt_masks):
        for j, p in enumerate(pred_masks):
            if gt.categories[i] != pred.categories[j] or (panopticapi and gt.crowd[i]):
                continue
            inter = int((g & p).sum())
            if inter == 0:
                continue
            union = int(p.sum()) + int(g.sum()) - inter - int((p & gt_void).sum())
            if not panopticapi:
                union -= int((g & pred_void).sum())
            iou = inter / union
            if iou > 0.5:
                stats[int(gt.categories[i])][0] += iou
                stats[int(gt.categories[i])][1] += 1
                matched_gt.add(i)
                matched_pred.add(j)

    crowd_region = {}  # category -> crowd mask; a later crowd segment replaces an earlier one
    for i in torch.argsort(gt.listed).tolist():  # in the order they were listed
        g = gt_masks[i]
        if i in matched_gt:
            continue
        if panopticapi and gt.crowd[i]:
            crowd_region[int(gt.categories[i])] = g
            continue
        if not panopticapi and int((g & pred_void).sum()) / max(int(g.sum()), 1) > 0.5:
            continue
        stats[int(gt.categories[i])][3] += 1

    for j, p in enumerate(pred_masks):
        if j in matched_pred:
            continue
        category = int(pred.categories[j])
        covered = int((p & gt_void).sum())
        if panopticapi and category in crowd_region:
            covered += int((p & crowd_region[category]).sum())
        if covered / int(p.sum()) > 0.5:
            continue
        stats[category][2] += 1

    rows = [stats[c] for c in cats.tolist()]
    return PQStats(cats, torch.tensor([r[0] for r in rows], dtype=torch.float64),
                   *(torch.tensor([r[k] for r in rows], dtype=torch.int64) for k in (1, 2, 3)))


# ---------------------------------------------------------------------------------------------
# Over a data set
# ---------------------------------------------------------------------------------------------


def _as_categories(values: Collection[int], name: str) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a collection of integer category ids")
    values = list(values)
    if not all(_is_int(v) for v in values):
        raise TypeError(f"{name} must hold integer category ids, got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a category twice: {values}")
    return [int(v) for v in values]


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
    things, stuffs = _as_categories(things, "things"), _as_categories(stuffs, "stuffs")
    shared = sorted(set(things) & set(stuffs))
    if shared:
        raise ValueError(f"things and stuffs share the categories {shared}")
    if not things and not stuffs:
        raise ValueError("things and stuffs are both empty")
    known = sorted(things + stuffs)
    total = PQStats(torch.tensor(known, dtype=torch.int64),
                    torch.zeros(len(known), dtype=torch.float64),
                    *(torch.zeros(len(known), dtype=torch.int64) for _ in range(3)))
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
        total = total + image
    rows = total.as_dict()
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


def pq_table(result: Mapping[str, Any]) -> str:
    """panopticapi's summary table (PQ, SQ, RQ in percent, and N) as text."""
    lines = [f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} {'N':>5s}", "-" * 38]
    for name in ("All", "Things", "Stuff"):
        r = result[name]
        lines.append(f"{name:10s}| {100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  "
                     f"{100 * r['rq']:5.1f} {r['n']:5d}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------------------------


def rgb_to_id(rgb: Tensor | np.ndarray) -> Tensor:
    """COCO panoptic PNG colours to segment ids: ``id = R + 256 G + 256**2 B``.

    Args:
        rgb (Tensor[H, W, 3]): uint8 colours (as read from the PNG).

    Returns:
        Tensor[H, W] int64.
    """
    rgb = torch.as_tensor(np.asarray(rgb) if isinstance(rgb, np.ndarray) else rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have shape [H, W, 3], got {list(rgb.shape)}")
    if rgb.dtype != torch.uint8:
        raise TypeError(f"rgb must be uint8 colours, got dtype {rgb.dtype}")
    rgb = rgb.to(torch.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: IdMap) -> Tensor:
    """Segment ids to COCO panoptic PNG colours, the inverse of :func:`rgb_to_id`.

    Args:
        ids (Tensor[H, W]): ids in ``[0, 256**3)``.

    Returns:
        Tensor[H, W, 3] uint8.
    """
    ids = as_id_map(ids)
    if ids.numel() and int(ids.max()) >= 256**3:
        raise ValueError(f"ids must be below 256**3 to fit in RGB, found {int(ids.max())}")
    return torch.stack([ids % 256, ids // 256 % 256, ids // 65536], dim=-1).to(torch.uint8)


def pairs_to_panoptic(pairs: Tensor | np.ndarray | tuple[Tensor, Tensor], things: Collection[int],
                      stuffs: Collection[int], *, void_category: int | None = None,
                      crowd_instance: int | None = None
                      ) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
    """The ``(category, instance)`` pair encoding to a segment-id map and its segments.

    Each ``(category, instance)`` of a thing category is one segment; all pixels of a stuff
    category are one segment whatever their instance id (as torchmetrics reads them); pixels of
    ``void_category`` become void (id 0); thing pixels with instance ``crowd_instance`` form one
    crowd segment per category. Segment ids are 1, 2, ... in ``(category, instance)`` order.

    Args:
        pairs (Tensor[H, W, 2]): category id and instance id of each pixel (torchmetrics'
            layout), or the two maps as a tuple ``(categories [H, W], instances [H, W])``.
        things, stuffs: the category ids of things and of stuff.
        void_category (int, optional): the category of unlabelled pixels.
        crowd_instance (int, optional): the instance id that marks crowd pixels of a thing.

    Returns:
        ``(ids, segments)``: Tensor[H, W] int64 and ``{id: (category_id, iscrowd)}``.
    """
    if isinstance(pairs, tuple | list) and len(pairs) == 2:
        category_map, instance_map = (torch.as_tensor(m) for m in pairs)
        if category_map.shape != instance_map.shape:
            raise ValueError(f"the category and instance maps must have the same shape, got "
                             f"{list(category_map.shape)} and {list(instance_map.shape)}")
        pairs = torch.stack([category_map, instance_map], dim=-1)  # [H, W, 2]
    pairs = torch.as_tensor(pairs)
    if pairs.ndim != 3 or pairs.shape[-1] != 2:
        raise ValueError(f"pairs must have shape [H, W, 2] (category, instance), "
                         f"got {list(pairs.shape)}")
    if pairs.is_floating_point() or pairs.dtype == torch.bool:
        raise TypeError(f"pairs must hold integers, got dtype {pairs.dtype}")
    things = _as_categories(things, "things")
    stuffs = _as_categories(stuffs, "stuffs")
    category, instance = pairs[..., 0].to(torch.int64), pairs[..., 1].to(torch.int64)  # [H, W]
    if pairs.numel() and int(pairs.min()) < 0:
        raise ValueError("pairs must hold non-negative category and instance ids")
    is_thing = torch.isin(category, torch.tensor(things, dtype=torch.int64))
    is_stuff = torch.isin(category, torch.tensor(stuffs, dtype=torch.int64))
    is_void = category == (-1 if void_category is None else void_category)
    unknown = ~(is_thing | is_stuff | is_void)
    if bool(unknown.any()):
        raise ValueError(f"pairs hold unknown category id(s) "
                         f"{torch.unique(category[unknown])[:5].tolist()}")
    instance = torch.where(is_stuff, 0, instance)
    shift = int(instance.max()) + 1 if instance.numel() else 1
    key = torch.where(is_void, -1, category * shift + instance)  # [H, W] one key per segment
    keys, inverse = torch.unique(key, return_inverse=True)  # [S'], [H, W]
    segments, new_id = {}, torch.zeros(len(keys), dtype=torch.int64)
    next_id = 1
    for k, value in enumerate(keys.tolist()):
        if value < 0:
            continue
        cat, inst = divmod(value, shift)
        segments[next_id] = (cat, cat in things and inst == crowd_instance)
        new_id[k] = next_id
        next_id += 1
    return new_id[inverse], segments


def semantic_map(ids: IdMap, segments: Segments, *, void_category: int = 0,
                 void: int = 0) -> Tensor:
    """The semantic segmentation a panoptic one implies: the category of every pixel.

    Args:
        ids (Tensor[H, W]): segment ids, ``void`` where unlabelled.
        segments: ``{id: (category_id, iscrowd)}`` or a ``segments_info`` list.
        void_category (int): what void pixels get.

    Returns:
        Tensor[H, W] int64.
    """
    void = _check_void(void)
    ids = as_id_map(ids)
    table = as_segments(segments, "segments", void)
    rows = torch.from_numpy(_index_map(ids, table, void, "ids"))  # [HW] in 0..S
    category = torch.cat([torch.tensor([void_category]), table.categories])  # [S + 1]
    return category[rows].reshape(ids.shape)


def panoptic_to_pairs(ids: IdMap, segments: Segments, *, void_category: int,
                      crowd_instance: int | None = None, void: int = 0) -> Tensor:
    """A segment-id map to the ``(category, instance)`` pair encoding.

    Instances are numbered 1, 2, ... within each category in ascending id order; void pixels get
    ``(void_category, 0)``; crowd segments get instance ``crowd_instance``, which must then be
    given (the pair encoding has no crowd flag of its own).

    Returns:
        Tensor[H, W, 2] int64.
    """
    void = _check_void(void)
    ids = as_id_map(ids)
    table = as_segments(segments, "segments", void)
    if bool(table.crowd.any()) and crowd_instance is None:
        raise ValueError("segments include crowd; pass crowd_instance= to encode them")
    rows = torch.from_numpy(_index_map(ids, table, void, "ids"))  # [HW] in 0..S
    category = torch.cat([torch.tensor([void_category]), table.categories])  # [S + 1]
    instance = torch.zeros(len(table) + 1, dtype=torch.int64)
    seen: dict[int, int] = {}
    for row in range(len(table)):  # ascending ids
        cat = int(table.categories[row])
        if table.crowd[row]:
            instance[row + 1] = crowd_instance
        else:
            seen[cat] = seen.get(cat, 0) + 1
            instance[row + 1] = seen[cat]
    return torch.stack([category[rows], instance[rows]], dim=-1).reshape(*ids.shape, 2)


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
