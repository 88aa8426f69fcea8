"""Run-length encoded masks (RLE), COCO's way of storing a binary mask, and their codec.

**Run-length encoding.** COCO stores a binary mask as the lengths of its runs of equal
pixels, read in column-major order (down the first column, then the second, ...):
``counts = [background, foreground, background, ...]``. The first run is always background,
so it is 0 when the first pixel is set, and the counts add up to ``H * W``. :class:`RLEMasks`
holds N masks of one image size as flat numpy arrays and converts them to and from dense
masks and pycocotools' dicts without a Python loop over pixels or masks.

The compressed form of ``counts`` is pycocotools' string: every count after the third is
replaced by its difference from the count two before it, and each number is written 5 bits
at a time, least significant first, as ``chr(48 + bits)``; bit ``0x20`` of a character says
another character follows, and bit ``0x10`` of the last one is the sign.

Chapter 03 ("COCO json and RLE") shows both forms on a small mask; :mod:`course.coco` is the
chapter's entry to this module. Polygons are rasterised by :mod:`course.cocoeval.polygons`.
numpy only: a torch tensor given as dense masks is converted, torch is never imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from course.cocoeval.common import (
    as_dense_masks,
    check_size,
    foreground_runs,
    ragged_arange,
    segment_ids,
)
from course.cocoeval.polygons import polygons_to_counts

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


def _joined_characters(strings: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
    """All strings' characters end to end as ``char - 48`` (int16), and each string's length."""
    try:  # the common case: all str, all ASCII: one join, one encode
        joined = "".join(strings).encode("ascii")
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    except (TypeError, UnicodeEncodeError):
        raw = [s if isinstance(s, bytes) else str(s).encode("ascii", "replace") for s in strings]
        joined = b"".join(raw)
        lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    return np.frombuffer(joined, dtype=np.uint8).astype(np.int16) - 48, lengths


def _check_characters(chars: np.ndarray, lengths: np.ndarray, names: Sequence[str]
                      ) -> np.ndarray:
    """Raise naming the string with a character out of range, or one cut in a number.

    Returns the flags of the characters that end a number (no continuation bit).
    """
    char_end = np.cumsum(lengths)
    bad = (chars < 0) | (chars > 63)
    if bad.any():
        owner = int(np.searchsorted(char_end, int(np.argmax(bad)), side="right"))
        raise ValueError(f"{names[owner]} is not a valid compressed RLE: characters must lie "
                         "in '0'..'o' (ASCII 48-111)")
    ends = (chars & 0x20) == 0  # a character without the continuation bit ends a number
    last_char = char_end[lengths > 0] - 1
    if (~ends[last_char]).any():
        i = int(np.flatnonzero(lengths > 0)[np.argmax(~ends[last_char])])
        raise ValueError(f"{names[i]} is not a valid compressed RLE: it ends in the middle of "
                         "a number (truncated?)")
    return ends


def _read_numbers(chars: np.ndarray, ends: np.ndarray, lengths: np.ndarray,
                  names: Sequence[str]) -> np.ndarray:
    """The signed numbers the characters spell, 5 bits per character, least significant first."""
    number_end = np.flatnonzero(ends)
    width = np.diff(number_end, prepend=-1)  # characters per number
    number_start = number_end - width + 1
    if (width > 7).any():
        owner = int(np.searchsorted(np.cumsum(lengths), int(number_start[np.argmax(width > 7)]),
                                    side="right"))
        raise ValueError(f"{names[owner]} is not a valid compressed RLE: a count needs more "
                         "than 7 characters (over 2**32)")
    bits = (chars & 0x1F).astype(np.int64)
    value = bits[number_start]
    for k in range(1, int(width.max(initial=0))):  # 5 more bits from each further character
        longer = np.flatnonzero(width > k)
        value[longer] |= bits[number_start[longer] + k] << (5 * k)
    sign = ((chars[number_end] >> 4) & 1).astype(np.int64)  # bit 0x10 of the last character
    return value - (sign << (5 * width))


def _decode_strings(strings: Sequence[str | bytes], names: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of many compressed strings at once: ``(counts, offsets)``, vectorised.

    ``names[i]`` names string ``i`` in error messages (ValueError on a malformed string).
    """
    chars, lengths = _joined_characters(strings)
    ends = _check_characters(chars, lengths, names)
    value = _read_numbers(chars, ends, lengths, names)
    ends_before = np.zeros(len(chars) + 1, dtype=np.int64)  # numbers completed before a char
    np.cumsum(ends, out=ends_before[1:])
    char_end = np.cumsum(lengths)
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
# COCO segmentation objects: compressed or uncompressed RLE dicts, or polygons
# ---------------------------------------------------------------------------------------------


