"""ROIAlign and RoIPool against torchvision (forward and input gradient), loop against fast,
gradcheck, the GPU path (on the CPU, and that it reads nothing on the host), the multi-level
pooler against torchvision's MultiScaleRoIAlign, and bad input."""

import ast
import functools
import itertools
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.ops import MultiScaleRoIAlign

import course.roi_kernels
from course.boxes import fpn_level
from course.roi_align import (
    RoIAlign,
    as_rois,
    bilinear_interpolate,
    multiscale_roi_align,
    paste_masks,
    roi_align,
    roi_align_bin,
    roi_align_matrices,
    roi_align_reference,
    roi_pool,
    roi_pool_reference,
)
from course.roi_kernels import dense_roi_align

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
MAPS = [(7, 9), (1, 6), (5, 1)]  # (H, W), including one row and one column


def sweep_boxes(height, width, scale, generator):
    """``Tensor[K, 5]`` float64 boxes of every kind, over 3 images, in image pixels.

    Inside the map, exactly on its border, partly and fully outside it (beyond the -1 / H
    limits too), zero width and/or height, tiny, larger than the map, and reversed.
    """
    h, w = height / scale, width / scale  # the image the map covers

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    def corners(x, y, bw, bh):
        return torch.stack([x, y, x + bw, y + bh], dim=1)

    n = 4
    kinds = [
        corners(rand(n) * w * 0.5, rand(n) * h * 0.5, rand(n) * w * 0.5, rand(n) * h * 0.5),
        torch.tensor([[0.0, 0.0, w, h], [0.0, h / 2, w / 3, h], [w / 2, 0.0, w, h / 4]],
                     dtype=torch.float64),  # on the border
        corners(rand(n) * w - w / 2, rand(n) * h - h / 2, rand(n) * w + 1, rand(n) * h + 1),
        corners(w + 2 / scale + rand(n) * w, rand(n) * h, rand(n) * w, rand(n) * h),
        corners(rand(n) * w, -(3 / scale) - rand(n) * h, rand(n) * w, rand(n) * h / 2),
        corners(rand(n) * w, rand(n) * h, torch.zeros(n), rand(n) * h),  # zero width
        corners(rand(n) * w, rand(n) * h, torch.zeros(n), torch.zeros(n)),  # a point
        corners(rand(n) * w, rand(n) * h, rand(n) * 0.5, rand(n) * 0.5),  # tiny
        corners(-rand(n) * w, -rand(n) * h, 3 * w * (1 + rand(n)), 3 * h * (1 + rand(n))),
        corners(rand(n) * w, rand(n) * h, -rand(n) * w / 4, -rand(n) * h / 4),  # reversed
    ]
    boxes = torch.cat(kinds)
    image = torch.randint(0, 3, (len(boxes), 1), generator=generator).to(torch.float64)
    return torch.cat([image, boxes], dim=1)


def as_list(rois, num_images):
    """The same boxes as a list of per-image ``Tensor[L, 4]`` (the order changes: by image)."""
    order = torch.argsort(rois[:, 0], stable=True)
    return [rois[rois[:, 0] == i, 1:] for i in range(num_images)], order


