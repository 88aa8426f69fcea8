"""Hidden tests of ch11-protect: fn(masks [N, H, W], semantic [C, H, W], protected [K],
threshold) -> masks without the pixels a protected class claims."""

import torch

from course.fusion import protected_pixels


def test_random_probabilities(fn):
    g = torch.Generator().manual_seed(11201)
    for channels, threshold in (([0, 2], 0.3), ([4], 0.25), ([], 0.5)):
        masks = torch.rand(3, 10, 8, generator=g) < 0.5
        semantic = torch.rand(5, 10, 8, generator=g, dtype=torch.float64) ** 2
        semantic = semantic / semantic.sum(0, keepdim=True)
        got = torch.as_tensor(fn(masks, semantic, torch.tensor(channels, dtype=torch.int64),
                                 threshold))
        want = masks & ~protected_pixels(semantic, channels, threshold)
        assert got.shape == want.shape, "the masks keep their shape [N, H, W]"
        assert got.dtype == torch.bool, "return bool masks"
        assert torch.equal(got, want), (f"pixels kept or removed wrongly with protected channels "
                                        f"{channels} at threshold {threshold}")
