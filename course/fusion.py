"""Panoptic fusion: a Mask R-CNN's things and a semantic head's stuff, merged into one map.

An instance head predicts *things* (cars, people) as scored masks that may overlap; a semantic
head predicts *stuff* (sky, grass) as per-pixel class probabilities. A panoptic segmentation
gives every pixel at most one segment, so the two are fused, in the COCO panoptic encoding that
:mod:`course.pq` reads: an ``[H, W]`` int64 map of segment ids (0 is void) and
``{id: (category_id, iscrowd)}``.

The channels of ``semantic`` are categories: channel ``c`` is ``categories[c]``, and the id 0
marks the channel for "no stuff here" (things, unlabelled). The other ids are the *stuff*
categories. Two policies decide who wins where a thing lies on stuff:

- ``"instance_priority"``: things always win over stuff;
- ``"stuff_protected"``: a thing may not take a pixel where a *protected* stuff category has
  probability above ``protect_threshold`` (no flying cars on confidently predicted sky).

The algorithm, as both :func:`panoptic_fusion_loop` and :func:`panoptic_fusion` compute it:

1. Keep the instances with ``score >= score_threshold`` (the score's exact value, compared in
   float64) and visit them in descending score order; equal scores keep the input order (a
   stable sort: the earlier instance wins).
2. Under ``"stuff_protected"``, ``forbidden[H, W]`` holds the pixels where any protected
   channel's probability is ``> protect_threshold``; a thing's *available* pixels are
   ``mask & ~forbidden``. Under ``"instance_priority"`` nothing is forbidden.
3. Each visited thing takes its available pixels that no earlier kept thing took. If it would
   keep fewer than ``(1 - overlap_threshold) * area`` pixels (``area``: its whole mask), i.e. it
   lost more than ``overlap_threshold`` of itself to higher-scored things or to protected stuff,
   or it would keep no pixel at all (an empty mask, say), it is dropped and takes nothing: its
   pixels stay free for lower-scored things.
4. Stuff: every pixel that no thing took gets the category of its argmax channel of
   ``semantic`` (ties: the lower channel); where that category is 0, the pixel is void. All the
   free pixels of one stuff category are one segment (as in COCO panoptic); a segment of fewer
   than ``min_stuff_area`` pixels becomes void.
5. Segment ids: things get 1, 2, ... in the order they were kept (score order), the stuff
   categories the next ids in ascending category id; void pixels are 0. Every segment is listed
   as ``(category_id, False)`` (a prediction has no crowd), and only segments with at least
   one pixel are listed.

:func:`panoptic_fusion_loop` is the algorithm written as it reads, on whole-image masks.
:func:`panoptic_fusion` computes the same map in NumPy (faster than torch for this many small
operations, see ``bench/README.md``): each thing works only inside its bounding box, on a
window of one ``free`` map (pixels neither forbidden nor taken), so a small thing costs a
small window however large the image; the stuff step is one ``argmax``, one ``bincount`` and
one lookup table. The fusion is a sequence of decisions, each depending on the ones before, so
one Python step per kept thing remains; the loop over the whole image for every thing and
every category does not.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from course.panoptic_format import is_int
from course.structures import Instances

POLICIES = ("instance_priority", "stuff_protected")

_SUM_TOLERANCE = 1e-3  # how far from 1 the probabilities of a pixel may sum


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fusion:
    """Validated inputs, on the CPU.

    Attributes:
        masks (Tensor[N, H, W]): bool.
        labels (list[int]): thing category of each instance.
        order (list[int]): the kept instances in visiting order (step 1).
        semantic (Tensor[C, H, W]): float64 probabilities.
        categories (list[int]): category id of each channel.
        protected (list[int]): the channels that forbid pixels (empty: nothing forbidden).
        overlap_threshold, protect_threshold, min_stuff_area: as given, checked.
    """

    masks: Tensor
    labels: list[int]
    order: list[int]
    semantic: Tensor
    categories: list[int]
    protected: list[int]
    overlap_threshold: float
    protect_threshold: float
    min_stuff_area: int


def _check_fraction(value: Any, name: str) -> float:
    if not (is_int(value) or isinstance(value, float | np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:  # False for NaN too
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _check_min_stuff_area(value: Any) -> int:
    if not is_int(value):
        raise TypeError(f"min_stuff_area must be an int (a pixel count), got {value!r}")
    if value < 0:
        raise ValueError(f"min_stuff_area must be >= 0, got {value}")
    return int(value)


def _check_instances(instances: Any) -> tuple[Tensor, list[int], list[float]]:
    """The masks (CPU), labels and float64 scores of ``instances``, checked."""
    if not isinstance(instances, Instances):
        raise TypeError(f"instances must be a course.structures.Instances, "
                        f"got {type(instances).__name__}")
    if instances.masks is None:
        raise ValueError("instances has no masks; panoptic fusion needs the instance masks")
    if instances.scores is None:
        raise ValueError("instances.scores is None; panoptic fusion needs scores to rank the "
                         "things (ground truth has none)")
    if instances.masks.dtype != torch.bool:
        raise TypeError(f"instances.masks must be bool (0/1 numbers are not accepted), got "
                        f"dtype {instances.masks.dtype}; convert with masks.bool() for 0/1 "
                        "masks, masks > 0.5 for mask probabilities")
    if instances.scores.dtype == torch.bool or instances.scores.is_complex():
        raise TypeError(f"instances.scores must be real numbers, got {instances.scores.dtype}")
    scores = instances.scores.detach().cpu().to(torch.float64)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("instances.scores must be finite, found NaN or inf")
    labels = instances.labels.cpu().tolist()
    if any(label < 1 for label in labels):
        raise ValueError(f"instances.labels must be thing category ids >= 1 (0 marks the "
                         f"'no stuff' channel), got {sorted(set(labels))[:5]}")
    return instances.masks.detach().cpu(), labels, scores.tolist()


def _check_semantic(semantic: Any, image_size: tuple[int, int]) -> Tensor:
    """``semantic`` as float64 on the CPU, checked to be ``[C, H, W]`` probabilities."""
    if not isinstance(semantic, Tensor):
        raise TypeError(f"semantic must be a torch.Tensor[C, H, W], got {type(semantic).__name__}")
    if not semantic.is_floating_point():
        raise TypeError(f"semantic must hold float probabilities, got dtype {semantic.dtype}")
    if semantic.ndim != 3 or len(semantic) == 0:
        raise ValueError(f"semantic must have shape [C, H, W] with C >= 1, "
                         f"got {list(semantic.shape)}")
    if tuple(semantic.shape[1:]) != tuple(image_size):
        raise ValueError(f"semantic has shape {list(semantic.shape)} ([C, H, W]) but "
                         f"instances.image_size is {tuple(image_size)}; (H, W) must agree")
    probs = semantic.detach().cpu()
    if probs.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
        probs = probs.float()
    # float64 in NumPy: a torch conversion of every pixel forks threads, slow on a busy machine
    probs = probs.numpy().astype(np.float64)
    if not np.isfinite(probs).all():
        raise ValueError("semantic must be finite probabilities, found NaN or inf")
    total = probs.sum(axis=0)  # [H, W]
    lowest = float(probs.min()) if probs.size else 0.0
    if lowest < 0 or (total.size and float(np.abs(total - 1).max()) > _SUM_TOLERANCE):
        found = (f"values from {lowest:.3g} to {float(probs.max()):.3g}, per-pixel sums from "
                 f"{float(total.min()):.3g} to {float(total.max()):.3g}")
        raise ValueError(f"semantic must be per-pixel class probabilities (non-negative, "
                         f"summing to 1 over C within {_SUM_TOLERANCE}); found {found}. "
                         "If these are logits, pass semantic.softmax(dim=0)")
    return torch.from_numpy(probs)


def _as_ids(values: Any, name: str) -> list[int]:
    """A collection of non-negative integer ids, none repeated."""
    if isinstance(values, Tensor | np.ndarray):
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of integer category ids, "
                        f"got {type(values).__name__}")
    values = list(values)
    if not all(is_int(v) for v in values):
        raise TypeError(f"{name} must hold integer category ids, got {values}")
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must hold non-negative category ids, got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a category twice: {values}")
    return [int(v) for v in values]


def _check_categories(categories: Any, num_channels: int, labels: list[int]) -> list[int]:
    if categories is None:
        categories = list(range(num_channels))
    categories = _as_ids(categories, "categories")
    if len(categories) != num_channels:
        raise ValueError(f"categories must give one id per channel of semantic "
                         f"(C = {num_channels}), got {len(categories)}: {categories}")
    clash = sorted(set(labels) & (set(categories) - {0}))
    if clash:
        raise ValueError(f"instances.labels hold the stuff category id(s) {clash}; things and "
                         f"the stuff channels of categories {categories} must not share ids")
    return categories


def _check_protected(protected: Any, categories: list[int]) -> list[int]:
    """The channels of the protected stuff categories."""
    stuff = [c for c in categories if c != 0]
    wanted = stuff if protected is None else _as_ids(protected, "protected")
    unknown = sorted(set(wanted) - set(stuff))
    if unknown:
        raise ValueError(f"protected holds id(s) {unknown} that are not stuff categories of "
                         f"categories (stuff: {stuff})")
    return sorted(categories.index(c) for c in wanted)


def _prepare(instances: Instances, semantic: Tensor, policy: str, categories: Any,
             protected: Any, score_threshold: float, overlap_threshold: float,
             protect_threshold: float, min_stuff_area: int) -> _Fusion:
    """Check every argument of :func:`panoptic_fusion`; do step 1, find the protected channels."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    thresholds = [_check_fraction(value, name) for value, name in (
        (score_threshold, "score_threshold"), (overlap_threshold, "overlap_threshold"),
        (protect_threshold, "protect_threshold"))]
    min_stuff_area = _check_min_stuff_area(min_stuff_area)
    masks, labels, scores = _check_instances(instances)
    probs = _check_semantic(semantic, instances.image_size)
    categories = _check_categories(categories, len(probs), labels)
    channels = _check_protected(protected, categories)
    kept = [i for i in range(len(scores)) if scores[i] >= thresholds[0]]
    order = sorted(kept, key=lambda i: -scores[i])  # stable: equal scores keep input order
    return _Fusion(masks, labels, order, probs, categories,
                   channels if policy == "stuff_protected" else [],
                   thresholds[1], thresholds[2], min_stuff_area)


