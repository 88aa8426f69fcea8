"""Synthetic scenes: coloured shapes on a textured background, with exact instance masks.

Nothing is downloaded: every chapter makes its data here, from a seed. A scene holds an image
and the *visible* mask of each object (later objects occlude earlier ones, so instance masks
never overlap, as in COCO's panoptic ground truth), and each object's class.

:func:`simulate_predictions` turns ground truth into plausible detector output (shifted, grown
or shrunk masks, misses, false positives, scores that track quality), for the metric chapters
that come before any model is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from course.boxes import masks_to_boxes

CLASSES = ("circle", "square", "triangle")
"""Class names; class id ``k`` (1-based, 0 is background) is ``CLASSES[k - 1]``."""

# Base colour per class (RGB in [0, 1]); each object jitters around it.
_CLASS_RGB = torch.tensor([[0.90, 0.35, 0.25], [0.25, 0.55, 0.90], [0.95, 0.80, 0.20]])


@dataclass
class Scene:
    """One synthetic image and its instances.

    Attributes:
        image (Tensor[3, H, W]): float32 RGB in [0, 1].
        masks (Tensor[N, H, W]): bool visible mask of each instance; no two overlap.
        labels (Tensor[N]): int64 class ids, 1-based into :data:`CLASSES`.
    """

    image: Tensor
    masks: Tensor
    labels: Tensor

    @property
    def boxes(self) -> Tensor:
        """Tensor[N, 4] tight ``(x1, y1, x2, y2)`` boxes of the masks."""
        return masks_to_boxes(self.masks)

    def __len__(self) -> int:
        return len(self.labels)


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    g.manual_seed(0 if seed is None else seed)
    return g


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def shape_mask(kind: str, center: tuple[float, float], size: float, angle: float,
               height: int, width: int) -> Tensor:
    """Rasterise one shape, sampling at pixel centres.

    Args:
        kind: ``"circle"``, ``"square"`` or ``"triangle"``.
        center: ``(cx, cy)`` in pixels (continuous coordinates, pixel ``i`` spans ``[i, i+1)``).
        size: the diameter of the circle, the side of the square, the side of the triangle.
        angle: rotation in radians (ignored for circles).

    Returns:
        Tensor[H, W] bool.
    """
    ys = torch.arange(height, dtype=torch.float64)[:, None] + 0.5 - center[1]  # [H, 1]
    xs = torch.arange(width, dtype=torch.float64)[None, :] + 0.5 - center[0]  # [1, W]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * xs + s * ys, -s * xs + c * ys  # [H, W] coordinates in the shape's frame
    if kind == "circle":
        return xs**2 + ys**2 <= (size / 2) ** 2
    if kind == "square":
        return (u.abs() <= size / 2) & (v.abs() <= size / 2)
    if kind == "triangle":
        r = size / math.sqrt(3)  # circumradius of an equilateral triangle
        inside = torch.ones(height, width, dtype=torch.bool)
        for k in range(3):  # three half-planes, edge normals 120 degrees apart
            a = math.pi / 2 + 2 * math.pi * k / 3
            inside &= u * math.cos(a) + v * math.sin(a) <= r / 2
        return inside
    raise ValueError(f"kind must be one of {CLASSES}, got {kind!r}")


def make_scene(height: int = 128, width: int = 128, num_objects: tuple[int, int] = (3, 7),
               size_range: tuple[float, float] = (14.0, 40.0), min_visible: int = 12,
               seed: int | None = None, generator: torch.Generator | None = None) -> Scene:
    """A random scene of circles, squares and triangles.

    Args:
        height, width: image size in pixels.
        num_objects: inclusive range of how many shapes are drawn.
        size_range: range of shape sizes (diameter or side) in pixels.
        min_visible: shapes left with fewer visible pixels after occlusion are dropped.
        seed, generator: the randomness; ``generator`` wins when both are given.

    Returns:
        Scene with masks in drawing order (back to front).
    """
    g = _generator(seed, generator)
    n = int(torch.randint(num_objects[0], num_objects[1] + 1, (), generator=g))
    image = _background(height, width, g)
    shapes, labels = [], []
    for _ in range(n):
        label = int(torch.randint(1, len(CLASSES) + 1, (), generator=g))
        size = _uniform(g, *size_range)
        center = (_uniform(g, 0, width), _uniform(g, 0, height))
        mask = shape_mask(CLASSES[label - 1], center, size, _uniform(g, 0, math.pi), height, width)
        colour = (_CLASS_RGB[label - 1] + 0.12 * torch.randn(3, generator=g)).clamp(0, 1)
        shade = 1 + 0.06 * torch.randn(height, width, generator=g)  # [H, W] texture
        image = torch.where(mask, (colour[:, None, None] * shade).clamp(0, 1), image)
        shapes.append(mask)
        labels.append(label)
    return _visible(image, shapes, labels, min_visible)


def _background(height: int, width: int, g: torch.Generator) -> Tensor:
    base = 0.35 + 0.3 * torch.rand(3, 1, 1, generator=g)  # [3, 1, 1]
    ramp = torch.linspace(-0.08, 0.08, width)[None, None, :]  # [1, 1, W]
    noise = 0.04 * torch.randn(3, height, width, generator=g)
    return (base + ramp + noise).clamp(0, 1).float()


def _visible(image: Tensor, shapes: list[Tensor], labels: list[int], min_visible: int) -> Scene:
    height, width = image.shape[1:]
    covered = torch.zeros(height, width, dtype=torch.bool)
    visible = []
    for mask in reversed(shapes):  # front to back: what is in front hides what is behind
        visible.append(mask & ~covered)
        covered |= mask
    visible.reverse()
    keep = [i for i, m in enumerate(visible) if int(m.sum()) >= min_visible]
    masks = torch.stack([visible[i] for i in keep]) if keep else torch.zeros(0, height, width,
                                                                              dtype=torch.bool)
    return Scene(image, masks, torch.tensor([labels[i] for i in keep], dtype=torch.int64))


def shift_masks(masks: Tensor, dy: int, dx: int) -> Tensor:
    """Translate ``[N, H, W]`` masks by whole pixels; what leaves the image is lost."""
    n, h, w = masks.shape
    out = torch.zeros_like(masks)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    xs, xd = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    out[:, yd, xd] = masks[:, ys, xs]
    return out


def grow_masks(masks: Tensor, pixels: int) -> Tensor:
    """Dilate (``pixels > 0``) or erode (``pixels < 0``) ``[N, H, W]`` masks with a square."""
    if pixels == 0 or masks.numel() == 0:
        return masks.clone()
    k = 2 * abs(pixels) + 1
    x = masks.float()[:, None]  # [N, 1, H, W]
    if pixels > 0:
        return F.max_pool2d(x, k, stride=1, padding=abs(pixels))[:, 0] > 0.5
    return -F.max_pool2d(-x, k, stride=1, padding=abs(pixels))[:, 0] > 0.5


@dataclass
class Predictions:
    """Detector-style output for one image.

    Attributes:
        masks (Tensor[P, H, W]): bool masks.
        labels (Tensor[P]): int64 class ids.
        scores (Tensor[P]): float32 confidences in (0, 1).
    """

    masks: Tensor
    labels: Tensor
    scores: Tensor

    def __len__(self) -> int:
        return len(self.labels)


def simulate_predictions(scene: Scene, miss_rate: float = 0.15, max_shift: int = 2,
                         max_grow: int = 1, false_positives: tuple[int, int] = (0, 2),
                         duplicate_rate: float = 0.1, label_flip_rate: float = 0.05,
                         seed: int | None = None, generator: torch.Generator | None = None
                         ) -> Predictions:
    """Plausible detections for ``scene``: imperfect copies of its objects plus some junk.

    Each object is missed with probability ``miss_rate``; otherwise its mask is shifted by up to
    ``max_shift`` pixels and grown or shrunk by up to ``max_grow``, its label flipped with
    probability ``label_flip_rate``, and with probability ``duplicate_rate`` a second, worse copy
    is added. ``false_positives`` blobs appear where nothing is. Scores are higher for copies
    that moved less, with noise, so ranking by score roughly ranks by quality.
    """
    g = _generator(seed, generator)
    h, w = scene.masks.shape[1:]
    masks, labels, scores = [], [], []

    def add_copy(mask: Tensor, label: int, jitter: int) -> None:
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g))
        grow = int(torch.randint(-max_grow, max_grow + 1, (), generator=g))
        copy = grow_masks(shift_masks(mask[None], dy, dx), grow)[0]
        if float(torch.rand((), generator=g)) < label_flip_rate:
            label = int(torch.randint(1, len(CLASSES) + 1, (), generator=g))
        error = (abs(dy) + abs(dx) + abs(grow)) / (2 * max(jitter, 1) + max_grow + 1)
        score = 0.95 - 0.5 * error + 0.08 * float(torch.randn((), generator=g))
        masks.append(copy)
        labels.append(label)
        scores.append(min(max(score, 0.02), 0.99))

    for mask, label in zip(scene.masks, scene.labels.tolist(), strict=True):
        if float(torch.rand((), generator=g)) < miss_rate:
            continue
        add_copy(mask, label, max_shift)
        if float(torch.rand((), generator=g)) < duplicate_rate:
            add_copy(mask, label, 2 * max_shift + 1)
    n_fp = int(torch.randint(false_positives[0], false_positives[1] + 1, (), generator=g))
    for _ in range(n_fp):
        label = int(torch.randint(1, len(CLASSES) + 1, (), generator=g))
        centre = (_uniform(g, 0, w), _uniform(g, 0, h))
        masks.append(shape_mask("circle", centre, _uniform(g, 8, 24), 0.0, h, w))
        labels.append(label)
        scores.append(_uniform(g, 0.05, 0.6))
    empty = torch.zeros(0, h, w, dtype=torch.bool)
    return Predictions(torch.stack(masks) if masks else empty,
                       torch.tensor(labels, dtype=torch.int64),
                       torch.tensor(scores, dtype=torch.float32))
