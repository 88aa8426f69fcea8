"""What COCOeval's settings and answer look like: :class:`COCOParams` and :class:`COCOResult`,
and ``summarize``'s 12 stats and lines, computed as it computes them.

Both evaluators of chapter 03 (the loop version in :mod:`course.ap` and the engine in
:mod:`course.cocoeval.engine`) take a :class:`COCOParams` and return a :class:`COCOResult`.
numpy only, like the rest of :mod:`course.cocoeval`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from course.cocoeval.dataset import Dataset

AREA_NAMES = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


# ---------------------------------------------------------------------------------------------
# Parameters and result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class COCOParams:
    """``COCOeval.params`` for detection, with COCO's defaults.

    Attributes:
        iou_thresholds: IoU thresholds ``T`` (``np.linspace(.5, .95, 10)``).
        recall_thresholds: recall points ``R`` (``np.linspace(0, 1, 101)``), ascending.
        max_dets: the per-image, per-class detection limits ``M``, sorted (1, 10, 100); at
            least three (the summary reads the first three, and AP also 100).
        area_ranges: ``(low, high)`` for all, small, medium, large (bounds included).
        coco_quirks: keep ``summarize``'s quirks (see the module docstring); ``False`` reads
            AP at ``max_dets[-1]`` and finds 0.5 / 0.75 with ``np.isclose``.
        image_ids: ``imgIds``: evaluate only these images of the ground truth (ids it lacks
            are passed over, as in COCOeval); ``None``: all of them.
        use_cats: ``useCats``: ``False`` pools all evaluated classes into one, ``-1`` (any
            detection may match any object), as COCOeval does for proposals.
    """

    iou_thresholds: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
    recall_thresholds: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 101).tolist())
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = ((0, 1e10), (0, 32**2), (32**2, 96**2),
                                                    (96**2, 1e10))
    coco_quirks: bool = True
    image_ids: tuple[int, ...] | None = None
    use_cats: bool = True

    def __post_init__(self) -> None:
        t = np.asarray(self.iou_thresholds, dtype=np.float64)
        if t.ndim != 1 or not len(t) or not ((t >= 0) & (t <= 1)).all():
            raise ValueError(f"iou_thresholds must be numbers in [0, 1], got {self.iou_thresholds}")
        r = np.asarray(self.recall_thresholds, dtype=np.float64)
        if r.ndim != 1 or not len(r) or (np.diff(r) < 0).any() or not ((r >= 0) & (r <= 1)).all():
            raise ValueError("recall_thresholds must be ascending numbers in [0, 1]")
        m = self.max_dets
        if len(m) < 3 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1
                             for v in m):
            raise ValueError(f"max_dets must be at least three positive ints (COCO's summary "
                             f"reads the first three), got {m}")
        object.__setattr__(self, "max_dets", tuple(sorted(int(v) for v in m)))  # as COCOeval
        if self.image_ids is not None:
            ids = tuple(self.image_ids)
            if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in ids):
                raise ValueError(f"image_ids must be ints (or None for all), got {ids}")
            object.__setattr__(self, "image_ids", tuple(int(v) for v in ids))
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
        categories: the K category ids, ascending; ``(-1,)`` with ``use_cats=False``.
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


def make_result(dataset: Dataset, precision: np.ndarray, recall: np.ndarray,
            params: COCOParams) -> COCOResult:
    """The :class:`COCOResult` of an evaluated ``dataset``: the arrays and the 12 stats.

    Raises a ValueError when ``dataset`` does not show ``params.image_ids`` and
    ``params.use_cats`` applied (:func:`course.cocoeval.dataset.select` applies them), so
    that an evaluator that skips them cannot return numbers for other settings.
    """
    wanted = set(params.image_ids) if params.image_ids is not None else None
    if (not params.use_cats and dataset.categories.tolist() != [-1]) or (
            wanted is not None and any(im.image_id not in wanted for im in dataset.images)):
        raise ValueError("params.image_ids / params.use_cats were not applied to the dataset "
                         "(course.cocoeval.dataset.select applies them)")
    stats, _ = _summary_lines(precision, recall, params)
    return COCOResult(stats, precision, recall, tuple(int(c) for c in dataset.categories),
                      dataset.iou_type, params, dataset.skipped)