def max_error(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


def scaled_error(ours, theirs):
    """Largest difference, relative to the largest magnitude where that is above 1.

    Gradients sum hundreds of terms (a 5 x 1 map receives every bin of 40 boxes), so in
    float32 their rounding grows with their size; torchvision's own float32 gradient is off
    from the float64 one by up to 8e-6 of its largest entry on this sweep.
    """
    if not theirs.numel():
        return 0.0
    return max_error(ours, theirs) / max(1.0, theirs.abs().max().item())


def compare_with_torchvision(ours_fn, theirs_fn, x, boxes, dtype, args, device="cpu"):
    """Forward and input gradient of ours and torchvision's on the same random output weights.

    Returns the two errors as :func:`scaled_error` measures them.
    """
    x = x.to(dtype=dtype, device=device)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    b = ([t.to(dtype=dtype, device=device) for t in boxes] if isinstance(boxes, list)
         else boxes.to(dtype=dtype, device=device))
    ours, theirs = ours_fn(x_ours, b, *args), theirs_fn(x_theirs, b, *args)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == dtype
    assert ours.device == theirs.device == x.device
    weights = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    weights = weights.to(device)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    return scaled_error(ours, theirs), scaled_error(x_ours.grad, x_theirs.grad)


# --- ROIAlign against torchvision -------------------------------------------------------


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_roi_align_equals_torchvision_over_the_sweep(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(10 * sampling_ratio + aligned)
    sizes = [*range(1, 15), (2, 5), (6, 1)]
    for k, (size, dtype) in enumerate(itertools.product(sizes, TOL)):
        height, width = MAPS[k % len(MAPS)]
        scale = (1.0, 0.5, 0.25)[(height + len(str(size))) % 3]
        x = torch.randn(3, 2, height, width, generator=g, dtype=torch.float64)
        rois = sweep_boxes(height, width, scale, g)
        for boxes in (rois, as_list(rois, 3)[0]):  # tensor and list forms
            fwd, grad = compare_with_torchvision(
                roi_align, torchvision.ops.roi_align, x, boxes, dtype,
                (size, scale, sampling_ratio, aligned))
            where = f"size {size}, map {height}x{width}, scale {scale}, {dtype}"
            assert fwd <= TOL[dtype], f"forward off by {fwd:.2e} at {where}"
            assert grad <= TOL[dtype], f"gradient off by {grad:.2e} at {where}"


def realistic_rois(generator, count=60):
    """``Tensor[count, 5]`` float32 boxes of side 4-124 centred in ``[0, 160)^2``, on two
    images of 128 x 160 (H x W) pixels: many lie partly outside."""
    side = torch.rand(count, 2, generator=generator) * 120 + 4
    xy = torch.rand(count, 2, generator=generator) * 160 - side / 2
    image = torch.randint(0, 2, (count, 1), generator=generator).float()
    return torch.cat([image, xy, xy + side], 1)


@pytest.mark.parametrize("fn", ["roi_align", "roi_align_dense"])
def test_roi_align_on_realistic_sizes_in_float32(fn):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 32, 40, generator=g)
    rois = realistic_rois(g)
    for size, sampling_ratio in ((7, 2), (14, -1), (28, 0)):
        fwd, grad = compare_with_torchvision(globals()[fn], torchvision.ops.roi_align, x, rois,
                                             torch.float32, (size, 0.25, sampling_ratio, True))
        assert fwd <= 1e-5 and grad <= 1e-5


def test_reference_loop_equals_fast_and_torchvision():
    g = torch.Generator().manual_seed(4)
    for (height, width), aligned, sampling_ratio in itertools.product(
            [(6, 7), (1, 4)], [True, False], [-1, 2]):
        x = torch.randn(3, 2, height, width, generator=g, dtype=torch.float64)
        rois = sweep_boxes(height, width, 0.5, g)[::3]
        args = ((3, 2), 0.5, sampling_ratio, aligned)
        reference = roi_align_reference(x, rois, *args)
        assert max_error(reference, roi_align(x, rois, *args)) <= 1e-12
        assert max_error(reference, torchvision.ops.roi_align(x, rois, *args)) <= 1e-12


def test_reference_loop_has_the_same_gradient():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 5, 6, generator=g, dtype=torch.float64)
    rois = sweep_boxes(5, 6, 1.0, g)[::4]
    grads = []
    for fn in (roi_align_reference, roi_align):
        xi = x.clone().requires_grad_()
        (fn(xi, rois, 2, 1.0, -1, True) ** 2).sum().backward()
        grads.append(xi.grad)
    assert max_error(*grads) <= 1e-12


@pytest.mark.parametrize("aligned, sampling_ratio", [(True, -1), (True, 2), (False, 0),
                                                     (False, 1)])
def test_gradcheck(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 1, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 4.2, 3.9], [1, -1.5, 2.0, 3.1, 6.5], [1, 2, 2, 2, 2],
                         [0, 4.6, 0.1, 9.0, 1.2]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda t: roi_align(t, rois, (3, 2), 0.8, sampling_ratio, aligned), (x,))


def test_roi_align_boxes_get_no_gradient():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    boxes = torch.tensor([[0.0, 1.0, 1.0, 4.0, 5.0]], requires_grad=True)
    roi_align(x, boxes, 2).sum().backward()
    assert boxes.grad is None and x.grad is not None and x.grad.abs().sum() > 0


def test_roi_align_of_no_boxes_is_empty_and_differentiable():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4)], []):
        out = roi_align(x, boxes, (4, 3))
        assert out.shape == (0, 3, 4, 3) and out.dtype == x.dtype
        out.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
    no_channels = torch.zeros(1, 0, 4, 4, requires_grad=True)
    out = roi_align(no_channels, torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]] * 2), 3)
    assert out.shape == (2, 0, 3, 3)
    out.sum().backward()
    assert no_channels.grad.shape == (1, 0, 4, 4)


def test_sampling_outside_counts_as_zero_in_the_average():
    # a box half past the bottom edge: samples beyond y = H read 0 but count
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    box = torch.tensor([[0, 0.0, 2.5, 4.0, 7.5]], dtype=torch.float64)  # rows 2..7 (aligned)
    out = roi_align(x, box, 1, 1.0, 4, True)
    # sample rows 2.5 - 0.5 + (i + 0.5) * 5 / 4: 2.625, 3.875 inside; 5.125, 6.375 outside
    assert out.item() == pytest.approx(0.5)