def _all_compressed(segmentations: Sequence[Any]) -> bool:
    """Whether every object is a dict with a str ``counts`` and a ``size`` (the common case)."""
    try:
        return all(type(seg["counts"]) is str and "size" in seg for seg in segmentations)
    except (TypeError, KeyError, IndexError):
        return False


def _other_counts(seg: Any, height: int, width: int, name: str) -> np.ndarray:
    """Counts of one object that is not a compressed string: uncompressed RLE or polygons."""
    if isinstance(seg, list | tuple):
        return polygons_to_counts(seg, height, width, name)
    if not isinstance(seg, dict):
        raise ValueError(f"{name} must be an RLE dict or a list of polygons, "
                         f"got {type(seg).__name__}")
    if not isinstance(seg["counts"], list | tuple | np.ndarray):
        raise ValueError(f"{name}['counts'] must be a string (compressed RLE) or a list of "
                         f"ints, got {type(seg['counts']).__name__}")
    return np.asarray(seg["counts"], dtype=np.int64).ravel()


def _sort_by_kind(segmentations: Sequence[Any], sizes: np.ndarray, names: Sequence[str]
                  ) -> tuple[list[int], dict[int, np.ndarray]]:
    """Which objects are compressed strings (decoded later, in one batch), and the counts of
    every other object (polygons rasterised, uncompressed RLE read)."""
    if _all_compressed(segmentations):
        return list(range(len(segmentations))), {}
    compressed, others = [], {}
    for i, seg in enumerate(segmentations):
        if isinstance(seg, dict) and ("counts" not in seg or "size" not in seg):
            raise ValueError(f"{names[i]} is an RLE dict without 'counts' and 'size'")
        if isinstance(seg, dict) and isinstance(seg["counts"], str | bytes):
            compressed.append(i)
        else:
            if isinstance(seg, dict):
                _check_rle_size(seg["size"], int(sizes[i, 0]), int(sizes[i, 1]), names[i])
            others[i] = _other_counts(seg, int(sizes[i, 0]), int(sizes[i, 1]), names[i])
    return compressed, others


def _check_compressed_sizes(segmentations: Sequence[Any], at: np.ndarray, sizes: np.ndarray,
                            names: Sequence[str]) -> None:
    """Each compressed object's ``size`` is its image's ``[height, width]``."""
    given = [segmentations[i]["size"] for i in at]
    try:
        wrong = (np.array(given, dtype=np.int64).reshape(len(at), 2) != sizes[at]).any(axis=1)
    except (TypeError, ValueError):
        wrong = np.ones(len(at), dtype=bool)
    for j in np.flatnonzero(wrong):
        i = int(at[j])
        _check_rle_size(given[j], int(sizes[i, 0]), int(sizes[i, 1]), names[i])


