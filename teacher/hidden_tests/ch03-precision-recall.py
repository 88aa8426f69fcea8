"""Hidden tests of ch03-precision-recall: fn(tp [D] bool, num_gt) -> (precision, recall)."""

import torch

from course import ap


def _check(fn, tp, num_gt):
    got = fn(tp, num_gt)
    assert len(got) == 2, "return a pair (precision, recall)"
    want = ap.precision_recall(tp, num_gt)
    for name, g, w in zip(("precision", "recall"), got, want, strict=True):
        g = torch.as_tensor(g)
        assert g.shape == w.shape, f"{name} needs one value per detection of the list"
        assert torch.allclose(g.double(), w, rtol=0, atol=1e-12), f"{name} is wrong somewhere"


def test_random_list(fn):
    g = torch.Generator().manual_seed(3101)
    _check(fn, torch.rand(60, generator=g) < 0.45, 37)


def test_hits_at_the_end(fn):
    tp = torch.zeros(25, dtype=torch.bool)
    tp[-4:] = True
    _check(fn, tp, 9)
