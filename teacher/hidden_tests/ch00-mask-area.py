"""Hidden tests of ch00-mask-area: fn(masks [N, H, W] bool) -> Tensor[N] pixel counts."""

import torch

from course.masks import mask_area


def _check(fn, masks):
    got = torch.as_tensor(fn(masks))
    assert got.shape == (len(masks),), "one count per mask: the result must have shape [N]"
    assert torch.equal(got.long(), mask_area(masks)), "some pixel counts are wrong"


def test_random_masks(fn):
    g = torch.Generator().manual_seed(1000)
    _check(fn, torch.rand(6, 13, 7, generator=g) < 0.3)


def test_dense_and_sparse(fn):
    g = torch.Generator().manual_seed(1001)
    masks = torch.rand(4, 50, 31, generator=g) < torch.tensor([0.0, 0.02, 0.9, 1.0])[:, None, None]
    _check(fn, masks)
