"""Hidden tests of ch04-pq-from-counts: fn(iou_sum [K], tp [K], fp [K], fn [K]) -> (pq, sq, rq)
averaged over the classes that have segments."""

import torch

from course import pq


def _check(fn, iou_sum, tp, fp, fn_):
    got = fn(iou_sum, tp, fp, fn_)
    if isinstance(got, dict):
        got = tuple(got.get(k) for k in ("pq", "sq", "rq"))
    got = [float(v) for v in got]
    want = pq.pq_from_counts(iou_sum, tp, fp, fn_)
    for name, g in zip(("pq", "sq", "rq"), got, strict=True):
        assert abs(g - float(want[name])) <= 1e-12, f"{name} is wrong on random counts"


def test_random_counts(fn):
    g = torch.Generator().manual_seed(4201)
    tp = torch.randint(0, 6, (8,), generator=g)
    iou_sum = tp * (0.5 + 0.5 * torch.rand(8, generator=g, dtype=torch.float64))
    _check(fn, iou_sum, tp, torch.randint(0, 4, (8,), generator=g),
           torch.randint(0, 4, (8,), generator=g))


def test_empty_classes_mixed_in(fn):
    tp, fp, fn_ = torch.tensor([0, 3, 0, 2]), torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 1, 2])
    _check(fn, torch.tensor([0.0, 2.4, 0.0, 1.3], dtype=torch.float64), tp, fp, fn_)
