"""Hidden tests of ch01-mask-iou: fn(a [N, H, W], b [M, H, W]) -> Tensor[N, M] float64 IoU."""

import torch

from course.masks import mask_iou_loop


def _check(fn, a, b, what):
    got = torch.as_tensor(fn(a, b))
    assert got.shape == (len(a), len(b)), "the result must be [N, M]: rows a, columns b"
    assert got.dtype == torch.float64, "the IoU must be float64"
    assert torch.allclose(got, mask_iou_loop(a, b), rtol=0, atol=1e-12), \
        f"some IoU values are wrong on {what}"


def test_random_masks(fn):
    g = torch.Generator().manual_seed(1101)
    a, b = torch.rand(4, 9, 13, generator=g) < 0.4, torch.rand(6, 9, 13, generator=g) < 0.5
    _check(fn, a, b, "random masks")


def test_empty_masks_among_others(fn):
    g = torch.Generator().manual_seed(1102)
    a = torch.rand(3, 20, 11, generator=g) < 0.2
    a[1] = False  # an empty prediction
    b = torch.cat([a[:2], torch.zeros(1, 20, 11, dtype=torch.bool)])
    _check(fn, a, b, "random masks with empty ones among them")
