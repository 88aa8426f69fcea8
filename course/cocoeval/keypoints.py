"""COCO keypoints: Object Keypoint Similarity (OKS), the overlap of keypoint evaluation.

A person is annotated with ``K`` keypoints (COCO: 17, nose to ankles), each ``(x, y, v)``
with ``v > 0`` where the keypoint is labelled. A detection's keypoints are compared with a
ground truth's by

    OKS = mean over labelled keypoints i of exp(-d_i**2 / (2 * s**2 * k_i**2)),

where ``d_i`` is the distance of keypoint ``i``, ``s**2`` the object's ``area`` and
``k_i = 2 * sigma_i`` its per-keypoint tolerance (:data:`COCO_KEYPOINT_SIGMAS`). OKS takes
the place of IoU: it is 1 for a perfect detection and falls towards 0 with the distance. As
pycocotools' ``COCOeval.computeOks`` does, a ground truth with no labelled keypoint is
measured against its box enlarged by its width and height on each side (a keypoint inside
it is at distance 0), over all ``K`` keypoints.

:func:`keypoint_similarity` computes it for one pair as pycocotools writes it;
:func:`pair_oks` for many pairs at once, for the fast engine (the same numbers, bit for
bit). :class:`Keypoints` holds the keypoints of many objects. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

COCO_KEYPOINT_SIGMAS: tuple[float, ...] = tuple((np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89])
    / 10.0).tolist())
"""The 17 per-keypoint sigmas of COCO's person keypoints (pycocotools' ``kpt_oks_sigmas``)."""


@dataclass
class Keypoints:
    """The keypoints of ``N`` objects, indexed like an array (``kp[order]``, ``kp[mask]``).

    Attributes:
        points (np.ndarray[N, K, 3]): ``(x, y, v)`` per keypoint; ``v > 0``: labelled (only
            the ground truth's ``v`` is read).
        boxes (np.ndarray[N, 4]): COCO ``(x, y, w, h)`` of the ground truth (what an object
            without labelled keypoints is measured against); zeros for detections.
        num_keypoints (np.ndarray[N]): COCO's ``num_keypoints`` as annotated; a ground truth
            with 0 is ignored in evaluation (default: the count of ``v > 0``).
    """

    points: np.ndarray
    boxes: np.ndarray
    num_keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: Any) -> Keypoints:
        return Keypoints(self.points[index], self.boxes[index], self.num_keypoints[index])

    @staticmethod
    def concatenate(parts: Sequence[Keypoints]) -> Keypoints:
        """All parts end to end; parts without objects may have any ``K``."""
        full = [p for p in parts if len(p)] or list(parts[:1])
        if not full:
            return Keypoints(np.zeros((0, 0, 3)), np.zeros((0, 4)), np.zeros(0))
        return Keypoints(np.concatenate([p.points for p in full]),
                         np.concatenate([p.boxes for p in full]),
                         np.concatenate([p.num_keypoints for p in full]))


def as_keypoints(value: Any, n: int, where: str) -> np.ndarray:
    """Keypoints of ``n`` objects, ``[N, K, 3]`` or COCO's flat ``[N, 3 * K]``, as float64
    ``[N, K, 3]``; a ValueError naming ``where`` for another shape or a non-finite value."""
    arr = np.asarray(value, dtype=np.float64)
    if n == 0 and arr.size == 0:  # no objects: any empty array
        return np.zeros((0, arr.shape[1] if arr.ndim == 3 else 0, 3))
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] % 3 == 0:
        arr = arr.reshape(n, -1, 3)  # [N, K, 3]
    if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != 3:
        raise ValueError(f"{where} must have shape [{n}, K, 3] as (x, y, visibility) per "
                         f"keypoint (or COCO's flat [{n}, 3 * K]), got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where} must be finite, found NaN or inf")
    return arr


def keypoints_from_lists(lists: Sequence[Any], names: Sequence[str],
                         per_object: int | None) -> np.ndarray:
    """COCO json's flat keypoint lists ``[x1, y1, v1, x2, ...]`` as float64 ``[N, K, 3]``.

    Every list must hold ``3 * per_object`` numbers (``per_object=None``: as many as the
    first, at least 3); otherwise a ValueError names the first culprit (``names[i]``).
    """
    k = per_object
    if k is None:
        k = len(lists[0]) // 3 if lists and isinstance(lists[0], list | tuple) else 0
    if not len(lists):
        return np.zeros((0, k, 3))
    try:
        arr = np.array(lists, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape == (len(lists), 3 * k) and k and np.isfinite(arr).all():
        return arr.reshape(len(lists), k, 3)  # [N, K, 3]
    for name, values in zip(names, lists, strict=True):
        if not isinstance(values, list | tuple) or len(values) != 3 * k or not k:
            got = f"{len(values)} numbers" if isinstance(values, list | tuple) else repr(values)
            raise ValueError(f"{name} must be a list of 3 * {k} = {3 * k} numbers (x, y, v for "
                             f"each of the {k} keypoints), got {got}")
        try:
            finite = np.isfinite(np.array(values, dtype=np.float64)).all()
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ValueError(f"{name} must hold finite numbers, got {values!r}")
    raise AssertionError("keypoint lists that pass every check were refused")


def keypoint_extent(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area and COCO box ``(x, y, w, h)`` of the keypoints' extent, as pycocotools' ``loadRes``
    sizes keypoint results: every keypoint counts, labelled or not.

    Args:
        points (np.ndarray[N, K, 3]).

    Returns:
        ``(area [N], xywh [N, 4])``.
    """
    lo, hi = points[:, :, :2].min(axis=1), points[:, :, :2].max(axis=1)  # [N, 2]
    wh = hi - lo
    return wh[:, 0] * wh[:, 1], np.concatenate([lo, wh], axis=1)


def keypoint_similarity(dt: np.ndarray, gt: np.ndarray, gt_box: np.ndarray, gt_area: float,
                        sigmas: Sequence[float]) -> float:
    """OKS of one detection ``dt [K, 3]`` and one ground truth ``gt [K, 3]`` (its COCO box
    ``gt_box [4]`` and ``gt_area``), written as ``COCOeval.computeOks`` computes it."""
    variances = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2  # [K]
    labelled = gt[:, 2] > 0
    if labelled.any():  # the distance to each labelled keypoint
        dx, dy = dt[:, 0] - gt[:, 0], dt[:, 1] - gt[:, 1]
    else:  # the distance to the box enlarged by its size on each side
        x, y, w, h = gt_box
        dx = np.maximum(0, (x - w) - dt[:, 0]) + np.maximum(0, dt[:, 0] - (x + w * 2))
        dy = np.maximum(0, (y - h) - dt[:, 1]) + np.maximum(0, dt[:, 1] - (y + h * 2))
    e = (dx**2 + dy**2) / variances / (gt_area + np.spacing(1)) / 2
    if labelled.any():
        e = e[labelled]
    return float(np.sum(np.exp(-e)) / e.shape[0])


def pair_oks(dt: np.ndarray, gt: np.ndarray, gt_boxes: np.ndarray, gt_area: np.ndarray,
             sigmas: Sequence[float]) -> np.ndarray:
    """OKS of the pairs ``(dt[p], gt[p])``: :func:`keypoint_similarity` for all at once.

    Args:
        dt, gt (np.ndarray[P, K, 3]): the keypoints of each pair's detection and ground truth.
        gt_boxes (np.ndarray[P, 4]): the ground truth's COCO box; gt_area (np.ndarray[P]).
        sigmas: ``K`` per-keypoint sigmas.

    Returns:
        np.ndarray[P]. Each pair's sum runs over its own labelled keypoints in order, as
        numpy sums them for one pair, so that the numbers equal pycocotools' bit for bit.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if not len(dt):
        return np.zeros(0)
    if dt.shape[1] != len(sigmas) or gt.shape[1] != len(sigmas):
        raise ValueError(f"the objects have {gt.shape[1]} keypoints (detections "
                         f"{dt.shape[1]}), but params.keypoint_sigmas holds {len(sigmas)}, "
                         "one per keypoint")
    labelled = gt[:, :, 2] > 0  # [P, K]
    blind = ~labelled.any(axis=1)  # [P] ground truth without a labelled keypoint
    dx, dy = dt[:, :, 0] - gt[:, :, 0], dt[:, :, 1] - gt[:, :, 1]  # [P, K]
    x, y, w, h = (gt_boxes[blind, i, None] for i in range(4))  # [B, 1] each
    xd, yd = dt[blind, :, 0], dt[blind, :, 1]  # [B, K]
    dx[blind] = np.maximum(0, (x - w) - xd) + np.maximum(0, xd - (x + w * 2))
    dy[blind] = np.maximum(0, (y - h) - yd) + np.maximum(0, yd - (y + h * 2))
    e = (dx**2 + dy**2) / (sigmas * 2) ** 2 / (gt_area[:, None] + np.spacing(1)) / 2  # [P, K]
    similarity = np.exp(-e)
    counted = labelled | blind[:, None]  # [P, K] the keypoints each pair averages over
    num = counted.sum(axis=1)
    out = np.zeros(len(num))
    for n in np.unique(num[num > 0]):  # pairs with n keypoints: one [rows, n] row sum
        rows = np.flatnonzero(num == n)
        out[rows] = similarity[rows][counted[rows]].reshape(len(rows), n).sum(axis=1) / n
    return out