# ---------------------------------------------------------------------------------------------
# The loop version: the definition, one thing and one category at a time
# ---------------------------------------------------------------------------------------------


def paste_by_score(masks: Tensor, scores: Tensor) -> Tensor:
    """Thing over thing alone: every pixel to the highest-scored mask that covers it.

    Step 3 without the overlap rule (nothing is dropped), the first thing chapter 11 builds.

    Args:
        masks (Tensor[N, H, W]): bool.
        scores (Tensor[N]): equal scores: the earlier mask wins.

    Returns:
        Tensor[H, W] int64: ``k + 1`` where mask ``k`` wins, 0 where no mask covers the pixel.
    """
    if len(masks) == 0:
        return torch.zeros(masks.shape[1:], dtype=torch.int64)
    order = torch.sort(scores.double(), descending=True, stable=True).indices  # [N]
    ranked = masks[order]  # [N, H, W] best first
    first = ranked.to(torch.uint8).argmax(dim=0)  # [H, W] the first covering rank (0 if none)
    return torch.where(ranked.any(dim=0), order[first] + 1, 0)


def protected_pixels(semantic: Tensor, channels: Iterable[int], threshold: float) -> Tensor:
    """Step 2: the pixels where any of ``channels`` of ``semantic [C, H, W]`` has probability
    strictly above ``threshold``, as Tensor[H, W] bool."""
    forbidden = torch.zeros(semantic.shape[1:], dtype=torch.bool, device=semantic.device)
    for c in channels:
        forbidden |= semantic[c] > threshold
    return forbidden


