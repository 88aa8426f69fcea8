"""ROIAlign and RoIPool: a fixed-size feature grid for each region of interest.

A detector proposes boxes; its heads need the same number of features from every box, say
7 x 7. **RoIPool** (Fast R-CNN) rounds the box to the feature grid, cuts it into bins whose
edges are rounded again, and takes the maximum of each bin. **ROIAlign** (Mask R-CNN) rounds
nothing: it places ``grid_h x grid_w`` sample points evenly inside each bin, reads the feature
map at those exact positions by bilinear interpolation, and averages them.

Every function here follows ``torchvision.ops.roi_align`` / ``roi_pool`` to the last detail
(the tests compare them to 1e-10 in float64):

- ``boxes`` is a ``Tensor[K, 5]`` of ``(batch index, x1, y1, x2, y2)`` or a list with one
  ``Tensor[L, 4]`` per image, in image pixels; ``spatial_scale`` maps them onto the feature map
  (``1 / stride``).
- ``aligned=True`` shifts the box by half a feature pixel, so that pixel ``i`` is centred at
  ``i + 0.5`` as in the boxes' continuous coordinates; ``aligned=False`` is the original
  Mask R-CNN code, which also forces every box to be at least 1 x 1 feature pixels.
- ``sampling_ratio > 0`` puts that many samples per bin side; ``<= 0`` uses
  ``ceil(roi_size / output_size)`` per side, and a box of size <= 0 then has no samples and
  gives 0.
- a sample at ``y < -1`` or ``y > H`` (or the same for ``x``) reads 0 and still counts in the
  average; between -1 and 0 it reads row 0, past ``H - 1`` the last row (the edge is replicated).

Two implementations of each op: a loop that reads like the definition
(:func:`roi_align_reference`, built from :func:`roi_align_bin` and
:func:`bilinear_interpolate`; :func:`roi_pool_reference`) and a vectorised one that is fast
(:func:`roi_align`, :func:`roi_pool`). The fast ROIAlign uses that bilinear sampling is
separable: the output of one RoI and one channel is ``A_y F A_x^T``, where row ``p`` of
``A_y [PH, H]`` holds the interpolation weights of every sample in bin row ``p``, divided by the
number of samples. Gradients flow to ``input``, not to ``boxes``. It has two paths, in plain
PyTorch:

- on the CPU, two matrix products per group of RoIs, on a window of the map that covers them;
  the windows are planned from the boxes' values, read on the host.
- on a GPU (any device but the CPU), :func:`_roi_align_dense`: reading a value on the host
  would make the CPU wait for every kernel queued before it, at every call, so this path reads
  nothing back and all its shapes follow from the arguments' shapes. It keeps the non-zeros of
  ``A_y`` and ``A_x`` (at most ``2 sampling_ratio`` per row) and applies them by gathering whole
  map rows, then columns, for fixed-size chunks of RoIs. The boxes' values are not checked
  there. :func:`multiscale_roi_align` still reads on the host once per pyramid level, to split
  the boxes among the levels.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from course.boxes import fpn_level

BoxesLike = Tensor | Sequence[Tensor]


# ---------------------------------------------------------------------------------------------
# Checking the arguments
# ---------------------------------------------------------------------------------------------


def _pair(output_size: int | Sequence[int]) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair (h, w) of them, "
                         f"got {output_size!r}")
    return size


def _check_input(input: Tensor, name: str = "input") -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(input).__name__}")
    if input.ndim != 4:
        hint = " (for one image pass input[None])" if input.ndim == 3 else ""
        raise ValueError(f"{name} must have shape [N, C, H, W], got {list(input.shape)}{hint}")
    if not input.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {input.dtype}")
    if input.shape[2] == 0 or input.shape[3] == 0:
        raise ValueError(f"{name} has an empty feature map: shape {list(input.shape)}")


def _check_scale(spatial_scale: float) -> None:
    if not (isinstance(spatial_scale, int | float) and math.isfinite(spatial_scale)
            and spatial_scale > 0):
        raise ValueError(f"spatial_scale must be a positive number, got {spatial_scale!r}")


def _rois_from_tensor(boxes: Tensor, dtype: torch.dtype,
                      device: torch.device | str | None) -> Tensor:
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        hint = (" (boxes without a batch index go in a list, one Tensor[L, 4] per image)"
                if boxes.ndim == 2 and boxes.shape[1] == 4 else "")
        raise ValueError("boxes must have shape [K, 5] as (batch index, x1, y1, x2, y2), "
                         f"got {list(boxes.shape)}{hint}")
    return boxes.detach().to(dtype=dtype, device=device)


def _rois_from_list(boxes: Sequence[Tensor], num_images: int, dtype: torch.dtype,
                    device: torch.device | str | None) -> Tensor:
    """Per-image ``Tensor[L, 4]`` boxes, list entry ``i`` for image ``i``, as one ``[K, 5]``."""
    if len(boxes) > num_images:
        raise ValueError(f"boxes has {len(boxes)} per-image tensors but input has only "
                         f"{num_images} images")
    parts = []
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor):
            raise TypeError(f"boxes[{i}] must be a torch.Tensor, got {type(b).__name__}")
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must have shape [L, 4] as (x1, y1, x2, y2), "
                             f"got {list(b.shape)}")
        b = b.detach().to(dtype=dtype, device=device)
        parts.append(torch.cat([torch.full_like(b[:, :1], i), b], dim=1))  # [L, 5]
    return torch.cat(parts) if parts else torch.zeros(0, 5, dtype=dtype, device=device)


def as_rois(boxes: BoxesLike, num_images: int, dtype: torch.dtype = torch.float64,
            device: torch.device | str | None = None, check_values: bool = True) -> Tensor:
    """Validate ``boxes`` and return them as ``Tensor[K, 5]`` ``(batch index, x1, y1, x2, y2)``.

    Args:
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): in the second form, list entry ``i``
            holds the boxes of image ``i``.
        num_images: ``N``, the batch size of the feature map the boxes index.
        check_values: also check the values (finite, batch indices in range). Each check
            reads its answer on the host, which on a GPU waits for all the work queued
            before it, so :func:`roi_align` skips them there (see :func:`_roi_align_dense`).
            Shapes and types are always checked: they are known on the host.

    Raises:
        TypeError: ``boxes`` is neither a tensor nor a list of tensors.
        ValueError: wrong shape, a NaN or infinite coordinate, or a batch index that is not
            an integer in ``[0, N)``.
    """
    if isinstance(boxes, Tensor):
        rois = _rois_from_tensor(boxes, dtype, device)
    elif isinstance(boxes, list | tuple):
        rois = _rois_from_list(boxes, num_images, dtype, device)
    else:
        raise TypeError("boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], "
                        f"got {type(boxes).__name__}")
    if check_values:
        _check_values(rois, num_images)
    return rois


def _check_values(rois: Tensor, num_images: int) -> None:
    """Raise ValueError, naming the row, for a non-finite ``rois`` or a bad batch index."""
    if not bool(torch.isfinite(rois).all()):
        k = int((~torch.isfinite(rois)).any(1).nonzero()[0])
        raise ValueError(f"boxes must be finite, found {rois[k].tolist()} in row {k}")
    index = rois[:, 0]
    bad = (index != index.round()) | (index < 0) | (index >= num_images)
    if bool(bad.any()):
        k = int(bad.nonzero()[0])
        raise ValueError(f"boxes[{k}, 0] = {index[k].item()} is not a batch index of input "
                         f"(an integer in [0, {num_images}))")


# ---------------------------------------------------------------------------------------------
# ROIAlign as the definition reads: one point, one bin, one RoI at a time
# ---------------------------------------------------------------------------------------------


def bilinear_interpolate(feature: Tensor, y: float, x: float) -> Tensor:
    """The feature map at the real-valued position ``(y, x)``, with ROIAlign's border rules.

    Pixel ``(i, j)`` holds the value at the point ``(i, j)``. A point outside
    ``[-1, H] x [-1, W]`` reads 0. Otherwise a coordinate below 0 is moved to 0, one at or past
    the last row / column reads that row / column, and inside, the four neighbours are mixed
    with weights ``(1 - ly)(1 - lx)``, ``(1 - ly) lx``, ``ly (1 - lx)``, ``ly lx``, where
    ``ly, lx`` are the fractional parts of ``y, x``.

    Args:
        feature (Tensor[..., H, W]): the map (any leading dimensions, e.g. channels).
        y, x: the position in feature-map pixels.

    Returns:
        Tensor[...]: one value per leading index.
    """
    height, width = feature.shape[-2:]
    if not (-1.0 <= y <= height and -1.0 <= x <= width):  # also catches NaN
        return feature.new_zeros(feature.shape[:-2])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feature[..., y_low, x_low] + hy * lx * feature[..., y_low, x_high]
            + ly * hx * feature[..., y_high, x_low] + ly * lx * feature[..., y_high, x_high])


def _bin_geometry(start: float, end: float, bins: int, sampling_ratio: int,
                  aligned: bool) -> tuple[float, float, int]:
    """``(first edge, bin size, samples per bin)`` along one axis of a box in map pixels."""
    size = end - start
    if not aligned:
        size = max(size, 1.0)  # the original code forces malformed boxes to 1 x 1
    grid = sampling_ratio if sampling_ratio > 0 else max(math.ceil(size / bins), 0)
    return start, size / bins, grid


def roi_align_bin(feature: Tensor, box: Tensor | Sequence[float], i: int, j: int,
                  output_size: int | Sequence[int], sampling_ratio: int = -1,
                  aligned: bool = True) -> Tensor:
    """One output cell of ROIAlign: the mean of bilinear samples on a grid inside bin (i, j).

    The box (in feature-map pixels, ``spatial_scale`` already applied) is cut into
    ``PH x PW`` bins of size ``bin_h x bin_w``. Bin ``(i, j)`` gets ``grid_h x grid_w``
    samples at the centres of an even sub-grid,
    ``y = y1 + i bin_h + (iy + 0.5) bin_h / grid_h`` (and the same for ``x``), where the grid
    is ``sampling_ratio`` per side, or ``ceil(box side / bins)`` when ``sampling_ratio <= 0``.
    With ``aligned=True`` the box is first moved by half a pixel, ``y1 - 0.5``.

    Args:
        feature (Tensor[C, H, W]): one image's feature map.
        box (Tensor[4]): ``(x1, y1, x2, y2)`` in feature-map pixels.
        i, j: the bin's row and column.
        output_size: ``PH`` (square) or ``(PH, PW)``.

    Returns:
        Tensor[C]: 0 where the grid has no samples.
    """
    bins_h, bins_w = _pair(output_size)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) - offset for v in box)
    y0, bin_h, grid_h = _bin_geometry(y1, y2, bins_h, sampling_ratio, aligned)
    x0, bin_w, grid_w = _bin_geometry(x1, x2, bins_w, sampling_ratio, aligned)
    total = feature.new_zeros(feature.shape[:-2])
    for iy in range(grid_h):
        y = y0 + i * bin_h + (iy + 0.5) * bin_h / grid_h
        for ix in range(grid_w):
            x = x0 + j * bin_w + (ix + 0.5) * bin_w / grid_w
            total = total + bilinear_interpolate(feature, y, x)
    return total / max(grid_h * grid_w, 1)


def roi_align_reference(input: Tensor, boxes: BoxesLike, output_size: int | Sequence[int],
                        spatial_scale: float = 1.0, sampling_ratio: int = -1,
                        aligned: bool = True) -> Tensor:
    """:func:`roi_align` one RoI, one bin, one sample point at a time (slow; for teaching).

    Differentiable with respect to ``input`` through plain indexing.
    """
    _check_input(input)
    _check_scale(spatial_scale)
    bins_h, bins_w = _pair(output_size)
    rois = as_rois(boxes, input.shape[0], torch.float64)
    rows = []
    for roi in rois.tolist():
        feature = input[int(roi[0])]  # [C, H, W]
        box = [v * spatial_scale for v in roi[1:]]
        cells = [roi_align_bin(feature, box, i, j, (bins_h, bins_w), sampling_ratio, aligned)
                 for i in range(bins_h) for j in range(bins_w)]
        rows.append(torch.stack(cells, dim=-1).reshape(-1, bins_h, bins_w))  # [C, PH, PW]
    if not rows:
        return input.new_zeros(0, input.shape[1], bins_h, bins_w)
    return torch.stack(rows)  # [K, C, PH, PW]


# ---------------------------------------------------------------------------------------------
# ROIAlign, fast: separable interpolation matrices on a window of the map
# ---------------------------------------------------------------------------------------------


def _sample_positions(start: Tensor, bin_size: Tensor, grid: Tensor, bins: int, size: int,
                      samples: int) -> tuple[Tensor, Tensor]:
    """``(pos, inside)``, both ``[K, P, G]``: where each placed sample falls (0 for those that
    do not count) and whether it counts (a real sample of its bin, inside ``[-1, size]``)."""
    dtype, device = start.dtype, start.device
    p = torch.arange(bins, dtype=dtype, device=device)  # [P]
    count = grid.clamp(min=1).to(dtype)  # [K]
    left = start[:, None] + p[None, :] * bin_size[:, None]  # [K, P] each bin's first edge
    s = _first_sample(left, bin_size, count)[:, :, None] + torch.arange(samples, device=device)
    # the kernel's order of operations: (start + p bin) + ((s + 0.5) bin) / count
    pos = (left[:, :, None]
           + ((s.to(dtype) + 0.5) * bin_size[:, None, None]) / count[:, None, None])  # [K, P, G]
    inside = (s < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)  # False for NaN
    return torch.where(inside, pos, 0.0).clamp(min=0), inside  # samples outside weigh 0 anyway


def interpolation_matrix(start: Tensor, bin_size: Tensor, grid: Tensor, bins: int,
                         size: int, samples: int | None = None) -> Tensor:
    """ROIAlign along one axis as a matrix: row ``p`` averages the samples of bin ``p``.

    ``A[k, p, h]`` is the total bilinear weight that the samples of bin ``p`` of RoI ``k``
    put on map row ``h`` (a sample outside ``[-1, size]`` puts none), divided by the number of
    samples per bin side. For one RoI and one channel, ROIAlign is then ``A_y F A_x^T``.

    Args:
        start (Tensor[K]): first bin edge of each RoI, in map pixels (offset applied).
        bin_size (Tensor[K]): bin size of each RoI, same dtype as ``start``.
        grid (Tensor[K]): int64 samples per bin side (0: no samples).
        bins: bins along this axis (``PH`` or ``PW``).
        size: the map's extent along this axis (``H`` or ``W``).
        samples: how many consecutive samples of each bin to place, from (about) its first
            one at or past ``-1``; any number that reaches every sample inside ``[-1, size]``
            gives the same matrix. ``None``: ``grid.max()``, read on the host.

    Returns:
        Tensor[K, bins, size] in ``start``'s dtype.
    """
    k, dtype, device = start.shape[0], start.dtype, start.device
    if samples is None:
        samples = max(int(grid.max()), 1) if k else 1
    count = grid.clamp(min=1).to(dtype)  # [K]
    pos, inside = _sample_positions(start, bin_size, grid, bins, size, samples)
    low = pos.to(torch.int64)  # truncation = floor for pos >= 0
    edge = low >= size - 1
    low = torch.where(edge, size - 1, low)
    high = torch.where(edge, size - 1, low + 1)
    frac = torch.where(edge, 0.0, pos - low)  # [K, P, G]
    weight = inside.to(dtype) / count[:, None, None]  # [K, P, G]
    matrix = torch.zeros(k, bins, size, dtype=dtype, device=device)
    matrix.scatter_add_(2, low, (1.0 - frac) * weight)
    matrix.scatter_add_(2, high, frac * weight)
    return matrix


def _first_sample(left: Tensor, bin_size: Tensor, count: Tensor) -> Tensor:
    """Per bin, the index of a sample at most two before the first one at or past ``-1``.

    Earlier samples lie left of ``-1`` and weigh nothing, so they can be skipped. Only bins
    whose samples ascend skip any; the bound allows for rounding in the division.

    Args:
        left (Tensor[K, P]): first edge of each bin.
        bin_size (Tensor[K]): bin size of each RoI.
        count (Tensor[K]): samples per bin side (at least 1), in ``left``'s dtype.

    Returns:
        Tensor[K, P] int64 in ``[0, count]``.
    """
    step = (bin_size / count)[:, None]  # [K, 1] distance between samples
    first = torch.floor((-1.0 - left) / step - 0.5) - 1  # s with left + (s + 0.5) step = -1
    first = torch.where(step > 0, first, 0.0).nan_to_num(0.0, 0.0, 0.0)
    return torch.minimum(first.clamp(min=0), count[:, None]).to(torch.int64)


def roi_align_matrices(rois: Tensor, output_size: int | Sequence[int], spatial_scale: float,
                       sampling_ratio: int, aligned: bool, height: int,
                       width: int, sync_free: bool = False) -> tuple[Tensor, Tensor]:
    """The interpolation matrices ``A_y [K, PH, H]`` and ``A_x [K, PW, W]`` of every RoI.

    Computed in ``rois``' dtype with the same operations as torchvision's kernel, so that
    sample positions and grid sizes agree to the last bit in float32 too.

    With ``sync_free=True`` nothing is read back to the host: with ``sampling_ratio <= 0`` the
    largest grid is unknown, so each bin places ``2 size + 6`` samples from its first one
    near ``-1``. That is enough: a grid of ``ceil(bin)`` samples in a bin of size ``bin > 1``
    spaces them more than 1/2 pixel apart, so at most ``2 size + 3`` lie in ``[-1, size]``
    (a smaller bin has one sample).
    """
    bins_h, bins_w = _pair(output_size)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, c] * spatial_scale - offset for c in range(1, 5))  # [K] each
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    samples_h = samples_w = None
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full(roi_h.shape, sampling_ratio, device=rois.device)
        samples_h = samples_w = sampling_ratio
    else:
        grid_h = torch.ceil(roi_h / bins_h).clamp(min=0).to(torch.int64)
        grid_w = torch.ceil(roi_w / bins_w).clamp(min=0).to(torch.int64)
        if sync_free:
            samples_h, samples_w = 2 * height + 6, 2 * width + 6
    a_y = interpolation_matrix(y1, roi_h / bins_h, grid_h, bins_h, height, samples_h)
    a_x = interpolation_matrix(x1, roi_w / bins_w, grid_w, bins_w, width, samples_w)
    return a_y, a_x


@dataclass
class _Chunk:
    """RoIs ``order[start:stop]`` of one image, pooled from one window of its map.

    The window is rows ``y0:y1`` and columns ``x0:x1``; ``a_y`` and ``a_x`` are the RoIs'
    interpolation matrices cut to it, ``a_x`` repeated for every bin row.
    """

    start: int
    stop: int
    image: int
    y0: int
    y1: int
    x0: int
    x1: int
    a_y: Tensor  # [n PH, y1 - y0], a view
    a_x: Tensor  # [n PH, PW, x1 - x0]


@dataclass
class _Plan:
    """The live RoIs (those with a sample on the map) in the order the chunks take them."""

    order: Tensor  # [L] int64 positions in the RoI list
    chunks: list[_Chunk]


def _support(matrix: Tensor) -> tuple[list[int], list[int]]:
    """First and one-past-last map row with a non-zero weight, per RoI (``(size, 0)`` if none)."""
    size = matrix.shape[2]
    used = matrix.ne(0).any(dim=1)  # [K, size]
    at = torch.arange(size, device=matrix.device)
    first = torch.where(used, at, size).amin(dim=1)
    last = torch.where(used, at + 1, 0).amax(dim=1)
    return first.tolist(), last.tolist()


def _group(images: list[int], y0: list[int], y1: list[int], x0: list[int], x1: list[int],
           bins_h: int, bins_w: int, channels: int) -> list[tuple[list[int], list[int]]]:
    """Greedy groups of RoIs (one image each) with their joint windows ``[y0, y1, x0, x1]``.

    RoIs are visited by image, then by size, then along a Z-order curve, and one joins the
    current group when the products over the joint window cost less than a group of its own,
    which has a fixed overhead (a few calls) on top of its products.
    """

    def cost(n: int, h: int, w: int) -> int:  # multiply-adds of both products, per channel
        return n * bins_h * w * (h + bins_w)

    overhead = 2**20 // max(channels, 1)
    most = max(2**20 // max(channels * bins_h, 1), 1)  # bounds the intermediate [n PH, w C]

    def key(r: int) -> tuple[int, int, int]:
        side = max(y1[r] - y0[r], x1[r] - x0[r])
        return images[r], side.bit_length(), _morton(y0[r] + y1[r], x0[r] + x1[r])

    live = [r for r in range(len(images)) if y1[r] > y0[r] and x1[r] > x0[r]]  # others: 0
    groups: list[tuple[list[int], list[int]]] = []
    for r in sorted(live, key=key):
        box = [y0[r], y1[r], x0[r], x1[r]]
        if groups and images[groups[-1][0][0]] == images[r]:
            members, (a, b, c, d) = groups[-1]
            n = len(members)
            joint = [min(a, box[0]), max(b, box[1]), min(c, box[2]), max(d, box[3])]
            merged = cost(n + 1, joint[1] - joint[0], joint[3] - joint[2])
            apart = (cost(n, b - a, d - c) + cost(1, box[1] - box[0], box[3] - box[2])
                     + overhead)
            if merged <= apart and (n + 1) * (joint[3] - joint[2]) <= most:
                members.append(r)
                groups[-1] = (members, joint)
                continue
        groups.append(([r], box))
    return groups


def _plan(batch: Tensor, a_y: Tensor, a_x: Tensor, channels: int) -> _Plan:
    """Group the RoIs into chunks that share a window of their image's map (see :func:`_group`)."""
    bins_h, bins_w = a_y.shape[1], a_x.shape[1]
    images = batch.tolist()
    groups = _group(images, *_support(a_y), *_support(a_x), bins_h, bins_w, channels)
    order = torch.tensor([r for members, _ in groups for r in members], dtype=torch.int64,
                         device=a_y.device)
    a_y, a_x = a_y[order], a_x[order]  # [L, PH, H], [L, PW, W] in chunk order
    chunks, start = [], 0
    for members, (y0, y1, x0, x1) in groups:
        stop = start + len(members)
        n, w = stop - start, x1 - x0
        rows = a_y[start:stop, :, y0:y1].reshape(n * bins_h, y1 - y0)  # a view
        cols = a_x[start:stop, None, :, x0:x1].expand(n, bins_h, bins_w, w)
        chunks.append(_Chunk(start, stop, images[members[0]], y0, y1, x0, x1, rows,
                             cols.reshape(n * bins_h, bins_w, w)))
        start = stop
    return _Plan(order, chunks)


