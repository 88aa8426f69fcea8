"""Hidden tests of ch09-encode-boxes: fn(boxes [N, 4], reference [N, 4], weights) -> [N, 4]."""

import torch

from course.model.box_coding import encode_boxes


def _boxes(g, n):
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 200
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 90], 1)


def test_random_boxes(fn):
    g = torch.Generator().manual_seed(9301)
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 0.5, 4.0)):
        boxes, reference = _boxes(g, 8), _boxes(g, 8)
        w = torch.tensor(weights, dtype=torch.float64)
        got = torch.as_tensor(fn(boxes, reference, w))
        want = encode_boxes(boxes, reference, weights)
        assert got.shape == want.shape, "one (dx, dy, dw, dh) row per box"
        assert torch.allclose(got.double(), want, rtol=1e-8, atol=1e-10), \
            f"the offsets of random boxes with weights {weights} are wrong"