def panoptic_fusion_loop(instances: Instances, semantic: Tensor,
                         policy: str = "instance_priority", *,
                         categories: Sequence[int] | None = None,
                         protected: Collection[int] | None = None,
                         score_threshold: float = 0.5,
                         overlap_threshold: float = 0.5,
                         protect_threshold: float = 0.5,
                         min_stuff_area: int = 64,
                         ) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
    """:func:`panoptic_fusion` written as the module docstring reads, on whole-image masks."""
    f = _prepare(instances, semantic, policy, categories, protected, score_threshold,
                 overlap_threshold, protect_threshold, min_stuff_area)
    _, h, w = f.masks.shape
    forbidden = protected_pixels(f.semantic, f.protected, f.protect_threshold)  # step 2
    ids = torch.zeros(h, w, dtype=torch.int64)
    segments: dict[int, tuple[int, bool]] = {}
    for i in f.order:  # step 3: descending score
        mask = f.masks[i]
        available = mask & ~forbidden & (ids == 0)
        kept, area = int(available.sum()), int(mask.sum())
        if kept == 0 or kept < (1 - f.overlap_threshold) * area:
            continue  # dropped: it takes nothing
        new_id = len(segments) + 1
        ids[available] = new_id
        segments[new_id] = (f.labels[i], False)
    best = f.semantic.argmax(dim=0)  # step 4 [H, W]; ties: the first (lowest) channel
    free = ids == 0
    for c in sorted(range(len(f.categories)), key=lambda c: f.categories[c]):
        region = free & (best == c)
        area = int(region.sum())
        if f.categories[c] == 0 or area == 0 or area < f.min_stuff_area:
            continue  # void
        new_id = len(segments) + 1
        ids[region] = new_id
        segments[new_id] = (f.categories[c], False)
    return ids.to(semantic.device), segments


