"""Hidden tests of ch09-grid-anchors: fn(size, ratios, stride, height, width)
-> Tensor[height * width * A, 4]."""

import torch

from course.model.anchors import grid_anchors


def test_other_grids(fn):
    for size, ratios, stride, h, w in ((40.0, [0.5, 1.0, 2.0], 8, 3, 5),
                                      (128.0, [1.0, 3.0], 32, 2, 2)):
        ratios = torch.tensor(ratios, dtype=torch.float64)
        got = torch.as_tensor(fn(size, ratios, stride, h, w))
        want = grid_anchors(size, ratios.tolist(), stride, h, w)
        assert got.shape == want.shape, "one anchor per position and ratio: [H * W * A, 4]"
        close = (got.double() - want.double()).abs() <= 1e-3
        assert bool(close.all()), (f"{int((~close).any(1).sum())} of {len(want)} anchors are "
                                   f"wrong on a {h} x {w} map")
