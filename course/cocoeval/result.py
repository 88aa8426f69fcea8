"""What COCOeval's settings and answer look like: :class:`COCOParams` and :class:`COCOResult`,
and ``summarize``'s stats and lines (12 for boxes and masks, 10 for keypoints), computed as
it computes them.

Both evaluators of chapter 03 (the loop version in :mod:`course.ap` and the engine in
:mod:`course.cocoeval.engine`) take a :class:`COCOParams` and return a :class:`COCOResult`.
numpy only, like the rest of :mod:`course.cocoeval`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from course.cocoeval.dataset import Dataset
from course.cocoeval.keypoints import COCO_KEYPOINT_SIGMAS

AREA_NAMES = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_AREA_NAMES = ("all", "medium", "large")
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def stat_names(iou_type: str) -> tuple[str, ...]:
    """The names of ``summarize``'s stats for ``iou_type``: 10 for keypoints, else 12."""
    return KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES


# ---------------------------------------------------------------------------------------------
# Parameters and result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class COCOParams:
    """``COCOeval.params``, with COCO's defaults for boxes and masks (``COCOParams()``) or for
    keypoints (:meth:`for_keypoints`).

    Attributes:
        iou_thresholds: IoU thresholds ``T`` (``np.linspace(.5, .95, 10)``); OKS thresholds
            for keypoints.
        recall_thresholds: recall points ``R`` (``np.linspace(0, 1, 101)``), ascending.
        max_dets: the per-image, per-class detection limits ``M``, sorted (1, 10, 100); at
            least three for boxes and masks (the summary reads the first three, and AP also
            100); keypoints: (20,).
        area_ranges: ``(low, high)`` for each of ``area_names`` (bounds included).
        area_names: the names of the area ranges, which the summary looks up: all, small,
            medium, large; keypoints: all, medium, large.
        coco_quirks: keep ``summarize``'s quirks (see :mod:`course.ap`); ``False`` reads
            AP at ``max_dets[-1]`` and finds 0.5 / 0.75 with ``np.isclose``.
        image_ids: ``imgIds``: evaluate only these images of the ground truth (ids it lacks
            are passed over, as in COCOeval); ``None``: all of them.
        use_cats: ``useCats``: ``False`` pools all evaluated classes into one, ``-1`` (any
            detection may match any object), as COCOeval does for proposals.
        keypoint_sigmas: ``kpt_oks_sigmas``, one per keypoint, for keypoint evaluation
            (OKS); ``None`` (the default) for boxes and masks.
    """

    iou_thresholds: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
    recall_thresholds: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 101).tolist())
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = ((0, 1e10), (0, 32**2), (32**2, 96**2),
                                                    (96**2, 1e10))
    coco_quirks: bool = True
    image_ids: tuple[int, ...] | None = None
    use_cats: bool = True
    area_names: tuple[str, ...] = AREA_NAMES
    keypoint_sigmas: tuple[float, ...] | None = None

    @classmethod
    def for_keypoints(cls, **changes: object) -> COCOParams:
        """pycocotools' keypoint parameters (``setKpParams``): COCO's 17 sigmas, ``max_dets``
        (20,), area ranges all / medium / large; ``changes`` set other fields."""
        return cls(**{"max_dets": (20,), "keypoint_sigmas": COCO_KEYPOINT_SIGMAS,
                      "area_ranges": ((0, 1e10), (32**2, 96**2), (96**2, 1e10)),
                      "area_names": KEYPOINT_AREA_NAMES, **changes})

    def __post_init__(self) -> None:
        t = np.asarray(self.iou_thresholds, dtype=np.float64)
        if t.ndim != 1 or not len(t) or not ((t >= 0) & (t <= 1)).all():
            raise ValueError(f"iou_thresholds must be numbers in [0, 1], got {self.iou_thresholds}")
        r = np.asarray(self.recall_thresholds, dtype=np.float64)
        if r.ndim != 1 or not len(r) or (np.diff(r) < 0).any() or not ((r >= 0) & (r <= 1)).all():
            raise ValueError("recall_thresholds must be ascending numbers in [0, 1]")
        self._check_max_dets()
        object.__setattr__(self, "max_dets", tuple(sorted(int(v) for v in self.max_dets)))
        if self.image_ids is not None:
            ids = tuple(self.image_ids)
            if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in ids):
                raise ValueError(f"image_ids must be ints (or None for all), got {ids}")
            object.__setattr__(self, "image_ids", tuple(int(v) for v in ids))
        self._check_areas()
        if self.keypoint_sigmas is not None:
            s = np.asarray(self.keypoint_sigmas, dtype=np.float64)
            if s.ndim != 1 or not len(s) or not (np.isfinite(s) & (s > 0)).all():
                raise ValueError("keypoint_sigmas must be positive numbers, one per keypoint, "
                                 f"got {self.keypoint_sigmas}")
            object.__setattr__(self, "keypoint_sigmas", tuple(float(v) for v in s))

    def _check_max_dets(self) -> None:
        m = self.max_dets
        least = 1 if self.keypoint_sigmas is not None else 3
        if len(m) < least or any(isinstance(v, bool) or not isinstance(v, int | np.integer)
                                 or v < 1 for v in m):
            raise ValueError(f"max_dets must be at least three positive ints (COCO's summary "
                             f"reads the first three), got {m}" if least == 3 else
                             f"max_dets must be positive ints, got {m}")

    def _check_areas(self) -> None:
        a, names = self.area_ranges, tuple(self.area_names)
        if self.keypoint_sigmas is None and (len(a) != 4 or names != AREA_NAMES):
            raise ValueError("area_ranges must be four (low, high) pairs: all, small, medium, "
                             f"large; got {a}")
        if len(a) != len(names) or any(len(pair) != 2 or pair[0] > pair[1] for pair in a):
            raise ValueError(f"area_ranges must be one (low, high) pair for each of "
                             f"{names}; got {a}")
        object.__setattr__(self, "area_names", names)

    def check_iou_type(self, iou_type: str) -> None:
        """Refuse parameters that do not fit ``iou_type``: keypoints need
        :meth:`for_keypoints` (sigmas), boxes and masks parameters without them; and
        ``use_cats=False`` for keypoints, where pycocotools' ``computeOks`` pairs nothing."""
        if iou_type == "keypoints" and self.keypoint_sigmas is None:
            raise ValueError("iou_type='keypoints' needs keypoint parameters: "
                             "COCOParams.for_keypoints() (OKS sigmas, max_dets (20,), area "
                             "ranges all / medium / large)")
        if iou_type in ("segm", "bbox") and self.keypoint_sigmas is not None:
            raise ValueError(f"iou_type={iou_type!r} needs COCOParams() (these are keypoint "
                             "parameters, COCOParams.for_keypoints())")
        if iou_type == "keypoints" and not self.use_cats:
            raise ValueError("use_cats=False is not supported for keypoints: pycocotools' "
                             "computeOks looks the pooled class up as category -1 and finds "
                             "no pairs, so every detection would count as a false positive")


