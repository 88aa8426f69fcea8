"""Hidden tests of ch07-receptive-field: fn(layers [L, 3] (kernel, stride, dilation))
-> (size, stride)."""

import torch

from course import fpn


def test_random_stacks(fn):
    g = torch.Generator().manual_seed(7101)
    for depth in (3, 6, 9):
        layers = torch.stack([torch.randint(1, 4, (depth,), generator=g) * 2 - 1,
                              torch.randint(1, 3, (depth,), generator=g),
                              torch.randint(1, 4, (depth,), generator=g)], dim=1)
        size, stride = (int(v) for v in fn(layers))
        want = fpn.receptive_field(layers)
        assert stride == want.stride, "the stride (the product of the layers' strides) is wrong"
        assert size == want.size, f"the receptive field of a random {depth}-layer stack is wrong"
