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

- on the CPU, :func:`course.roi_kernels.separable_roi_align`: two matrix products per group of
  RoIs, on a window of the map that covers them; the windows are planned from the boxes'
  values, read on the host.
- on a GPU (any device but the CPU), :func:`course.roi_kernels.dense_roi_align`: reading a
  value on the host would make the CPU wait for every kernel queued before it, at every call,
  so this path reads nothing back and all its shapes follow from the arguments' shapes. It
  keeps the non-zeros of ``A_y`` and ``A_x`` (at most ``2 sampling_ratio`` per row) and
  applies them by gathering whole map rows, then columns, for fixed-size chunks of RoIs. The
  boxes' values are not checked there. :func:`multiscale_roi_align` still reads on the host
  once per pyramid level, to split the boxes among the levels.

Those paths and the fast RoIPool (:func:`course.roi_kernels.bin_maxima`) are engines, kept in
:mod:`course.roi_kernels`: this module holds what the chapter teaches, checks the arguments,
builds the interpolation matrices (:func:`roi_align_matrices`) or the bins
(:func:`roi_pool_bins`) and hands them over.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from course.boxes import fpn_level
from course.roi_kernels import bin_maxima, dense_roi_align, separable_roi_align

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
            before it, so :func:`roi_align` skips them there (see
            :func:`course.roi_kernels.dense_roi_align`).
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
# ROIAlign, fast: separable interpolation matrices (course.roi_kernels applies them)
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


def roi_align(input: Tensor, boxes: BoxesLike, output_size: int | Sequence[int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = True) -> Tensor:
    """ROIAlign (Mask R-CNN): a ``PH x PW`` grid of averaged bilinear samples per box.

    The same signature and results as ``torchvision.ops.roi_align`` (see the module
    docstring for the conventions); the default here is ``aligned=True``, the corrected
    half-pixel convention, where torchvision's default is ``False``. On the CPU the RoIs are
    pooled from windows planned on the host; on any other device by
    :func:`course.roi_kernels.dense_roi_align`, which never waits for the device, and there the
    boxes' values are not checked.

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
    n_img, _, height, width = input.shape
    on_device = input.device.type != "cpu"  # the CPU path plans on the host from the boxes
    rois = as_rois(boxes, n_img, input.dtype, input.device, check_values=not on_device)
    a_y, a_x = roi_align_matrices(rois, (bins_h, bins_w), spatial_scale, sampling_ratio,
                                  aligned, height, width, sync_free=on_device)
    if on_device:
        return dense_roi_align(input, rois, a_y, a_x, sampling_ratio)
    return separable_roi_align(input, rois, a_y, a_x)


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

    On a GPU the pooling itself never waits (:func:`course.roi_kernels.dense_roi_align`), but
    this function
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


def roi_pool(input: Tensor, boxes: BoxesLike, output_size: int | Sequence[int],
             spatial_scale: float = 1.0) -> Tensor:
    """RoIPool (Fast R-CNN): the maximum over each quantised bin of each box.

    The same signature and results as ``torchvision.ops.roi_pool``: the box is rounded to the
    map grid, the bins' edges are rounded again (see :func:`roi_pool_bins`), an empty bin gives
    0. The gradient of each output goes to the position of its maximum (the first one in
    row-major order when there are ties). As in torchvision's kernel, NaN is never the maximum
    and a bin with nothing above ``-FLT_MAX`` gives ``-FLT_MAX`` and passes no gradient.

    Vectorised (:func:`course.roi_kernels.bin_maxima`): each map entry gets an integer key that
    orders it as torchvision's search does, the bins are grouped by size, and each group reads
    the minimum key of its bins, either pixel by pixel or from a table of window minima. The
    groups are read on the host, once per call.

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
    bins = roi_pool_bins(rois, (bins_h, bins_w), spatial_scale, height, width)
    return bin_maxima(input, rois, bins)  # [K, C, PH, PW]
