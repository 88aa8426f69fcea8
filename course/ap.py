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

Two quirks of ``COCOeval.summarize`` are kept by default (``COCOParams.coco_quirks``): the
first stat (AP) always reads ``maxDets=100``, so with ``max_dets`` without 100 it is -1;
and AP50 / AP75 look the thresholds 0.5 / 0.75 up with ``==``, so with thresholds that only
come near them (``np.arange``) they are -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course.coco import Progress, RLEMasks, no_progress, ragged_arange
from course.masks import as_masks, mask_iou
from course.matching import greedy_match
from course.structures import Instances

ArrayLike = Tensor | np.ndarray

AREA_NAMES = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_EPS = np.spacing(1)  # COCOeval adds it to TP + FP


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else x


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
    flags = torch.as_tensor(_numpy(tp))
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
    p = torch.as_tensor(_numpy(precision), dtype=torch.float64)
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
    p = torch.as_tensor(_numpy(precision), dtype=torch.float64)
    r = torch.as_tensor(_numpy(recall), dtype=torch.float64)
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
        np.asarray(_numpy(recall_thresholds), dtype=np.float64)
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
    iou_t = torch.as_tensor(_numpy(iou), dtype=torch.float64)
    if iou_t.ndim != 2 or iou_t.shape[1] < 1:
        raise ValueError(f"iou must have shape [D, G] with G >= 1, got {list(iou_t.shape)}")
    s = torch.as_tensor(_numpy(scores), dtype=torch.float64)
    order = torch.from_numpy(np.argsort(-s.numpy(), kind="stable"))
    levels = np.linspace(0.5, 0.95, 10) if thresholds is None else \
        np.asarray(_numpy(thresholds), dtype=np.float64).reshape(-1)
    aps = []
    for t in levels:
        matched = greedy_match(iou_t, s, float(t)).pairs[:, 0]
        tp = torch.zeros(len(s), dtype=torch.bool)
        tp[matched] = True
        precision, recall = precision_recall(tp[order], iou_t.shape[1])
        aps.append(average_precision(precision, recall))
    return float(np.mean(aps))


# ---------------------------------------------------------------------------------------------
# Parameters and result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class COCOParams:
    """``COCOeval.params`` for detection, with COCO's defaults.

    Attributes:
        iou_thresholds: IoU thresholds ``T`` (``np.linspace(.5, .95, 10)``).
        recall_thresholds: recall points ``R`` (``np.linspace(0, 1, 101)``), ascending.
        max_dets: the three per-image, per-class detection limits ``M``, sorted (1, 10, 100).
        area_ranges: ``(low, high)`` for all, small, medium, large (bounds included).
        coco_quirks: keep ``summarize``'s quirks (see the module docstring); ``False`` reads
            AP at ``max_dets[-1]`` and finds 0.5 / 0.75 with ``np.isclose``.
    """

    iou_thresholds: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
    recall_thresholds: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 101).tolist())
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = ((0, 1e10), (0, 32**2), (32**2, 96**2),
                                                    (96**2, 1e10))
    coco_quirks: bool = True

    def __post_init__(self) -> None:
        t = np.asarray(self.iou_thresholds, dtype=np.float64)
        if t.ndim != 1 or not len(t) or not ((t >= 0) & (t <= 1)).all():
            raise ValueError(f"iou_thresholds must be numbers in [0, 1], got {self.iou_thresholds}")
        r = np.asarray(self.recall_thresholds, dtype=np.float64)
        if r.ndim != 1 or not len(r) or (np.diff(r) < 0).any() or not ((r >= 0) & (r <= 1)).all():
            raise ValueError("recall_thresholds must be ascending numbers in [0, 1]")
        m = self.max_dets
        if len(m) != 3 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1
                              for v in m):
            raise ValueError(f"max_dets must be three positive ints (COCO's summary reads "
                             f"three), got {m}")
        object.__setattr__(self, "max_dets", tuple(sorted(int(v) for v in m)))  # as COCOeval
        a = self.area_ranges
        if len(a) != 4 or any(len(pair) != 2 or pair[0] > pair[1] for pair in a):
            raise ValueError("area_ranges must be four (low, high) pairs: all, small, medium, "
                             f"large; got {a}")