# ---------------------------------------------------------------------------------------------
# The fast version: NumPy, each thing in its bounding-box window
# ---------------------------------------------------------------------------------------------


def _windows(masks: np.ndarray) -> list[tuple[slice, slice]]:
    """The bounding-box window ``(rows, cols)`` of each mask (an empty mask gets the image).

    The rows and columns each mask touches are ``masks.any(axis=2)`` and ``masks.any(axis=1)``,
    read here 8 pixels at a time as uint64 words when the rows allow it (about twice as fast;
    this is the one pass over every pixel of every mask).
    """
    n, h, w = masks.shape
    if masks.size == 0:
        return [(slice(0, h), slice(0, w))] * n
    if w % 8 or not masks.flags.c_contiguous:
        rows, cols = masks.any(axis=2), masks.any(axis=1)  # [N, H], [N, W]
    else:
        words = masks.view(np.uint64)  # [N, H, W / 8]: 8 pixels (bytes 0 or 1) a word
        rows = np.bitwise_or.reduce(words, axis=2) != 0  # [N, H]
        cols = np.bitwise_or.reduce(words, axis=1).view(np.uint8) != 0  # [N, W]: pixels again
    # an empty mask gets the whole image: its window holds no pixel of it, so it is dropped
    y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)  # [N] first touched; 0 if none
    y1, x1 = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)  # [N] last + 1
    boxes = np.stack([y0, y1, x0, x1], axis=1).tolist()  # [N, 4]
    return [(slice(a, b), slice(c, d)) for a, b, c, d in boxes]


def _fuse_things(masks: np.ndarray, order: list[int], free: np.ndarray,
                 overlap_threshold: float) -> tuple[np.ndarray, list[int]]:
    """Step 3, each thing in the window of its bounding box.

    Args:
        masks (ndarray[N, H, W]): bool.
        order: the instances to visit, in order.
        free (ndarray[H, W]): bool, the pixels not forbidden; updated in place as things take.

    Returns:
        ``(ids ndarray[H, W] int64, kept)``: the things' ids (0 elsewhere) and the instances
        kept, in id order.
    """
    ids = np.zeros(free.shape, dtype=np.int64)
    windows = _windows(masks) if order else []
    kept = []
    for i in order:
        window = windows[i]
        mask = masks[i][window]  # [h, w] the mask's box
        available = mask & free[window]
        taken = np.count_nonzero(available)
        if taken == 0 or taken < (1 - overlap_threshold) * np.count_nonzero(mask):
            continue  # dropped (an empty mask too): it takes nothing
        kept.append(i)
        np.copyto(ids[window], len(kept), where=available)
        free[window] &= ~available
    return ids, kept


def _argmax_channels(semantic: np.ndarray) -> np.ndarray:
    """``semantic.argmax(axis=0)`` (ties: the lowest channel) as ndarray[H, W] int64.

    One comparison per channel: for a few channels about 3x faster than NumPy's ``argmax``
    over the first axis, which walks the channels of each pixel with a stride of ``H * W``.
    """
    best = np.zeros(semantic.shape[1:], dtype=np.int64)  # [H, W]
    top = semantic[0]
    for c in range(1, len(semantic)):
        np.copyto(best, c, where=semantic[c] > top)  # strictly: a tie keeps the lower channel
        top = np.maximum(top, semantic[c])
    return best