def _morton(y: int, x: int) -> int:
    """Position along a Z-order curve: nearby points get nearby numbers."""
    code = 0
    for bit in range(max(y.bit_length(), x.bit_length())):
        code |= ((y >> bit) & 1) << (2 * bit + 1) | ((x >> bit) & 1) << (2 * bit)
    return code


class _SeparableRoIAlign(torch.autograd.Function):
    """``out[k] = A_y[k] F[b_k] A_x[k]^T`` per chunk of RoIs, forward and backward by hand.

    The map is read channels-last, ``[N, H, W, C]``, so that a chunk's window of rows
    ``y0:y1`` and columns ``x0:x1`` is a plain strided matrix ``[h, w C]`` that the matrix
    product reads in place, with no copy. The backward is the transpose of the forward,
    ``dF += A_y^T dOut A_x``, added in place into the window of the map's gradient (leaving it
    to autograd through slices of ``input`` would build a full-size gradient per window).
    """

    @staticmethod
    def forward(ctx, input: Tensor, plan: _Plan, num_rois: int, bins_h: int,
                bins_w: int) -> Tensor:
        n_img, channels, height, width = input.shape
        ctx.plan, ctx.shape = plan, (n_img, height, width, channels)
        feature = input.permute(0, 2, 3, 1).contiguous()  # [N, H, W, C]
        cells = input.new_empty(len(plan.order), bins_h, bins_w, channels)  # [L, PH, PW, C]
        for ch in plan.chunks:
            h, w = ch.y1 - ch.y0, ch.x1 - ch.x0
            window = feature[ch.image, ch.y0:ch.y1, ch.x0:ch.x1].view(h, w * channels)
            rows = ch.a_y @ window  # [n PH, w C]
            torch.bmm(ch.a_x, rows.view(len(rows), w, channels),
                      out=cells[ch.start:ch.stop].view(len(rows), bins_w, channels))
        out = input.new_zeros(num_rois, channels, bins_h, bins_w)
        out[plan.order] = cells.permute(0, 3, 1, 2)
        return out  # [K, C, PH, PW]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        n_img, height, width, channels = ctx.shape
        plan = ctx.plan
        grad = grad_out[plan.order].permute(0, 2, 3, 1).contiguous()  # [L, PH, PW, C]
        grad_feature = grad.new_zeros(n_img, height, width, channels)  # [N, H, W, C]
        for ch in plan.chunks:
            h, w = ch.y1 - ch.y0, ch.x1 - ch.x0
            rows = len(ch.a_y)  # n PH
            g = grad[ch.start:ch.stop].view(rows, grad.shape[2], channels)  # [n PH, PW, C]
            grad_rows = torch.bmm(ch.a_x.transpose(1, 2), g)  # [n PH, w, C]
            window = grad_feature[ch.image, ch.y0:ch.y1, ch.x0:ch.x1].view(h, w * channels)
            window.addmm_(ch.a_y.T, grad_rows.view(rows, w * channels))  # dF += A_y^T dRows
        return grad_feature.permute(0, 3, 1, 2), None, None, None, None


