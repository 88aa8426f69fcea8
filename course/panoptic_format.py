"""Panoptic segmentations as files and tensors: the encodings that :mod:`course.pq` reads.

The COCO panoptic encoding, used throughout the course:

- an ``[H, W]`` integer map of segment ids, where ``void`` (0) means unlabelled; in the PNG
  files the id of a pixel is ``R + 256 G + 256**2 B`` (:func:`rgb_to_id`, :func:`id_to_rgb`);
- for each map, its segments ``{id: (category_id, iscrowd)}``; panopticapi's
  ``segments_info`` list of dicts (``id``, ``category_id``, ``iscrowd``, ``area``) is
  accepted too, and so is ``{id: category_id}`` (not crowd). :func:`as_segments` reads any of
  the three into a :class:`SegmentTable`.

The other common encoding, a ``(category, instance)`` pair per pixel (torchmetrics,
Cityscapes), converts with :func:`pairs_to_panoptic` and :func:`panoptic_to_pairs`;
:func:`semantic_map` gives the category of every pixel.

The per-pixel work here is done in NumPy: on the small maps of one image, single-threaded
NumPy is faster than torch's thread pool (reading a 640x480 PNG's colours into ids takes well
under a millisecond). Functions take tensors or arrays and return tensors.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

IdMap = Tensor | np.ndarray
Segments = Mapping[int, Any] | Sequence[Mapping[str, Any]]

_INT64_MAX = np.iinfo(np.int64).max


def is_int(x: Any) -> bool:
    """True for a Python or NumPy integer; False for a bool (which Python counts as one)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def check_void(void: Any) -> int:
    """``void`` as an int, after checking it is a non-negative integer id."""
    if not is_int(void) or void < 0:
        raise ValueError(f"void must be a non-negative integer id, got {void!r}")
    return int(void)