@dataclass(frozen=True, eq=False)
class COCOResult:
    """What ``COCOeval`` computes, with its layout.

    Attributes:
        stats (np.ndarray[12]): AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm,
            ARl (:data:`STAT_NAMES`); -1 where undefined.
        precision (np.ndarray[T, R, K, A, M]): interpolated precision per IoU threshold,
            recall point, class, area range and ``max_dets``; -1 for classes without objects.
        recall (np.ndarray[T, K, A, M]): the recall reached; -1 likewise.
        categories: the K category ids, ascending.
        iou_type: ``"segm"`` or ``"bbox"``.
        params: the :class:`COCOParams` used.
        skipped_predictions: detections whose label is not among the categories (not
            evaluated, as in COCOeval).
    """

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    categories: tuple[int, ...]
    iou_type: str
    params: COCOParams
    skipped_predictions: int = 0

    def as_dict(self) -> dict[str, float]:
        """The 12 stats by name."""
        return {name: float(v) for name, v in zip(STAT_NAMES, self.stats, strict=True)}

    def per_class_ap(self) -> dict[int, float]:
        """AP@[.5:.95] of each class (area all, ``max_dets[-1]``); -1 without objects."""
        out = {}
        for k, cat in enumerate(self.categories):
            s = self.precision[:, :, k, 0, -1]
            out[cat] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
        return out

    def ap_per_threshold(self, area: int = 0) -> dict[float, float]:
        """AP at each IoU threshold alone (mean over recall points and classes with objects;
        area range ``area``: 0 all, 1 small, 2 medium, 3 large; ``max_dets[-1]``); -1 where
        no class has objects. ``AP50`` and ``AP75`` of the stats are two of these."""
        out = {}
        for t, threshold in enumerate(self.params.iou_thresholds):
            s = self.precision[t, :, :, area, -1]
            out[round(float(threshold), 4)] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
        return out

    def coco_summary(self) -> str:
        """The 12 lines ``COCOeval.summarize()`` prints, character for character."""
        return "\n".join(_summary_lines(self.precision, self.recall, self.params)[1])

    def summary(self, names: dict[int, str] | None = None) -> str:
        """A readable table: the 12 stats, then AP per class."""
        rows = [f"{'stat':<6} {'value':>7}"]
        rows += [f"{n:<6} {v:7.3f}" for n, v in self.as_dict().items()]
        rows.append("")
        rows.append(f"{'class':<16} {'AP':>7}")
        for cat, ap in self.per_class_ap().items():
            label = names.get(cat, str(cat)) if names else str(cat)
            rows.append(f"{label:<16} {ap:7.3f}" + ("  (no objects)" if ap == -1 else ""))
        if self.skipped_predictions:
            rows.append(f"({self.skipped_predictions} detections of other classes not evaluated)")
        return "\n".join(rows)

    def __repr__(self) -> str:
        stats = ", ".join(f"{n}={v:.3f}" for n, v in list(self.as_dict().items())[:3])
        return f"COCOResult({self.iou_type}, {len(self.categories)} classes, {stats}, ...)"


def _summarize_one(precision: np.ndarray, recall: np.ndarray, params: COCOParams, ap: bool,
                   iou: float | None, area: str, max_dets: int) -> tuple[float, str]:
    """One of COCOeval.summarize's lines: ``(value, text)``, computed as it does."""
    thresholds = np.asarray(params.iou_thresholds)
    aind = [i for i, name in enumerate(AREA_NAMES) if name == area]
    mind = [i for i, m in enumerate(params.max_dets) if m == max_dets]
    s = precision if ap else recall
    if iou is not None:
        hit = iou == thresholds if params.coco_quirks else np.isclose(iou, thresholds)
        s = s[np.where(hit)[0]]
    s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
    value = -1.0 if not len(s[s > -1]) else float(np.mean(s[s > -1]))
    title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
    iou_text = (f"{thresholds[0]:0.2f}:{thresholds[-1]:0.2f}" if iou is None else f"{iou:0.2f}")
    text = (f" {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6s} | "
            f"maxDets={max_dets:>3d} ] = {value:0.3f}")
    return value, text


