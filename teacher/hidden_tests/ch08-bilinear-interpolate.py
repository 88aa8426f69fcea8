"""Hidden tests of ch08-bilinear-interpolate: fn(feature [..., H, W], y, x) -> Tensor[...]."""

import torch

from course import roi_align


def test_random_points(fn):
    g = torch.Generator().manual_seed(8101)
    feature = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    points = torch.rand(15, 2, generator=g, dtype=torch.float64) * torch.tensor([9.0, 12.0]) - 1.5
    for y, x in points.tolist():
        got = torch.as_tensor(fn(feature, y, x))
        want = roi_align.bilinear_interpolate(feature, y, x)
        assert got.shape == want.shape, "keep the leading dimensions: one value per channel"
        assert torch.allclose(got.double(), want, rtol=1e-8, atol=1e-10), \
            f"the value at a random point (y={y:.2f}, x={x:.2f}) is wrong"