def _fuse_stuff(ids: np.ndarray, semantic: np.ndarray, categories: list[int],
                min_stuff_area: int, first_id: int) -> list[int]:
    """Step 4 on the pixels where ``ids`` is 0, written into ``ids``; returns the categories.

    Args:
        ids (ndarray[H, W]): int64, the things' ids, 0 where free.
        semantic (ndarray[C, H, W]): probabilities.

    Returns:
        The stuff categories given ids ``first_id, first_id + 1, ...``, in that order.
    """
    best = _argmax_channels(semantic)  # [H, W]
    free = ids == 0
    area = np.bincount(best[free], minlength=len(categories))  # [C] free pixels per channel
    new_id = np.zeros(len(categories), dtype=np.int64)  # channel -> stuff id, 0: void
    listed = []
    for c in sorted(range(len(categories)), key=categories.__getitem__):
        if categories[c] != 0 and area[c] > 0 and area[c] >= min_stuff_area:
            new_id[c] = first_id + len(listed)
            listed.append(categories[c])
    np.copyto(ids, new_id[best], where=free)
    return listed


def panoptic_fusion(instances: Instances, semantic: Tensor, policy: str = "instance_priority", *,
                    categories: Sequence[int] | None = None,
                    protected: Collection[int] | None = None,
                    score_threshold: float = 0.5,
                    overlap_threshold: float = 0.5,
                    protect_threshold: float = 0.5,
                    min_stuff_area: int = 64,
                    ) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
    """Fuse scored instance masks and semantic probabilities into one panoptic map.

    The algorithm is in the module docstring; :func:`panoptic_fusion_loop` is the same, slower.
    The work is done on the CPU.

    Args:
        instances: ``masks (Tensor[N, H, W])`` bool, ``labels (Tensor[N])`` thing category ids
            (>= 1, none a stuff category), ``scores (Tensor[N])`` (required).
        semantic (Tensor[C, H, W]): float per-pixel class probabilities, summing to 1 over ``C``
            (within 1e-3) at every pixel; ``(H, W)`` is ``instances.image_size``.
        policy (str): ``"instance_priority"`` (things win over stuff) or ``"stuff_protected"``
            (things may not take confidently predicted protected stuff).
        categories (Sequence[int], optional): the category id of each channel, unique and
            non-negative; 0 marks the "no stuff" channel. Default: channel ``c`` is ``c``.
        protected (Collection[int], optional): the stuff categories things may not overwrite
            under ``"stuff_protected"``; default every stuff category. Checked, and otherwise
            ignored, under ``"instance_priority"``.
        score_threshold (float): instances scoring below it are ignored.
        overlap_threshold (float): a thing losing more than this fraction of its mask is dropped.
        protect_threshold (float): a protected channel forbids pixels where it is above this.
        min_stuff_area (int): stuff segments with fewer pixels become void.

    Returns:
        ``(ids, segments)``: Tensor[H, W] int64 segment ids (0 void, on ``semantic``'s device)
        and ``{id: (category_id, False)}``, which :func:`course.pq.pq_stats` accepts.

    Raises:
        TypeError / ValueError: naming the argument that is wrong.
    """
    f = _prepare(instances, semantic, policy, categories, protected, score_threshold,
                 overlap_threshold, protect_threshold, min_stuff_area)
    probs = f.semantic.numpy()  # [C, H, W]
    free = ~(probs[f.protected] > f.protect_threshold).any(axis=0)  # [H, W] step 2
    ids, kept = _fuse_things(f.masks.numpy(), f.order, free, f.overlap_threshold)
    segments = {k + 1: (f.labels[i], False) for k, i in enumerate(kept)}
    stuff = _fuse_stuff(ids, probs, f.categories, f.min_stuff_area, len(kept) + 1)
    segments.update({len(kept) + 1 + k: (c, False) for k, c in enumerate(stuff)})
    return torch.from_numpy(ids).to(semantic.device), segments