def as_categories(values: Collection[int], name: str) -> list[int]:
    """A collection of distinct integer category ids as a list of ints."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a collection of integer category ids")
    values = list(values)
    if not all(is_int(v) for v in values):
        raise TypeError(f"{name} must hold integer category ids, got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a category twice: {values}")
    return [int(v) for v in values]


# ---------------------------------------------------------------------------------------------
# Id maps and segment lists
# ---------------------------------------------------------------------------------------------


def id_array(ids: IdMap, name: str = "ids") -> np.ndarray:
    """Validate an ``[H, W]`` map of non-negative integer segment ids: ndarray[H, W] int64.

    The NumPy twin of :func:`as_id_map`; no copy when ``ids`` is already int64 on the CPU.

    Raises:
        TypeError: if ``ids`` is not a tensor or an array of integers.
        ValueError: if it is not 2-D or holds a negative id (or one beyond int64).
    """
    if isinstance(ids, Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer segment ids, got dtype {ids.dtype}")
        ids = ids.detach().cpu().numpy()
    elif not isinstance(ids, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(ids).__name__}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer segment ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"{name} must have shape [H, W], got {list(ids.shape)}")
    if ids.dtype == np.uint64 and ids.size and int(ids.max()) > _INT64_MAX:
        raise ValueError(f"{name} holds ids beyond int64")
    ids = ids.astype(np.int64, copy=False)
    # One pass finds a negative id: read as uint64, a negative int64 is above every id >= 0.
    if ids.size and int(ids.view(np.uint64).max()) > _INT64_MAX:
        raise ValueError(f"{name} holds the negative id {int(ids.min())}; segment ids are >= 0")
    return ids


def as_id_map(ids: IdMap, name: str = "ids") -> Tensor:
    """Validate an ``[H, W]`` map of non-negative integer segment ids; return it as int64.

    Raises:
        TypeError: if ``ids`` is not a tensor or an array of integers.
        ValueError: if it is not 2-D or holds a negative id.
    """
    return torch.from_numpy(id_array(ids, name))


@dataclass(frozen=True)
class SegmentTable:
    """The segments of one map, sorted by id.

    Attributes:
        ids (ndarray[S]): int64 segment ids, ascending, none of them void.
        categories (ndarray[S]): int64 category id of each segment.
        crowd (ndarray[S]): bool crowd flag of each segment.
        listed (ndarray[S]): int64 position of each segment in the list it was read from
            (panopticapi's crowd rule depends on that order).
        area (ndarray[S]): int64 ``area`` of each segment as its ``segments_info`` entry gives
            it, -1 where none is given (panopticapi takes a ground-truth area from there).
    """

    ids: np.ndarray
    categories: np.ndarray
    crowd: np.ndarray
    listed: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


_Row = tuple[Any, Any, Any, Any]  # id, category_id, iscrowd, area (None when not given)


def _segment_rows(segments: Segments, name: str, prediction: bool) -> list[_Row]:
    """``(id, category_id, iscrowd, area)`` of each segment, in the order listed."""
    if isinstance(segments, Mapping):
        rows = []
        for sid, value in segments.items():
            if isinstance(value, tuple | list) or (
                    isinstance(value, Sequence) and not isinstance(value, str)):
                if len(value) == 2:
                    rows.append((sid, value[0], False if prediction else value[1], None))
                    continue
            rows.append((sid, value, False, None))
        return rows
    if not isinstance(segments, Sequence) or isinstance(segments, str):
        raise TypeError(f"{name} must be a dict {{id: (category_id, iscrowd)}} or a list of "
                        f"segments_info dicts, got {type(segments).__name__}")
    try:
        if prediction:  # panopticapi reads neither iscrowd nor area of a prediction
            return [(info["id"], info["category_id"], False, None) for info in segments]
        return [(info["id"], info["category_id"], info.get("iscrowd", 0), info.get("area"))
                for info in segments]
    except (TypeError, KeyError, AttributeError):
        i = next(i for i, info in enumerate(segments) if not isinstance(info, Mapping)
                 or "id" not in info or "category_id" not in info)
        raise TypeError(f"{name}[{i}] must be a dict with 'id' and 'category_id' "
                        "(panopticapi's segments_info)") from None


def _check_row(row: _Row, name: str, void: int) -> None:
    sid, cat, crowd, area = row
    if not is_int(sid) or not is_int(cat):
        raise TypeError(f"{name}: segment ids and category ids must be integers, "
                        f"got id {sid!r} with category {cat!r}")
    if crowd not in (0, 1):  # True and False compare equal to 1 and 0
        raise ValueError(f"{name}: iscrowd of segment {sid} must be 0 or 1, got {crowd!r}")
    if sid < 0:
        raise ValueError(f"{name}: segment id {sid} is negative")
    if sid == void:
        raise ValueError(f"{name}: segment id {sid} is the void id; void is not a segment")
    if area is not None and not (isinstance(area, int | float | np.integer | np.floating)
                                 and not isinstance(area, bool) and area >= 0
                                 and float(area).is_integer()):
        raise ValueError(f"{name}: area of segment {sid} must be a whole number of pixels "
                         f">= 0, got {area!r}")


def as_segments(segments: Segments, name: str = "segments", void: int = 0, *,
                prediction: bool = False) -> SegmentTable:
    """Read ``{id: (category_id, iscrowd)}``, ``{id: category_id}`` or a ``segments_info`` list.

    With ``prediction``, ``iscrowd`` and ``area`` are not read (panopticapi reads neither of
    a predicted segment): every segment is not crowd and has no listed area.

    Raises:
        TypeError: on a wrong container or a non-integer id / category.
        ValueError: on a repeated id, a negative id, the void id used as a segment, an
            ``iscrowd`` other than 0 / 1 or an ``area`` that is not a whole number >= 0.
    """
    rows = _segment_rows(segments, name, prediction)
    ids, cats, crowds, areas = ([r[k] for r in rows] for k in range(4))
    given = [a for a in areas if a is not None]
    plain = ({type(x) for x in ids + cats + given} <= {int}
             and {type(c) for c in crowds} <= {int, bool} and set(crowds) <= {0, 1}
             and min(given, default=0) >= 0)  # the usual case, checked without a loop
    if not plain or void in ids or (ids and min(ids) < 0):
        for row in rows:
            _check_row(row, name, void)
    areas = [-1 if a is None else a for a in areas]
    table = np.array([ids, cats, areas], dtype=np.int64).reshape(3, len(rows))  # [3, S]
    crowd = np.array(crowds, dtype=bool).reshape(len(rows))  # [S]
    if all(a < b for a, b in zip(ids, ids[1:], strict=False)):  # ascending already
        return SegmentTable(table[0], table[1], crowd, np.arange(len(rows)), table[2])
    order = np.argsort(table[0], kind="stable")  # [S]
    sorted_ids = table[0, order]
    twice = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(twice):
        raise ValueError(f"{name}: segment id {int(sorted_ids[twice[0]])} is listed twice")
    return SegmentTable(sorted_ids, table[1, order], crowd[order], order, table[2, order])


def segment_rows(ids: np.ndarray, table: SegmentTable, void: int, name: str) -> np.ndarray:
    """Pixel -> row of ``table`` plus one (0 for void): ndarray of ``ids``' shape, int64.

    A binary search of each pixel's id among the sorted segment ids.

    Raises:
        ValueError: if a pixel holds an id that is neither void nor in ``table``.
    """
    sorted_ids = table.ids  # [S] ascending
    if len(sorted_ids):
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        known = sorted_ids[pos] == ids
    else:
        pos, known = np.zeros_like(ids), np.zeros(ids.shape, dtype=bool)
    unknown = ids[~known & (ids != void)] if not known.all() else ids[:0]
    if len(unknown):
        raise ValueError(f"{name} holds segment id(s) {np.unique(unknown)[:5].tolist()} that "
                         f"are not in {name.replace('ids', 'segments')}")
    return np.where(known, pos + 1, 0)


# ---------------------------------------------------------------------------------------------
# PNG colours
# ---------------------------------------------------------------------------------------------


def rgb_to_id(rgb: Tensor | np.ndarray) -> Tensor:
    """COCO panoptic PNG colours to segment ids: ``id = R + 256 G + 256**2 B``.

    Args:
        rgb (Tensor[H, W, 3]): uint8 colours (as read from the PNG; an array is taken as is).

    Returns:
        Tensor[H, W] int64.
    """
    if isinstance(rgb, Tensor):
        rgb = rgb.detach().cpu().numpy()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have shape [H, W, 3], got {list(rgb.shape)}")
    if rgb.dtype != np.uint8:
        raise TypeError(f"rgb must be uint8 colours, got dtype {rgb.dtype}")
    ids = rgb[..., 2].astype(np.int32)  # [H, W]; the bytes combined in 32 bits, then widened
    ids <<= 8
    ids |= rgb[..., 1]
    ids <<= 8
    ids |= rgb[..., 0]
    return torch.from_numpy(ids.astype(np.int64))


def id_to_rgb(ids: IdMap) -> Tensor:
    """Segment ids to COCO panoptic PNG colours, the inverse of :func:`rgb_to_id`.

    Args:
        ids (Tensor[H, W]): ids in ``[0, 256**3)``.

    Returns:
        Tensor[H, W, 3] uint8.
    """
    ids = id_array(ids)
    if ids.size and int(ids.max()) >= 256**3:
        raise ValueError(f"ids must be below 256**3 to fit in RGB, found {int(ids.max())}")
    rgb = np.empty((*ids.shape, 3), dtype=np.uint8)  # [H, W, 3]
    # each byte written straight into its channel ("unsafe" keeps the low 8 bits)
    np.bitwise_and(ids, 255, out=rgb[..., 0], casting="unsafe")
    np.bitwise_and(ids >> 8, 255, out=rgb[..., 1], casting="unsafe")
    np.right_shift(ids, 16, out=rgb[..., 2], casting="unsafe")
    return torch.from_numpy(rgb)


# ---------------------------------------------------------------------------------------------
# The (category, instance) pair encoding
# ---------------------------------------------------------------------------------------------


def _pair_maps(pairs: Tensor | np.ndarray | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The category map and the instance map, ``[H, W]`` int64 each, checked."""
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
    if pairs.numel() and int(pairs.min()) < 0:
        raise ValueError("pairs must hold non-negative category and instance ids")
    return pairs[..., 0].to(torch.int64), pairs[..., 1].to(torch.int64)


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
    category, instance = _pair_maps(pairs)  # [H, W] each
    things, stuffs = as_categories(things, "things"), as_categories(stuffs, "stuffs")
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
    for k, value in enumerate(keys.tolist()):
        if value < 0:
            continue
        cat, inst = divmod(value, shift)
        new_id[k] = len(segments) + 1
        segments[len(segments) + 1] = (cat, cat in things and inst == crowd_instance)
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
    void = check_void(void)
    ids = id_array(ids)
    table = as_segments(segments, "segments", void)
    rows = segment_rows(ids, table, void, "ids")  # [H, W] in 0..S
    category = np.concatenate([[void_category], table.categories]).astype(np.int64)  # [S + 1]
    return torch.from_numpy(category[rows])


def panoptic_to_pairs(ids: IdMap, segments: Segments, *, void_category: int,
                      crowd_instance: int | None = None, void: int = 0) -> Tensor:
    """A segment-id map to the ``(category, instance)`` pair encoding.

    Instances are numbered 1, 2, ... within each category in ascending id order; void pixels get
    ``(void_category, 0)``; crowd segments get instance ``crowd_instance``, which must then be
    given (the pair encoding has no crowd flag of its own).

    Returns:
        Tensor[H, W, 2] int64.
    """
    void = check_void(void)
    ids = id_array(ids)
    table = as_segments(segments, "segments", void)
    if bool(table.crowd.any()) and crowd_instance is None:
        raise ValueError("segments include crowd; pass crowd_instance= to encode them")
    rows = segment_rows(ids, table, void, "ids")  # [H, W] in 0..S
    category = np.concatenate([[void_category], table.categories]).astype(np.int64)  # [S + 1]
    instance = np.zeros(len(table) + 1, dtype=np.int64)  # [S + 1]
    seen: dict[int, int] = {}
    for row, (cat, crowd) in enumerate(zip(table.categories.tolist(), table.crowd.tolist(),
                                           strict=True)):  # ascending ids
        if crowd:
            instance[row + 1] = crowd_instance
        else:
            seen[cat] = seen.get(cat, 0) + 1
            instance[row + 1] = seen[cat]
    return torch.from_numpy(np.stack([category[rows], instance[rows]], axis=-1))