def test_bilinear_interpolate_follows_the_border_rules():
    f = torch.arange(12, dtype=torch.float64).reshape(3, 4)  # f[i, j] = 4 i + j
    assert bilinear_interpolate(f, 1.0, 2.0).item() == 6.0  # a grid point
    assert bilinear_interpolate(f, 1.5, 2.25).item() == pytest.approx(4 * 1.5 + 2.25)  # linear
    assert bilinear_interpolate(f, -0.5, -0.9).item() == 0.0  # clamped to (0, 0)
    assert bilinear_interpolate(f, 2.7, 3.5).item() == 11.0  # past the last row and column
    assert bilinear_interpolate(f, -1.01, 1.0).item() == 0.0  # outside: zero
    assert bilinear_interpolate(f, 1.0, 4.01).item() == 0.0
    assert bilinear_interpolate(f, float("nan"), 1.0).item() == 0.0
    stacked = torch.stack([f, 2 * f])  # leading dimensions are carried
    assert bilinear_interpolate(stacked, 0.5, 0.5).tolist() == [2.5, 5.0]


def test_roi_align_bin_is_one_cell_of_the_reference():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 3, 6, 8, generator=g, dtype=torch.float64)
    box = torch.tensor([1.3, 0.2, 6.9, 5.1], dtype=torch.float64)
    full = roi_align(x, torch.cat([torch.zeros(1), box])[None], (3, 4), 1.0, -1, True)[0]
    for i, j in itertools.product(range(3), range(4)):
        cell = roi_align_bin(x[0], box, i, j, (3, 4), -1)
        assert max_error(cell, full[:, i, j]) <= 1e-12


def test_roi_align_module():
    m = RoIAlign(7, spatial_scale=0.25, sampling_ratio=2)
    x = torch.randn(1, 4, 16, 16)
    boxes = [torch.tensor([[3.0, 5.0, 40.0, 50.0]])]
    assert torch.equal(m(x, boxes), roi_align(x, boxes, 7, 0.25, 2, True))
    assert "output_size=(7, 7)" in repr(m) and "aligned=True" in repr(m)
    assert not list(m.parameters())


# --- The device path: fixed shapes, nothing read on the host ---------------------------------


def roi_align_dense(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True, budget=2**26):
    """The path :func:`roi_align` takes on a GPU, on any device, with ``roi_align``'s
    arguments (the boxes' values unchecked)."""
    size = (output_size,) * 2 if isinstance(output_size, int) else tuple(output_size)
    rois = as_rois(boxes, len(input), input.dtype, input.device, check_values=False)
    a_y, a_x = roi_align_matrices(rois, size, spatial_scale, sampling_ratio, aligned,
                                  *input.shape[2:], sync_free=True)
    return dense_roi_align(input, rois, a_y, a_x, sampling_ratio, budget)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_dense_path_equals_torchvision_and_the_cpu_path(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(40 + 10 * sampling_ratio + aligned)
    sizes = [1, 2, 5, (2, 5), (6, 1)]
    for k, (size, dtype) in enumerate(itertools.product(sizes, TOL)):
        height, width = [*MAPS, (9, 13)][k % 4]  # 2 sampling_ratio below and above H, W
        scale = (1.0, 0.5, 0.25)[k % 3]
        x = torch.randn(3, 2, height, width, generator=g, dtype=torch.float64)
        rois = sweep_boxes(height, width, scale, g)
        for boxes, budget in ((rois, 2**26), (as_list(rois, 3)[0], 1)):  # 1: a RoI per chunk
            dense = functools.partial(roi_align_dense, budget=budget)
            for theirs in (torchvision.ops.roi_align, roi_align):
                fwd, grad = compare_with_torchvision(dense, theirs, x, boxes, dtype,
                                                     (size, scale, sampling_ratio, aligned))
                where = f"size {size}, map {height}x{width}, scale {scale}, {dtype}, {theirs}"
                assert fwd <= TOL[dtype], f"forward off by {fwd:.2e} at {where}"
                assert grad <= TOL[dtype], f"gradient off by {grad:.2e} at {where}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sync_free_matrices_equal_the_host_ones(dtype):
    # huge boxes put thousands of samples in a bin, of which the sync-free matrices place
    # only the 2 size + 6 from the first near -1
    g = torch.Generator().manual_seed(41)
    huge = torch.tensor([[0, -5000.0, -3.0, 5000.0, 2.5], [1, -1e4, -1e4, 3.0, 1e4],
                         [2, 6.2, 0.1, 4e3, 0.7], [0, -2e3, -7.5, -1.5, 9.5]],
                        dtype=torch.float64)
    for (height, width), aligned, sampling_ratio in itertools.product(
            [*MAPS, (9, 13)], [True, False], [-1, 0, 2]):
        rois = torch.cat([sweep_boxes(height, width, 0.5, g), huge]).to(dtype)
        args = (rois, (3, 2), 0.5, sampling_ratio, aligned, height, width)
        host_free = zip(roi_align_matrices(*args), roi_align_matrices(*args, sync_free=True))
        for host, free in host_free:
            assert torch.equal(host, free)


@pytest.mark.parametrize("aligned, sampling_ratio", [(True, -1), (True, 2), (False, 0),
                                                     (False, 1)])
def test_dense_path_gradcheck(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(42)
    x = torch.randn(2, 1, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 4.2, 3.9], [1, -1.5, 2.0, 3.1, 6.5], [1, 2, 2, 2, 2],
                         [0, 4.6, 0.1, 9.0, 1.2]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda t: roi_align_dense(t, rois, (3, 2), 0.8, sampling_ratio, aligned, budget=1),
        (x,))


def test_dense_path_of_no_boxes_and_no_channels():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4)], []):
        out = roi_align_dense(x, boxes, (4, 3))
        assert out.shape == (0, 3, 4, 3) and out.dtype == x.dtype
        out.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
    no_channels = torch.zeros(1, 0, 4, 4, requires_grad=True)
    out = roi_align_dense(no_channels, torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]] * 2), 3, 1.0, 2)
    assert out.shape == (2, 0, 3, 3)
    out.sum().backward()
    assert no_channels.grad.shape == (1, 0, 4, 4)


