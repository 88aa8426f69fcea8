"""Small numpy helpers that the COCO engine, the RLE codec and the json readers share.

Nothing here imports torch: a tensor argument is recognised by its type's module and turned
into a numpy array by :func:`to_numpy`, so that reading and evaluating COCO files never needs
torch loaded. Ragged data (many variable-length arrays stored end to end, split by
``offsets [N + 1]``) is handled by :func:`segment_ids` and :func:`ragged_arange`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

Progress = Callable[[Sequence[Any], str], Iterable[Any]]
"""``progress(items, description)`` returns an iterable over ``items`` (e.g. a tqdm bar)."""


def no_progress(items: Sequence[Any], description: str) -> Iterable[Any]:
    """The :data:`Progress` that shows nothing: ``items`` as they are."""
    return items


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor, found out without importing torch."""
    return type(x).__module__.startswith("torch")


def to_numpy(x: Any) -> Any:
    """A torch tensor as a numpy array (detached, on the CPU); anything else as it is."""
    return x.detach().cpu().numpy() if is_tensor(x) else x


def check_size(value: Any, name: str) -> int:
    """An image height or width: a non-negative int (not a bool, not 2.5). Returns it as int."""
    value = to_numpy(value)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (an image size), got {value!r}")
    return int(value)


def as_dense_masks(masks: Any, name: str = "masks") -> np.ndarray:
    """Validate dense masks ``[N, H, W]`` (bool or 0/1 numbers; numpy or torch) as bool numpy.

    The numpy twin of :func:`course.masks.as_masks`, with its messages, for the modules that
    must not import torch.
    """
    masks = to_numpy(masks)
    if not isinstance(masks, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, "
                        f"got {type(masks).__name__}")
    if masks.ndim != 3:
        hint = " (for a single mask pass mask[None])" if masks.ndim == 2 else ""
        raise ValueError(f"{name} must have shape [N, H, W], got {list(masks.shape)}{hint}")
    if masks.dtype == bool:
        return masks
    if masks.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be bool or hold 0/1 numbers, got dtype {masks.dtype}")
    binary = (masks == 0) | (masks == 1)
    if not binary.all():
        raise ValueError(f"{name} must be binary (bool or 0/1), found the value "
                         f"{masks[~binary][0].item()}; threshold probabilities first, e.g. "
                         "probs > 0.5")
    return masks != 0


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """For offsets ``[N + 1]``, the segment index of each of the ``offsets[-1]`` elements."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(n) for n in lengths])`` without the loop."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total) - np.repeat(starts, lengths)


def foreground_runs(counts: np.ndarray, offsets: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-empty foreground runs of many masks' counts: ``(mask, start, length)``, [K] each.

    A mask's counts alternate background, foreground, ...; ``start`` is a run's first pixel in
    its own mask's column-major order; runs come mask by mask, in order.
    """
    mask = segment_ids(offsets)
    local = np.arange(len(counts)) - offsets[mask]
    before = np.cumsum(counts) - counts  # pixels before each run, all masks
    start = before - before[offsets[:-1]][mask] if len(counts) else before
    fg = (local % 2 == 1) & (counts > 0)
    return mask[fg], start[fg], counts[fg]


def box_overlap_iou(lo_a: Any, hi_a: Any, area_a: Any, lo_b: Any, hi_b: Any, area_b: Any,
                    crowd_b: Any = None) -> Any:
    """IoU of boxes ``a`` and ``b`` that broadcast against each other; numpy or torch alike.

    Each box is its corners ``lo [..., 2] = (x1, y1)`` and ``hi [..., 2] = (x2, y2)`` and its
    ``area``, given separately so that each caller keeps its own convention bit for bit:
    :func:`course.boxes.box_iou` passes ``(x2 - x1) * (y2 - y1)`` as torchvision does, the
    COCO evaluators pass ``w * h`` of COCO's ``(x, y, w, h)`` as pycocotools' ``bbIou`` does.
    The overlap is ``min(hi) - max(lo)`` per axis, clipped at 0; where ``crowd_b`` is set the
    union is ``area_a`` alone (the COCO crowd rule), else ``area_a + area_b - inter``. Two
    boxes that do not overlap have IoU 0, also when both are empty.

    Written with ``.clip`` only (``x.clip(max=y)`` is ``min(x, y)``), which numpy arrays and
    torch tensors share, so this one formula serves both (a tensor stays on its device).
    """
    wh = (hi_a.clip(max=hi_b) - lo_a.clip(min=lo_b)).clip(min=0)  # [..., 2] overlap per axis
    inter = wh[..., 0] * wh[..., 1]
    if crowd_b is None:
        union = area_a + area_b - inter
    else:  # x * False is 0 exactly, so a non-crowd union is computed as (a + b) - inter
        union = area_a + area_b * ~crowd_b - inter * ~crowd_b
    return inter / union.clip(min=np.finfo(np.float64).tiny)


def coco_box_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` for COCO ``(x, y, w, h)`` boxes ``d [..., 4]`` and ``g [..., 4]``
    that broadcast (pairs, or ``[D, 1, 4]`` against ``[1, G, 4]``); ``crowd [...]`` flags
    crowd ground truth. The fast engine and the loop COCOeval both use it.
    """
    return box_overlap_iou(d[..., :2], d[..., :2] + d[..., 2:], d[..., 2] * d[..., 3],
                           g[..., :2], g[..., :2] + g[..., 2:], g[..., 2] * g[..., 3], crowd)
