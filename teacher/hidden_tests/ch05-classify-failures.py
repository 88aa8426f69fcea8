"""Hidden tests of ch05-classify-failures: fn(inter [G, P], gt_area [G], pred_area [P]) -> one
label per gt segment: "merge", "split", "match" or "miss"."""

import torch

from course import pq


def _segmentations(seed, h=24, w=24):
    """Overlap counts of two random label maps (blocks, so that merges and splits happen)."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.randint(0, 5, (h // 4, w // 4), generator=g).repeat_interleave(4, 0) \
        .repeat_interleave(4, 1)
    pred = torch.randint(0, 4, (h // 6, w // 3), generator=g).repeat_interleave(6, 0) \
        .repeat_interleave(3, 1)
    inter = torch.stack([torch.stack([((gt == i) & (pred == j)).sum() for j in range(4)])
                         for i in range(5)])  # [G, P]
    return inter, inter.sum(1), inter.sum(0)


def _check(fn, inter, gt_area, pred_area):
    got = [str(v) for v in fn(inter, gt_area, pred_area)]
    want = pq.classify_failures(inter, gt_area, pred_area)
    assert len(got) == len(want), "return one label per ground-truth segment"
    wrong = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not wrong, f"{len(wrong)} of {len(want)} labels do not say what happened to the segment"


def test_random_segmentations(fn):
    for seed in (5101, 5102, 5103):
        _check(fn, *_segmentations(seed))


def test_hand_made_scene(fn):
    inter = torch.tensor([[12, 0, 0], [0, 4, 4], [0, 0, 1], [0, 0, 9]])
    _check(fn, inter, torch.tensor([13, 9, 10, 9]), torch.tensor([12, 5, 15]))
