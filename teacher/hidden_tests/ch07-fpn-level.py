"""Hidden tests of ch07-fpn-level: fn(boxes [N, 4], k_min, k_max, canonical_size,
canonical_level) -> Tensor[N] levels."""

import torch

from course import boxes


def _check(fn, b, *params):
    got = torch.as_tensor(fn(b, *params))
    assert got.shape == (len(b),), "one level per box: shape [N]"
    wrong = got.long() != boxes.fpn_level(b, *params)
    assert not bool(wrong.any()), f"{int(wrong.sum())} of {len(b)} random boxes get the wrong level"


def test_random_boxes(fn):
    g = torch.Generator().manual_seed(7301)
    xy = torch.rand(30, 2, generator=g, dtype=torch.float64) * 500
    wh = 2 ** (torch.rand(30, 2, generator=g, dtype=torch.float64) * 10)
    b = torch.cat([xy, xy + wh], dim=1)
    _check(fn, b, 2, 5, 224.0, 4)
    _check(fn, b, 3, 7, 160.0, 5)
