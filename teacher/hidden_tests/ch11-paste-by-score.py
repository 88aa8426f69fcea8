"""Hidden tests of ch11-paste-by-score: fn(masks [N, H, W] bool, scores [N]) -> Tensor[H, W]."""

import torch

from course.fusion import paste_by_score


def test_random_masks(fn):
    g = torch.Generator().manual_seed(11101)
    for n, tied in ((6, False), (10, True)):
        masks = torch.rand(n, 12, 9, generator=g) < 0.3
        scores = torch.rand(n, generator=g, dtype=torch.float64)
        if tied:
            scores = (scores * 3).round() / 3
        got = torch.as_tensor(fn(masks, scores))
        want = paste_by_score(masks, scores)
        assert got.shape == want.shape, "one id per pixel: shape [H, W]"
        wrong = got.long() != want
        assert not bool(wrong.any()), (f"{int(wrong.sum())} of {want.numel()} pixels of {n} "
                                       "random masks get the wrong id")