def roi_align(input: Tensor, boxes: BoxesLike, output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = True) -> Tensor:
    """ROIAlign (Mask R-CNN): a ``PH x PW`` grid of averaged bilinear samples per box.

    The same signature and results as ``torchvision.ops.roi_align`` (see the module
    docstring for the conventions); the default here is ``aligned=True``, the corrected
    half-pixel convention, where torchvision's default is ``False``. On the CPU the RoIs are
    pooled from windows planned on the host; on any other device by :func:`_roi_align_dense`,
    which never waits for the device, and there the boxes' values are not checked.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): ``(batch index, x1, y1, x2, y2)`` in
            image pixels, or one ``(x1, y1, x2, y2)`` tensor per image.
        output_size: ``PH`` (square) or ``(PH, PW)``.
        spatial_scale: multiplies the box coordinates; ``1 / stride`` of the map.
        sampling_ratio: samples per bin side; ``<= 0``: ``ceil(box side / bins)``.
        aligned: shift the box by -0.5 map pixels.

    Returns:
        Tensor[K, C, PH, PW] in ``input``'s dtype, differentiable with respect to ``input``.
    """
    _check_input(input)
    _check_scale(spatial_scale)
    if not isinstance(sampling_ratio, int) or isinstance(sampling_ratio, bool):
        raise TypeError(f"sampling_ratio must be an int, got {type(sampling_ratio).__name__}")
    bins_h, bins_w = _pair(output_size)
    n_img, channels, height, width = input.shape
    on_device = input.device.type != "cpu"  # the planner below reads the boxes on the host
    rois = as_rois(boxes, n_img, input.dtype, input.device, check_values=not on_device)
    if on_device:
        return _roi_align_dense(input, rois, (bins_h, bins_w), spatial_scale, sampling_ratio,
                                aligned)
    a_y, a_x = roi_align_matrices(rois, (bins_h, bins_w), spatial_scale, sampling_ratio,
                                  aligned, height, width)
    plan = _plan(rois[:, 0].to(torch.int64), a_y, a_x, channels)
    return _SeparableRoIAlign.apply(input, plan, len(rois), bins_h, bins_w)