def default_params(iou_type: str) -> COCOParams:
    """COCO's parameters for ``iou_type``: :meth:`COCOParams.for_keypoints` for keypoints,
    ``COCOParams()`` otherwise (as pycocotools' ``Params(iouType)``)."""
    return COCOParams.for_keypoints() if iou_type == "keypoints" else COCOParams()


@dataclass(frozen=True, eq=False)
class COCOResult:
    """What ``COCOeval`` computes, with its layout.

    Attributes:
        stats (np.ndarray[12]): AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm,
            ARl (:data:`STAT_NAMES`); for keypoints ``[10]``: AP, AP50, AP75, APm, APl, AR,
            AR50, AR75, ARm, ARl (:data:`KEYPOINT_STAT_NAMES`); -1 where undefined.
        precision (np.ndarray[T, R, K, A, M]): interpolated precision per IoU threshold,
            recall point, class, area range and ``max_dets``; -1 for classes without objects.
        recall (np.ndarray[T, K, A, M]): the recall reached; -1 likewise.
        categories: the K category ids, ascending; ``(-1,)`` with ``use_cats=False``.
        iou_type: ``"segm"``, ``"bbox"`` or ``"keypoints"``.
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
        """The stats by name (12, or 10 for keypoints: :func:`stat_names`)."""
        return {name: float(v) for name, v in zip(stat_names(self.iou_type), self.stats,
                                                  strict=True)}

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
        """The lines ``COCOeval.summarize()`` prints (12, or 10 for keypoints), character for
        character."""
        return "\n".join(_summary_lines(self.precision, self.recall, self.params,
                                        self.iou_type)[1])

    def summary(self, names: dict[int, str] | None = None) -> str:
        """A readable table: the stats, then AP per class."""
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
    aind = [i for i, name in enumerate(params.area_names) if name == area]
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


def _summary_lines(precision: np.ndarray, recall: np.ndarray, params: COCOParams,
                   iou_type: str) -> tuple[np.ndarray, list[str]]:
    """COCOeval's stats and the lines it prints for them (``_summarizeDets``, or
    ``_summarizeKps`` for keypoints)."""
    m = params.max_dets
    first = 100 if params.coco_quirks else m[-1]  # summarize() hard-codes maxDets=100 here
    if iou_type == "keypoints":  # _summarizeKps reads maxDets=20 throughout
        kp = 20 if params.coco_quirks else m[-1]
        spec = [(ap, iou, area, kp) for ap in (True, False) for iou, area in
                ((None, "all"), (0.5, "all"), (0.75, "all"), (None, "medium"), (None, "large"))]
    else:
        spec = [(True, None, "all", first), (True, 0.5, "all", m[2]),
                (True, 0.75, "all", m[2]), (True, None, "small", m[2]),
                (True, None, "medium", m[2]), (True, None, "large", m[2]),
                (False, None, "all", m[0]), (False, None, "all", m[1]),
                (False, None, "all", m[2]), (False, None, "small", m[2]),
                (False, None, "medium", m[2]), (False, None, "large", m[2])]
    out = [_summarize_one(precision, recall, params, *row) for row in spec]
    return np.array([v for v, _ in out]), [t for _, t in out]


def make_result(dataset: Dataset, precision: np.ndarray, recall: np.ndarray,
            params: COCOParams) -> COCOResult:
    """The :class:`COCOResult` of an evaluated ``dataset``: the arrays and the stats.

    Raises a ValueError when ``dataset`` does not show ``params.image_ids`` and
    ``params.use_cats`` applied (:func:`course.cocoeval.dataset.select` applies them), so
    that an evaluator that skips them cannot return numbers for other settings.
    """
    wanted = set(params.image_ids) if params.image_ids is not None else None
    if (not params.use_cats and dataset.categories.tolist() != [-1]) or (
            wanted is not None and any(im.image_id not in wanted for im in dataset.images)):
        raise ValueError("params.image_ids / params.use_cats were not applied to the dataset "
                         "(course.cocoeval.dataset.select applies them)")
    stats, _ = _summary_lines(precision, recall, params, dataset.iou_type)
    return COCOResult(stats, precision, recall, tuple(int(c) for c in dataset.categories),
                      dataset.iou_type, params, dataset.skipped)
