"""Hidden tests of ch06-dice-grad-pixel: fn(probs [P], target [P], k) -> d loss / d probs[k]."""

import torch

from course import losses


def _check(fn, probs, target, k):
    got = fn(probs, target, k)
    got = float(torch.as_tensor(got, dtype=torch.float64).reshape(()))
    want = float(losses.dice_grad(probs.reshape(1, 1, -1), target.reshape(1, 1, -1))[0, 0, k])
    assert abs(got - want) <= 1e-10 + 1e-8 * abs(want), \
        f"the gradient at pixel {k} is wrong on random probabilities"


def test_random_probabilities(fn):
    g = torch.Generator().manual_seed(6201)
    probs = torch.rand(40, generator=g, dtype=torch.float64)
    target = (torch.rand(40, generator=g) < 0.3).double()
    for k in (0, int(target.argmax()), 39):
        _check(fn, probs, target, k)