class RoIAlign(nn.Module):
    """:func:`roi_align` as a module (no parameters), for use inside a model."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = True) -> None:
        super().__init__()
        _check_scale(spatial_scale)
        self.output_size = _pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, boxes: BoxesLike) -> Tensor:
        """``input (Tensor[N, C, H, W])``, ``boxes`` as in :func:`roi_align`."""
        return roi_align(input, boxes, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


# ---------------------------------------------------------------------------------------------
# ROIAlign on an accelerator: fixed shapes, nothing read back to the host
# ---------------------------------------------------------------------------------------------


def _axis_taps(matrix: Tensor, sampling_ratio: int) -> tuple[Tensor, Tensor]:
    """The interpolation matrices of one axis as ``(index, weight)``: their non-zero entries.

    With ``G = sampling_ratio > 0`` samples per bin, a row of ``matrix`` has at most ``2 G``
    non-zeros (two neighbours per sample), which ``topk`` finds with a fixed output shape.
    Otherwise (or when ``2 G`` is not below ``S``) every entry is kept, shared by the rows.

    Args:
        matrix (Tensor[K, P, S]): ``A_y`` or ``A_x`` of every RoI.
        sampling_ratio: as in :func:`roi_align`.

    Returns:
        ``index (Tensor[K, Q, R])`` int64 and ``weight (Tensor[K, Q, P / Q, R])``, such that
        ``matrix[k] @ T`` for a table ``T [S, D]`` is ``weight[k, q] @ T[index[k, q]]``
        stacked over ``q``: ``Q = P, R = 2 G`` (each row its own taps) or ``Q = 1, R = S``.
    """
    k, bins, size = matrix.shape
    if 0 < 2 * sampling_ratio < size:
        weight, index = matrix.topk(2 * sampling_ratio, dim=2)  # [K, P, 2G] each
        return index, weight[:, :, None]  # [K, P, 2G], [K, P, 1, 2G]
    index = torch.arange(size, device=matrix.device).expand(k, 1, size)  # [K, 1, S]
    return index, matrix[:, None]  # [K, 1, S], [K, 1, P, S]


def _gather_mm(table: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """``weight[g] @ table[index[g]]`` for every ``g``: small sparse matrices times a table.

    Args:
        table (Tensor[T, D]): the rows to read.
        index (Tensor[G, R]): int64 rows of ``table``.
        weight (Tensor[G, P, R]): the weights of those rows.

    Returns:
        Tensor[G, P, D].
    """
    rows = table.index_select(0, index.reshape(-1))  # [G R, D]
    return torch.bmm(weight, rows.view(*index.shape, table.shape[1]))  # [G, P, D]


def _scatter_mm(grad: Tensor, index: Tensor, weight: Tensor, out: Tensor) -> Tensor:
    """The transpose of :func:`_gather_mm`: ``out[index[g]] += weight[g]^T @ grad[g]``.

    ``grad (Tensor[G, P, D])``; ``out (Tensor[T, D])`` is changed in place and returned.
    """
    rows = torch.bmm(weight.transpose(1, 2), grad)  # [G, R, D]
    return out.index_add_(0, index.reshape(-1), rows.flatten(0, 1))  # [T, D]


def _chunk_taps(taps: tuple[Tensor, ...], image: Tensor, start: int, stop: int, height: int,
                width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The taps of RoIs ``start:stop`` as :func:`_gather_mm` reads them, for both steps.

    Step one reads rows of the map ``[N H, W C]`` (shifted to each RoI's image), step two
    columns of step one's result ``[n PH W, C]`` (shifted to each RoI and bin row).

    Returns:
        ``rows [n Qy, Ry]``, ``row_weight [n Qy, PH / Qy, Ry]``, ``cols [n PH Qx, Rx]``,
        ``col_weight [n PH Qx, PW / Qx, Rx]``.
    """
    index_y, weight_y, index_x, weight_x = (t[start:stop] for t in taps)
    n, bins_h = len(index_y), weight_y.shape[1] * weight_y.shape[2]
    rows = index_y + (image[start:stop] * height)[:, None, None]  # [n, Qy, Ry]
    first = torch.arange(n * bins_h, device=image.device).view(n, bins_h, 1, 1) * width
    cols = index_x[:, None] + first  # [n, PH, Qx, Rx]
    weight_x = weight_x[:, None].expand(n, bins_h, *weight_x.shape[1:])  # [n, PH, Qx, PW/Qx, Rx]
    return rows.flatten(0, 1), weight_y.flatten(0, 1), cols.flatten(0, 2), weight_x.flatten(0, 2)


