"""Hidden tests of ch03-ap-over-thresholds: fn(iou [D, G], scores [D]) -> AP@[.50:.95]."""

import torch

from course import ap


def _check(fn, iou, scores):
    got = fn(iou, scores)
    if isinstance(got, torch.Tensor):
        got = got.item()
    assert abs(float(got) - ap.ap_over_thresholds(iou, scores)) <= 1e-12, \
        "the AP averaged over the ten thresholds is wrong on a random image"


def test_random_iou(fn):
    g = torch.Generator().manual_seed(3301)
    iou = torch.rand(10, 6, generator=g, dtype=torch.float64) ** 0.5
    _check(fn, iou, torch.rand(10, generator=g, dtype=torch.float64))


def test_tied_scores(fn):
    g = torch.Generator().manual_seed(3302)
    _check(fn, torch.rand(7, 4, generator=g, dtype=torch.float64),
           torch.randint(0, 2, (7,), generator=g).double())
