"""Anchors: the reference boxes the region proposal network scores and refines.

At every position of a pyramid level the RPN looks at ``A = len(ratios)`` anchors, all of the
level's size, one per aspect ratio, centred on the position. Feature pixel ``(i, j)`` of a map
with stride ``s`` covers image pixels ``[j s, (j + 1) s)`` horizontally, so its centre, and its
anchors' centre, is ``((j + 0.5) s, (i + 0.5) s)`` in the continuous box convention of
:mod:`course.boxes`. (torchvision puts the centres at ``(j s, i s)``, the top-left corner of the
cell, half a stride off.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def cell_anchors(size: float, ratios: Sequence[float]) -> Tensor:
    """The ``A`` anchors of one position, centred on ``(0, 0)``.

    An anchor of size ``a`` and ratio ``r = h / w`` keeps the area ``a * a``:
    ``w = a / sqrt(r)``, ``h = a * sqrt(r)``.

    Returns:
        Tensor[A, 4] float32 ``(x1, y1, x2, y2)``.
    """
    r = torch.as_tensor(ratios, dtype=torch.float32)
    w, h = size / r.sqrt(), size * r.sqrt()  # [A] each
    return torch.stack([-w / 2, -h / 2, w / 2, h / 2], dim=1)


def grid_anchors(size: float, ratios: Sequence[float], stride: int, height: int, width: int,
                 device: torch.device | str | None = None) -> Tensor:
    """Every anchor of one level whose map is ``height x width`` feature pixels.

    Returns:
        Tensor[height * width * A, 4] ``(x1, y1, x2, y2)``, ordered by row, then column, then
        ratio: the order of an RPN output ``[B, A, H, W]`` permuted to ``[B, H, W, A]``.
    """
    base = cell_anchors(size, ratios).to(device)  # [A, 4]
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) * stride  # [H]
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) * stride  # [W]
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each
    centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # [H W, 1, 4]
    return (centres + base).reshape(-1, 4)  # [H W A, 4]


class AnchorGenerator:
    """The anchors of every level for given map sizes, cached by size and device."""

    def __init__(self, sizes: Sequence[float], ratios: Sequence[float], strides: Sequence[int]):
        if len(sizes) != len(strides):
            raise ValueError(f"one anchor size per level: {len(strides)} strides, "
                             f"{len(sizes)} sizes")
        self.sizes, self.ratios, self.strides = tuple(sizes), tuple(ratios), tuple(strides)
        self._cache: dict[tuple, list[Tensor]] = {}

    @property
    def num_anchors(self) -> int:
        """Anchors per position (the same on every level)."""
        return len(self.ratios)

    def __call__(self, map_sizes: Sequence[tuple[int, int]],
                 device: torch.device | str | None = None) -> list[Tensor]:
        """One ``Tensor[H_l W_l A, 4]`` per level for maps of ``map_sizes[l] = (H_l, W_l)``."""
        key = (tuple(map_sizes), str(device))
        if key not in self._cache:
            self._cache[key] = [grid_anchors(a, self.ratios, s, h, w, device) for a, s, (h, w)
                                in zip(self.sizes, self.strides, map_sizes, strict=True)]
        return self._cache[key]
