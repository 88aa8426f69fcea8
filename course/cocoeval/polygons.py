"""COCO polygons to run lengths, pixel for pixel as pycocotools rasterises them.

A COCO ``segmentation`` may be a list of polygons ``[x0, y0, x1, y1, ...]`` in pixel
coordinates; the object is their union. pycocotools' ``rleFrPoly`` traces each polygon's
boundary on a 5x finer grid and counts a pixel as inside when its centre is; this module
follows its C code step by step (truncating casts included), so that the masks, their areas
and hence the AP are the very same. Chapter 03 ("COCO json and RLE") explains the format;
:mod:`course.cocoeval.rle` holds the run-length codec these counts feed.

What pycocotools does with odd input, and what we do:

- a polygon with an odd number of coordinates: the last one is dropped (``k = len // 2``
  points), as pycocotools does;
- a polygon of fewer than 3 points (after the first) covers 0 pixels, as in pycocotools and
  faster-coco-eval (real COCO files have such polygons);
- the *first* polygon must hold more than 4 numbers: pycocotools reads a first polygon of 4
  numbers as a box and fails, and refuses fewer; we refuse both with a message naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from course.cocoeval.common import check_size, foreground_runs, ragged_arange

_INT32_MIN = -(2**31)
_SCALE = 5.0  # rleFrPoly's finer grid


def _vertices(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` vertices on the 5x grid, rounded as ``(int)(scale * x + .5)``, closed (k + 1)."""
    k = len(xy) // 2
    x = np.trunc(_SCALE * xy[0:2 * k:2] + 0.5).astype(np.int64)
    y = np.trunc(_SCALE * xy[1:2 * k:2] + 0.5).astype(np.int64)
    return np.append(x, x[0]), np.append(y, y[0])


def _truncate(values: np.ndarray) -> np.ndarray:
    """C's ``(int)`` of doubles, with 0/0 (from a repeated vertex) read as INT_MIN as on x86."""
    return np.trunc(np.where(np.isfinite(values), values, _INT32_MIN)).astype(np.int64)


def _trace(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The boundary points ``(u, v)`` on the fine grid, edge by edge, as ``rleFrPoly`` walks.

    Each edge steps one fine pixel at a time along its longer axis, always from its smaller
    end (and then reversed back when that end was the edge's second vertex).
    """
    k = len(x) - 1
    xs, xe, ys, ye = x[:-1], x[1:], y[:-1], y[1:]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    along_x = dx >= dy
    flip = (along_x & (xs > xe)) | (~along_x & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(along_x, (ye - ys) / dx, (xe - xs) / dy)  # 0/0 on repeated points
    steps = np.where(along_x, dx, dy) + 1
    edge = np.repeat(np.arange(k), steps)  # [S] the edge of each step
    d = ragged_arange(steps)
    t = np.where(flip[edge], steps[edge] - 1 - d, d)
    ax, s = along_x[edge], slope[edge]
    with np.errstate(invalid="ignore"):
        u_other = _truncate(xs[edge] + s * t + 0.5)
        v_other = _truncate(ys[edge] + s * t + 0.5)
    u = np.where(ax, t + xs[edge], u_other)
    v = np.where(ax, v_other, t + ys[edge])
    return u, v


def _column_crossings(u: np.ndarray, v: np.ndarray, height: int, width: int) -> np.ndarray:
    """Where the boundary crosses a pixel column, as sorted column-major pixel indices.

    Each crossing switches inside / outside from that pixel down; ``height * width`` closes.
    """
    moved = u[1:] != u[:-1]
    xd = np.where(u[1:] < u[:-1], u[1:], u[1:] - 1).astype(np.float64)
    xd = (xd + 0.5) / _SCALE - 0.5
    keep = moved & (np.floor(xd) == xd) & (xd >= 0) & (xd <= width - 1)
    yd = np.minimum(v[1:], v[:-1]).astype(np.float64)
    yd = np.ceil(np.clip((yd + 0.5) / _SCALE - 0.5, 0, height))
    return np.sort(np.append(xd[keep].astype(np.int64) * height + yd[keep].astype(np.int64),
                             height * width))


def _merge_cancelled(diffs: np.ndarray) -> np.ndarray:
    """Counts from crossing gaps: two crossings at one place cancel, merging the runs around."""
    if not (diffs[1:] == 0).any():
        return diffs
    out, j = [int(diffs[0])], 1
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


def polygon_counts(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """pycocotools' ``rleFrPoly``: one polygon ``[x0, y0, x1, y1, ...]`` (float64) to counts.

    An odd last coordinate is ignored; fewer than 3 points give an empty mask (``[H * W]``).
    """
    if len(xy) // 2 < 3:
        return np.array([height * width], dtype=np.int64)
    u, v = _trace(*_vertices(xy))
    return _merge_cancelled(np.diff(_column_crossings(u, v, height, width), prepend=0))


def counts_from_runs(starts: np.ndarray, ends: np.ndarray, total: int) -> np.ndarray:
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


def _polygon_numbers(poly: Any, where: str, first: bool) -> np.ndarray:
    """One polygon's coordinates as float64, checked as pycocotools would accept them."""
    if not isinstance(poly, list | tuple | np.ndarray):
        raise ValueError(f"{where} must be a list of numbers [x0, y0, x1, y1, ...], got "
                         f"{type(poly).__name__}")
    try:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must hold numbers [x0, y0, x1, y1, ...]") from None
    if first and len(xy) <= 4:
        raise ValueError(
            f"{where} holds {len(xy)} numbers; a polygon needs at least 3 points (6 numbers "
            "x0, y0, x1, y1, ...), and pycocotools cannot read a first polygon of 4 numbers "
            "or fewer (it takes 4 for a box and fails)")
    if not np.isfinite(xy).all():
        raise ValueError(f"{where} must hold finite numbers, found NaN or inf")
    return xy


def polygons_to_counts(polygons: Sequence[Sequence[float]], height: int, width: int,
                       name: str = "segmentation") -> np.ndarray:
    """Run lengths of the union of one object's polygons, exactly as pycocotools rasterises them.

    Args:
        polygons: one or more ``[x0, y0, x1, y1, ...]`` lists (pixel coordinates, COCO's json).
            The first needs at least 5 numbers; a later one of fewer than 3 points covers
            nothing, and an odd last coordinate is ignored (see the module docstring).
        height, width: the image size (non-negative ints).
        name: how error messages call ``polygons``.

    Returns:
        np.ndarray[C] int64 counts.
    """
    height, width = check_size(height, "height"), check_size(width, "width")
    if not isinstance(polygons, list | tuple) or not len(polygons):
        raise ValueError(f"{name} must be a non-empty list of polygons [x0, y0, x1, y1, ...]")
    parts = [polygon_counts(_polygon_numbers(poly, f"{name}[{i}]", i == 0), height, width)
             for i, poly in enumerate(polygons)]
    if len(parts) == 1:
        return parts[0]
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    _, start, length = foreground_runs(np.concatenate(parts),
                                       np.concatenate([[0], np.cumsum(lengths)]))
    return counts_from_runs(start, start + length, height * width)