def _summary_lines(precision: np.ndarray, recall: np.ndarray, params: COCOParams
                   ) -> tuple[np.ndarray, list[str]]:
    """COCOeval's 12 stats and the lines it prints for them."""
    m = params.max_dets
    first = 100 if params.coco_quirks else m[-1]  # summarize() hard-codes maxDets=100 here
    spec = [(True, None, "all", first), (True, 0.5, "all", m[2]), (True, 0.75, "all", m[2]),
            (True, None, "small", m[2]), (True, None, "medium", m[2]),
            (True, None, "large", m[2]), (False, None, "all", m[0]), (False, None, "all", m[1]),
            (False, None, "all", m[2]), (False, None, "small", m[2]),
            (False, None, "medium", m[2]), (False, None, "large", m[2])]
    out = [_summarize_one(precision, recall, params, *row) for row in spec]
    return np.array([v for v, _ in out]), [t for _, t in out]


# ---------------------------------------------------------------------------------------------
# Inputs: per-image dicts, validated once for both evaluators
# ---------------------------------------------------------------------------------------------


@dataclass
class _Objects:
    """The objects (ground truth or detections) of one image, validated.

    ``geometry`` is :class:`RLEMasks` for segm, ``[N, 4]`` COCO ``(x, y, w, h)`` for bbox.
    ``crowd`` is all False and ``scores`` all 0 where they do not apply.
    """

    labels: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    scores: np.ndarray
    geometry: Any


@dataclass
class _Image:
    image_id: int
    size: tuple[int, int] | None
    gt: _Objects
    dt: _Objects


@dataclass
class _Dataset:
    images: list[_Image]  # ascending image id
    categories: np.ndarray  # [K] ascending
    iou_type: str
    skipped: int


def _vector(value: Any, n: int, where: str, dtype: type) -> np.ndarray:
    arr = np.asarray(_numpy(value))
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{where} must have shape [{n}] (one per object), got {list(arr.shape)}")
    if dtype is bool:
        if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{where} must hold 0/1 or booleans")
        return arr.astype(bool)
    if dtype is np.int64:
        if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and
                                                 np.array_equal(arr, np.round(arr))):
            raise ValueError(f"{where} must hold integer class ids, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{where} must be finite, found NaN or inf")
    return out


def _image_id(item: Any, where: str) -> int:
    if not isinstance(item, dict):
        raise TypeError(f"{where} must be a dict, got {type(item).__name__}")
    if "image_id" not in item:
        raise ValueError(f"{where} has no 'image_id'")
    value = _numpy(item["image_id"])
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{where}['image_id'] must be an int, got {value!r}")
    return int(value)


def _geometry(item: dict, n: int, where: str, iou_type: str, size: tuple[int, int] | None
              ) -> tuple[Any, tuple[int, int] | None]:
    """Masks as RLEMasks (segm) or boxes as COCO xywh (bbox), and the image size seen."""
    if iou_type == "segm":
        if "masks" not in item:
            raise ValueError(f"{where} has no 'masks' (iou_type='segm' needs masks; "
                             "use iou_type='bbox' for boxes)")
        masks = item["masks"]
        if not isinstance(masks, RLEMasks):
            masks = RLEMasks.from_dense(as_masks(_numpy(masks), f"{where}['masks']"))
        if len(masks) != n:
            raise ValueError(f"{where}['masks'] holds {len(masks)} masks but 'labels' {n}")
        seen = (masks.height, masks.width)
        if size is not None and seen != size:
            raise ValueError(f"{where}['masks'] are {seen[0]}x{seen[1]} (H x W), but the "
                             f"ground truth of image {item['image_id']} is "
                             f"{size[0]}x{size[1]}")
        return masks, seen
    if "bbox" in item:
        xywh = np.asarray(_numpy(item["bbox"]), dtype=np.float64)
        key = "bbox"
    elif "boxes" in item:
        b = np.asarray(_numpy(item["boxes"]), dtype=np.float64)
        key = "boxes"
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{where}['boxes'] must have shape [{n}, 4] as (x1, y1, x2, y2), "
                             f"got {list(b.shape)}")
        xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    else:
        raise ValueError(f"{where} has no 'boxes' (iou_type='bbox' needs boxes [N, 4] xyxy, "
                         "or 'bbox' [N, 4] COCO xywh; course.boxes.masks_to_boxes makes them "
                         "from masks)")
    if xywh.ndim != 2 or xywh.shape != (n, 4):
        raise ValueError(f"{where}['{key}'] must have shape [{n}, 4], got {list(xywh.shape)}")
    if not np.isfinite(xywh).all() or (xywh[:, 2:] < 0).any():
        raise ValueError(f"{where}['{key}'] must be finite with x2 >= x1 and y2 >= y1")
    return xywh, size