class HostReads(TorchDispatchMode):
    """Fails at every op whose result Python reads: a value (``item``, ``int``, ``bool`` all
    call ``_local_scalar_dense``) or a size that depends on the values (``nonzero``)."""

    READS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select",
             "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive"}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.READS:
            raise AssertionError(f"{func._schema.name} reads a tensor on the host")
        return func(*args, **(kwargs or {}))


def test_dense_path_reads_nothing_on_the_host(monkeypatch):
    g = torch.Generator().manual_seed(43)
    x = torch.randn(2, 3, 9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    rois = sweep_boxes(9, 7, 0.5, g)
    rois[:, 0] = rois[:, 0] % 2

    def refuse(*args, **kwargs):
        raise AssertionError("read on the host")

    for name in ("tolist", "item", "numpy"):  # these read memory without an aten op
        monkeypatch.setattr(torch.Tensor, name, refuse)
    with HostReads():
        for sampling_ratio, aligned in itertools.product([-1, 2], [True, False]):
            out = roi_align_dense(x, rois, 5, 0.5, sampling_ratio, aligned, budget=2**10)
            out.sum().backward()
        with pytest.raises(AssertionError, match="on the host"):  # the check can fail
            roi_align(x, rois, 5, 0.5, 2, True)
    assert x.grad.abs().sum() > 0


def test_as_rois_can_leave_the_values_unchecked():
    bad = torch.tensor([[2, 1.0, float("nan"), 5.0, 5.0]])
    assert as_rois(bad, 2, check_values=False).shape == (1, 5)
    with pytest.raises(ValueError, match="boxes must be finite"):
        as_rois(bad, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_on_cuda_equals_torchvision_and_cpu(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(8)
    for height, width in ((9, 7), (3, 40)):  # with 2 sampling_ratio above and below H
        x = torch.randn(2, 3, height, width, generator=g, dtype=torch.float64)
        rois = sweep_boxes(height, width, 0.5, g)
        rois[:, 0] = rois[:, 0] % 2
        args = (5, 0.5, sampling_ratio, aligned)
        for dtype in TOL:
            fwd, grad = compare_with_torchvision(roi_align, torchvision.ops.roi_align, x, rois,
                                                 dtype, args, device="cuda")
            assert fwd <= TOL[dtype] and grad <= TOL[dtype], f"{dtype}: {fwd:.2e} {grad:.2e}"
        cuda = roi_align(x.cuda(), rois.cuda(), *args)
        assert cuda.device.type == "cuda"
        assert max_error(roi_align(x, rois, *args), cuda.cpu()) <= 1e-10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_roi_align_on_cuda_never_waits_for_the_device():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 8, 32, 40, generator=g).cuda().requires_grad_()
    rois = realistic_rois(g).cuda()
    roi_align(x, rois, 7, 0.25, 2).sum().backward()  # warm up: libraries load once
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")  # a call that waits for the GPU raises
    try:
        for sampling_ratio in (-1, 2):
            roi_align(x, rois, 7, 0.25, sampling_ratio).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()
    assert x.grad.abs().sum() > 0


# --- RoIPool against torchvision ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_roi_pool_equals_torchvision_over_the_sweep(dtype):
    g = torch.Generator().manual_seed(20)
    sizes = [*range(1, 15), (2, 5)]
    for size, (height, width) in itertools.product(sizes, MAPS):
        scale = (1.0, 0.5, 0.25)[(height + len(str(size))) % 3]
        x = torch.randn(3, 2, height, width, generator=g, dtype=torch.float64)
        rois = sweep_boxes(height, width, scale, g)
        for boxes in (rois, as_list(rois, 3)[0]):
            fwd, grad = compare_with_torchvision(roi_pool, torchvision.ops.roi_pool, x, boxes,
                                                 dtype, (size, scale))
            assert fwd == 0 and grad == 0, f"size {size}, map {height}x{width}, {dtype}"


def test_roi_pool_ties_send_the_gradient_to_the_first_maximum():
    g = torch.Generator().manual_seed(21)
    x = torch.randint(0, 3, (2, 3, 8, 9), generator=g).to(torch.float64)  # many ties
    rois = sweep_boxes(8, 9, 1.0, g)
    rois[:, 0] = rois[:, 0] % 2
    fwd, grad = compare_with_torchvision(roi_pool, torchvision.ops.roi_pool, x, rois,
                                         torch.float64, (3, 1.0))
    assert fwd == 0 and grad == 0


def test_roi_pool_rounds_halves_away_from_zero_like_c():
    x = torch.arange(36, dtype=torch.float64).reshape(1, 1, 6, 6)
    boxes = torch.tensor([[0, 0.5, 1.5, 2.5, 2.5], [0, -0.5, -1.5, 3.5, 4.5]],
                         dtype=torch.float64)
    assert torch.equal(roi_pool(x, boxes, 2), torchvision.ops.roi_pool(x, boxes, 2))


def test_roi_pool_reference_equals_fast():
    g = torch.Generator().manual_seed(22)
    x = torch.randn(3, 2, 6, 7, generator=g, dtype=torch.float64)
    rois = sweep_boxes(6, 7, 0.5, g)
    assert torch.equal(roi_pool_reference(x, rois, (3, 2), 0.5), roi_pool(x, rois, (3, 2), 0.5))


def test_roi_pool_of_no_boxes_is_empty():
    assert roi_pool(torch.randn(1, 2, 4, 4), torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)


FLT_MAX = 3.4028234663852886e38


def assert_pool_equals_torchvision(x, boxes, args):
    """Our roi_pool and torchvision's give equal outputs (to the bit, the sign of zero
    included) and equal input gradients, on random output weights."""
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = roi_pool(x_ours, boxes, *args)
    theirs = torchvision.ops.roi_pool(x_theirs, boxes, *args)
    assert torch.equal(ours, theirs) and torch.equal(ours.signbit(), theirs.signbit())
    weights = torch.randn(ours.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.equal(x_ours.grad, x_theirs.grad)


def boxes_of_every_size(height, width, scale, generator, count=120):
    """The sweep, plus many boxes from 1 to 3 map sides (so that many bins share a size,
    and bins are larger than 4 x 4 pixels), part of them across the map's edges."""
    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    size = torch.tensor([width, height], dtype=torch.float64) / scale  # the image
    side = size * 3 ** rand(count, 1) * rand(count, 2)
    corner = (rand(count, 2) * 1.4 - 0.2) * size - side / 2
    image = torch.randint(0, 3, (count, 1), generator=generator).to(torch.float64)
    return torch.cat([sweep_boxes(height, width, scale, generator),
                      torch.cat([image, corner, corner + side], dim=1)])


# the fast path's choices: reading every pixel or tables, small chunks of bins, int64 indices
POOL_MODES = {"default": {}, "pixels": {"_TABLE_COST": 1e9}, "tables": {"_TABLE_COST": 0.0},
              "chunks of 3 bins": {"_CHUNK": 7}, "int64": {"_INDEX32": 0}}


@pytest.mark.parametrize("mode", POOL_MODES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_roi_pool_equals_torchvision_at_every_stride(dtype, mode, monkeypatch):
    for name, value in POOL_MODES[mode].items():
        monkeypatch.setattr(course.roi_kernels, name, value)
    g = torch.Generator().manual_seed(23)
    for stride, size in itertools.product([4, 8, 16, 32], [7, 14, (3, 5)]):
        x = torch.randn(3, 2, 29, 37, generator=g, dtype=dtype)
        assert_pool_equals_torchvision(x, boxes_of_every_size(29, 37, 1 / stride, g).to(dtype),
                                       (size, 1 / stride))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_roi_pool_special_values_like_torchvision(dtype):
    """NaN is never the maximum; a bin with nothing above -FLT_MAX (-inf, NaN, -FLT_MAX, and
    in float64 anything below it) gives -FLT_MAX and no gradient; -0.0 and 0.0 tie."""
    g = torch.Generator().manual_seed(24)
    x = torch.randn(2, 3, 12, 10, generator=g, dtype=dtype)
    specials = [math.nan, math.inf, -math.inf, -FLT_MAX, FLT_MAX, -0.0, 0.0]
    if dtype == torch.float64:
        specials += [-1e300, -FLT_MAX * 2, 1e300]
    pick = torch.randint(0, len(specials), x.shape, generator=g)
    x = torch.where(torch.rand(x.shape, generator=g) < 0.5,
                    torch.tensor(specials, dtype=dtype)[pick], x)
    x[0, 0, :6, :5] = -math.inf
    x[0, 1, :6, :5] = math.nan
    x[1, 2, 6:, 5:] = -FLT_MAX
    zeros = torch.tensor([-0.0, 0.0], dtype=dtype)
    x[1, 0, 6:, 5:] = zeros[torch.randint(0, 2, (6, 5), generator=g)]
    rois = boxes_of_every_size(12, 10, 0.5, g, count=40)
    rois[:, 0] = rois[:, 0] % 2
    for size in (1, 3, 6):
        assert_pool_equals_torchvision(x, rois.to(dtype), (size, 0.5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_roi_pool_ties_on_constant_maps_go_to_the_first_pixel(dtype):
    g = torch.Generator().manual_seed(25)
    rois = boxes_of_every_size(16, 13, 0.25, g, count=60)
    rois[:, 0] = rois[:, 0] % 2
    for value in (2.5, 0.0, -1.0):
        x = torch.full((2, 2, 16, 13), value, dtype=dtype)
        for size in (2, 7):
            assert_pool_equals_torchvision(x, rois.to(dtype), (size, 0.25))


def test_roi_pool_leaves_its_input_alone_and_handles_one_channel():
    g = torch.Generator().manual_seed(26)
    x = torch.randn(2, 1, 9, 8, generator=g)  # permuted to channels-last, still contiguous
    x[0, 0, 0, 0] = math.nan
    before = x.clone()
    rois = sweep_boxes(9, 8, 1.0, g).float()
    rois[:, 0] = rois[:, 0] % 2
    assert_pool_equals_torchvision(x, rois, (3, 1.0))
    roi_pool(x, rois, 3)
    assert torch.equal(x.isnan(), before.isnan())
    assert torch.equal(x.nan_to_num(), before.nan_to_num())


# --- Multi-level pooling against torchvision ---------------------------------------------


def pyramid(generator, num_images=2, channels=3, size=256):
    strides = (4, 8, 16, 32)
    return [torch.randn(num_images, channels, size // s, size // s, generator=generator,
                        dtype=torch.float64) for s in strides]


def pyramid_boxes(generator, count, size=256):
    """Boxes of every size from 4 to 724 pixels, square-ish, so that every level gets some."""
    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    side = 2 ** torch.linspace(2, 9.5, count, dtype=torch.float64)[:, None]  # [count, 1]
    wh = side * torch.cat([1 + rand(count, 1) / 2, 1 - rand(count, 1) / 3], dim=1)  # [count, 2]
    xy = rand(count, 2) * size - wh / 2
    return torch.cat([xy, xy + wh], dim=1)


def test_multiscale_roi_align_equals_torchvision_pooler():
    g = torch.Generator().manual_seed(30)
    features = pyramid(g, size=512)
    boxes = [pyramid_boxes(g, 25, size=512), pyramid_boxes(g, 18, size=512)]
    names = ["p2", "p3", "p4", "p5"]
    pooler = MultiScaleRoIAlign(names, 7, 2)
    theirs_in = [f.clone().requires_grad_() for f in features]
    ours_in = [f.clone().requires_grad_() for f in features]
    theirs = pooler(OrderedDict(zip(names, theirs_in)), boxes, [(512, 512)] * 2)
    ours = multiscale_roi_align(ours_in, boxes, 7, sampling_ratio=2, aligned=False)
    assert ours.shape == theirs.shape == (43, 3, 7, 7)
    assert max_error(ours, theirs) <= 1e-10
    weights = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    for a, b in zip(ours_in, theirs_in):
        assert b.grad.abs().sum() > 0  # every level is used
        assert max_error(a.grad, b.grad) <= 1e-10


def test_multiscale_roi_pool_equals_torchvision_level_by_level():
    g = torch.Generator().manual_seed(33)
    features = [f.float() for f in pyramid(g, size=512)]
    boxes = [pyramid_boxes(g, 40, size=512).float(), pyramid_boxes(g, 30, size=512).float()]
    rois = as_rois(boxes, 2, torch.float32)
    levels = fpn_level(rois[:, 1:], 2, 5, 224.0, 4)
    ours_in = [f.clone().requires_grad_() for f in features]
    theirs_in = [f.clone().requires_grad_() for f in features]
    ours = multiscale_roi_align(ours_in, boxes, 7, pool="pool")
    theirs = torch.zeros_like(ours)
    for k, feature in zip(range(2, 6), theirs_in):
        index = (levels == k).nonzero().squeeze(1)
        theirs = theirs.index_put((index,), torchvision.ops.roi_pool(feature, rois[index], 7,
                                                                     1 / 2**k))
    assert torch.equal(ours, theirs)
    weights = torch.randn(ours.shape, generator=g)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    for a, b in zip(ours_in, theirs_in, strict=True):
        assert b.grad.abs().sum() > 0  # every level is used
        assert torch.equal(a.grad, b.grad)


def test_multiscale_roi_align_keeps_the_box_order_and_routes_by_size():
    g = torch.Generator().manual_seed(31)
    features = pyramid(g, num_images=1)
    small, large = [10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 500.0, 500.0]  # levels 2 and 5
    rois = torch.tensor([[0, *large], [0, *small]], dtype=torch.float64)
    out = multiscale_roi_align(features, rois, 5)
    assert torch.equal(out[0], roi_align(features[3], rois[:1], 5, 1 / 32, 2, True)[0])
    assert torch.equal(out[1], roi_align(features[0], rois[1:], 5, 1 / 4, 2, True)[0])
    assert multiscale_roi_align(features, torch.zeros(0, 5), 5).shape == (0, 3, 5, 5)


def test_multiscale_roi_align_rejects_bad_pyramids():
    g = torch.Generator().manual_seed(32)
    features = pyramid(g, num_images=1)
    boxes = torch.tensor([[0, 1.0, 1.0, 20.0, 20.0]])
    with pytest.raises(ValueError, match="strides must be consecutive powers of two"):
        multiscale_roi_align(features, boxes, 7, strides=(4, 8, 16, 64))
    with pytest.raises(ValueError, match="strides"):
        multiscale_roi_align(features[:3], boxes, 7)
    with pytest.raises(ValueError, match=r"features\[2\]"):
        multiscale_roi_align([features[0], features[1], features[2][:, :2], features[3]],
                             boxes, 7)
    with pytest.raises(TypeError, match="features must be a non-empty list"):
        multiscale_roi_align(features[0], boxes, 7)


# --- Pasting a grid back into its box -------------------------------------------------------


def test_paste_masks_fills_the_box_and_nothing_else():
    boxes = torch.tensor([[2.5, 1.0, 6.0, 3.0]])
    pasted = paste_masks(torch.ones(1, 3, 3), boxes, 5, 8)
    expected = torch.zeros(1, 5, 8)
    expected[0, 1:3, 2:6] = 1  # pixels whose centres lie in the box
    assert torch.equal(pasted, expected)


def test_paste_masks_interpolates_between_cell_centres():
    box = torch.tensor([[4.0, 2.0, 20.0, 10.0]], dtype=torch.float64)  # 16 x 8, 4 x 4 cells
    centres_x = 4.0 + (torch.arange(4, dtype=torch.float64) + 0.5) * 4  # cell centres' image x
    grid = centres_x.expand(1, 4, 4)  # [1, 4, 4], a ramp along x
    pasted = paste_masks(grid, box, 12, 24)[0]
    inner = torch.arange(6, 18)  # pixel centres between the first and last cell centre
    assert torch.allclose(pasted[5, inner], inner.double() + 0.5, rtol=0, atol=1e-12)
    assert pasted[5, 4].item() == centres_x[0].item()  # before the first centre: its value


def test_roi_align_then_paste_recovers_a_box_shaped_mask():
    mask = torch.zeros(1, 40, 50, dtype=torch.bool)
    mask[0, 10:30, 5:45] = True
    boxes = torch.tensor([[5.0, 10.0, 45.0, 30.0]], dtype=torch.float64)
    grid = roi_align(mask[None].double(), [boxes], 14, 1.0, 2)[:, 0]  # [1, 14, 14]
    assert torch.equal(paste_masks(grid, boxes, 40, 50) > 0.5, mask)


def test_paste_masks_edge_cases_and_bad_input():
    assert paste_masks(torch.zeros(0, 7, 7), torch.zeros(0, 4), 5, 6).shape == (0, 5, 6)
    flat = paste_masks(torch.ones(1, 2, 2), torch.tensor([[1.0, 1.0, 1.0, 3.0]]), 4, 4)
    assert not bool(torch.isnan(flat).any()) and flat.sum() == 0  # no pixel centre inside
    with pytest.raises(ValueError, match=r"masks must be a floating-point Tensor\[K, PH, PW\]"):
        paste_masks(torch.ones(2, 2), torch.zeros(1, 4), 4, 4)
    with pytest.raises(ValueError, match=r"boxes must have shape \[1, 4\]"):
        paste_masks(torch.ones(1, 2, 2), torch.zeros(2, 4), 4, 4)
    with pytest.raises(ValueError, match="boxes must be finite"):
        paste_masks(torch.ones(1, 2, 2), torch.tensor([[0.0, float("nan"), 1.0, 1.0]]), 4, 4)
    for height, width, name in ((-4, 4, "height"), (4, -1, "width"), (4.0, 4, "height"),
                                (4, 2.5, "width"), (True, 4, "height")):
        with pytest.raises(ValueError, match=f"{name} must be a whole number of pixels >= 0"):
            paste_masks(torch.ones(1, 2, 2), torch.zeros(1, 4), height, width)
    assert paste_masks(torch.ones(1, 2, 2), torch.tensor([[0.0, 0, 2, 2]]),
                       np.int64(3), np.int64(3)).shape == (1, 3, 3)


# --- Bad input -----------------------------------------------------------------------------


X = torch.zeros(2, 3, 8, 8)
GOOD = torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]])


@pytest.mark.parametrize("fn", [roi_align, roi_pool, roi_align_reference, roi_pool_reference])
@pytest.mark.parametrize("args, error, words", [
    ((X, torch.zeros(3, 4), 2), ValueError, r"boxes must have shape \[K, 5\].*in a list"),
    ((X, torch.zeros(3, 6), 2), ValueError, r"boxes must have shape \[K, 5\]"),
    ((X, [torch.zeros(2, 5)], 2), ValueError, r"boxes\[0\] must have shape \[L, 4\]"),
    ((X, torch.tensor([[2, 1.0, 1.0, 5.0, 5.0]]), 2), ValueError,
     r"boxes\[0, 0\] = 2.0 is not a batch index .*\[0, 2\)"),
    ((X, torch.tensor([[0, 1, 1, 5, 5], [-1, 1.0, 1.0, 5.0, 5.0]]), 2), ValueError,
     r"boxes\[1, 0\] = -1.0 is not a batch index"),
    ((X, torch.tensor([[0.5, 1.0, 1.0, 5.0, 5.0]]), 2), ValueError, "not a batch index"),
    ((X, [torch.zeros(1, 4)] * 3, 2), ValueError, "3 per-image tensors but input has only 2"),
    ((X, torch.tensor([[0, 1.0, float("nan"), 5.0, 5.0]]), 2), ValueError,
     "boxes must be finite"),
    ((X, torch.tensor([[0, 1.0, 1.0, float("inf"), 5.0]]), 2), ValueError,
     "boxes must be finite"),
    ((X[0], GOOD, 2), ValueError, r"input must have shape \[N, C, H, W\].*input\[None\]"),
    ((X[:, :, None], GOOD, 2), ValueError, r"input must have shape \[N, C, H, W\]"),
    ((X.long(), GOOD, 2), TypeError, "input must be a floating-point tensor"),
    ((X.numpy(), GOOD, 2), TypeError, "input must be a torch.Tensor"),
    ((X, GOOD.numpy(), 2), TypeError, "boxes must be a Tensor"),
    ((X, GOOD, 0), ValueError, "output_size must be a positive int"),
    ((X, GOOD, (2, 3, 4)), ValueError, "output_size"),
    ((X, GOOD, 2, 0.0), ValueError, "spatial_scale must be a positive number"),
    ((X[:, :, :0], GOOD, 2), ValueError, "empty feature map"),
])
def test_bad_input_is_named(fn, args, error, words):
    with pytest.raises(error, match=words):
        fn(*args)


def test_as_rois_builds_batch_indices_from_a_list():
    rois = as_rois([torch.ones(2, 4), torch.zeros(0, 4), 2 * torch.ones(1, 4)], 3)
    assert rois[:, 0].tolist() == [0, 0, 2] and rois.dtype == torch.float64


@pytest.mark.parametrize("module", ["roi_align.py", "roi_kernels.py"])
def test_library_does_not_import_torchvision(module):
    source = (Path(__file__).resolve().parent.parent / "course" / module).read_text()
    imported = [alias.name if isinstance(node, ast.Import) else node.module
                for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names]
    assert imported and not [name for name in imported if "torchvision" in name]


def test_multiscale_pooling_with_roi_pool_pools_each_box_from_its_level():
    g = torch.Generator().manual_seed(3)
    features = [torch.randn(2, 3, 64 // s, 64 // s, generator=g) for s in (4, 8, 16, 32)]
    boxes = [torch.tensor([[2.0, 3.0, 20.0, 30.0], [0.0, 0.0, 63.0, 60.0]]),
             torch.tensor([[10.0, 5.0, 17.0, 9.0]])]
    out = multiscale_roi_align(features, boxes, 5, pool="pool", canonical_size=64,
                               canonical_level=4)
    rois = as_rois(boxes, 2)
    from course.boxes import fpn_level
    levels = fpn_level(rois[:, 1:], 2, 5, 64.0, 4)
    for k in range(3):
        expected = roi_pool(features[int(levels[k]) - 2], rois[k:k + 1].float(), 5,
                            1 / 2 ** int(levels[k]))
        torch.testing.assert_close(out[k:k + 1], expected)
    with pytest.raises(ValueError, match="pool must be"):
        multiscale_roi_align(features, boxes, 5, pool="max")
