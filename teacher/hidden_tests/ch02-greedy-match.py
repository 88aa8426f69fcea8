"""Hidden tests of ch02-greedy-match: fn(iou [P, G], scores [P], threshold) -> [(pred, gt)]."""

import torch

from course import matching


def _pairs(out):
    pairs = getattr(out, "pairs", out)
    return {tuple(int(v) for v in p) for p in torch.as_tensor(pairs).reshape(-1, 2).tolist()}


def _check(fn, iou, scores, threshold):
    want = _pairs(matching.greedy_match(iou, scores, threshold))
    got = _pairs(fn(iou, scores, threshold))
    assert len({p for p, _ in got}) == len(got) and len({q for _, q in got}) == len(got), \
        "a prediction or an object is used in more than one pair"
    assert got == want, (f"{len(got - want)} pair(s) that greedy matching does not make, "
                         f"{len(want - got)} missing (score order, best free object, "
                         "IoU >= threshold)")


def test_random_iou(fn):
    g = torch.Generator().manual_seed(2201)
    _check(fn, torch.rand(9, 6, generator=g, dtype=torch.float64),
           torch.rand(9, generator=g, dtype=torch.float64), 0.5)


def test_tied_scores_low_threshold(fn):
    g = torch.Generator().manual_seed(2202)
    scores = torch.randint(0, 3, (8,), generator=g).double() / 2  # many ties
    _check(fn, torch.rand(8, 8, generator=g, dtype=torch.float64), scores, 0.3)
