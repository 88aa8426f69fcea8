"""Hidden tests of ch03-average-precision: fn(precision [D], recall [D]) -> float, the
envelope sampled at 101 recalls."""

import torch

from course import ap


def _check(fn, tp, num_gt):
    precision, recall = ap.precision_recall(tp, num_gt)
    got = fn(precision, recall)
    if isinstance(got, torch.Tensor):
        got = got.item()
    assert abs(float(got) - ap.average_precision(precision, recall)) <= 1e-12, \
        "the AP of a random ranked list is wrong"


def test_random_lists(fn):
    g = torch.Generator().manual_seed(3201)
    for size, num_gt in ((45, 3), (200, 20)):
        tp = torch.rand(size, generator=g) < 0.4
        _check(fn, tp, int(tp.sum()) + num_gt)


def test_recall_below_one(fn):
    _check(fn, torch.tensor([False, True, True, False, True, False]), 5)
