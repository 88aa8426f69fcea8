"""The engines behind chapter 08's fast ROIAlign and RoIPool, kept apart for speed.

:mod:`course.roi_align` is what a learner reads beside the chapter: the definitions
(:func:`~course.roi_align.roi_align_reference` and :func:`~course.roi_align.roi_pool_reference`,
one sample, bin and RoI at a time), the separable interpolation matrices
(:func:`~course.roi_align.roi_align_matrices`) and the public entry points, which check their
arguments and then call this module. What is here only makes those entry points fast: each
engine computes what the definitions in ``course.roi_align`` compute, and the tests hold it to
them and to ``torchvision.ops``.

- :func:`separable_roi_align`: ROIAlign on the CPU, ``A_y F A_x^T`` for every RoI as two
  matrix products per group of RoIs on a window of the map that covers them. A planner reads
  the matrices on the host and groups the RoIs of each image whose windows are close.
- :func:`dense_roi_align`: ROIAlign on an accelerator, with nothing read back to the host and
  every shape following from the arguments' shapes. The non-zeros of ``A_y`` and ``A_x`` are
  applied by gathering whole map rows, then columns, for fixed-size chunks of RoIs.
- :func:`bin_maxima`: RoIPool's maxima. Every map entry gets an integer key that orders it as
  torchvision's search does; the bins are grouped by size and read their minimum key pixel
  by pixel or from sparse tables of window minima.

Nothing here checks its arguments: each engine takes the RoIs as
:func:`course.roi_align.as_rois` returns them and the matrices or bins built from them, and
this module never imports :mod:`course.roi_align`. Gradients flow to ``input`` only, through
backward passes written by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# ---------------------------------------------------------------------------------------------
# ROIAlign on the CPU: chunks of RoIs that share a window of the map
# ---------------------------------------------------------------------------------------------


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


def separable_roi_align(input: Tensor, rois: Tensor, a_y: Tensor, a_x: Tensor) -> Tensor:
    """ROIAlign on the CPU: ``out[k] = A_y[k] F[b_k] A_x[k]^T``, planned on the host.

    The RoIs of each image are grouped into chunks whose windows of the map are close
    (:func:`_plan`, which reads the matrices on the host), and each chunk is two matrix
    products on its window (:class:`_SeparableRoIAlign`).

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        rois (Tensor[K, 5]): ``(batch index, x1, y1, x2, y2)``, checked (as
            :func:`course.roi_align.as_rois` returns them); only the batch index is read.
        a_y (Tensor[K, PH, H]), a_x (Tensor[K, PW, W]): the RoIs' interpolation matrices
            (:func:`course.roi_align.roi_align_matrices`), in ``input``'s dtype.

    Returns:
        Tensor[K, C, PH, PW], differentiable with respect to ``input``.
    """
    plan = _plan(rois[:, 0].to(torch.int64), a_y, a_x, input.shape[1])
    return _SeparableRoIAlign.apply(input, plan, len(rois), a_y.shape[1], a_x.shape[1])


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
        sampling_ratio: as in :func:`course.roi_align.roi_align`.

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


def dense_roi_align(input: Tensor, rois: Tensor, a_y: Tensor, a_x: Tensor,
                    sampling_ratio: int, budget: int = 2**26) -> Tensor:
    """ROIAlign with nothing read back to the host: the path for a GPU.

    :func:`separable_roi_align` plans its windows from the boxes' values, read on the host,
    which on a GPU would wait at every call for all the work queued before it. Here the
    interpolation matrices (built with ``sync_free=True``, so that building them reads
    nothing either) are reduced to their non-zeros (:func:`_axis_taps`), and
    :class:`_DenseRoIAlign` applies them to whole map rows, then columns, for chunks of RoIs
    that hold about ``budget`` numbers at a time. With ``sampling_ratio > 0`` each bin row
    reads ``2 sampling_ratio`` map rows of ``W C`` numbers; with ``sampling_ratio <= 0`` each
    RoI reads all of its image (much slower).

    The boxes' values are not checked here (each check reads its answer on the host;
    ``torch._assert_async`` would not wait, but a failure leaves the GPU unusable until the
    process restarts). So a batch index out of ``[0, N)`` fails in the gather (on a GPU as a
    device-side assert), a fractional one is truncated, and a box with a NaN or infinite
    coordinate pools zeros; the same call on the CPU names the bad row.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        rois (Tensor[K, 5]): ``(batch index, x1, y1, x2, y2)`` as
            :func:`course.roi_align.as_rois` returns them, in ``input``'s dtype; only the
            batch index is read.
        a_y (Tensor[K, PH, H]), a_x (Tensor[K, PW, W]): the RoIs' interpolation matrices
            (:func:`course.roi_align.roi_align_matrices` with ``sync_free=True``).
        sampling_ratio: samples per bin side, as given to ROIAlign; it bounds the non-zeros
            of a matrix row (``<= 0``: no bound, every entry is kept).
        budget: numbers held by a chunk's gathers, 256 MB in float32 by default (a chunk
            has at least one RoI).

    Returns:
        Tensor[K, C, PH, PW], differentiable with respect to ``input``.
    """
    channels, width = input.shape[1], input.shape[3]
    index_y, weight_y = _axis_taps(a_y, sampling_ratio)  # [K, Qy, Ry], [K, Qy, PH / Qy, Ry]
    index_x, weight_x = _axis_taps(a_x, sampling_ratio)  # [K, Qx, Rx], [K, Qx, PW / Qx, Rx]
    bins_h, bins_w = a_y.shape[1], a_x.shape[1]
    per_roi = ((index_y.shape[1] * index_y.shape[2] + bins_h) * width
               + bins_h * (index_x.shape[1] * index_x.shape[2] + bins_w)) * channels
    chunk = max(budget // max(per_roi, 1), 1)
    image = rois[:, 0].to(torch.int64)  # [K]
    return _DenseRoIAlign.apply(input, image, (index_y, weight_y, index_x, weight_x), chunk)

# ---------------------------------------------------------------------------------------------
# RoIPool: one ordered key per map entry, the minimum key of each bin
# ---------------------------------------------------------------------------------------------


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


def bin_maxima(input: Tensor, rois: Tensor,
               bins: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    """RoIPool from its bins: the maximum of each bin, per channel, as torchvision picks it.

    An empty bin gives 0. The gradient of each output goes to the position of its maximum
    (the first one in row-major order when there are ties); NaN is never the maximum, and a
    bin with nothing above ``-FLT_MAX`` gives ``-FLT_MAX`` and passes no gradient. Each map
    entry gets an integer key that orders it as torchvision's search does (:func:`_pool_keys`),
    the bins are grouped by size, and each group reads the minimum key of its bins
    (:func:`_pool_argmax`). The groups are read on the host, once per call.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        rois (Tensor[K, 5]): ``(batch index, x1, y1, x2, y2)``, checked (as
            :func:`course.roi_align.as_rois` returns them); only the batch index is read.
        bins: ``(row_start, row_end, col_start, col_end)``, int64 ``[K, PH]`` and ``[K, PW]``,
            ``[start, end)`` clipped to the map, as :func:`course.roi_align.roi_pool_bins`
            returns them.

    Returns:
        Tensor[K, C, PH, PW], differentiable with respect to ``input``.
    """
    with torch.no_grad():
        where = _pool_argmax(input, rois, bins)  # [K, C, PH, PW]
    return _Pick.apply(input, where)