def _objects(item: dict, where: str, iou_type: str, size: tuple[int, int] | None,
             is_gt: bool) -> tuple[_Objects, tuple[int, int] | None]:
    if "labels" not in item:
        raise ValueError(f"{where} has no 'labels'")
    labels = np.asarray(_numpy(item["labels"]))
    if labels.ndim != 1:
        raise ValueError(f"{where}['labels'] must have shape [N], got {list(labels.shape)}")
    n = len(labels)
    labels = _vector(labels, n, f"{where}['labels']", np.int64)
    geometry, size = _geometry(item, n, where, iou_type, size)
    if is_gt:
        crowd = _vector(item["iscrowd"], n, f"{where}['iscrowd']", bool) if "iscrowd" in item \
            else np.zeros(n, dtype=bool)
        scores = np.zeros(n)
    else:
        if "scores" not in item:
            raise ValueError(f"{where} has no 'scores' (each detection needs a confidence)")
        scores = np.asarray(_numpy(item["scores"]), dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"{where}['scores'] must have shape [{n}], got {list(scores.shape)}")
        if np.isnan(scores).any():
            raise ValueError(f"{where}['scores'][{int(np.argmax(np.isnan(scores)))}] is NaN")
        crowd = np.zeros(n, dtype=bool)
    if "area" in item:
        area = _vector(item["area"], n, f"{where}['area']", float)
    elif iou_type == "segm":
        area = geometry.area().astype(np.float64)
    elif is_gt and "masks" in item:  # COCO's ground-truth area is the mask's, also for boxes
        masks = item["masks"]
        area = (masks if isinstance(masks, RLEMasks) else RLEMasks.from_dense(
            as_masks(_numpy(masks), f"{where}['masks']"))).area().astype(np.float64)
    else:
        area = geometry[:, 2] * geometry[:, 3]
    return _Objects(labels, area, crowd, scores, geometry), size


def _empty_objects(iou_type: str, size: tuple[int, int] | None) -> _Objects:
    if iou_type == "segm":
        h, w = size if size is not None else (0, 0)
        geometry = RLEMasks._trusted(h, w, np.zeros(0, dtype=np.int64),
                                     np.zeros(1, dtype=np.int64))
    else:
        geometry = np.zeros((0, 4))
    return _Objects(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool),
                    np.zeros(0), geometry)


def _keep(objects: _Objects, keep: np.ndarray) -> _Objects:
    if keep.all():
        return objects
    geometry = objects.geometry.select(np.flatnonzero(keep)) \
        if isinstance(objects.geometry, RLEMasks) else objects.geometry[keep]
    return _Objects(objects.labels[keep], objects.area[keep], objects.crowd[keep],
                    objects.scores[keep], geometry)


def _as_item(item: Any) -> Any:
    """An :class:`~course.structures.Instances` (with its ``image_id``) as the per-image dict."""
    return item.as_dict() if isinstance(item, Instances) else item


def _prepare(ground_truth: Sequence[dict], predictions: Sequence[dict], iou_type: str,
             categories: Sequence[int] | None, progress: Progress | None) -> _Dataset:
    """Validate both lists and bring them to one form; see :func:`coco_evaluate`."""
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    progress = progress or no_progress
    ground_truth = [_as_item(x) for x in ground_truth]
    predictions = [_as_item(x) for x in predictions]
    images: dict[int, _Image] = {}
    for i, item in enumerate(progress(list(ground_truth), "ground truth")):
        where = f"ground_truth[{i}]"
        image_id = _image_id(item, where)
        if image_id in images:
            raise ValueError(f"{where}['image_id'] = {image_id} appears twice in ground_truth")
        gt, size = _objects(item, where, iou_type, None, is_gt=True)
        images[image_id] = _Image(image_id, size, gt, _empty_objects(iou_type, size))
    seen: set[int] = set()
    for i, item in enumerate(progress(list(predictions), "predictions")):
        where = f"predictions[{i}]"
        image_id = _image_id(item, where)
        if image_id not in images:
            raise ValueError(f"{where}['image_id'] = {image_id} is not an image of the ground "
                             "truth (every image evaluated must be listed there, even without "
                             "objects)")
        if image_id in seen:
            raise ValueError(f"{where}['image_id'] = {image_id} appears twice in predictions")
        seen.add(image_id)
        images[image_id].dt, _ = _objects(item, where, iou_type, images[image_id].size,
                                           is_gt=False)
    ordered = [images[k] for k in sorted(images)]
    gt_labels = np.concatenate([im.gt.labels for im in ordered] + [np.zeros(0, np.int64)])
    dt_labels = np.concatenate([im.dt.labels for im in ordered] + [np.zeros(0, np.int64)])
    if categories is None:
        cats = np.unique(gt_labels)
    else:
        cats = np.unique(np.asarray([int(c) for c in categories], dtype=np.int64))
        if not np.isin(gt_labels, cats).all() or not np.isin(dt_labels, cats).all():
            _raise_unknown_label(cats, ground_truth, predictions)
    keep = np.isin(dt_labels, cats)
    if not keep.all():
        bounds = np.cumsum([0] + [len(im.dt.labels) for im in ordered])
        for i, im in enumerate(ordered):
            im.dt = _keep(im.dt, keep[bounds[i]:bounds[i + 1]])
    return _Dataset(ordered, cats.astype(np.int64), iou_type, int((~keep).sum()))


