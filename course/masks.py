"""Overlap between binary masks: IoU (the Jaccard index) and Dice.

Every function takes a set of predicted masks ``pred`` as ``[N, H, W]`` and a set of
ground-truth masks ``gt`` as ``[M, H, W]`` (bool, or integers / floats holding only 0 and 1;
torch tensors or NumPy arrays) and returns an ``[N, M]`` float64 tensor: rows are predictions,
columns are ground truth, the layout pycocotools uses after its transpose.

Scores are computed from integer pixel counts and divided once in float64, so a value that
sits exactly on a threshold (7 / 10 against 0.7) stays on it. Computing the ratio in float32
would move it: ``float32(7) / float32(10) < 0.7``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MaskLike = Tensor | np.ndarray

# Float32 sums of 0/1 products are exact integers while every partial sum stays below 2**24.
_FLOAT32_EXACT = 2**24


def as_masks(masks: MaskLike, name: str = "masks") -> Tensor:
    """Validate ``masks`` as ``[N, H, W]`` binary masks and return them as a bool tensor.

    Raises:
        TypeError: if ``masks`` is not a tensor or an array.
        ValueError: if it is not 3-D or holds values other than 0 and 1.
    """
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(masks)
    if not isinstance(masks, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, "
                        f"got {type(masks).__name__}")
    if masks.ndim != 3:
        hint = " (for a single mask pass mask[None])" if masks.ndim == 2 else ""
        raise ValueError(f"{name} must have shape [N, H, W], got {list(masks.shape)}{hint}")
    if masks.dtype == torch.bool:
        return masks
    if masks.is_complex() or not (masks.is_floating_point() or _is_integer(masks)):
        raise TypeError(f"{name} must be bool or hold 0/1 numbers, got dtype {masks.dtype}")
    binary = (masks == 0) | (masks == 1)
    if not bool(binary.all()):
        bad = masks[~binary][0].item()
        raise ValueError(
            f"{name} must be binary (bool or 0/1), found the value {bad}; "
            "threshold probabilities first, e.g. probs > 0.5"
        )
    return masks.bool()


def _is_integer(t: Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _as_pair(pred: MaskLike, gt: MaskLike) -> tuple[Tensor, Tensor]:
    pred, gt = as_masks(pred, "pred"), as_masks(gt, "gt")
    if pred.shape[1:] != gt.shape[1:]:
        raise ValueError(
            f"pred and gt must have the same H and W, got pred {list(pred.shape)} "
            f"and gt {list(gt.shape)}"
        )
    if pred.device != gt.device:
        raise ValueError(f"pred is on {pred.device} but gt is on {gt.device}")
    return pred, gt


def _as_crowd(iscrowd: MaskLike | None, num_gt: int, device: torch.device) -> Tensor | None:
    if iscrowd is None:
        return None
    crowd = torch.as_tensor(iscrowd, device=device)
    if crowd.ndim != 1 or crowd.numel() != num_gt:
        raise ValueError(f"iscrowd must have shape [{num_gt}] (one flag per gt mask), "
                         f"got {list(crowd.shape)}")
    return crowd.bool()


def mask_area(masks: MaskLike) -> Tensor:
    """Pixel count of each mask.

    Args:
        masks (Tensor[N, H, W]): binary masks.

    Returns:
        Tensor[N] int64.
    """
    masks = as_masks(masks)
    return masks.flatten(1).sum(dim=1, dtype=torch.int64)


def intersection_counts(pred: MaskLike, gt: MaskLike) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel counts behind IoU and Dice: ``|p & g|`` of every pair, and every area.

    The definition is one matrix product of the flattened masks,
    ``inter = P @ G.T`` with ``P [N, HW]`` and ``G [M, HW]`` (:func:`product_counts`); that
    is what runs on a GPU. On the CPU most of that product is wasted on pairs that never
    meet, so :func:`box_counts` skips them: it finds each mask's bounding box and counts
    ``p & g`` only inside the overlap of the two boxes, for the pairs whose boxes overlap.
    The counts are the same integers either way.

    Args:
        pred (Tensor[N, H, W]): predicted masks.
        gt (Tensor[M, H, W]): ground-truth masks.

    Returns:
        ``(inter, pred_area, gt_area)``: ``Tensor[N, M]``, ``Tensor[N]``, ``Tensor[M]``, all int64.
    """
    pred, gt = _as_pair(pred, gt)
    if pred.device.type == "cpu":
        counts = box_counts(pred.numpy(), gt.numpy())
        if counts is not None:
            return counts
    return product_counts(pred, gt)


