"""COCO's formats: run-length encoded masks, and the ground-truth and results json files.

**Run-length encoding (RLE).** COCO stores a binary mask as the lengths of its runs of equal
pixels, read in column-major order (down the first column, then the second, ...):
``counts = [background, foreground, background, ...]``. The first run is always background,
so it is 0 when the first pixel is set, and the counts add up to ``H * W``. :class:`RLEMasks`
holds N masks of one image size as flat numpy arrays and converts them to and from dense
masks and pycocotools' dicts without a Python loop over pixels or masks.

The compressed form of ``counts`` is pycocotools' string: every count after the third is
replaced by its difference from the count two before it, and each number is written 5 bits
at a time, least significant first, as ``chr(48 + bits)``; bit ``0x20`` of a character says
another character follows, and bit ``0x10`` of the last one is the sign.

**Files.** :func:`load_ground_truth` reads a COCO instances file into the per-image dicts
that :func:`course.ap.coco_evaluate` takes; :func:`load_results` reads a results file the way
pycocotools' ``COCO.loadRes`` does (quirks included, see there); :func:`ground_truth_to_coco`
and :func:`predictions_to_coco` write both formats. Annotation ids are not used: pycocotools
counts a match to a ground-truth annotation whose id is 0 as unmatched; ours does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from torch import Tensor

from course.masks import as_masks

Progress = Callable[[Sequence[Any], str], Iterable[Any]]
"""``progress(items, description)`` returns an iterable over ``items`` (e.g. a tqdm bar)."""

_INT32_MIN = -(2**31)


# ---------------------------------------------------------------------------------------------
# Segmented helpers: many variable-length arrays stored end to end with offsets
# ---------------------------------------------------------------------------------------------


def _segment_ids(offsets: np.ndarray) -> np.ndarray:
    """For offsets ``[N + 1]``, the segment index of each of the ``offsets[-1]`` elements."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(n) for n in lengths])`` without the loop."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total) - np.repeat(starts, lengths)


# ---------------------------------------------------------------------------------------------
# The compressed string
# ---------------------------------------------------------------------------------------------


def counts_to_string(counts: Sequence[int] | np.ndarray) -> str:
    """pycocotools' compressed string for one mask's run lengths."""
    counts = np.asarray(counts, dtype=np.int64)
    return _encode_strings(counts, np.array([0, len(counts)]))[0]


def string_to_counts(string: str | bytes) -> np.ndarray:
    """Run lengths (int64) from pycocotools' compressed string. Raises ValueError if malformed."""
    counts, _ = _decode_strings([string], ["counts"])
    return counts


