"""Hidden tests of ch09-label-anchors: fn(iou [G, N], high, low) -> Tensor[N] of 1 / 0 / -1."""

import torch

from course.model.assign import match_boxes


def test_random_iou(fn):
    g = torch.Generator().manual_seed(9201)
    for objects, high, low in ((4, 0.7, 0.3), (2, 0.6, 0.4), (6, 0.5, 0.5)):
        iou = torch.rand(objects, 50, generator=g, dtype=torch.float64) * 0.85
        got = torch.as_tensor(fn(iou, high, low))
        want = match_boxes(iou, high, low, low_quality=True).label
        assert got.shape == want.shape, "one label per anchor: shape [N]"
        wrong = got.long() != want
        assert not bool(wrong.any()), (f"{int(wrong.sum())} of 50 anchors are labelled wrongly "
                                       f"with {objects} objects, high {high}, low {low}")