def _raise_unknown_label(cats: np.ndarray, ground_truth: Sequence[dict],
                         predictions: Sequence[dict]) -> None:
    """With an explicit category list, a label outside it is an error (not silently dropped)."""
    for name, items in (("ground_truth", ground_truth), ("predictions", predictions)):
        for i, item in enumerate(items):
            labels = np.asarray(_numpy(item["labels"])).reshape(-1)
            bad = ~np.isin(labels, cats)
            if bad.any():
                raise ValueError(
                    f"{name}[{i}]['labels'] holds {int(labels[np.argmax(bad)])}, which is not in "
                    f"categories {cats.tolist()}; add it to categories, or leave categories=None "
                    "to evaluate the ground truth's classes and skip other detections (as "
                    "COCOeval skips categories it does not evaluate)")


def _result(dataset: _Dataset, precision: np.ndarray, recall: np.ndarray,
            params: COCOParams) -> COCOResult:
    stats, _ = _summary_lines(precision, recall, params)
    return COCOResult(stats, precision, recall, tuple(int(c) for c in dataset.categories),
                      dataset.iou_type, params, dataset.skipped)


# ---------------------------------------------------------------------------------------------
# The fast evaluator
# ---------------------------------------------------------------------------------------------


def coco_evaluate(ground_truth: Sequence[Any], predictions: Sequence[Any],
                  iou_type: str = "segm", categories: Sequence[int] | None = None,
                  params: COCOParams | None = None, progress: Progress | None = None
                  ) -> COCOResult:
    """COCO AP and AR of ``predictions`` against ``ground_truth``, equal to pycocotools' COCOeval.

    Args:
        ground_truth: one dict per image, every image to evaluate (also those without
            objects): ``image_id`` (int), ``labels [N]`` (class ids), ``masks [N, H, W]``
            (bool or 0/1, or :class:`course.coco.RLEMasks`) for ``"segm"``, or ``boxes
            [N, 4]`` ``(x1, y1, x2, y2)`` (or ``bbox [N, 4]`` COCO ``(x, y, w, h)``) for
            ``"bbox"``; optional ``iscrowd [N]`` (default 0) and ``area [N]`` (default: the
            mask's pixel count, the box's area without masks). Tensors or numpy arrays. An
            :class:`course.structures.Instances` with its ``image_id`` set stands for its dict.
        predictions: one dict (or ``Instances``) per image with detections (images may be
            left out):
            ``image_id``, ``labels [P]``, ``scores [P]``, and ``masks`` or ``boxes`` / ``bbox``
            as above; optional ``area [P]`` (default as COCO's ``loadRes``: the mask's pixel
            count, or the box's ``w * h``).
        iou_type: ``"segm"`` (mask IoU) or ``"bbox"`` (box IoU).
        categories: the class ids to evaluate, the K axis of the result in ascending order.
            Default: the ground truth's classes; detections of other classes are then skipped
            (they have nothing to match, and COCOeval skips categories it does not evaluate)
            and counted in ``skipped_predictions``. Given explicitly, a label outside it is a
            ValueError.
        params: :class:`COCOParams` (COCO's defaults).
        progress: optional ``progress(items, description)`` wrapper for the per-image loops
            (e.g. a tqdm bar).

    Returns:
        COCOResult. Without any detections, every class with objects has AP 0 (where
        pycocotools' ``loadRes([])`` raises an IndexError).

    Raises:
        ValueError / TypeError naming the field: missing or mis-shaped fields, masks of
        another size than the image's ground truth, predictions for an image not in the
        ground truth, NaN scores, labels outside an explicit ``categories``.
    """
    params = params or COCOParams()
    dataset = _prepare(ground_truth, predictions, iou_type, categories, progress)
    gt, dt = _pack(dataset, params)
    pair_dt, pair_gt, pair_iou = _pair_ious(gt, dt, dataset.iou_type)
    matched_gt = _match(gt, dt, pair_dt, pair_gt, pair_iou, params)
    precision, recall = _accumulate(gt, dt, matched_gt, len(dataset.categories), params)
    return _result(dataset, precision, recall, params)