def product_counts(pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`intersection_counts` as one matrix product (bool ``[N, H, W]``, ``[M, H, W]``)."""
    pixels = pred.shape[1] * pred.shape[2]
    # 0/1 products summed in floating point are exact integers below the mantissa limit.
    dtype = torch.float32 if pixels < _FLOAT32_EXACT else torch.float64
    p = pred.flatten(1).to(dtype)  # [N, HW]
    g = gt.flatten(1).to(dtype)  # [M, HW]
    inter = (p @ g.T).round().to(torch.int64)  # [N, M]
    return inter, p.sum(1).round().to(torch.int64), g.sum(1).round().to(torch.int64)


def box_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[Tensor, Tensor, Tensor] | None:
    """:func:`intersection_counts` pair by pair, inside the overlap of the two bounding boxes.

    Args:
        pred (ndarray[N, H, W]): bool masks.
        gt (ndarray[M, H, W]): bool masks.

    Returns:
        ``(inter, pred_area, gt_area)``: Tensor[N, M], Tensor[N], Tensor[M], int64; or None
        when the boxes overlap so much that the matrix product would be cheaper.
    """
    (py0, py1, px0, px1), pred_area = mask_boxes(pred)  # [N] each
    (gy0, gy1, gx0, gx1), gt_area = mask_boxes(gt)  # [M] each
    y0, y1 = np.maximum.outer(py0, gy0), np.minimum.outer(py1, gy1)  # [N, M] overlap of boxes
    x0, x1 = np.maximum.outer(px0, gx0), np.minimum.outer(px1, gx1)  # [N, M]
    rows, cols = np.nonzero((y0 < y1) & (x0 < x1))  # the pairs whose boxes overlap
    window = [v[rows, cols] for v in (y0, y1, x0, x1)]  # [K] each
    # Measured on a CPU: visiting a pair costs about as much as 25,000 multiply-adds of the
    # product, and a pixel of its window about one.
    work = 25_000 * len(rows) + int(((window[1] - window[0]) * (window[3] - window[2])).sum())
    if work > pred.shape[1] * pred.shape[2] * len(pred) * len(gt):
        return None
    inter = np.zeros((len(pred), len(gt)), dtype=np.int64)  # [N, M]
    for i, j, a, b, c, d in zip(rows.tolist(), cols.tolist(), *(v.tolist() for v in window),
                                strict=True):
        inter[i, j] = np.count_nonzero(pred[i, a:b, c:d] & gt[j, a:b, c:d])
    return torch.from_numpy(inter), torch.from_numpy(pred_area), torch.from_numpy(gt_area)


def mask_boxes(masks: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Tight bounding box and area of each mask.

    Args:
        masks (ndarray[N, H, W]): bool masks.

    Returns:
        ``((y0, y1, x0, x1), area)``: the box as half-open pixel ranges ``[y0, y1)``,
        ``[x0, x1)`` (all 0 for an empty mask) and the pixel count, ndarray[N] int64 each.
    """
    n, h, w = masks.shape
    y0, y1, x0, x1, area = (np.zeros(n, dtype=np.int64) for _ in range(5))
    if h == 0 or w == 0:
        return (y0, y1, x0, x1), area
    columns = masks.any(axis=1)  # [N, W] which columns each mask touches
    present = np.flatnonzero(columns.any(axis=1))
    x0[present] = columns[present].argmax(axis=1)
    x1[present] = w - columns[present, ::-1].argmax(axis=1)
    # Rows read 8 pixels at a time: a uint64 word is non-zero when one of its 8 bools is True.
    words = masks.view(np.uint64) if w % 8 == 0 and masks.flags.c_contiguous else None
    for i in present.tolist():
        if words is not None:
            band = words[i, :, x0[i] // 8:(x1[i] + 7) // 8]  # [H, words] the columns it touches
        else:
            band = masks[i, :, x0[i]:x1[i]]  # [H, x1 - x0]
        touched = np.flatnonzero(band.any(axis=1))
        y0[i], y1[i] = touched[0], touched[-1] + 1
        area[i] = np.count_nonzero(masks[i, y0[i]:y1[i], x0[i]:x1[i]])
    return (y0, y1, x0, x1), area


def mask_iou(pred: MaskLike, gt: MaskLike, iscrowd: MaskLike | None = None) -> Tensor:
    """Intersection over union of every prediction with every ground-truth mask.

    ``IoU = |p & g| / |p | g|``. Two empty masks have IoU 0, as in pycocotools. For a gt
    column flagged crowd, the COCO crowd rule applies: ``IoU = |p & g| / |p|``, the fraction
    of the prediction that falls inside the crowd region.

    Args:
        pred (Tensor[N, H, W]): predicted masks (bool or 0/1).
        gt (Tensor[M, H, W]): ground-truth masks.
        iscrowd (Tensor[M], optional): crowd flag per gt mask.

    Returns:
        Tensor[N, M] float64, rows predictions, columns ground truth.
    """
    inter, area_p, area_g = intersection_counts(pred, gt)
    union = area_p[:, None] + area_g[None, :] - inter  # [N, M]
    crowd = _as_crowd(iscrowd, area_g.numel(), inter.device)
    if crowd is not None:
        union = torch.where(crowd[None, :], area_p[:, None].expand_as(union), union)
    # inter > 0 implies union >= inter > 0; where inter == 0 the IoU is 0 whatever the union.
    return inter.double() / union.clamp(min=1).double()


def mask_dice(pred: MaskLike, gt: MaskLike) -> Tensor:
    """Dice coefficient (F1 over pixels) of every prediction with every ground-truth mask.

    ``Dice = 2 |p & g| / (|p| + |g|) = 2 IoU / (1 + IoU)``, so Dice >= IoU with equality only
    at 0 and 1. Two empty masks have Dice 0, consistent with :func:`mask_iou`.

    Args:
        pred (Tensor[N, H, W]): predicted masks (bool or 0/1).
        gt (Tensor[M, H, W]): ground-truth masks.

    Returns:
        Tensor[N, M] float64.
    """
    inter, area_p, area_g = intersection_counts(pred, gt)
    total = area_p[:, None] + area_g[None, :]  # [N, M]
    return (2 * inter).double() / total.clamp(min=1).double()


def mask_iou_loop(pred: MaskLike, gt: MaskLike, iscrowd: MaskLike | None = None) -> Tensor:
    """:func:`mask_iou` written as the formula reads, one pair at a time (slow; for teaching)."""
    pred, gt = _as_pair(pred, gt)
    crowd = _as_crowd(iscrowd, len(gt), gt.device)
    out = torch.zeros(len(pred), len(gt), dtype=torch.float64)
    for i, p in enumerate(pred):
        for j, g in enumerate(gt):
            inter = int((p & g).sum())
            union = int(p.sum()) if crowd is not None and crowd[j] else int((p | g).sum())
            out[i, j] = inter / union if inter > 0 else 0.0
    return out.to(pred.device)


def mask_dice_loop(pred: MaskLike, gt: MaskLike) -> Tensor:
    """:func:`mask_dice` written as the formula reads, one pair at a time (slow; for teaching)."""
    pred, gt = _as_pair(pred, gt)
    out = torch.zeros(len(pred), len(gt), dtype=torch.float64)
    for i, p in enumerate(pred):
        for j, g in enumerate(gt):
            inter = int((p & g).sum())
            out[i, j] = 2 * inter / (int(p.sum()) + int(g.sum())) if inter > 0 else 0.0
    return out.to(pred.device)
