"""Boxes: IoU between boxes and the tight box around a mask.

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates: a box covering pixel columns
``0..w-1`` runs from ``x1 = 0`` to ``x2 = w``, and its area is ``(x2 - x1) * (y2 - y1)`` with no
``+ 1``. This is the convention of ``torchvision.ops.box_iou`` and of COCO (whose json stores
``(x, y, w, h)`` of the same box; convert with ``torchvision.ops.box_convert``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from course.cocoeval.common import box_overlap_iou
from course.masks import MaskLike, as_masks


def as_boxes(boxes: Tensor | np.ndarray, name: str = "boxes") -> Tensor:
    """Validate ``boxes`` as ``[N, 4]`` ``(x1, y1, x2, y2)`` with ``x2 >= x1`` and ``y2 >= y1``.

    Returns them as a float64 tensor. Raises TypeError / ValueError naming ``name``.
    """
    if isinstance(boxes, np.ndarray):
        boxes = torch.from_numpy(boxes)
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, "
                        f"got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] as (x1, y1, x2, y2), "
                         f"got {list(boxes.shape)}")
    boxes = boxes.to(torch.float64)
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{name} must be finite, found NaN or inf")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"{name}[{i}] = {boxes[i].tolist()} has x2 < x1 or y2 < y1; boxes are (x1, y1, x2, y2)"
            " (if yours are (x, y, w, h), convert with torchvision.ops.box_convert)"
        )
    return boxes


def box_area(boxes: Tensor | np.ndarray) -> Tensor:
    """Area of each box: ``(x2 - x1) * (y2 - y1)``. Returns Tensor[N] float64."""
    b = as_boxes(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(pred: Tensor | np.ndarray, gt: Tensor | np.ndarray,
            iscrowd: Tensor | np.ndarray | None = None) -> Tensor:
    """IoU of every predicted box with every ground-truth box.

    Equal to ``torchvision.ops.box_iou`` on boxes of positive area. Where it would divide
    zero by zero (two empty boxes), the IoU here is 0, as in pycocotools. A crowd gt column
    gets ``IoU = inter / area(pred)`` (the COCO crowd rule). The formula,
    :func:`course.cocoeval.common.box_overlap_iou`, is the one the COCO evaluators use too,
    written once for torch tensors and numpy arrays alike.

    Args:
        pred (Tensor[N, 4]): ``(x1, y1, x2, y2)``.
        gt (Tensor[M, 4]): ``(x1, y1, x2, y2)``.
        iscrowd (Tensor[M], optional): crowd flag per gt box.

    Returns:
        Tensor[N, M] float64.
    """
    p, g = as_boxes(pred, "pred"), as_boxes(gt, "gt")
    g = g.to(p.device)
    crowd = None
    if iscrowd is not None:
        crowd = torch.as_tensor(iscrowd, device=p.device).bool()
        if crowd.shape != (len(g),):
            raise ValueError(f"iscrowd must have shape [{len(g)}], got {list(crowd.shape)}")
    area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])  # [N]
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])  # [M]
    # rows against columns by broadcasting: [N, 1, 2] with [1, M, 2] gives [N, M]
    return box_overlap_iou(p[:, None, :2], p[:, None, 2:], area_p[:, None],
                           g[None, :, :2], g[None, :, 2:], area_g[None, :], crowd)


def box_iou_loop(pred: Tensor | np.ndarray, gt: Tensor | np.ndarray) -> Tensor:
    """:func:`box_iou` one pair at a time, as the formula reads (slow; for teaching).

    The chapter's definition, kept as the reference the tests hold :func:`box_iou` to.
    """
    p, g = as_boxes(pred, "pred").tolist(), as_boxes(gt, "gt").tolist()
    out = torch.zeros(len(p), len(g), dtype=torch.float64)
    for i, (px1, py1, px2, py2) in enumerate(p):
        for j, (gx1, gy1, gx2, gy2) in enumerate(g):
            w = min(px2, gx2) - max(px1, gx1)
            h = min(py2, gy2) - max(py1, gy1)
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            out[i, j] = inter / ((px2 - px1) * (py2 - py1) + (gx2 - gx1) * (gy2 - gy1) - inter)
    return out


def masks_to_boxes(masks: MaskLike) -> Tensor:
    """The tight box around each mask, in the continuous convention above.

    A mask whose pixels span columns ``c0..c1`` and rows ``r0..r1`` gets ``(c0, r0, c1 + 1,
    r1 + 1)``, so its box area counts whole pixels, as COCO's ``toBbox`` does. This differs from
    ``torchvision.ops.masks_to_boxes``, which returns ``(c0, r0, c1, r1)``. An empty mask gets
    ``(0, 0, 0, 0)``.

    Args:
        masks (Tensor[N, H, W]): binary masks.

    Returns:
        Tensor[N, 4] float64.
    """
    masks = as_masks(masks)
    n, h, w = masks.shape
    if h == 0 or w == 0:
        return torch.zeros(n, 4, dtype=torch.float64, device=masks.device)
    cols = masks.any(dim=1)  # [N, W]: the columns each mask touches
    rows = masks.any(dim=2)  # [N, H]
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    # first and last touched index; untouched positions are pushed out of the min / max
    x1 = torch.where(cols, xs, w).amin(dim=1)
    x2 = torch.where(cols, xs, -1).amax(dim=1) + 1
    y1 = torch.where(rows, ys, h).amin(dim=1)
    y2 = torch.where(rows, ys, -1).amax(dim=1) + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).to(torch.float64)  # [N, 4]
    boxes[~cols.any(dim=1)] = 0.0
    return boxes


def fpn_level(boxes: Tensor | np.ndarray, k_min: int = 2, k_max: int = 5,
              canonical_size: float = 224.0, canonical_level: int = 4) -> Tensor:
    """The feature-pyramid level each box pools from (equation 1 of the FPN paper).

    ``k = floor(canonical_level + log2(sqrt(area) / canonical_size))``, clamped to
    ``[k_min, k_max]``: a box of side ``canonical_size`` uses level ``canonical_level``
    (stride ``2**k``), and each halving of the side moves one level finer. A small ``1e-6``
    is added before the floor, as in ``torchvision.ops.poolers.LevelMapper``, so that sides
    that are exact powers of two land on their level despite rounding in ``log2``. Empty
    boxes go to ``k_min``.

    Args:
        boxes (Tensor[N, 4]): ``(x1, y1, x2, y2)``.

    Returns:
        Tensor[N] int64 levels (absolute: 2 means P2, not an index into a list).
    """
    if k_min > k_max:
        raise ValueError(f"k_min ({k_min}) must not exceed k_max ({k_max})")
    if not canonical_size > 0:
        raise ValueError(f"canonical_size must be positive, got {canonical_size}")
    side = box_area(boxes).sqrt()  # [N]
    level = torch.floor(canonical_level + torch.log2(side / canonical_size) + 1e-6)
    return level.clamp(k_min, k_max).to(torch.int64)
