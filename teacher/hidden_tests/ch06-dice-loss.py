"""Hidden tests of ch06-dice-loss: fn(logits [N, H, W], targets [N, H, W]) -> Tensor[N]."""

import torch

from course import losses


def _check(fn, logits, targets):
    got = torch.as_tensor(fn(logits, targets))
    assert got.shape == (len(logits),), "one loss per mask: shape [N]"
    want = losses.dice_loss_loop(logits, targets)
    assert torch.allclose(got.double(), want, rtol=1e-8, atol=1e-10), \
        "the soft Dice loss (eps 1) is wrong on random logits"


def test_random_logits(fn):
    g = torch.Generator().manual_seed(6101)
    _check(fn, torch.randn(5, 11, 6, generator=g, dtype=torch.float64) * 3,
           torch.rand(5, 11, 6, generator=g) < 0.3)


def test_masks_of_very_different_sizes(fn):
    g = torch.Generator().manual_seed(6102)
    targets = torch.zeros(3, 16, 16, dtype=torch.bool)
    targets[0, 2:4, 2:4], targets[1, 1:15, 1:15] = True, True
    _check(fn, torch.randn(3, 16, 16, generator=g, dtype=torch.float64), targets)
