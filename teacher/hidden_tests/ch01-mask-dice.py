"""Hidden tests of ch01-mask-dice: fn(a [N, H, W], b [M, H, W]) -> Tensor[N, M] float64 Dice."""

import torch

from course.masks import mask_dice_loop


def _check(fn, a, b, what):
    got = torch.as_tensor(fn(a, b))
    assert got.shape == (len(a), len(b)), "the result must be [N, M]: rows a, columns b"
    assert got.dtype == torch.float64, "the Dice coefficient must be float64"
    assert torch.allclose(got, mask_dice_loop(a, b), rtol=0, atol=1e-12), \
        f"some Dice values are wrong on {what}"


def test_random_masks(fn):
    g = torch.Generator().manual_seed(1201)
    a, b = torch.rand(5, 8, 15, generator=g) < 0.4, torch.rand(3, 8, 15, generator=g) < 0.3
    _check(fn, a, b, "random masks")


def test_empty_masks_among_others(fn):
    g = torch.Generator().manual_seed(1202)
    a = torch.rand(3, 17, 9, generator=g) < 0.25
    a[2] = False
    _check(fn, a, torch.cat([torch.zeros(1, 17, 9, dtype=torch.bool), a[:1]]),
           "random masks with empty ones among them")