@dataclass
class _Packed:
    """All objects of all images in flat arrays, sorted by (class, image, own order).

    Detections are also sorted by descending score within each (class, image) group
    (``rank`` is the position there) and cut at ``max_dets[-1]``. ``geometry`` stays in the
    images' order; ``source`` maps each sorted object to its place there.
    """

    group: np.ndarray  # [N] class index * num_images + image index
    cls: np.ndarray  # [N] class index
    area: np.ndarray  # [N] for the area ranges
    crowd: np.ndarray  # [N]
    score: np.ndarray  # [N]
    rank: np.ndarray  # [N] position within the group (detections)
    source: np.ndarray  # [N] index into geometry
    geometry: Any  # (counts, offsets, heights, pixels) for segm, [N0, 4] xywh for bbox


def _concat_geometry(parts: list[Any], iou_type: str) -> Any:
    if iou_type == "bbox":
        return np.concatenate(parts) if parts else np.zeros((0, 4))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(1, dtype=np.int64), empty, empty
    counts = np.concatenate([p.counts for p in parts])
    lengths = np.concatenate([np.diff(p.offsets) for p in parts])
    sizes = np.array([(len(p), p.height, p.width) for p in parts], dtype=np.int64)
    heights = np.repeat(sizes[:, 1], sizes[:, 0])
    pixels = np.repeat(sizes[:, 1] * sizes[:, 2], sizes[:, 0])
    return counts, np.concatenate([[0], np.cumsum(lengths)]), heights, pixels


def _pack(dataset: _Dataset, params: COCOParams) -> tuple[_Packed, _Packed]:
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
        packed.append(_Packed(
            group=group, cls=group // max(num_images, 1),
            area=np.concatenate([o.area for o in objs] + [np.zeros(0)])[order],
            crowd=np.concatenate([o.crowd for o in objs] + [np.zeros(0, bool)])[order],
            score=score[order], rank=rank, source=order,
            geometry=_concat_geometry([o.geometry for o in objs], dataset.iou_type)))
    return packed[0], packed[1]


def _candidate_pairs(gt: _Packed, dt: _Packed) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, ground truth) pair of the same image and class: two [P] index arrays."""
    first = np.searchsorted(gt.group, dt.group, side="left")
    count = np.searchsorted(gt.group, dt.group, side="right") - first
    pair_dt = np.repeat(np.arange(len(dt.group)), count)
    pair_gt = np.repeat(first, count) + ragged_arange(count)
    return pair_dt, pair_gt


def _pair_ious(gt: _Packed, dt: _Packed, iou_type: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every candidate pair: ``(pair_dt, pair_gt, iou)``, pairs sorted by detection."""
    pair_dt, pair_gt = _candidate_pairs(gt, dt)
    d, g = dt.source[pair_dt], gt.source[pair_gt]
    if iou_type == "bbox":
        iou = _box_iou_pairs(dt.geometry[d], gt.geometry[g], gt.crowd[pair_gt])
    else:
        iou = _mask_iou_pairs(dt.geometry, gt.geometry, d, g, gt.crowd[pair_gt])
    return pair_dt, pair_gt, iou