def _end_to_end(n: int, at: np.ndarray, packed: tuple[np.ndarray, np.ndarray],
                others: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One ``(counts, offsets)`` of ``n`` objects from the decoded strings of the objects
    ``at`` (``packed``, end to end) and the counts of the ``others``."""
    c_counts, c_offsets = packed
    lengths = np.zeros(n, dtype=np.int64)
    lengths[at] = np.diff(c_offsets)
    for i, c in others.items():
        lengths[i] = len(c)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if not others:
        return c_counts, offsets
    counts = np.zeros(int(offsets[-1]), dtype=np.int64)
    counts[np.repeat(offsets[at], lengths[at]) + ragged_arange(lengths[at])] = c_counts
    for i, c in others.items():
        counts[offsets[i]:offsets[i + 1]] = c
    return counts, offsets


def decode_segmentations(segmentations: Sequence[Any], sizes: np.ndarray, names: Sequence[str]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Counts of many COCO ``segmentation`` objects, object ``i`` in an image of ``sizes[i]``.

    Objects may be compressed RLE (decoded all in one batch), uncompressed RLE or polygons
    (rasterised as pycocotools does). ``names[i]`` names object ``i`` in error messages.

    Args:
        segmentations: N objects as they stand in COCO json.
        sizes (np.ndarray[N, 2]): int ``(height, width)`` of each object's image.

    Returns:
        ``(counts, offsets)``: all objects' counts end to end, object ``i`` at
        ``counts[offsets[i]:offsets[i + 1]]``, checked (none negative, adding up to ``H * W``).
    """
    compressed, others = _sort_by_kind(segmentations, sizes, names)
    at = np.array(compressed, dtype=np.int64)
    _check_compressed_sizes(segmentations, at, sizes, names)
    packed = _decode_strings([segmentations[i]["counts"] for i in compressed],
                             [names[i] for i in compressed])
    counts, offsets = _end_to_end(len(segmentations), at, packed, others)
    _check_counts(counts, offsets, sizes[:, 0] * sizes[:, 1], names)
    return counts, offsets


def _check_rle_size(size: Any, height: int, width: int, name: str) -> None:
    if not isinstance(size, list | tuple) or list(size) != [height, width]:
        raise ValueError(f"{name}['size'] is {size!r}, but the image is [{height}, {width}] "
                         "(height, width)")


def _check_counts(counts: np.ndarray, offsets: np.ndarray, pixels: np.ndarray,
                  names: Sequence[str]) -> None:
    """Every object has counts, none negative, adding up to its image's pixel count."""
    lengths = np.diff(offsets)
    negative = np.zeros(len(lengths), dtype=bool)
    if len(counts):
        negative = np.bincount(segment_ids(offsets)[counts < 0], minlength=len(lengths)) > 0
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


def coco_bbox_of_counts(counts: np.ndarray, offsets: np.ndarray, heights: np.ndarray) -> np.ndarray:
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
    mask = segment_ids(offsets)
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


# ---------------------------------------------------------------------------------------------
# Encoding dense masks
# ---------------------------------------------------------------------------------------------


def _dense_flips(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(flips, changes)``: the column-major positions where a mask's value changes (a run
    starts), mask after mask, and how many each mask has.

    A model's masks are mostly background: each mask is read once in full, eight pixels at a
    time, to find the rows and columns it uses; the changes are then looked for inside those
    boxes only, all masks at once (:func:`_box_columns` lays the boxes end to end)."""
    n, h, w = dense.shape
    cols, rows = _in_use(dense, axis=1), _in_use(dense, axis=2)  # [N, W], [N, H]
    found = np.flatnonzero(cols.any(axis=1))
    x0, x1 = cols[found].argmax(axis=1), w - cols[found, ::-1].argmax(axis=1)
    y0, y1 = rows[found].argmax(axis=1), h - rows[found, ::-1].argmax(axis=1)
    line, starts = _box_columns(dense, found, (y0, y1, x0, x1))
    new = np.flatnonzero(line[1:] != line[:-1]) + 1  # where a new run starts on the line
    k = np.searchsorted(starts, new, side="right") - 1  # [F] whose box it is in
    c, r = np.divmod(new - starts[k], y1[k] - y0[k] + 1)  # its column and row in the box
    flips = (x0[k] + c) * h + y0[k] + r
    # A run from the bottom of one column into the top of the next ends and starts at one
    # place: neither is a change. A run that ends with the image starts nothing.
    same = np.flatnonzero((flips[1:] == flips[:-1]) & (k[1:] == k[:-1]))
    keep = flips < h * w
    keep[same], keep[same + 1] = False, False
    changes = np.zeros(n, dtype=np.int64)
    changes[found] = np.bincount(k[keep], minlength=len(found))
    return flips[keep], changes


def _in_use(dense: np.ndarray, axis: int) -> np.ndarray:
    """Whether each column (``axis=1``: ``[N, W]``) or row (``axis=2``: ``[N, H]``) of each
    mask has a pixel set; eight pixels at a time (64-bit ORs) when the rows allow it."""
    n, h, w = dense.shape
    if w % 8 or not dense.flags.c_contiguous:
        return dense.any(axis=axis)
    words = np.bitwise_or.reduce(dense.view(np.uint64), axis=axis)  # [N, W / 8] or [N, H]
    return words.view(np.uint8).reshape(n, w) != 0 if axis == 1 else words != 0


def _box_columns(dense: np.ndarray, found: np.ndarray,
                 box: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(line, starts)``: the columns of each found mask's box ``(y0, y1, x0, x1)`` laid end
    to end on one line, each column followed by one background pixel, after a background pixel
    at the start; box ``j`` starts at ``line[starts[j]]``."""
    y0, y1, x0, x1 = box
    sizes = (x1 - x0) * (y1 - y0 + 1)  # [M] its columns, each with one pixel below
    starts = np.ones(len(found) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    starts[1:] += 1
    line = np.zeros(int(starts[-1]), dtype=bool)
    for j, (i, a, b, c, d) in enumerate(zip(found.tolist(), y0.tolist(), y1.tolist(),
                                            x0.tolist(), x1.tolist(), strict=True)):
        box_j = line[starts[j]:starts[j + 1]].reshape(d - c, b - a + 1)  # one slice copy
        box_j[:, :-1] = dense[i, a:b, c:d].T
    return line, starts


def _counts_from_flips(flips: np.ndarray, changes: np.ndarray, hw: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, offsets)`` of masks whose change positions are ``flips``, mask after mask,
    ``changes[i]`` of them for mask ``i``: the runs between ``0``, the changes and ``hw``.
    A mask whose first pixel is set changes at 0, so its first count is 0, as COCO wants."""
    per_mask = changes + 2  # 0, the changes, hw
    ends = np.zeros(len(changes) + 1, dtype=np.int64)
    np.cumsum(per_mask, out=ends[1:])
    bounds = np.zeros(int(ends[-1]), dtype=np.int64)
    bounds[ends[1:] - 1] = hw
    inner = np.ones(len(bounds), dtype=bool)
    inner[ends[:-1]], inner[ends[1:] - 1] = False, False
    bounds[inner] = flips
    counts = np.diff(bounds)
    keep = np.ones(len(counts), dtype=bool)
    keep[ends[1:-1] - 1] = False  # the differences across two masks are not counts
    return counts[keep], np.concatenate([[0], np.cumsum(per_mask - 1)])


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
            check_size(getattr(self, key), key)
        offsets = self.offsets
        if offsets.ndim != 1 or not len(offsets) or offsets[0] != 0 or \
                offsets[-1] != len(self.counts) or (np.diff(offsets) < 1).any():
            raise ValueError("offsets must start at 0, end at len(counts) and give every mask "
                             "at least one count")
        if len(self.counts) and self.counts.min() < 0:
            i = int(segment_ids(offsets)[np.argmax(self.counts < 0)])
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
    def unchecked(cls, height: int, width: int, counts: np.ndarray, offsets: np.ndarray
                  ) -> RLEMasks:
        """Without the checks of the constructor, for arrays checked already.

        For the json readers and the engine, which check many images' counts at once
        (:func:`decode_segmentations`); arrays that break the invariants above give wrong
        areas and IoUs later, not an error.
        """
        out = object.__new__(cls)
        for key, value in (("height", int(height)), ("width", int(width)), ("counts", counts),
                           ("offsets", offsets)):
            object.__setattr__(out, key, value)
        return out

    @classmethod
    def from_counts(cls, counts: Sequence[Sequence[int] | np.ndarray], height: int,
                    width: int) -> RLEMasks:
        """From one list of run lengths per mask (uncompressed RLE)."""
        height, width = check_size(height, "height"), check_size(width, "width")
        arrays = [np.asarray(c, dtype=np.int64).ravel() for c in counts]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return cls(height, width, flat, np.concatenate([[0], np.cumsum(lengths)]))

    @classmethod
    def from_dense(cls, masks: Any) -> RLEMasks:
        """Encode dense masks ``[N, H, W]`` (bool or 0/1, numpy or torch).

        A model's masks are mostly background, so the runs are looked for only inside each
        mask's bounding box (:func:`_dense_flips`).
        """
        dense = as_dense_masks(masks)
        n, h, w = dense.shape
        if h * w == 0:
            return cls(h, w, np.zeros(n, dtype=np.int64), np.arange(n + 1))
        counts, offsets = _counts_from_flips(*_dense_flips(dense), h * w)
        return cls(h, w, counts, offsets)

    @classmethod
    def from_coco(cls, segmentations: Sequence[Any], height: int, width: int,
                  names: Sequence[str] | None = None) -> RLEMasks:
        """From COCO ``segmentation`` objects: compressed RLE, uncompressed RLE or polygons.

        Compressed strings are decoded all at once. ``names[i]`` names object ``i`` in error
        messages (default ``segmentations[i]``).

        Raises:
            ValueError: on a malformed object, or an RLE whose ``size`` is not ``[height, width]``.
        """
        height, width = check_size(height, "height"), check_size(width, "width")
        n = len(segmentations)
        names = list(names) if names is not None else [f"segmentations[{i}]" for i in range(n)]
        sizes = np.tile(np.array([[height, width]], dtype=np.int64), (n, 1))
        counts, offsets = decode_segmentations(segmentations, sizes, names)
        return cls(height, width, counts, offsets)

    # --- views ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def select(self, index: np.ndarray | Sequence[int]) -> RLEMasks:
        """The masks at ``index`` (ints), in that order."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        lengths = np.diff(self.offsets)[index]
        take = np.repeat(self.offsets[:-1][index], lengths) + ragged_arange(lengths)
        return RLEMasks.unchecked(self.height, self.width, self.counts[take],
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
        return foreground_runs(self.counts, self.offsets)

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
        return coco_bbox_of_counts(self.counts, self.offsets, np.full(len(self), self.height))

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


def rle_encode(masks: Any) -> list[dict[str, Any]]:
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
    height = check_size(size[0], "rles[0]['size'][0] (the height)")
    width = check_size(size[1], "rles[0]['size'][1] (the width)")
    return RLEMasks.from_coco(rles, height, width,
                              [f"rles[{i}]" for i in range(len(rles))]).to_dense()