def _encode_strings(counts: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Compressed strings of many masks at once: ``counts`` end to end, split by ``offsets``."""
    if not len(counts):
        return [""] * (len(offsets) - 1)
    local = np.arange(len(counts)) - np.repeat(offsets[:-1], np.diff(offsets))
    x = counts.astype(np.int64)
    later = np.flatnonzero(local > 2)
    x[later] -= counts[later - 2]  # counts after the third: difference from two before
    chars, emitted = [], []
    alive = np.ones(len(x), dtype=bool)  # every number writes at least one character
    while alive.any():
        bits = x & 0x1F
        x = x >> 5  # arithmetic shift: negative numbers stay negative
        more = np.where(bits & 0x10, x != -1, x != 0)
        chars.append(bits + 48 + np.where(more, 0x20, 0))
        emitted.append(alive)
        alive = alive & more
    grid = np.stack(chars, axis=1)  # [C, rounds]
    keep = np.stack(emitted, axis=1)  # [C, rounds]
    text = grid[keep].astype(np.uint8).tobytes().decode("ascii")  # row-major: number by number
    per_number = keep.sum(axis=1)
    ends = np.cumsum(np.add.reduceat(per_number, offsets[:-1])) if len(offsets) > 1 else []
    out, start = [], 0
    for end in ends:
        out.append(text[start:end])
        start = int(end)
    return out


def _decode_strings(strings: Sequence[str | bytes], names: Sequence[str]) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
    """Run lengths of many compressed strings at once: ``(counts, offsets)``, vectorised.

    ``names[i]`` names string ``i`` in error messages.
    """
    try:  # the common case: all str, all ASCII: one join, one encode
        joined = "".join(strings).encode("ascii")
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    except (TypeError, UnicodeEncodeError):
        raw = [s if isinstance(s, bytes) else str(s).encode("ascii", "replace") for s in strings]
        joined = b"".join(raw)
        lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    chars = np.frombuffer(joined, dtype=np.uint8).astype(np.int16) - 48
    char_end = np.cumsum(lengths)

    def owner_of(char: int) -> int:
        return int(np.searchsorted(char_end, char, side="right"))

    bad = (chars < 0) | (chars > 63)
    if bad.any():
        raise ValueError(f"{names[owner_of(int(np.argmax(bad)))]} is not a valid compressed RLE: "
                         "characters must lie in '0'..'o' (ASCII 48-111)")
    ends = (chars & 0x20) == 0  # a character without the continuation bit ends a number
    last_char = char_end[lengths > 0] - 1
    if (~ends[last_char]).any():
        i = int(np.flatnonzero(lengths > 0)[np.argmax(~ends[last_char])])
        raise ValueError(f"{names[i]} is not a valid compressed RLE: it ends in the middle of "
                         "a number (truncated?)")
    number_end = np.flatnonzero(ends)
    width = np.diff(number_end, prepend=-1)  # characters per number
    number_start = number_end - width + 1
    if (width > 7).any():
        raise ValueError(f"{names[owner_of(int(number_start[np.argmax(width > 7)]))]} is not a "
                         "valid compressed RLE: a count needs more than 7 characters (over 2**32)")
    bits = (chars & 0x1F).astype(np.int64)
    value = bits[number_start]
    for k in range(1, int(width.max(initial=0))):  # 5 more bits from each further character
        longer = np.flatnonzero(width > k)
        value[longer] |= bits[number_start[longer] + k] << (5 * k)
    sign = ((chars[number_end] >> 4) & 1).astype(np.int64)  # bit 0x10 of the last character
    value -= sign << (5 * width)
    ends_before = np.zeros(len(chars) + 1, dtype=np.int64)  # numbers completed before a char
    np.cumsum(ends, out=ends_before[1:])
    per_string = ends_before[char_end] - ends_before[char_end - lengths]
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(per_string, out=offsets[1:])
    return _undo_differences(value, offsets), offsets


def _undo_differences(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``count[m] = x[m] + count[m - 2]`` for ``m > 2`` within each segment.

    Counts two apart are also two apart in the flat array, so each parity of the flat index
    is one sequence made of whole chains; a chain restarts at local index 0, 1 and 2.
    """
    lengths = np.diff(offsets)
    restart = np.zeros(len(x), dtype=bool)
    for d in (0, 1, 2):
        restart[offsets[:-1][lengths > d] + d] = True
    out = np.empty_like(x)
    for parity in (0, 1):
        v = x[parity::2]
        starts = restart[parity::2]
        total = np.cumsum(v)
        base = (total - v)[starts]
        out[parity::2] = total - base[np.cumsum(starts) - 1]
    return out


# ---------------------------------------------------------------------------------------------
# Polygons
# ---------------------------------------------------------------------------------------------


def _polygon_counts(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """pycocotools' ``rleFrPoly``: rasterise one polygon ``[x0, y0, x1, y1, ...]`` to counts.

    The boundary is traced on a 5x finer grid and a pixel is inside when its centre is; this
    follows the C code step by step (including its truncating ``(int)`` casts) so that the
    pixels are the very same.
    """
    scale = 5.0
    k = len(xy) // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.trunc(scale * xy[0:2 * k:2] + 0.5).astype(np.int64)
        y = np.trunc(scale * xy[1:2 * k:2] + 0.5).astype(np.int64)
        x, y = np.append(x, x[0]), np.append(y, y[0])
        xs, xe, ys, ye = x[:-1], x[1:], y[:-1], y[1:]
        dx, dy = np.abs(xe - xs), np.abs(ys - ye)
        along_x = dx >= dy
        flip = (along_x & (xs > xe)) | (~along_x & (ys > ye))
        xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
        ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
        slope = np.where(along_x, (ye - ys) / dx, (xe - xs) / dy)  # 0/0 on repeated points
        steps = np.where(along_x, dx, dy) + 1
        edge = np.repeat(np.arange(k), steps)
        d = ragged_arange(steps)
        t = np.where(flip[edge], steps[edge] - 1 - d, d)
        ax, s = along_x[edge], slope[edge]
        rounded_v = ys[edge] + s * t + 0.5
        rounded_u = xs[edge] + s * t + 0.5
        v_cast = np.where(np.isfinite(rounded_v), rounded_v, _INT32_MIN)
        u_cast = np.where(np.isfinite(rounded_u), rounded_u, _INT32_MIN)
        u = np.where(ax, t + xs[edge], np.trunc(u_cast).astype(np.int64))
        v = np.where(ax, np.trunc(v_cast).astype(np.int64), t + ys[edge])
    # points where the traced boundary crosses a pixel column, then down to the pixel grid
    moved = u[1:] != u[:-1]
    xd = np.where(u[1:] < u[:-1], u[1:], u[1:] - 1).astype(np.float64)
    xd = (xd + 0.5) / scale - 0.5
    keep = moved & (np.floor(xd) == xd) & (xd >= 0) & (xd <= width - 1)
    yd = np.minimum(v[1:], v[:-1]).astype(np.float64)
    yd = np.ceil(np.clip((yd + 0.5) / scale - 0.5, 0, height))
    a = np.sort(np.append(xd[keep].astype(np.int64) * height + yd[keep].astype(np.int64),
                          height * width))
    diffs = np.diff(a, prepend=0)
    if not (diffs[1:] == 0).any():
        return diffs
    out, j = [int(diffs[0])], 1  # two boundaries at one place cancel: merge the runs around
    while j < len(diffs):
        if diffs[j] > 0:
            out.append(int(diffs[j]))
            j += 1
        else:
            j += 1
            if j < len(diffs):
                out[-1] += int(diffs[j])
                j += 1
    return np.array(out, dtype=np.int64)


def _counts_from_runs(starts: np.ndarray, ends: np.ndarray, total: int) -> np.ndarray:
    """Counts of the union of foreground runs ``[start, end)`` (any order, may overlap)."""
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return np.array([total], dtype=np.int64)
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1]  # a run that starts after everything so far: new piece
    lo = starts[new]
    hi = np.maximum.reduceat(ends, np.flatnonzero(new))
    edges = np.empty(2 * len(lo), dtype=np.int64)
    edges[0::2], edges[1::2] = lo, hi
    return np.diff(edges, prepend=0, append=total)


def polygons_to_counts(polygons: Sequence[Sequence[float]], height: int, width: int,
                       name: str = "segmentation") -> np.ndarray:
    """Run lengths of the union of one object's polygons, exactly as pycocotools rasterises them.

    Args:
        polygons: one or more ``[x0, y0, x1, y1, ...]`` lists (pixel coordinates, COCO's json).
        height, width: the image size.

    Returns:
        np.ndarray[C] int64 counts.
    """
    if not isinstance(polygons, list | tuple) or not len(polygons):
        raise ValueError(f"{name} must be a non-empty list of polygons [x0, y0, x1, y1, ...]")
    parts = []
    for i, poly in enumerate(polygons):
        xy = np.asarray(poly, dtype=np.float64).ravel() if len(poly) else np.zeros(0)
        if len(xy) < 6 or not np.isfinite(xy).all():
            raise ValueError(f"{name}[{i}] must list at least 3 finite points "
                             f"(6 numbers x0, y0, x1, y1, ...), got {len(xy)} numbers")
        parts.append(_polygon_counts(xy, height, width))
    if len(parts) == 1:
        return parts[0]
    masks = RLEMasks.from_counts(parts, height, width)
    _, start, length = masks.runs()
    return _counts_from_runs(start, start + length, height * width)


def _decode_all(segmentations: Sequence[Any], sizes: np.ndarray, names: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Counts of many COCO segmentation objects, object ``i`` in an image of ``sizes[i]``.

    Returns ``(counts, offsets)`` end to end; compressed strings are decoded in one batch.
    """
    n = len(segmentations)
    per_object: dict[int, np.ndarray] = {}
    try:  # the common case, all compressed RLE with str counts: comprehensions, no branches
        compressed = [seg["counts"] for seg in segmentations]
        compressed_size = [seg["size"] for seg in segmentations]
        if not all(type(c) is str for c in compressed):
            raise TypeError
        compressed_at = list(range(n))
    except (TypeError, KeyError, IndexError):
        compressed, compressed_at, compressed_size = [], [], []
        for i, seg in enumerate(segmentations):
            height, width = int(sizes[i, 0]), int(sizes[i, 1])
            if isinstance(seg, dict):
                if "counts" not in seg or "size" not in seg:
                    raise ValueError(f"{names[i]} is an RLE dict without 'counts' and 'size'") \
                        from None
                _check_size(seg["size"], height, width, names[i])
                if isinstance(seg["counts"], str | bytes):
                    compressed.append(seg["counts"])
                    compressed_at.append(i)
                    compressed_size.append(seg["size"])
                elif isinstance(seg["counts"], list | tuple | np.ndarray):
                    per_object[i] = np.asarray(seg["counts"], dtype=np.int64).ravel()
                else:
                    raise ValueError(f"{names[i]}['counts'] must be a string (compressed RLE) "
                                     f"or a list of ints, got {type(seg['counts']).__name__}") \
                        from None
            elif isinstance(seg, list | tuple):
                per_object[i] = polygons_to_counts(seg, height, width, names[i])
            else:
                raise ValueError(f"{names[i]} must be an RLE dict or a list of polygons, "
                                 f"got {type(seg).__name__}") from None
    at = np.array(compressed_at, dtype=np.int64)
    try:
        given = np.array(compressed_size, dtype=np.int64).reshape(len(at), 2)
        wrong = (given != sizes[at]).any(axis=1)
    except (TypeError, ValueError):
        wrong = np.ones(len(at), dtype=bool)
    for j in np.flatnonzero(wrong):
        i = int(at[j])
        _check_size(compressed_size[j], int(sizes[i, 0]), int(sizes[i, 1]), names[i])
    lengths = np.zeros(n, dtype=np.int64)
    if compressed:
        c_counts, c_offsets = _decode_strings(compressed, [names[i] for i in compressed_at])
        lengths[at] = np.diff(c_offsets)
    for i, c in per_object.items():
        lengths[i] = len(c)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if not per_object:
        counts = c_counts if compressed else np.zeros(0, dtype=np.int64)
    else:
        counts = np.zeros(int(offsets[-1]), dtype=np.int64)
        if compressed:
            dest = np.repeat(offsets[at], lengths[at]) + ragged_arange(lengths[at])
            counts[dest] = c_counts
        for i, c in per_object.items():
            counts[offsets[i]:offsets[i + 1]] = c
    _check_counts(counts, offsets, sizes[:, 0] * sizes[:, 1], names)
    return counts, offsets


def _check_size(size: Any, height: int, width: int, name: str) -> None:
    if not isinstance(size, list | tuple) or list(size) != [height, width]:
        raise ValueError(f"{name}['size'] is {size!r}, but the image is [{height}, {width}] "
                         "(height, width)")


def _check_counts(counts: np.ndarray, offsets: np.ndarray, pixels: np.ndarray,
                  names: Sequence[str]) -> None:
    """Every object has counts, none negative, adding up to its image's pixel count."""
    lengths = np.diff(offsets)
    negative = np.zeros(len(lengths), dtype=bool)
    if len(counts):
        negative = np.bincount(_segment_ids(offsets)[counts < 0], minlength=len(lengths)) > 0
    sums = np.zeros(len(lengths), dtype=np.int64)
    has = lengths > 0
    if has.any():
        sums[has] = np.add.reduceat(counts, offsets[:-1][has])
    bad = (lengths == 0) | negative | (sums != pixels)
    if bad.any():
        i = int(np.argmax(bad))
        got = "no counts" if lengths[i] == 0 else (
            "a negative count" if negative[i] else f"counts adding up to {int(sums[i])}")
        raise ValueError(f"{names[i]} is a malformed RLE: {got}, expected non-negative counts "
                         f"adding up to height * width = {int(pixels[i])}")


def _coco_bbox(counts: np.ndarray, offsets: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """pycocotools' ``toBbox`` of many masks, mask ``i`` of height ``heights[i]``: [N, 4] xywh.

    It walks the pairs (background, foreground) of counts, dropping an odd last count; the
    first pixel of each foreground run and the last one give the columns and rows, and a run
    that crosses into another column makes the box span every row.
    """
    n = len(offsets) - 1
    out = np.zeros((n, 4), dtype=np.float64)
    used_len = (np.diff(offsets) // 2) * 2
    if not used_len.any():
        return out
    mask = _segment_ids(offsets)
    local = np.arange(len(counts)) - offsets[mask]
    total = np.cumsum(counts)
    cc = total - (total - counts)[offsets[:-1]][mask]  # inclusive cumsum within each mask
    h = np.maximum(heights[mask], 1)
    t = cc - local % 2  # first pixel of a foreground run (even j), last pixel (odd j)
    y, x = t % h, t // h
    use = local < used_len[mask]
    prev_x = np.concatenate([[0], x[:-1]])
    wraps = use & (local % 2 == 1) & (prev_x < x)
    idx = np.flatnonzero(use)
    first = np.flatnonzero(np.diff(mask[idx], prepend=-1))
    owner = mask[idx][first]
    xs, xe = np.minimum.reduceat(x[idx], first), np.maximum.reduceat(x[idx], first)
    ys, ye = np.minimum.reduceat(y[idx], first), np.maximum.reduceat(y[idx], first)
    full = np.bincount(mask[wraps], minlength=n)[owner] > 0
    ys, ye = np.where(full, 0, ys), np.where(full, heights[owner] - 1, ye)
    out[owner] = np.stack([xs, ys, xe - xs + 1, ye - ys + 1], axis=1)
    return out


# ---------------------------------------------------------------------------------------------
# RLEMasks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RLEMasks:
    """N binary masks of one ``height x width`` image as COCO run lengths.

    Attributes:
        height, width: the image size.
        counts (np.ndarray[C]): int64 run lengths of all masks, end to end.
        offsets (np.ndarray[N + 1]): mask ``i`` has the counts ``counts[offsets[i]:offsets[i+1]]``.

    Each mask has at least one count, no count is negative, and each mask's counts add up to
    ``height * width`` (checked on construction).
    """

    height: int
    width: int
    counts: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        for key in ("height", "width"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{key} must be a non-negative int, got {value!r}")
        offsets = self.offsets
        if offsets.ndim != 1 or not len(offsets) or offsets[0] != 0 or \
                offsets[-1] != len(self.counts) or (np.diff(offsets) < 1).any():
            raise ValueError("offsets must start at 0, end at len(counts) and give every mask "
                             "at least one count")
        if len(self.counts) and self.counts.min() < 0:
            i = int(_segment_ids(offsets)[np.argmax(self.counts < 0)])
            raise ValueError(f"mask {i} has a negative run length")
        if len(self):
            sums = np.add.reduceat(self.counts, offsets[:-1])
            wrong = sums != self.height * self.width
            if wrong.any():
                i = int(np.argmax(wrong))
                raise ValueError(f"mask {i}: run lengths add up to {int(sums[i])}, not "
                                 f"height * width = {self.height * self.width}")

    # --- construction --------------------------------------------------------------------

    @classmethod
    def _trusted(cls, height: int, width: int, counts: np.ndarray, offsets: np.ndarray
                 ) -> RLEMasks:
        """Without the checks, for arrays that were checked already (the json readers)."""
        out = object.__new__(cls)
        for key, value in (("height", int(height)), ("width", int(width)), ("counts", counts),
                           ("offsets", offsets)):
            object.__setattr__(out, key, value)
        return out

    @classmethod
    def from_counts(cls, counts: Sequence[Sequence[int] | np.ndarray], height: int,
                    width: int) -> RLEMasks:
        """From one list of run lengths per mask (uncompressed RLE)."""
        arrays = [np.asarray(c, dtype=np.int64).ravel() for c in counts]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return cls(int(height), int(width), flat, np.concatenate([[0], np.cumsum(lengths)]))

    @classmethod
    def from_dense(cls, masks: Tensor | np.ndarray) -> RLEMasks:
        """Encode dense masks ``[N, H, W]`` (bool or 0/1), vectorised over masks and pixels."""
        dense = as_masks(masks).cpu().numpy()
        n, h, w = dense.shape
        flat = dense.transpose(0, 2, 1).reshape(n, h * w)  # [N, HW] column-major
        if h * w == 0:
            return cls(h, w, np.zeros(n, dtype=np.int64), np.arange(n + 1))
        mask_of, where = np.nonzero(flat[:, 1:] != flat[:, :-1])  # a new run starts at where+1
        lead = flat[:, 0].astype(np.int64)  # a mask starting with foreground: first count is 0
        changes = np.bincount(mask_of, minlength=n)
        bounds_per_mask = changes + lead + 2  # 0, [0], change points, HW
        b_off = np.concatenate([[0], np.cumsum(bounds_per_mask)])
        bounds = np.zeros(int(b_off[-1]), dtype=np.int64)
        bounds[b_off[1:] - 1] = h * w
        rank = np.arange(len(where)) - np.repeat(np.cumsum(changes) - changes, changes)
        bounds[b_off[mask_of] + 1 + lead[mask_of] + rank] = where + 1
        counts = np.diff(bounds)
        keep = np.ones(len(counts), dtype=bool)
        keep[b_off[1:-1] - 1] = False  # the differences across two masks are not counts
        return cls(h, w, counts[keep], np.concatenate([[0], np.cumsum(bounds_per_mask - 1)]))

    @classmethod
    def from_coco(cls, segmentations: Sequence[Any], height: int, width: int,
                  names: Sequence[str] | None = None) -> RLEMasks:
        """From COCO ``segmentation`` objects: compressed RLE, uncompressed RLE or polygons.

        Compressed strings are decoded all at once. ``names[i]`` names object ``i`` in error
        messages (default ``segmentations[i]``).

        Raises:
            ValueError: on a malformed object, or an RLE whose ``size`` is not ``[height, width]``.
        """
        n = len(segmentations)
        names = list(names) if names is not None else [f"segmentations[{i}]" for i in range(n)]
        sizes = np.tile(np.array([[height, width]], dtype=np.int64), (n, 1))
        counts, offsets = _decode_all(segmentations, sizes, names)
        return cls(int(height), int(width), counts, offsets)

    # --- views ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def select(self, index: np.ndarray | Sequence[int]) -> RLEMasks:
        """The masks at ``index`` (ints), in that order."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        lengths = np.diff(self.offsets)[index]
        take = np.repeat(self.offsets[:-1][index], lengths) + ragged_arange(lengths)
        return RLEMasks._trusted(self.height, self.width, self.counts[take],
                                 np.concatenate([[0], np.cumsum(lengths)]))

    def area(self) -> np.ndarray:
        """Pixel count of each mask: np.ndarray[N] int64."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        local = np.arange(len(self.counts)) - np.repeat(self.offsets[:-1], np.diff(self.offsets))
        return np.add.reduceat(np.where(local % 2 == 1, self.counts, 0), self.offsets[:-1])

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-empty foreground runs: ``(mask, start, length)``, each np.ndarray[K] int64.

        ``start`` is the index of the run's first pixel in the mask's column-major order;
        runs come mask by mask, in order.
        """
        mask = _segment_ids(self.offsets)
        local = np.arange(len(self.counts)) - self.offsets[mask]
        before = np.cumsum(self.counts) - self.counts  # pixels before each run, all masks
        start = before - before[self.offsets[:-1]][mask]
        fg = (local % 2 == 1) & (self.counts > 0)
        return mask[fg], start[fg], self.counts[fg]

    def boxes(self) -> np.ndarray:
        """The tight box of each mask, ``(x1, y1, x2, y2)`` as :func:`course.boxes.masks_to_boxes`
        (``x2`` one past the last column). Empty masks get zeros. np.ndarray[N, 4] float64."""
        out = np.zeros((len(self), 4), dtype=np.float64)
        mask, start, length = self.runs()
        if not len(mask) or not self.height:
            return out
        h = self.height
        last = start + length - 1
        x0, x1 = start // h, last // h
        wraps = x1 > x0  # a run over a column boundary touches the first and the last row
        y0, y1 = np.where(wraps, 0, start % h), np.where(wraps, h - 1, last % h)
        first = np.flatnonzero(np.diff(mask, prepend=-1))  # first run of each non-empty mask
        owner = mask[first]
        out[owner, 0] = np.minimum.reduceat(x0, first)
        out[owner, 1] = np.minimum.reduceat(y0, first)
        out[owner, 2] = np.maximum.reduceat(x1, first) + 1
        out[owner, 3] = np.maximum.reduceat(y1, first) + 1
        return out

    def coco_bbox(self) -> np.ndarray:
        """pycocotools' ``toBbox``: ``(x, y, w, h)`` per mask, from the raw counts.

        The same box as :meth:`boxes` for well-formed counts (zero-length runs other than the
        first make pycocotools' answer differ, and it is followed here). np.ndarray[N, 4].
        """
        return _coco_bbox(self.counts, self.offsets, np.full(len(self), self.height))

    # --- conversions ---------------------------------------------------------------------

    def to_dense(self) -> np.ndarray:
        """Decode to np.ndarray[N, H, W] bool."""
        n, h, w = len(self), self.height, self.width
        local = np.arange(len(self.counts)) - np.repeat(self.offsets[:-1], np.diff(self.offsets))
        flat = np.repeat(local % 2 == 1, self.counts)  # [N * HW]
        return flat.reshape(n, w, h).transpose(0, 2, 1)  # column-major back to [N, H, W]

    def to_coco(self, compressed: bool = True) -> list[dict[str, Any]]:
        """pycocotools' dicts ``{"size": [H, W], "counts": ...}``: a string, or a list of ints."""
        size = [self.height, self.width]
        if compressed:
            return [{"size": list(size), "counts": s}
                    for s in _encode_strings(self.counts, self.offsets)]
        return [{"size": list(size), "counts": self.counts[a:b].tolist()}
                for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]


def rle_encode(masks: Tensor | np.ndarray) -> list[dict[str, Any]]:
    """Compressed RLE dicts of dense masks ``[N, H, W]``, as ``pycocotools.mask.encode`` makes
    (with ``counts`` a str rather than bytes, ready for json)."""
    return RLEMasks.from_dense(masks).to_coco()


def rle_decode(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """Dense masks ``np.ndarray[N, H, W]`` bool from RLE dicts (compressed or not) of one size."""
    if not len(rles):
        raise ValueError("rles is empty: the image size is unknown; nothing to decode")
    size = rles[0].get("size") if isinstance(rles[0], dict) else None
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise ValueError("rles[0] must be a dict with 'size': [height, width]")
    return RLEMasks.from_coco(rles, int(size[0]), int(size[1]),
                              [f"rles[{i}]" for i in range(len(rles))]).to_dense()


# ---------------------------------------------------------------------------------------------
# Reading COCO json
# ---------------------------------------------------------------------------------------------


@dataclass
class CocoGroundTruth:
    """A COCO instances file, read for :func:`course.ap.coco_evaluate`.

    Attributes:
        images: one ground-truth dict per image listed in the file (in file order), with
            ``image_id``, ``labels``, ``iscrowd``, ``area`` and ``masks`` (:class:`RLEMasks`,
            for ``iou_type="segm"``) or ``bbox`` (``[N, 4]`` COCO ``(x, y, w, h)``).
        categories: category id -> name, ascending id.
        sizes: image id -> ``(height, width)``.
    """

    images: list[dict[str, Any]]
    categories: dict[int, str]
    sizes: dict[int, tuple[int, int]]


def _read(source: str | PathLike | dict | list, what: str) -> Any:
    if isinstance(source, dict | list):
        return source
    try:
        with open(source) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {source} is not valid json: {err}") from None


def _check_iou_type(iou_type: str) -> None:
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")


def no_progress(items: Sequence[Any], description: str) -> Iterable[Any]:
    """The :data:`Progress` that shows nothing: ``items`` as they are."""
    return items


def _bbox_array(boxes: list[Any], names: list[str]) -> np.ndarray:
    try:
        out = np.array(boxes, dtype=np.float64).reshape(len(boxes), 4)
    except (TypeError, ValueError):
        for i, b in enumerate(boxes):
            if not isinstance(b, list | tuple | np.ndarray) or len(b) != 4:
                raise ValueError(f"{names[i]} must be [x, y, width, height], got {b!r}") from None
        raise ValueError(f"{names[0].split('[')[0]}: a bbox holds something other than "
                         "numbers") from None
    if len(out) and not np.isfinite(out).all():
        i = int(np.argmax(~np.isfinite(out).all(axis=1)))
        raise ValueError(f"{names[i]} must be finite, got {boxes[i]!r}")
    return out


def _group_by_image(image_of: np.ndarray, num_images: int) -> list[np.ndarray]:
    """Indices of the annotations of each image, in file order."""
    order = np.argsort(image_of, kind="stable")
    bounds = np.searchsorted(image_of[order], np.arange(num_images + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(num_images)]


def load_ground_truth(source: str | PathLike | dict, iou_type: str = "segm",
                      progress: Progress | None = None) -> CocoGroundTruth:
    """Read a COCO instances file (or its already-parsed dict) into per-image dicts.

    Segmentations may be polygons, uncompressed or compressed RLE; they are rasterised exactly
    as pycocotools does. As in ``COCOeval``, ``iscrowd`` (default 0) marks regions that are
    ignored (an ``ignore`` field is not used: COCOeval overwrites it with ``iscrowd``), and
    ``area`` decides the size range; where ``area`` is missing, the mask's pixel count
    (``bbox`` area for ``iou_type="bbox"``) is used, where pycocotools would fail.

    Raises:
        ValueError: naming the field, for a file without ``annotations``, ``images`` or
            ``categories``, an annotation of an unknown image or category, or a malformed
            segmentation or box.
    """
    _check_iou_type(iou_type)
    progress = progress or no_progress
    data = _read(source, "ground truth")
    if not isinstance(data, dict):
        hint = " (is this a results file?)" if isinstance(data, list) else ""
        raise ValueError("a COCO ground-truth json must be an object with 'images', "
                         f"'annotations' and 'categories', got a {type(data).__name__}{hint}")
    for key in ("annotations", "images", "categories"):
        if key not in data:
            raise ValueError(f"the ground-truth json has no '{key}'")
    categories = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise ValueError(f"categories[{i}] must be an object with an 'id'")
        categories[int(cat["id"])] = str(cat.get("name", cat["id"]))
    categories = dict(sorted(categories.items()))
    sizes, position = {}, {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise ValueError(f"images[{i}] must be an object with an 'id'")
        if isinstance(img["id"], bool) or not isinstance(img["id"], int):
            raise ValueError(f"images[{i}]['id'] must be an integer, got {img['id']!r} (image "
                             "ids are integers here; renumber the images to evaluate)")
        if img["id"] in position:
            raise ValueError(f"images[{i}]['id'] = {img['id']} is listed twice")
        position[img["id"]] = i
        if iou_type == "segm" and ("height" not in img or "width" not in img):
            raise ValueError(f"images[{i}] needs 'height' and 'width' to decode segmentations")
        sizes[int(img["id"])] = (int(img.get("height", 0)), int(img.get("width", 0)))
    anns = data["annotations"]
    image_of, labels, crowd, area, geometry = _annotation_fields(anns, position, categories,
                                                                 iou_type, progress)
    per_image = _group_by_image(image_of, len(data["images"]))
    order = np.concatenate(per_image) if per_image else np.zeros(0, dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum([len(idx) for idx in per_image])]).astype(np.int64)
    if iou_type == "segm":
        hw = np.array([sizes[int(img["id"])] for img in data["images"]], dtype=np.int64)
        counts, offsets = _decode_all([geometry[i] for i in order],
                                      hw[image_of[order]].reshape(-1, 2),
                                      [f"annotations[{i}]['segmentation']" for i in order])
    images = []
    for i, img in enumerate(data["images"]):
        idx = order[bounds[i]:bounds[i + 1]]
        h, w = sizes[int(img["id"])]
        item = {"image_id": int(img["id"]), "labels": labels[idx], "iscrowd": crowd[idx]}
        if iou_type == "segm":
            a, b = offsets[bounds[i]], offsets[bounds[i + 1]]
            item["masks"] = RLEMasks._trusted(h, w, counts[a:b],
                                              offsets[bounds[i]:bounds[i + 1] + 1] - a)
        else:
            item["bbox"] = geometry[idx]
        given = ~np.isnan(area[idx])
        if given.all():
            item["area"] = area[idx]
        else:
            default = item["masks"].area() if iou_type == "segm" else \
                item["bbox"][:, 2] * item["bbox"][:, 3]
            item["area"] = np.where(given, area[idx], default)
        images.append(item)
    return CocoGroundTruth(images, categories, sizes)


def _integer_ids(values: list[Any]) -> np.ndarray:
    """Category ids as int64; a ValueError (the caller then names the culprit) when one is not
    an integer, so that 1.5 is never read as 1."""
    array = np.array(values)
    if len(values) and array.dtype.kind not in "iu":
        raise ValueError("category ids must be integers")
    return array.astype(np.int64)


def _annotation_fields(anns: list[dict], position: dict, categories: dict, iou_type: str,
                       progress: Progress) -> tuple[Any, ...]:
    """Image position, label, crowd flag, area (NaN if absent) and geometry of each annotation."""
    key = "segmentation" if iou_type == "segm" else "bbox"
    items = list(progress(anns, "reading ground truth"))
    try:  # all at once; on any trouble, find and name the culprit
        image_of = np.array([position[a["image_id"]] for a in items], dtype=np.int64)
        labels = _integer_ids([a["category_id"] for a in items])
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in items], dtype=bool)
        area = np.array([a.get("area", np.nan) for a in items], dtype=np.float64)
        geometry = [a[key] for a in items]
    except (KeyError, TypeError, ValueError, AttributeError):
        _explain_bad_annotations(items, position, key, iou_type)
        raise
    if len(labels) and not np.isin(labels, list(categories)).all():
        i = int(np.argmax(~np.isin(labels, list(categories))))
        raise ValueError(f"annotations[{i}]['category_id'] = {int(labels[i])} is not among the "
                         f"categories {list(categories)}")
    if iou_type == "bbox":
        geometry = _bbox_array(geometry, [f"annotations[{i}]['bbox']" for i in range(len(anns))])
    return image_of, labels, crowd, area, geometry


def _explain_bad_annotations(anns: list[Any], position: dict, key: str, iou_type: str) -> None:
    """Raise a ValueError naming the first annotation whose fields cannot be read."""
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise ValueError(f"annotations[{i}] must be an object")
        if ann.get("image_id") not in position:
            raise ValueError(f"annotations[{i}]['image_id'] = {ann.get('image_id')!r} is not "
                             "among the images")
        if isinstance(ann.get("category_id"), bool) or \
                not isinstance(ann.get("category_id"), int):
            raise ValueError(f"annotations[{i}]['category_id'] must be an int, got "
                             f"{ann.get('category_id')!r}")
        try:
            float(ann.get("area", 0))
        except (TypeError, ValueError):
            raise ValueError(f"annotations[{i}]['area'] must be a number, got "
                             f"{ann['area']!r}") from None
        if key not in ann:
            raise ValueError(f"annotations[{i}] has no '{key}' (needed for iou_type={iou_type!r})")


def load_results(source: str | PathLike | list, ground_truth: CocoGroundTruth,
                 iou_type: str = "segm", progress: Progress | None = None
                 ) -> tuple[list[dict[str, Any]], int]:
    """Read a COCO results file (or its parsed list) into per-image prediction dicts.

    Follows pycocotools' ``COCO.loadRes``, quirks included:

    - if the *first* result has a non-empty ``bbox``, every detection's ``area`` (which
      decides its size range) is its box's ``w * h``, even for mask evaluation (detectron2
      deletes ``bbox`` from mask results for this reason); otherwise it is the mask's pixel
      count;
    - a detection without ``segmentation`` is its box, rasterised as a polygon; one without
      ``bbox`` gets the box of its mask (``toBbox``).

    Results whose ``category_id`` is not among the ground truth's categories are dropped, as
    ``COCOeval`` skips them. An empty list gives images without predictions (pycocotools'
    ``loadRes([])`` raises an IndexError instead).

    Returns:
        ``(predictions, dropped)``: one dict per ground-truth image (``image_id``, ``labels``,
        ``scores``, ``area``, and ``masks`` or ``bbox``), and the number of results dropped.
    """
    _check_iou_type(iou_type)
    progress = progress or no_progress
    results = _read(source, "results")
    if not isinstance(results, list):
        raise ValueError("a COCO results json must be a list of detections, got a "
                         f"{type(results).__name__}" + (" (is this a ground-truth file?)"
                                                        if isinstance(results, dict) else ""))
    ids = [img["image_id"] for img in ground_truth.images]
    position = {image_id: i for i, image_id in enumerate(ids)}
    box_areas = bool(results) and isinstance(results[0], dict) and \
        bool(results[0].get("bbox", []))
    n = len(results)
    items = list(progress(results, "reading results"))
    try:  # the fields of all results at once; on any trouble, find and name the culprit
        image_of = np.array([position[r["image_id"]] for r in items], dtype=np.int64)
        scores = np.array([r["score"] for r in items], dtype=np.float64)
        labels = _integer_ids([r["category_id"] for r in items])
        boxes = [r.get("bbox") for r in items]
        segs = [r.get("segmentation") for r in items]
    except (KeyError, TypeError, ValueError, AttributeError):
        _explain_bad_results(items, position)
        raise
    if np.isnan(scores).any():
        raise ValueError(f"results[{int(np.argmax(np.isnan(scores)))}]['score'] is NaN")
    for i in range(n):
        if boxes[i] is None and segs[i] is None:
            raise ValueError(f"results[{i}] has neither 'segmentation' nor 'bbox'")
        if box_areas and not boxes[i]:
            raise ValueError(f"results[{i}] has no 'bbox', but results[0] has one, so "
                             "pycocotools would read every result's area from its 'bbox'")
    keep = np.isin(labels, list(ground_truth.categories))
    kept = np.flatnonzero(keep)
    per_image = _group_by_image(image_of[kept], len(ids))
    order = kept[np.concatenate(per_image)] if per_image else kept
    bounds = np.concatenate([[0], np.cumsum([len(idx) for idx in per_image])]).astype(np.int64)
    hw = np.array([ground_truth.sizes[i] for i in ids], dtype=np.int64).reshape(-1, 2)
    obj_hw = hw[image_of[order]]
    xywh = np.zeros((len(order), 4))
    if box_areas or iou_type == "bbox":
        xywh = _result_boxes(boxes, segs, order, obj_hw)
    if iou_type == "segm":
        counts, offsets = _result_counts(boxes, segs, order, obj_hw)
        pixels = np.add.reduceat(np.where(
            (np.arange(len(counts)) - np.repeat(offsets[:-1], np.diff(offsets))) % 2 == 1,
            counts, 0), offsets[:-1]) if len(order) else np.zeros(0, dtype=np.int64)
    out = []
    for j, image_id in enumerate(ids):
        lo, hi = bounds[j], bounds[j + 1]
        idx = order[lo:hi]
        item = {"image_id": image_id, "labels": labels[idx], "scores": scores[idx]}
        if iou_type == "segm":
            h, w = ground_truth.sizes[image_id]
            item["masks"] = RLEMasks._trusted(h, w, counts[offsets[lo]:offsets[hi]],
                                              offsets[lo:hi + 1] - offsets[lo])
            item["area"] = (xywh[lo:hi, 2] * xywh[lo:hi, 3] if box_areas
                            else pixels[lo:hi].astype(np.float64))
        else:
            item["bbox"] = xywh[lo:hi]
            item["area"] = xywh[lo:hi, 2] * xywh[lo:hi, 3]
        out.append(item)
    return out, int(n - len(kept))


def _explain_bad_results(results: list[Any], position: dict) -> None:
    """Raise a ValueError naming the first result whose fields cannot be read."""
    for i, res in enumerate(results):
        if not isinstance(res, dict):
            raise ValueError(f"results[{i}] must be an object")
        if isinstance(res.get("image_id"), bool) or not isinstance(res.get("image_id"), int):
            raise ValueError(f"results[{i}]['image_id'] must be an integer, got "
                             f"{res.get('image_id')!r}")
        if res.get("image_id") not in position:
            raise ValueError(f"results[{i}]['image_id'] = {res.get('image_id')!r} is not among "
                             "the ground truth's images")
        for key in ("score", "category_id"):
            if key not in res:
                raise ValueError(f"results[{i}] has no '{key}'")
        try:
            float(res["score"])
        except (TypeError, ValueError):
            raise ValueError(f"results[{i}]['score'] must be a number, got {res['score']!r}") \
                from None
        if isinstance(res["category_id"], bool) or not isinstance(res["category_id"], int):
            raise ValueError(f"results[{i}]['category_id'] must be an int, got "
                             f"{res['category_id']!r}")


def _result_boxes(boxes: list[Any], segs: list[Any], order: np.ndarray,
                  obj_hw: np.ndarray) -> np.ndarray:
    """``(x, y, w, h)`` of the results ``order``; ``toBbox`` of the mask where none is given."""
    out = _bbox_array([boxes[i] if boxes[i] else [0, 0, 0, 0] for i in order],
                      [f"results[{i}]['bbox']" for i in order])
    rows = np.array([r for r, i in enumerate(order) if not boxes[i]], dtype=np.int64)
    if len(rows):
        counts, offsets = _decode_all([segs[order[r]] for r in rows], obj_hw[rows],
                                      [f"results[{order[r]}]['segmentation']" for r in rows])
        out[rows] = _coco_bbox(counts, offsets, obj_hw[rows, 0])
    return out


def _result_counts(boxes: list[Any], segs: list[Any], order: np.ndarray,
                   obj_hw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the results ``order``; a result without a mask is its box as a polygon."""
    objects = []
    for i in order:
        if segs[i] is not None:
            objects.append(segs[i])
        else:  # loadRes turns a box into the polygon of its corners
            x, y, bw, bh = _bbox_array([boxes[i]], [f"results[{i}]['bbox']"])[0]
            objects.append([[x, y, x, y + bh, x + bw, y + bh, x + bw, y]])
    return _decode_all(objects, obj_hw, [f"results[{i}]['segmentation']" for i in order])


# ---------------------------------------------------------------------------------------------
# Writing COCO json
# ---------------------------------------------------------------------------------------------


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else x


def _as_rle(masks: Any) -> RLEMasks:
    return masks if isinstance(masks, RLEMasks) else RLEMasks.from_dense(masks)


def _xywh(item: dict[str, Any]) -> np.ndarray | None:
    if "bbox" in item:
        return np.asarray(_numpy(item["bbox"]), dtype=np.float64).reshape(-1, 4)
    if "boxes" in item:
        b = np.asarray(_numpy(item["boxes"]), dtype=np.float64).reshape(-1, 4)
        return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    return None


def ground_truth_to_coco(ground_truth: Sequence[dict[str, Any]],
                         categories: Sequence[int] | dict[int, str] | None = None
                         ) -> dict[str, Any]:
    """A COCO instances dict (write it with ``json.dump``) from per-image ground-truth dicts.

    Takes the dicts :func:`course.ap.coco_evaluate` takes. Masks are written as compressed
    RLE; ``bbox`` is the given box (xyxy ``boxes`` become ``(x, y, x2 - x, y2 - y)``) or the
    mask's; ``area`` is the given one or the mask's pixel count (box area without masks);
    annotation ids count from 1. ``categories`` default: the labels present.
    """
    images, anns = [], []
    seen: set[int] = set()
    for item in ground_truth:
        image_id = int(_numpy(item["image_id"]))
        labels = np.asarray(_numpy(item["labels"])).reshape(-1).astype(np.int64)
        seen.update(labels.tolist())
        n = len(labels)
        crowd = np.asarray(_numpy(item.get("iscrowd", np.zeros(n)))).reshape(-1).astype(int)
        masks = _as_rle(item["masks"]) if "masks" in item else None
        xywh = _xywh(item)
        if xywh is None and masks is not None:
            xywh = masks.coco_bbox()
        if "area" in item:
            area = np.asarray(_numpy(item["area"]), dtype=np.float64).reshape(-1)
        elif masks is not None:
            area = masks.area().astype(np.float64)
        else:
            area = xywh[:, 2] * xywh[:, 3]
        image: dict[str, Any] = {"id": image_id}
        if masks is not None:
            image.update(height=masks.height, width=masks.width)
        elif "height" in item:
            image.update(height=int(item["height"]), width=int(item["width"]))
        images.append(image)
        segs = masks.to_coco() if masks is not None else [None] * n
        for j in range(n):
            ann = {"id": len(anns) + 1, "image_id": image_id, "category_id": int(labels[j]),
                   "iscrowd": int(crowd[j]), "area": float(area[j])}
            if xywh is not None:
                ann["bbox"] = [float(v) for v in xywh[j]]
            if segs[j] is not None:
                ann["segmentation"] = segs[j]
            anns.append(ann)
    if categories is None:
        categories = sorted(seen)
    names = categories if isinstance(categories, dict) else {int(c): str(c) for c in categories}
    return {"images": images, "annotations": anns,
            "categories": [{"id": int(c), "name": names[c]} for c in sorted(names)]}


def predictions_to_coco(predictions: Sequence[dict[str, Any]], iou_type: str = "segm"
                        ) -> list[dict[str, Any]]:
    """A COCO results list from per-image prediction dicts (``json.dump`` it).

    For ``"segm"`` only ``segmentation`` is written (no ``bbox``, so that pycocotools sizes
    detections by their masks); for ``"bbox"`` only ``bbox``.
    """
    _check_iou_type(iou_type)
    out = []
    for item in predictions:
        image_id = int(_numpy(item["image_id"]))
        labels = np.asarray(_numpy(item["labels"])).reshape(-1).astype(np.int64)
        scores = np.asarray(_numpy(item["scores"]), dtype=np.float64).reshape(-1)
        if iou_type == "segm":
            shapes = _as_rle(item["masks"]).to_coco()
            key = "segmentation"
        else:
            shapes = [[float(v) for v in row] for row in _xywh(item)]
            key = "bbox"
        for label, score, shape in zip(labels.tolist(), scores.tolist(), shapes, strict=True):
            out.append({"image_id": image_id, "category_id": label, key: shape, "score": score})
    return out

