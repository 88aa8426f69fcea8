"""Hidden tests of ch09-decode-boxes: fn(deltas [N, 4], reference [N, 4], weights) -> [N, 4]."""

import torch

from course.model.box_coding import decode_boxes


def test_random_offsets(fn):
    g = torch.Generator().manual_seed(9401)
    xy = torch.rand(8, 2, generator=g, dtype=torch.float64) * 200
    reference = torch.cat([xy, xy + 1 + torch.rand(8, 2, generator=g, dtype=torch.float64) * 90], 1)
    for weights, scale in (((1.0, 1.0, 1.0, 1.0), 0.7), ((10.0, 10.0, 5.0, 5.0), 4.0),
                           ((1.0, 1.0, 1.0, 1.0), 9.0)):
        deltas = torch.randn(8, 4, generator=g, dtype=torch.float64) * scale
        w = torch.tensor(weights, dtype=torch.float64)
        got = torch.as_tensor(fn(deltas, reference, w))
        want = decode_boxes(deltas, reference, weights)
        assert got.shape == want.shape, "one (x1, y1, x2, y2) row per box"
        assert torch.allclose(got.double(), want, rtol=1e-8, atol=1e-10), \
            f"the boxes decoded from random offsets (weights {weights}) are wrong"