def _box_iou_pairs(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` for matched rows of xywh boxes ``d [P, 4]``, ``g [P, 4]``."""
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    overlap = (w > 0) & (h > 0)
    inter = w * h
    area_d, area_g = d[:, 2] * d[:, 3], g[:, 2] * g[:, 3]
    union = np.where(crowd, area_d, area_d + area_g - inter)
    out = np.zeros(len(d))
    out[overlap] = inter[overlap] / union[overlap]
    return out


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


def _match(gt: _Packed, dt: _Packed, pair_dt: np.ndarray, pair_gt: np.ndarray,
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
    ignore = np.stack([gt.crowd | _outside(gt.area, *r) for r in params.area_ranges])  # [A, G]
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


def _accumulate(gt: _Packed, dt: _Packed, matched: np.ndarray, num_classes: int,
                params: COCOParams) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.accumulate: precision [T, R, K, A, M] and recall [T, K, A, M]."""
    ranges, max_dets = params.area_ranges, params.max_dets
    num_t, num_r = len(params.iou_thresholds), len(params.recall_thresholds)
    num_a, num_m = len(ranges), len(max_dets)
    rec_thr = np.asarray(params.recall_thresholds, dtype=np.float64)
    precision = -np.ones((num_t, num_r, num_classes, num_a, num_m))
    recall = -np.ones((num_t, num_classes, num_a, num_m))
    gt_ignore = np.stack([gt.crowd | _outside(gt.area, *r) for r in ranges])  # [A, G]
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
    pr = tp_sum / (fp_sum + tp_sum + _EPS)
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


# ---------------------------------------------------------------------------------------------
# The reference evaluator: COCOeval's loops
# ---------------------------------------------------------------------------------------------


def coco_evaluate_reference(ground_truth: Sequence[dict[str, Any]],
                            predictions: Sequence[dict[str, Any]], iou_type: str = "segm",
                            categories: Sequence[int] | None = None,
                            params: COCOParams | None = None) -> COCOResult:
    """:func:`coco_evaluate` written as COCOeval's loops read (slow; for teaching and tests).

    Per class and image: IoU of the score-sorted detections with the objects
    (:func:`course.masks.mask_iou` on decoded masks, or COCO's box formula); per area range
    and threshold, the greedy matching one detection at a time; then, per class, area range
    and ``max_dets``, one ranked list over all images, its precision and recall, the envelope
    and the 101-point sampling. Same arguments and result as :func:`coco_evaluate`.
    """
    params = params or COCOParams()
    dataset = _prepare(ground_truth, predictions, iou_type, categories, None)
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
            ious = _reference_ious(image, dt, gt, dataset.iou_type)
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
    return _result(dataset, precision, recall, params)


def _reference_ious(image: _Image, dt: list[int], gt: list[int], iou_type: str) -> np.ndarray:
    """IoU ``[len(dt), len(gt)]`` of the chosen detections and objects of one image."""
    if iou_type == "segm":
        d = image.dt.geometry.select(dt).to_dense()
        g = image.gt.geometry.select(gt).to_dense()
        return mask_iou(torch.from_numpy(d), torch.from_numpy(g),
                        torch.from_numpy(image.gt.crowd[gt])).numpy()
    out = np.zeros((len(dt), len(gt)))
    for i, di in enumerate(dt):
        dx, dy, dw, dh = image.dt.geometry[di].tolist()
        for j, gj in enumerate(gt):
            gx, gy, gw, gh = image.gt.geometry[gj].tolist()
            w = min(dw + dx, gw + gx) - max(dx, gx)
            h = min(dh + dy, gh + gy) - max(dy, gy)
            if w <= 0 or h <= 0:
                continue
            union = dw * dh if image.gt.crowd[gj] else dw * dh + gw * gh - w * h
            out[i, j] = w * h / union
    return out


def _evaluate_image(image: _Image, dt: list[int], gt: list[int], ious: np.ndarray,
                    low: float, high: float, thresholds: Sequence[float]) -> dict[str, Any]:
    """COCOeval.evaluateImg for one image, class and area range."""
    gt_ignore = [bool(image.gt.crowd[j]) or not low <= image.gt.area[j] <= high for j in gt]
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
            prec.append(tp / (fp + tp + _EPS))
        recall[t] = rec[-1] if rec else 0
        for i in range(len(prec) - 1, 0, -1):  # the envelope, from the right
            prec[i - 1] = max(prec[i - 1], prec[i])
        for r, point in enumerate(params.recall_thresholds):
            first = next((i for i, value in enumerate(rec) if value >= point), None)
            precision[t, r] = prec[first] if first is not None else 0.0
    return precision, recall