class _DenseRoIAlign(torch.autograd.Function):
    """``out[k] = A_y[k] F[b_k] A_x[k]^T`` from the non-zeros of ``A_y`` and ``A_x``, in chunks.

    Each chunk of RoIs gathers the map rows that its row taps name and weighs them
    (:func:`_gather_mm`), then does the same along the columns. Every shape follows from
    ``K``, the map and the arguments, never from the boxes' values. The backward is the
    transpose (:func:`_scatter_mm`), added into one gradient of the map.
    """

    @staticmethod
    def forward(ctx, input: Tensor, image: Tensor, taps: tuple[Tensor, ...],
                chunk: int) -> Tensor:
        n_img, channels, height, width = input.shape
        k = len(image)
        bins_h, bins_w = (w.shape[1] * w.shape[2] for w in taps[1::2])  # from the weights
        ctx.image, ctx.taps, ctx.sizes = image, taps, (input.shape, chunk)
        feature = input.permute(0, 2, 3, 1).reshape(n_img * height, width * channels)  # [N H, W C]
        out = input.new_empty(k, channels, bins_h, bins_w)
        for start in range(0, k, chunk):
            rows, weight_y, cols, weight_x = _chunk_taps(taps, image, start, start + chunk,
                                                         height, width)
            n = min(chunk, k - start)
            t = _gather_mm(feature, rows, weight_y)  # [n Qy, PH / Qy, W C]
            t = t.view(n * bins_h * width, channels)  # [n PH W, C]
            cells = _gather_mm(t, cols, weight_x)  # [n PH Qx, PW / Qx, C]
            out[start:start + n] = cells.view(n, bins_h, bins_w, channels).permute(0, 3, 1, 2)
        return out  # [K, C, PH, PW]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        image, taps, ((n_img, channels, height, width), chunk) = ctx.image, ctx.taps, ctx.sizes
        grad = grad_out.permute(0, 2, 3, 1)  # [K, PH, PW, C]
        bins_h = grad.shape[1]
        grad_feature = grad.new_zeros(n_img * height, width * channels)  # [N H, W C]
        for start in range(0, len(image), chunk):
            rows, weight_y, cols, weight_x = _chunk_taps(taps, image, start, start + chunk,
                                                         height, width)
            n = min(chunk, len(image) - start)
            g = grad[start:start + n].reshape(*weight_x.shape[:2], channels)  # [n PH Qx, PW/Qx, C]
            grad_t = _scatter_mm(g, cols, weight_x, grad.new_zeros(n * bins_h * width, channels))
            grad_t = grad_t.view(*weight_y.shape[:2], width * channels)  # [n Qy, PH / Qy, W C]
            _scatter_mm(grad_t, rows, weight_y, grad_feature)
        grad_input = grad_feature.view(n_img, height, width, channels).permute(0, 3, 1, 2)
        return grad_input, None, None, None  # [N, C, H, W]


