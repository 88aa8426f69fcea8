"""Hidden tests of ch08-roi-align-weights: fn(start, bin_size, grid, bins, size)
-> Tensor[bins, size]."""

import random

import torch

from course import roi_align


def test_random_bins(fn):
    rng = random.Random(8201)
    for _ in range(8):
        start, bin_size = rng.uniform(-2, 6), rng.uniform(0.2, 3)
        grid, bins, size = rng.randint(1, 3), rng.randint(1, 5), rng.randint(3, 10)
        got = torch.as_tensor(fn(start, bin_size, grid, bins, size))
        want = roi_align.interpolation_matrix(torch.tensor([start], dtype=torch.float64),
                                              torch.tensor([bin_size], dtype=torch.float64),
                                              torch.tensor([grid]), bins, size)[0]
        assert got.shape == want.shape, "one row of weights per bin: shape [bins, size]"
        assert torch.allclose(got.double(), want, rtol=1e-8, atol=1e-10), \
            f"the weights of random bins (start {start:.2f}, bin size {bin_size:.2f}) are wrong"