def _roi_align_dense(input: Tensor, rois: Tensor, output_size: tuple[int, int],
                     spatial_scale: float, sampling_ratio: int, aligned: bool,
                     budget: int = 2**26) -> Tensor:
    """:func:`roi_align` with nothing read back to the host: the path for a GPU.

    The CPU path plans its windows from the boxes' values, read on the host, which on a GPU
    would wait at every call for all the work queued before it. Here the interpolation
    matrices are built with ``sync_free=True`` and reduced to their non-zeros
    (:func:`_axis_taps`), and :class:`_DenseRoIAlign` applies them to whole map rows, then
    columns, for chunks of RoIs that hold about ``budget`` numbers at a time. With
    ``sampling_ratio > 0`` each bin row reads ``2 sampling_ratio`` map rows of ``W C``
    numbers; with ``sampling_ratio <= 0`` each RoI reads all of its image (much slower).

    The boxes' values are not checked here (each check reads its answer on the host;
    ``torch._assert_async`` would not wait, but a failure leaves the GPU unusable until the
    process restarts). So a batch index out of ``[0, N)`` fails in the gather (on a GPU as a
    device-side assert), a fractional one is truncated, and a box with a NaN or infinite
    coordinate pools zeros; the same call on the CPU names the bad row.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        rois (Tensor[K, 5]): as :func:`as_rois` returns them, in ``input``'s dtype.
        output_size: ``(PH, PW)``; the other arguments as in :func:`roi_align`.
        budget: numbers held by a chunk's gathers, 256 MB in float32 by default (a chunk
            has at least one RoI).

    Returns:
        Tensor[K, C, PH, PW], differentiable with respect to ``input``.
    """
    n_img, channels, height, width = input.shape
    a_y, a_x = roi_align_matrices(rois, output_size, spatial_scale, sampling_ratio, aligned,
                                  height, width, sync_free=True)
    index_y, weight_y = _axis_taps(a_y, sampling_ratio)  # [K, Qy, Ry], [K, Qy, PH / Qy, Ry]
    index_x, weight_x = _axis_taps(a_x, sampling_ratio)  # [K, Qx, Rx], [K, Qx, PW / Qx, Rx]
    bins_h, bins_w = output_size
    per_roi = ((index_y.shape[1] * index_y.shape[2] + bins_h) * width
               + bins_h * (index_x.shape[1] * index_x.shape[2] + bins_w)) * channels
    chunk = max(budget // max(per_roi, 1), 1)
    image = rois[:, 0].to(torch.int64)  # [K]
    return _DenseRoIAlign.apply(input, image, (index_y, weight_y, index_x, weight_x), chunk)


# ---------------------------------------------------------------------------------------------
# Pooling from a feature pyramid
# ---------------------------------------------------------------------------------------------


def _pyramid_levels(features: Sequence[Tensor], strides: Sequence[int]) -> list[int]:
    """Check a pyramid (one ``[N, C, H_l, W_l]`` map per level, consecutive power-of-two
    strides) and return its levels ``k`` (``2**k`` = stride)."""
    if not isinstance(features, list | tuple) or not features:
        raise TypeError("features must be a non-empty list of Tensor[N, C, H, W], got "
                        f"{type(features).__name__}")
    for i, f in enumerate(features):
        _check_input(f, f"features[{i}]")
        if f.shape[:2] != features[0].shape[:2] or f.dtype != features[0].dtype:
            raise ValueError(f"features[{i}] has shape {list(f.shape)} and dtype {f.dtype}; "
                             f"every level needs features[0]'s N, C {list(features[0].shape[:2])}"
                             f" and dtype {features[0].dtype}")
    levels = [int(s).bit_length() - 1 for s in strides]  # k with 2**k = stride
    powers = [2**k for k in levels] == list(strides)
    if (len(strides) != len(features) or not powers
            or levels != list(range(levels[0], levels[0] + len(levels)))):
        raise ValueError(f"strides must be consecutive powers of two, one per level of "
                         f"features ({len(features)}), got {list(strides)}")
    return levels


def multiscale_roi_align(features: Sequence[Tensor], boxes: BoxesLike,
                         output_size: int | Sequence[int], sampling_ratio: int = 2,
                         aligned: bool = True, strides: Sequence[int] = (4, 8, 16, 32),
                         canonical_size: float = 224.0, canonical_level: int = 4,
                         pool: str = "align") -> Tensor:
    """ROIAlign from a feature pyramid: each box pools from the level its size calls for.

    Box ``k`` goes to level ``course.boxes.fpn_level`` (FPN eq. 1, clamped to the pyramid's
    levels) and is pooled by :func:`roi_align` from that level's map with
    ``spatial_scale = 1 / stride``. Equal to ``torchvision.ops.MultiScaleRoIAlign`` with
    ``aligned=False`` (torchvision's pooler always uses ``aligned=False``). With
    ``pool="pool"`` each box is pooled by :func:`roi_pool` instead (``sampling_ratio`` and
    ``aligned`` are then unused): the same pyramid with Fast R-CNN's quantised pooling, for
    comparing the two.

    Args:
        features (list of Tensor[N, C, H_l, W_l]): the maps, finest first.
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): in image pixels, ``x2 >= x1``,
            ``y2 >= y1``.
        strides: the stride of each map, consecutive powers of two (``2**k`` for level
            ``k``).

    Returns:
        Tensor[K, C, PH, PW], rows in the order of ``boxes``.

    On a GPU the pooling itself never waits (:func:`_roi_align_dense`), but this function
    does: it checks the boxes' values and splits them among the levels with ``nonzero``,
    whose result size is read on the host, once per level.
    """
    levels = _pyramid_levels(features, strides)
    if pool not in ("align", "pool"):
        raise ValueError(f"pool must be 'align' or 'pool', got {pool!r}")
    rois = as_rois(boxes, features[0].shape[0], features[0].dtype, features[0].device)
    level = fpn_level(rois[:, 1:], levels[0], levels[-1], canonical_size, canonical_level)
    pooled, order = [], []
    for k, feature, stride in zip(levels, features, strides, strict=True):
        index = (level == k).nonzero().squeeze(1).to(rois.device)  # [K_l]
        if pool == "align":
            pooled.append(roi_align(feature, rois[index], output_size, 1.0 / stride,
                                    sampling_ratio, aligned))
        else:
            pooled.append(roi_pool(feature, rois[index], output_size, 1.0 / stride))
        order.append(index)
    inverse = torch.argsort(torch.cat(order))  # back to the input order
    return torch.cat(pooled)[inverse]  # [K, C, PH, PW]


def _check_paste(masks: Tensor, boxes: Tensor, height: int, width: int) -> None:
    """What :func:`paste_masks` needs: float grids, one finite box each, a real image size."""
    if not isinstance(masks, Tensor) or masks.ndim != 3 or not masks.is_floating_point():
        shape = list(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a floating-point Tensor[K, PH, PW], got {shape}")
    if not isinstance(boxes, Tensor) or boxes.shape != (len(masks), 4):
        shape = list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must have shape [{len(masks)}, 4] (one per mask), got {shape}")
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("boxes must be finite")
    for name, value in (("height", height), ("width", width)):
        try:
            whole = operator.index(value) >= 0 and not isinstance(value, bool)
        except TypeError:
            whole = False
        if not whole:
            raise ValueError(f"{name} must be a whole number of pixels >= 0, got {value!r}")


def paste_masks(masks: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """Put each ``PH x PW`` grid back into its box on an ``H x W`` image (ROIAlign reversed).

    Cell ``(i, j)`` of a grid sits at the centre of bin ``(i, j)`` of its box,
    ``(x1 + (j + 0.5) w / PW, y1 + (i + 0.5) h / PH)``. Each image pixel whose centre
    ``(x + 0.5, y + 0.5)`` lies in the box gets the bilinear interpolation of the grid there
    (between the outer cell centres and the box's edge, the outer cells' values); every other
    pixel gets 0. This is how a mask head's output becomes a full-image mask.

    Args:
        masks (Tensor[K, PH, PW]): one grid per box (e.g. probabilities).
        boxes (Tensor[K, 4]): ``(x1, y1, x2, y2)`` in image pixels.
        height, width: the image size.

    Returns:
        Tensor[K, H, W] in ``masks``' dtype (floating point).
    """
    _check_paste(masks, boxes, height, width)
    k = len(masks)
    if k == 0 or height == 0 or width == 0:
        return masks.new_zeros(k, height, width)
    b = boxes.to(masks)
    x1, y1, x2, y2 = (b[:, c, None] for c in range(4))  # [K, 1] each
    px = torch.arange(width, dtype=masks.dtype, device=masks.device)[None] + 0.5  # [1, W]
    py = torch.arange(height, dtype=masks.dtype, device=masks.device)[None] + 0.5  # [1, H]
    tiny = torch.finfo(masks.dtype).tiny
    gx = 2 * (px - x1) / (x2 - x1).clamp(min=tiny) - 1  # [K, W], -1 and 1 at the box edges
    gy = 2 * (py - y1) / (y2 - y1).clamp(min=tiny) - 1  # [K, H]
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    pasted = nn.functional.grid_sample(masks[:, None], grid.clamp(-2, 2), mode="bilinear",
                                       padding_mode="border", align_corners=False)[:, 0]
    inside_x = (px >= x1) & (px <= x2)  # [K, W]
    inside_y = (py >= y1) & (py <= y2)  # [K, H]
    return torch.where(inside_y[:, :, None] & inside_x[:, None, :], pasted, 0.0)  # [K, H, W]


# ---------------------------------------------------------------------------------------------
# RoIPool: rounded box, rounded bins, maximum per bin
# ---------------------------------------------------------------------------------------------


def _round_half_away(v: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` sends them to even)."""
    down = torch.floor(v)
    frac = v - down  # exact
    return torch.where((frac > 0.5) | ((frac == 0.5) & (v >= 0)), down + 1, down)


def roi_pool_bins(rois: Tensor, output_size: int | Sequence[int], spatial_scale: float,
                  height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """RoIPool's quantised bins: ``[start, end)`` rows ``[K, PH]`` and columns ``[K, PW]``.

    The box is rounded to whole map pixels (``round(x1 * scale)`` ... inclusive of the far
    edge, at least 1 x 1), cut into bins of size ``side / bins`` whose edges are floored /
    ceiled, then clipped to the map. Computed in ``rois``' dtype, as torchvision does.

    Returns:
        ``(row_start, row_end, col_start, col_end)``, int64.
    """
    bins_h, bins_w = _pair(output_size)
    x1, y1, x2, y2 = (_round_half_away(rois[:, c] * spatial_scale) for c in range(1, 5))
    roi_w = (x2 - x1 + 1).clamp(min=1)
    roi_h = (y2 - y1 + 1).clamp(min=1)

    def edges(start: Tensor, side: Tensor, bins: int, size: int) -> tuple[Tensor, Tensor]:
        step = (side / bins)[:, None]  # [K, 1]
        p = torch.arange(bins, dtype=side.dtype, device=side.device)[None, :]  # [1, P]
        lo = torch.floor(p * step) + start[:, None]  # [K, P]
        hi = torch.ceil((p + 1) * step) + start[:, None]
        return lo.clamp(0, size).to(torch.int64), hi.clamp(0, size).to(torch.int64)

    r0, r1 = edges(y1, roi_h, bins_h, height)
    c0, c1 = edges(x1, roi_w, bins_w, width)
    return r0, r1, c0, c1


def roi_pool_reference(input: Tensor, boxes: BoxesLike, output_size: int | Sequence[int],
                       spatial_scale: float = 1.0) -> Tensor:
    """:func:`roi_pool` one RoI and one bin at a time (slow; for teaching)."""
    _check_input(input)
    _check_scale(spatial_scale)
    bins_h, bins_w = _pair(output_size)
    n_img, channels, height, width = input.shape
    rois = as_rois(boxes, n_img, input.dtype)
    rows = []
    for roi, r0, r1, c0, c1 in zip(rois, *roi_pool_bins(rois, (bins_h, bins_w), spatial_scale,
                                                        height, width), strict=True):
        cells = []
        for i in range(bins_h):
            for j in range(bins_w):
                region = input[int(roi[0]), :, r0[i]:r1[i], c0[j]:c1[j]]  # [C, h, w]
                empty = region.shape[1] == 0 or region.shape[2] == 0
                cells.append(input.new_zeros(channels) if empty else region.amax(dim=(1, 2)))
        rows.append(torch.stack(cells, dim=-1).reshape(channels, bins_h, bins_w))
    if not rows:
        return input.new_zeros(0, channels, bins_h, bins_w)
    return torch.stack(rows)  # [K, C, PH, PW]


_LOWEST = -3.4028234663852886e38  # -FLT_MAX, where torchvision's search for a maximum starts
_LOW = 2**32  # a key is (minus the value's order) * 2**32 + an index (see _pool_keys)
_INDEX32 = 2**31  # indices into maps smaller than this are kept in int32


def _value_order(v: Tensor) -> tuple[Tensor, int]:
    """Integers in the order of the values of ``v`` (a copy, which this changes), and
    the number of ``-FLT_MAX``.

    Equal values get equal numbers (``-0.0`` and ``0.0`` too) and NaN counts as ``-inf``.
    Float32 (and narrower) values are numbered by their bits, whose sign and magnitude compare
    like the numbers; float64 values, which leave no room in 64 bits for the pixel, by their
    rank among the distinct values (a sort).
    """
    v = v.nan_to_num_(-math.inf, math.inf, -math.inf)
    if v.dtype == torch.float64:
        lowest = v.new_full((1,), _LOWEST)
        ranks = torch.unique(torch.cat([lowest, v.flatten().clamp(min=_LOWEST)]),
                             return_inverse=True)[1]
        return ranks[1:].view(v.shape), 0
    bits = v.float().view(torch.int32)
    sign = bits >> 31  # -1 for a negative number, else 0
    order = bits.bitwise_and_(0x7FFFFFFF).bitwise_xor_(sign).sub_(sign)  # -magnitude if < 0
    return order, -0x7F7FFFFF  # 0x7F7FFFFF: the bits of FLT_MAX


def _pool_keys(input: Tensor) -> Tensor:
    """One int64 key per map entry, ``Tensor[N, H, W, C]``, whose minimum over a window is
    RoIPool's choice there: the largest value, the first in row-major order among equals.

    ``key = -order(value) * 2**32 + 1 + i``, where ``i`` is the entry's index in
    ``input.flatten()`` (so the map must hold fewer than ``2**32 - 2`` numbers). Every value
    at or below ``-FLT_MAX`` (and NaN) gets one key, ending in 0: torchvision's search starts
    at ``-FLT_MAX`` and takes only larger values.
    """
    n_img, channels, height, width = input.shape
    if input.numel() + 2 > _LOW:
        raise ValueError(f"roi_pool takes maps of fewer than 2**32 - 2 numbers, got "
                         f"{list(input.shape)}")
    v = input.new_empty(n_img, height * width, channels)
    for image, plane in zip(v, input.flatten(2), strict=True):  # 2-D transposes are fast
        image.copy_(plane.T)
    order, lowest = _value_order(v.view(n_img, height, width, channels))  # [N, H, W, C]
    pixel = torch.arange(1, height * width + 1, device=input.device).view(1, height, width, 1)
    plane = torch.arange(n_img * channels, device=input.device) * (height * width)
    keys = torch.add(pixel, order, alpha=-_LOW).add_(plane.view(n_img, 1, 1, channels))
    return keys.clamp_(max=-lowest * _LOW)  # [N, H, W, C]


class _WindowMinima:
    """Sparse tables of a map of keys ``[N, H, W, C]``: for ``a, b`` powers of two, the
    minimum of every ``a x b`` window, at the window's top-left pixel of a table the size of
    the map (where no window fits, the table is not set). A window of ``h x w`` pixels is
    covered by (at most) four of ``a x b``, with ``a, b`` the powers of two at most ``h, w``.

    Each table is one pass over the map from another, halved along one side, and is kept.
    """

    def __init__(self, keys: Tensor) -> None:
        self.tables = {(1, 1): keys}

    def passes(self, a: int, b: int) -> int:
        """How many passes over the map :meth:`get` would make."""
        count = 0
        while (a, b) not in self.tables:
            a, b, count = (a, b // 2, count + 1) if b > 1 else (a // 2, b, count + 1)
        return count

    def get(self, a: int, b: int) -> Tensor:
        """``Tensor[N, H, W, C]``: the minima over windows of ``a x b`` pixels."""
        if (a, b) not in self.tables:
            dim, step = (2, b // 2) if b > 1 else (1, a // 2)  # columns first
            half = self.get(a, b // 2) if b > 1 else self.get(a // 2, b)
            size = half.shape[dim] - (a if dim == 1 else b) + 1  # the windows that fit
            out = torch.empty_like(half)
            torch.minimum(half.narrow(dim, 0, size), half.narrow(dim, step, size),
                          out=out.narrow(dim, 0, size))
            self.tables[(a, b)] = out
        return self.tables[(a, b)]


_SMALL = 4  # bins of up to 4 x 4 pixels are grouped by size, larger ones by powers of two


def _bins_by_size(bins: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, list[tuple[
        int, int, int, bool]], Tensor, Tensor]:
    """The bins (``k PH PW + i PW + j``) sorted into groups, and the groups as runs
    ``(h, w, count, exact)`` in that order (read on the host): bins of exactly ``h x w``
    pixels when both sides are at most ``_SMALL``, otherwise bins whose sides have the largest
    powers of two ``h, w`` below them. Also each sorted bin's height and width."""
    r0, r1, c0, c1 = bins
    tall, wide = (r1 - r0).clamp(min=0), (c1 - c0).clamp(min=0)  # [K, PH], [K, PW]
    tall, wide = (t.flatten() for t in torch.broadcast_tensors(tall[:, :, None],
                                                               wide[:, None, :]))  # [K PH PW]
    exact = (tall <= _SMALL) & (wide <= _SMALL)
    log_h, log_w = (torch.frexp(t.clamp(min=1).float())[1] - 1 for t in (tall, wide))
    code = torch.where(exact, tall * 16 + wide, 128 + log_h * 64 + log_w)
    code = torch.where((tall == 0) | (wide == 0), 0, code)  # empty: one group of 0 x 0
    order = code.argsort()
    codes, counts = torch.stack(code[order].unique_consecutive(return_counts=True)).tolist()
    runs = [(c // 16, c % 16, n, True) if c < 128 else
            (1 << (c - 128) // 64, 1 << (c - 128) % 64, n, False)
            for c, n in zip(codes, counts, strict=True)]
    return order, runs, tall[order], wide[order]


def _minima_at(table: Tensor, pixel: Tensor, offsets: list[int | Tensor], out: Tensor,
               spare: Tensor) -> Tensor:
    """``min_o table[pixel + o]`` over ``offsets`` (``table [N H W, C]``, ``pixel [B]``,
    an offset a number or one per pixel), into ``out [B, C]`` (``spare``: the same shape,
    for one offset's rows)."""
    torch.index_select(table, 0, pixel + offsets[0], out=out)
    for offset in offsets[1:]:
        torch.index_select(table, 0, pixel + offset, out=spare)
        torch.minimum(out, spare, out=out)
    return out


_TABLE_COST = 1.0  # a pass over the map, per pixel, against a pixel read for one bin
_CHUNK = 2**18  # keys read at a time (2 MB), in two buffers reused by every chunk of bins


def _bin_indices(input: Tensor, pixel: Tensor, runs: list[tuple[int, int, int, bool]],
                 sides: tuple[Tensor, Tensor]) -> Tensor:
    """Where the maximum of each bin is, per channel, ``Tensor[B, C]``, for bins sorted in
    ``runs`` (:func:`_bins_by_size`) with top-left ``pixel [B]`` in ``[N H W]`` and ``sides``
    (heights and widths): the last 32 bits of the minimum :func:`_pool_keys` of the bin, an
    index into ``input`` framed as in :func:`_pool_argmax`.

    Chunks of bins reuse two buffers: fresh memory is slow to touch (the system maps it in
    page by page).
    """
    channels, width = input.shape[1], input.shape[3]
    keys = _pool_keys(input)  # [N, H, W, C]
    tables = _WindowMinima(keys)
    small = torch.int32 if input.numel() + 2 < _INDEX32 else torch.int64  # halves the work
    found = torch.empty(len(pixel), channels, dtype=small, device=input.device)  # [B, C]
    rows = min(max(_CHUNK // max(channels, 1), 1), len(pixel))
    out, spare = keys.new_empty(2, rows, channels)
    start = 0
    for h, w, count, exact in runs:
        if exact:
            table, offsets = _window_reads(tables, h, w, count)
        else:  # the four corners of a table of h x w windows
            dy, dx = (sides[0] - h) * width, sides[1] - w
            table, offsets = tables.get(h, w), [0, dy, dx, dy + dx]
        for at in range(start, start + count, rows):
            n = min(rows, start + count - at)
            if not (h and w):
                out[:n] = input.numel() + 1  # the last entry
            else:
                chunk = [o if isinstance(o, int) else o[at:at + n] for o in offsets]
                _minima_at(table.flatten(0, 2), pixel[at:at + n], chunk, out[:n], spare[:n])
            found[at:at + n] = out[:n].bitwise_and_(_LOW - 1)  # the index: the last 32 bits
        start += count
    return found


def _window_reads(tables: _WindowMinima, h: int, w: int,
                  count: int) -> tuple[Tensor, list[int]]:
    """How ``count`` windows of ``h x w`` pixels read their minimum: a table and the offsets
    (in pixels of ``[N H W]``) from each window's top-left pixel; every pixel of the keys,
    or the (at most) four corners of the sparse table that covers them, whichever is cheaper.
    """
    keys = tables.tables[(1, 1)]
    n_img, height, width, _ = keys.shape
    pixels = [y * width + x for y in range(h) for x in range(w)]
    if not (h and w):
        return keys, pixels
    a, b = 1 << (h.bit_length() - 1), 1 << (w.bit_length() - 1)
    corners = sorted({y * width + x for y in (0, h - a) for x in (0, w - b)})
    table_cost = _TABLE_COST * tables.passes(a, b) * n_img * height * width
    if count * len(pixels) <= table_cost + count * len(corners):
        return keys, pixels
    return tables.get(a, b), corners


def _pool_argmax(input: Tensor, rois: Tensor,
                 bins: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    """Where each bin's maximum is, per channel: ``Tensor[K, C, PH, PW]`` of indices into
    ``input.flatten()`` framed by two entries, ``-FLT_MAX`` first (for "nothing above
    ``-FLT_MAX``") and 0 last (for an empty bin).

    The bins are taken in groups of one size (:func:`_bin_indices`), then put back in order.
    """
    _, channels, height, width = input.shape
    r0, _, c0, _ = bins
    k, bins_h, bins_w = len(rois), r0.shape[1], c0.shape[1]
    image = rois[:, 0, None, None].to(torch.int64)  # [K, 1, 1]
    pixel = ((image * height + r0[:, :, None]) * width + c0[:, None, :]).flatten()  # [K PH PW]
    if not len(pixel):
        return pixel.new_zeros(k, channels, bins_h, bins_w)
    order, runs, *sides = _bins_by_size(bins)  # [B]
    found = _bin_indices(input, pixel[order], runs, sides)  # [B, C] in the order of `order`
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(len(order),
                                                                      device=order.device))
    cells = found.index_select(0, inverse).view(k, bins_h * bins_w, channels)  # by bin again
    index = found.view(k, channels, bins_h, bins_w)  # reused
    index.flatten(2).copy_(cells.transpose(1, 2))
    return index


class _Pick(torch.autograd.Function):
    """``framed[index]``, where ``framed`` is ``input.flatten()`` between ``-FLT_MAX`` and 0;
    the backward adds the gradients in the order of ``index`` (as torchvision's kernel does,
    so that sums round the same way)."""

    @staticmethod
    def forward(ctx, input: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.shape = input.shape
        if not index.numel():
            return input.new_zeros(index.shape)
        lowest, zero = input.new_full((1,), _LOWEST), input.new_zeros(1)
        framed = torch.cat([lowest, input.flatten(), zero])  # [1 + N C H W + 1]
        return framed.index_select(0, index.flatten()).view(index.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        framed = grad.new_zeros(math.prod(ctx.shape) + 2)
        framed.index_add_(0, index.flatten(), grad.reshape(-1))
        return framed[1:-1].view(ctx.shape), None


def roi_pool(input: Tensor, boxes: BoxesLike, output_size: int | Sequence[int],
             spatial_scale: float = 1.0) -> Tensor:
    """RoIPool (Fast R-CNN): the maximum over each quantised bin of each box.

    The same signature and results as ``torchvision.ops.roi_pool``: the box is rounded to the
    map grid, the bins' edges are rounded again (see :func:`roi_pool_bins`), an empty bin gives
    0. The gradient of each output goes to the position of its maximum (the first one in
    row-major order when there are ties). As in torchvision's kernel, NaN is never the maximum
    and a bin with nothing above ``-FLT_MAX`` gives ``-FLT_MAX`` and passes no gradient.

    Vectorised (:func:`_pool_argmax`): each map entry gets an integer key that orders it as
    torchvision's search does, the bins are grouped by size, and each group reads the minimum
    key of its bins, either pixel by pixel or from a table of window minima. The groups are
    read on the host, once per call.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): as in :func:`roi_align`.
        output_size: ``PH`` or ``(PH, PW)``.
        spatial_scale: multiplies the box coordinates.

    Returns:
        Tensor[K, C, PH, PW].
    """
    _check_input(input)
    _check_scale(spatial_scale)
    bins_h, bins_w = _pair(output_size)
    n_img, _, height, width = input.shape
    rois = as_rois(boxes, n_img, input.dtype, input.device)
    with torch.no_grad():
        bins = roi_pool_bins(rois, (bins_h, bins_w), spatial_scale, height, width)
        where = _pool_argmax(input, rois, bins)  # [K, C, PH, PW]
    return _Pick.apply(input, where)
