"""Synthetic scenes: coloured shapes on a textured background, with exact instance masks.

Nothing is downloaded: every chapter makes its data here, from a seed. A scene holds an image
and the *visible* mask of each object (later objects occlude earlier ones, so instance masks
never overlap, as in COCO's panoptic ground truth), and each object's class.

:func:`simulate_predictions` turns ground truth into plausible detector output (shifted, grown
or shrunk masks, misses, false positives, scores that track quality), for the metric chapters
that come before any model is trained.

:class:`ShapesDataset` is the training and validation set of the compact Mask R-CNN of
chapters 09-10: a ``torch`` Dataset whose image ``i`` is drawn alone from its own seed.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from course.boxes import masks_to_boxes
from course.coco import ground_truth_to_coco
from course.panoptic_format import is_int
from course.pq import panoptic_to_pairs
from course.structures import Instances, describe

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
    if not size >= 0:
        raise ValueError(f"size must be >= 0, got {size}")
    _check_image_size(height, width)
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
    _check_image_size(height, width)
    _check_range(num_objects, "num_objects", 0)
    _check_range(size_range, "size_range", 0)
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


def _check_image_size(height: int, width: int) -> None:
    if not (is_int(height) and is_int(width)) or height < 0 or width < 0:
        raise ValueError(f"height and width must be integers >= 0, got {height!r}, {width!r}")


def _check_range(bounds: tuple[float, float], name: str, low: float) -> None:
    """``bounds`` is an inclusive ``(min, max)`` with ``low <= min <= max``."""
    if len(bounds) != 2 or not low <= bounds[0] <= bounds[1]:
        raise ValueError(f"{name} must be a range (min, max) with {low} <= min <= max, got "
                         f"{tuple(bounds)}")


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


# ---------------------------------------------------------------------------------------------
# Chapters 06-07: batches of separated shapes of a controlled size, for small mask predictors
# ---------------------------------------------------------------------------------------------


@dataclass
class ShapeBatch:
    """Images holding a few separated shapes each, with their masks.

    Attributes:
        images (Tensor[B, 3, H, W]): float32 RGB in [0, 1].
        masks (Tensor[B, H, W]): bool foreground of each image (the union of its shapes).
        instances (list[Tensor[K_b, H, W]]): bool mask of each shape of image ``b``; no two
            overlap or touch (they stay ``min_gap`` pixels apart), so the connected components
            of ``masks[b]`` are exactly the instances.
    """

    images: Tensor
    masks: Tensor
    instances: list[Tensor]

    def __len__(self) -> int:
        return len(self.images)


def make_shape_batch(batch: int, height: int = 32, width: int = 32,
                     sizes: tuple[float, float] = (4.0, 16.0), per_image: tuple[int, int] = (1, 1),
                     min_gap: int = 2, min_area: int = 4, noise: float = 0.08,
                     seed: int | None = None, generator: torch.Generator | None = None
                     ) -> ShapeBatch:
    """A batch of images with ``per_image`` shapes each, sizes drawn log-uniformly from ``sizes``.

    Log-uniform sizes give as many shapes between 4 and 8 pixels as between 32 and 64, which is
    what an experiment about small objects needs. Each shape lies wholly inside the image, keeps
    ``min_gap`` pixels away from the others and covers at least ``min_area`` pixels; a shape
    that finds no such place in 50 tries is left out (so an image may hold fewer).

    Args:
        batch: number of images ``B``.
        height, width: image size.
        sizes: range of shape sizes (circle diameter, square or triangle side) in pixels.
        per_image: inclusive range of how many shapes each image gets.
        min_gap: the smallest distance in pixels between two shapes.
        min_area: the smallest number of pixels a shape may cover.
        noise: standard deviation of the Gaussian pixel noise added to the whole image.
        seed, generator: the randomness; ``generator`` wins when both are given.

    Returns:
        ShapeBatch.
    """
    lo, hi = sizes
    if not 0 < lo <= hi or hi > min(height, width):
        raise ValueError(f"sizes must satisfy 0 < low <= high <= min(height, width), got {sizes}")
    if batch < 0 or not 0 <= per_image[0] <= per_image[1]:
        raise ValueError(f"need batch >= 0 and 0 <= per_image[0] <= per_image[1], "
                         f"got {batch} and {per_image}")
    g = _generator(seed, generator)
    images, instances = [], []
    for _ in range(batch):
        image = _background(height, width, g)
        count = int(torch.randint(per_image[0], per_image[1] + 1, (), generator=g))
        shapes: list[Tensor] = []
        for _ in range(count):
            mask = _place_shape(shapes, height, width, lo, hi, min_gap, min_area, g)
            if mask is None:
                continue
            label = int(torch.randint(1, len(CLASSES) + 1, (), generator=g))
            colour = (_CLASS_RGB[label - 1] + 0.12 * torch.randn(3, generator=g)).clamp(0, 1)
            shade = 1 + 0.06 * torch.randn(height, width, generator=g)  # [H, W] texture
            image = torch.where(mask, (colour[:, None, None] * shade).clamp(0, 1), image)
            shapes.append(mask)
        image = image + noise * torch.randn(3, height, width, generator=g)
        images.append(image.clamp(0, 1).float())
        instances.append(torch.stack(shapes) if shapes else
                         torch.zeros(0, height, width, dtype=torch.bool))
    images_t = (torch.stack(images) if images else torch.zeros(0, 3, height, width))
    masks = torch.stack([m.any(0) for m in instances]) if instances else \
        torch.zeros(0, height, width, dtype=torch.bool)
    return ShapeBatch(images_t, masks, instances)


def _place_shape(shapes: list[Tensor], height: int, width: int, lo: float, hi: float,
                 min_gap: int, min_area: int, g: torch.Generator) -> Tensor | None:
    """One shape mask inside the image, ``min_gap`` away from ``shapes``, or None after 50 tries."""
    taken = torch.zeros(height, width, dtype=torch.bool)
    if shapes:
        taken = grow_masks(torch.stack(shapes).any(0)[None], min_gap)[0]
    for _ in range(50):
        size = math.exp(_uniform(g, math.log(lo), math.log(hi)))
        kind = CLASSES[int(torch.randint(0, len(CLASSES), (), generator=g))]
        half = size / 2 + 1  # keep the whole shape (and a pixel) inside the image
        centre = (_uniform(g, half, max(half, width - half)),
                  _uniform(g, half, max(half, height - half)))
        mask = shape_mask(kind, centre, size, _uniform(g, 0, math.pi), height, width)
        if int(mask.sum()) >= min_area and not bool((mask & taken).any()):
            return mask
    return None


# ---------------------------------------------------------------------------------------------
# Chapters 04-05: panoptic scenes (stuff, things, crowd and void in one id map), the two
# failure modes of chapter 05 (merged and split segments), and objects seen through a stride
# ---------------------------------------------------------------------------------------------

STUFF_CLASSES = ("sky", "grass", "water")
"""Stuff names of panoptic scenes; stuff id ``len(CLASSES) + k`` is ``STUFF_CLASSES[k - 1]``."""

THING_IDS = tuple(range(1, len(CLASSES) + 1))
STUFF_IDS = tuple(range(len(CLASSES) + 1, len(CLASSES) + len(STUFF_CLASSES) + 1))
PANOPTIC_CLASSES = CLASSES + STUFF_CLASSES
"""Names of every panoptic category; category ``k`` is ``PANOPTIC_CLASSES[k - 1]``."""

_STUFF_RGB = torch.tensor([[0.62, 0.78, 0.95], [0.35, 0.62, 0.30], [0.20, 0.35, 0.60]])


@dataclass
class PanopticScene:
    """One image and its panoptic ground truth, in the COCO panoptic encoding.

    Attributes:
        image (Tensor[3, H, W]): float32 RGB in [0, 1].
        ids (Tensor[H, W]): int64 segment id of each pixel, 0 where unlabelled (void).
        segments (dict): ``{id: (category_id, iscrowd)}``, categories from
            :data:`PANOPTIC_CLASSES` (things :data:`THING_IDS`, stuff :data:`STUFF_IDS`).
        background (Tensor[H, W]): int64 stuff category under every pixel, things and void
            included (what a model that sees through objects would call the stuff there).
    """

    image: Tensor
    ids: Tensor
    segments: dict[int, tuple[int, bool]]
    background: Tensor

    def masks(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(masks [S, H, W] bool, categories [S], crowd [S] bool)`` in segment-id order."""
        return segment_masks(self.ids, self.segments)


def segment_masks(ids: Tensor, segments: dict[int, tuple[int, bool]]
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Split an id map into one mask per listed segment, in ascending id order.

    Returns:
        ``(masks [S, H, W] bool, categories [S] int64, crowd [S] bool)``.
    """
    keys = sorted(segments)
    key_t = torch.tensor(keys, dtype=torch.int64)
    masks = ids[None] == key_t[:, None, None]  # [S, H, W]
    cats = torch.tensor([segments[k][0] for k in keys], dtype=torch.int64)
    crowd = torch.tensor([bool(segments[k][1]) for k in keys], dtype=torch.bool)
    return masks, cats, crowd


def _stuff_layout(height: int, width: int, g: torch.Generator) -> Tensor:
    """Sky above a wavy horizon, grass below, and sometimes a pond: Tensor[H, W] category."""
    sky, grass, water = STUFF_IDS
    ys = torch.arange(height, dtype=torch.float64)[:, None] + 0.5  # [H, 1]
    xs = torch.arange(width, dtype=torch.float64)[None, :] + 0.5  # [1, W]
    horizon = _uniform(g, 0.3, 0.5) * height
    wave = 0.04 * height * torch.sin(xs / width * 2 * math.pi * _uniform(g, 0.5, 2.0)
                                     + _uniform(g, 0, 2 * math.pi))  # [1, W]
    layout = torch.where(ys < horizon + wave, sky, grass)  # [H, W]
    if float(torch.rand((), generator=g)) < 0.5:
        pond = shape_mask("circle", (_uniform(g, 0.2, 0.8) * width, _uniform(g, 0.7, 0.9) * height),
                          _uniform(g, 0.2, 0.35) * width, 0.0, height, width)
        layout = torch.where(pond, water, layout)
    return layout.to(torch.int64)


def _stuff_edges(layout: Tensor) -> Tensor:
    """Where the stuff category changes: a one-pixel band, on the lower or right side of each
    change of ``layout [H, W]``. Tensor[H, W] bool."""
    edge = torch.zeros_like(layout, dtype=torch.bool)
    edge[1:] |= layout[1:] != layout[:-1]
    edge[:, 1:] |= layout[:, 1:] != layout[:, :-1]
    return edge


def _crowd_region(height: int, width: int, g: torch.Generator) -> Tensor:
    """A tight cluster of small shapes, annotated as one crowd region: Tensor[H, W] bool."""
    cx, cy = _uniform(g, 0.25, 0.75) * width, _uniform(g, 0.6, 0.85) * height
    region = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(int(torch.randint(6, 11, (), generator=g))):
        centre = (cx + _uniform(g, -0.12, 0.12) * width, cy + _uniform(g, -0.06, 0.06) * height)
        region |= shape_mask("circle", centre, _uniform(g, 6, 10), 0.0, height, width)
    return region


def make_panoptic_scene(height: int = 128, width: int = 128,
                        num_objects: tuple[int, int] = (3, 6), crowd_rate: float = 0.5,
                        void: bool = True, seed: int | None = None,
                        generator: torch.Generator | None = None) -> PanopticScene:
    """A random panoptic scene: stuff (sky, grass, water), things, maybe a crowd, and void.

    The things are those of :func:`make_scene`. With probability ``crowd_rate`` a cluster of
    small circles of one thing class is annotated as a single crowd segment (``iscrowd=1``),
    behind the things. With ``void``, a one-pixel band along the horizon and, half the time, a
    blob nobody labelled are left void (id 0), as the boundaries of COCO's stuff often are.
    Segment ids are 1, 2, ...: stuff first, then the crowd, then the things back to front.

    Returns:
        PanopticScene.
    """
    g = _generator(seed, generator)
    things = make_scene(height, width, num_objects, generator=g)
    background = _stuff_layout(height, width, g)
    ids = torch.zeros(height, width, dtype=torch.int64)
    segments: dict[int, tuple[int, bool]] = {}

    def paint(mask: Tensor, category: int, crowd: bool = False) -> None:
        if bool(mask.any()):
            segments[len(segments) + 1] = (category, crowd)
            ids[mask] = len(segments)

    for category in STUFF_IDS:
        paint(background == category, category)
    crowd_mask, crowd_category = None, 0
    if float(torch.rand((), generator=g)) < crowd_rate:
        crowd_mask = _crowd_region(height, width, g)
        crowd_category = int(torch.randint(1, len(CLASSES) + 1, (), generator=g))
        paint(crowd_mask, crowd_category, True)
    if void:
        ids[_stuff_edges(background)] = 0
        if float(torch.rand((), generator=g)) < 0.5:
            centre = (_uniform(g, 0, width), _uniform(g, 0, height))
            ids[shape_mask("circle", centre, _uniform(g, 8, 16), 0.0, height, width)] = 0
    for mask, label in zip(things.masks, things.labels.tolist(), strict=True):
        paint(mask, label)
    segments = {k: v for k, v in segments.items() if bool((ids == k).any())}
    image = _STUFF_RGB[background - STUFF_IDS[0]].permute(2, 0, 1)  # [3, H, W]
    image = (image * (1 + 0.05 * torch.randn(height, width, generator=g))).clamp(0, 1)
    if crowd_mask is not None:
        colour = _CLASS_RGB[crowd_category - 1][:, None, None]  # [3, 1, 1]
        image = torch.where(crowd_mask, colour * (0.8 + 0.1 * torch.rand(height, width,
                                                                         generator=g)), image)
    thing_pixels = things.masks.any(0) if len(things) else torch.zeros_like(ids, dtype=torch.bool)
    image = torch.where(thing_pixels, things.image, image).float()
    return PanopticScene(image, ids, segments, background)


def simulate_panoptic_prediction(scene: PanopticScene, miss_rate: float = 0.15,
                                 max_shift: int = 2, stuff_shift: int = 3,
                                 false_positives: tuple[int, int] = (0, 2),
                                 crowd_detections: tuple[int, int] = (1, 3),
                                 label_flip_rate: float = 0.05, seed: int | None = None,
                                 generator: torch.Generator | None = None
                                 ) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
    """A plausible panoptic prediction for ``scene``: ``(ids [H, W], {id: (category, False)})``.

    Stuff is the scene's background moved down by up to ``stuff_shift`` rows and covers every
    pixel (so nothing is predicted void). Things are :func:`simulate_predictions` of the
    non-crowd things, painted in ascending score order (the surest on top). Inside a crowd
    region a few individuals of its class are detected, as real detectors do.
    """
    g = _generator(seed, generator)
    height, width = scene.ids.shape
    masks, cats, crowd = scene.masks()
    thing = torch.isin(cats, torch.tensor(THING_IDS)) & ~crowd
    objects = Scene(scene.image, masks[thing], cats[thing])
    pred = simulate_predictions(objects, miss_rate=miss_rate, max_shift=max_shift,
                                false_positives=false_positives, duplicate_rate=0.0,
                                label_flip_rate=label_flip_rate, generator=g)
    dy = int(torch.randint(0, stuff_shift + 1, (), generator=g))
    stuff = torch.cat([scene.background[:1].expand(dy, width), scene.background[:height - dy]])
    ids = torch.zeros(height, width, dtype=torch.int64)
    segments: dict[int, tuple[int, bool]] = {}

    def paint(mask: Tensor, category: int) -> None:
        if bool(mask.any()):
            segments[len(segments) + 1] = (category, False)
            ids[mask] = len(segments)

    for category in STUFF_IDS:
        paint(stuff == category, category)
    for c in range(int(crowd.sum())):
        region, category = masks[crowd][c], int(cats[crowd][c])
        ys, xs = region.nonzero(as_tuple=True)
        for _ in range(int(torch.randint(crowd_detections[0], crowd_detections[1] + 1, (),
                                         generator=g))):
            k = int(torch.randint(0, len(ys), (), generator=g))
            centre = (float(xs[k]) + 0.5, float(ys[k]) + 0.5)
            paint(shape_mask("circle", centre, _uniform(g, 5, 9), 0.0, height, width), category)
    for i in torch.argsort(pred.scores, stable=True).tolist():
        paint(pred.masks[i], int(pred.labels[i]))
    segments = {k: v for k, v in segments.items() if bool((ids == k).any())}
    return ids, segments


def merge_segments(ids: Tensor, segments: dict[int, tuple[int, bool]], keep: int,
                   absorb: int) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
    """Over-merging: segment ``absorb`` becomes part of segment ``keep``. Returns new copies."""
    for name, sid in (("keep", keep), ("absorb", absorb)):
        if sid not in segments:
            raise ValueError(f"{name}={sid} is not a listed segment")
    if keep == absorb:
        raise ValueError("keep and absorb must be two different segments")
    out = torch.where(ids == absorb, keep, ids)
    return out, {k: v for k, v in segments.items() if k != absorb}


def split_segment(ids: Tensor, segments: dict[int, tuple[int, bool]], sid: int,
                  fraction: float = 0.5) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
    """Over-splitting: cut segment ``sid`` across into an upper and a lower part.

    The upper part keeps ``sid`` and gets the first ``round(fraction * area)`` pixels in
    row-major order (a horizontal cut, the last row shared); the lower part gets a new id,
    one more than the largest listed. Returns new copies.
    """
    if sid not in segments:
        raise ValueError(f"sid={sid} is not a listed segment")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    flat = (ids == sid).flatten()  # [HW]
    rank = flat.cumsum(0)  # [HW] 1-based rank of each pixel of the segment in row-major order
    upper = round(fraction * int(flat.sum()))
    new = max(segments) + 1
    lower = (flat & (rank > upper)).reshape(ids.shape)  # [H, W]
    return torch.where(lower, new, ids), {**segments, new: segments[sid]}


def people_scene(diameters: tuple[float, ...] = (24.0, 24.0), height: int = 64,
                 width: int = 96, category: int = 1, seed: int | None = None,
                 generator: torch.Generator | None = None) -> PanopticScene:
    """One or two people (discs of one class) on grass under sky; two stand side by side,
    touching: the scene of chapter 05's over-merging and over-splitting.

    The ids are 1 (sky), 2 (grass), then 3 (left person) and 4 (right person). Two people touch
    on a vertical pixel border, so equal diameters give mirror images with exactly the same
    number of pixels.
    """
    if len(diameters) not in (1, 2):
        raise ValueError(f"diameters must hold one or two sizes, got {diameters}")
    g = _generator(seed, generator)
    cy = _uniform(g, 0.55, 0.6) * height
    touch = round(_uniform(g, 0.45, 0.55) * width)  # a whole number: a border between pixels
    if len(diameters) == 1:
        centres = [float(touch)]
    else:
        centres = [touch - diameters[0] / 2, touch + diameters[1] / 2]
    background = torch.where(torch.arange(height)[:, None] < height // 3, STUFF_IDS[0],
                             STUFF_IDS[1]).expand(height, width).clone()
    ids = torch.where(background == STUFF_IDS[0], 1, 2)
    segments = {1: (STUFF_IDS[0], False), 2: (STUFF_IDS[1], False)}
    image = _STUFF_RGB[background - STUFF_IDS[0]].permute(2, 0, 1)  # [3, H, W]
    taken = torch.zeros(height, width, dtype=torch.bool)
    for k, (cx, d) in enumerate(zip(centres, diameters, strict=True)):
        person = shape_mask("circle", (cx, cy), d, 0.0, height, width) & ~taken
        taken |= person
        ids = torch.where(person, 3 + k, ids)
        segments[3 + k] = (category, False)
        shade = 1.0 - 0.2 * k
        image = torch.where(person, _CLASS_RGB[category - 1][:, None, None] * shade, image)
    return PanopticScene(image.float(), ids, segments, background)


def _placements(size: float, stride: int, n: int, kind: str, pair: bool,
                g: torch.Generator) -> tuple[Tensor, int]:
    """Centres ``[n, K, 2]`` (x, y) of random placements and the side of the square image."""
    if kind not in ("circle", "square"):
        raise ValueError(f"kind must be 'circle' or 'square', got {kind!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if not size > 0 or n < 0:
        raise ValueError(f"need size > 0 and n >= 0, got size {size} and n {n}")
    reach = (size if pair else size / 2) + 1  # how far the object(s) extend from the anchor
    cells = math.ceil(reach / stride)
    side = stride * (2 * cells + 1)
    # the anchor (the centre, or the point where a pair touches) is uniform over one cell
    anchor = stride * cells + stride * torch.rand(n, 2, generator=g, dtype=torch.float64)
    if not pair:
        return anchor[:, None], side  # [n, 1, 2]
    if kind == "circle":
        angle = math.pi * torch.rand(n, generator=g, dtype=torch.float64)  # [n]
        step = torch.stack([angle.cos(), angle.sin()], dim=1)  # [n, 2]
    else:
        axis = torch.randint(0, 2, (n,), generator=g).double()  # [n] 0: side by side, 1: stacked
        step = torch.stack([1 - axis, axis], dim=1)  # [n, 2]
    half = size / 2 * step  # [n, 2]
    return torch.stack([anchor - half, anchor + half], dim=1), side  # [n, 2, 2]


def scale_trial_masks(size: float, stride: int, n: int, kind: str = "circle",
                      pair: bool = False, seed: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
    """``n`` placements of an object ``size`` pixels across at random sub-pixel positions.

    The object's centre (for a ``pair``, the point where the two touch) is uniform over one
    ``stride x stride`` cell of the feature grid, so every offset from the grid is equally
    likely; the image is a whole number of cells with room around. A pair is two objects of the
    same size touching along a random direction (circles at one point, squares along an edge).
    Pixels are sampled at their centres (a square's edges are left out, so two squares that
    share an edge share no pixel). :func:`scale_trials` gives the same placements as counts.

    Args:
        size: circle diameter or square side, in pixels.
        stride: the feature stride ``s``.
        n: number of placements.
        kind: ``"circle"`` or ``"square"`` (axis-aligned).
        pair: two touching objects instead of one.
        seed, generator: the randomness; ``generator`` wins when both are given.

    Returns:
        Tensor[n, K, H, W] bool, ``K = 2`` for a pair else 1, ``H = W`` a multiple of ``s``.
    """
    centres, side = _placements(size, stride, n, kind, pair, _generator(seed, generator))
    grid = torch.arange(side, dtype=torch.float64) + 0.5  # pixel centres
    dx = grid[None, None, None, :] - centres[..., 0, None, None]  # [n, K, 1, W]
    dy = grid[None, None, :, None] - centres[..., 1, None, None]  # [n, K, H, 1]
    if kind == "circle":
        masks = dx**2 + dy**2 <= (size / 2) ** 2  # [n, K, H, W]
        if pair:  # circles that touch share a pixel only if its centre is the touching point
            masks[:, 1] &= ~masks[:, 0]
        return masks
    return (dx.abs() < size / 2) & (dy.abs() < size / 2)  # [n, K, H, W]


def scale_trials(size: float, stride: int, n: int, kind: str = "circle", pair: bool = False,
                 seed: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """The pixels each object of :func:`scale_trial_masks` covers in each feature cell.

    The same placements (for the same ``seed``), counted row by row without drawing the
    masks: in each pixel row an object covers one run of pixels, and a run's overlap with a
    cell's columns is a clipped difference. ``cell_counts(scale_trial_masks(...), s)`` gives
    the same numbers (a test checks it); this is the fast way.

    Returns:
        Tensor[n, K, H / s, W / s] int64.
    """
    centres, side = _placements(size, stride, n, kind, pair, _generator(seed, generator))
    # NumPy, not torch: many mid-sized integer operations, which torch's intra-op threads
    # slow down several-fold on a busy machine.
    c = centres.numpy()
    dy = (np.arange(side) + 0.5)[None, None, :] - c[..., 1, None]  # [n, K, H] pixel-centre y
    cx = c[..., 0, None]  # [n, K, 1]
    if kind == "circle":
        inside = np.abs(dy) <= size / 2
        reach = np.sqrt(np.clip((size / 2) ** 2 - dy**2, 0, None))  # [n, K, H] half-width
        first = np.ceil(cx - reach - 0.5)  # leftmost pixel x with |x + 0.5 - cx| <= reach
        last = np.floor(cx + reach - 0.5)
    else:
        inside = np.abs(dy) < size / 2
        first = np.broadcast_to(np.floor(cx - size / 2 - 0.5) + 1, dy.shape)  # edges left out
        last = np.broadcast_to(np.ceil(cx + size / 2 - 0.5) - 1, dy.shape)
    length = np.where(inside, last - first + 1, 0).clip(0).astype(np.int32)  # [n, K, H]
    edges = stride * np.arange(side // stride + 1, dtype=np.int32)  # [Wc + 1] cell borders
    # pixels of the run [first, last] left of each border: clamp(border - first, 0, length)
    left_of = np.clip(edges - first.astype(np.int32)[..., None], 0, None)  # [n, K, H, Wc + 1]
    left_of = np.minimum(left_of, length[..., None])
    blocks = left_of.reshape(n, -1, side // stride, stride, side // stride + 1)  # rows by cell
    per_cell_row = blocks.sum(axis=3, dtype=np.int64)  # [n, K, Hc, Wc + 1]
    return torch.from_numpy(np.diff(per_cell_row, axis=-1))  # [n, K, Hc, Wc]


def cell_counts(masks: Tensor, stride: int) -> Tensor:
    """Pixels of each mask in each ``stride x stride`` cell of the feature grid.

    A cell's feature is computed from its ``s x s`` pixels; we say an object **owns** the cell
    when it covers more than half of them, ``2 * count > s**2``. At most one object can.

    Args:
        masks (Tensor[..., H, W]): bool, H and W multiples of ``stride``.

    Returns:
        Tensor[..., H / s, W / s] int64.
    """
    if not is_int(stride) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    h, w = masks.shape[-2:]
    if h % stride or w % stride:
        raise ValueError(f"mask sides {h} x {w} must be multiples of the stride {stride}")
    blocks = masks.reshape(*masks.shape[:-2], h // stride, stride, w // stride, stride)
    return blocks.sum(dim=(-3, -1), dtype=torch.int64)  # [..., H/s, W/s]


def min_resolvable_size(stride: int, coverage: float = 0.5) -> int:
    """The smallest whole side of an axis-aligned square that owns a feature cell wherever it is.

    A square of side ``d`` owns a cell when it covers more than ``coverage`` of its
    ``stride**2`` pixels. Along one axis, an interval of length ``d < 2 s`` placed with a grid
    line through its middle overlaps each of the two cells by ``d / 2``, and no placement does
    worse; so the worst case covers ``(d / 2)**2`` of a cell, and the square is resolved
    wherever it lies exactly when ``(d / 2)**2 > coverage * s**2``, i.e. ``d > 2 s sqrt(c)``.
    Proportional to the stride.

    Args:
        stride: the feature stride ``s >= 1``.
        coverage: the fraction of a cell an object must cover, in (0, 1).

    Returns:
        int, the smallest whole ``d`` with ``d**2 > 4 * coverage * s**2``.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    bound = 4 * coverage * stride**2
    d = math.isqrt(math.floor(bound))  # then step to the exact answer in integers
    while d * d <= bound:
        d += 1
    return d


# ---------------------------------------------------------------------------------------------
# Chapters 09-10: the training set of the compact Mask R-CNN
# ---------------------------------------------------------------------------------------------

_SPLIT_CODES = {"train": 0, "val": 1}
_DEFAULT_LENGTH = {"train": 100_000, "val": 200}
_SIZE_RANGE = (16.0, 64.0)  # circle diameter, square or triangle side: half-sizes 8-32 px
_MIN_VISIBLE = 20  # an object with fewer visible pixels is dropped
_GAP = 2.0  # without overlap, no pixel centre within this distance of another object
_TRIES = 10  # placements tried per object
_MIN_COLOUR_DISTANCE = 0.4  # RGB distance of an object to its local background and the others
_COLOUR_CANDIDATES = 16
# distance from the centre to the farthest point, per size: circle, square, triangle
_REACH = (0.5, 1 / math.sqrt(2), 1 / math.sqrt(3))


class GeneratedDataset(Dataset):
    """A data set whose image ``i`` is drawn alone, from its own seed.

    The generator of image ``i`` is seeded from ``(domain, split, seed, i)`` through
    ``numpy.random.SeedSequence``: any image can be made alone, in any order and in any
    DataLoader worker, ``ds[i]`` is the same every time, train and val share no image, and
    two data sets of different ``DOMAIN`` share none either. A subclass names its ``CLASSES``
    and draws one image in ``_draw(g) -> (image [3, S, S], masks [N, S, S], labels [N])``.

    Args:
        split: ``"train"`` or ``"val"``.
        length: the number of images; default ``DEFAULT_LENGTH[split]``. The first images do
            not depend on it.
        image_size: the side ``S`` of the square images, at least 32.
        seed: a non-negative int; each ``(split, seed)`` is a different set of images.

    ``ds[i]`` returns ``(image, target)``: ``image (Tensor[3, S, S])`` float32 RGB in [0, 1],
    ``target`` an :class:`~course.structures.Instances` with tight ``boxes`` of the masks,
    ``labels``, ``masks``, ``image_size`` ``(S, S)`` and ``image_id`` ``i``. Batch with
    :func:`collate`.
    """

    DOMAIN: int | None = None  # None: seeded from (split, seed, i) alone
    CLASSES: tuple[str, ...] = CLASSES
    DEFAULT_LENGTH = {"train": 100_000, "val": 200}

    def __init__(self, split: str = "train", length: int | None = None,
                 image_size: int = 128, seed: int = 0) -> None:
        if split not in _SPLIT_CODES:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if length is None:
            length = self.DEFAULT_LENGTH[split]
        if not is_int(length) or length < 0:
            raise ValueError(f"length must be an integer >= 0 (or None), got {length!r}")
        if not is_int(image_size) or image_size < 32:
            raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}")
        if not is_int(seed) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.split, self.length = split, int(length)
        self.image_size, self.seed = int(image_size), int(seed)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, length={self.length}, "
                f"image_size={self.image_size}, seed={self.seed})")

    def __getitem__(self, index: int) -> tuple[Tensor, Instances]:
        i = self._check_index(index)
        image, masks, labels = self._draw(self.generator(i))
        size = (self.image_size, self.image_size)
        return image, Instances(masks_to_boxes(masks).float(), labels, None, masks, size, i)

    def _check_index(self, index: int) -> int:
        i = operator.index(index)
        if not -self.length <= i < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of {self.length} "
                             "images")
        return i % self.length

    def _draw(self, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def generator(self, index: int) -> torch.Generator:
        """The generator image ``index`` is drawn from (see the class docstring)."""
        domain = [] if self.DOMAIN is None else [self.DOMAIN]
        entropy = [*domain, _SPLIT_CODES[self.split], self.seed, int(index)]
        state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)
        return torch.Generator().manual_seed(int(state[0]))

    def coco_ground_truth(self) -> list[dict[str, Any]]:
        """Every image's objects as :func:`course.ap.coco_evaluate` takes its ground truth.

        Meant for the val split (each image is drawn, a few milliseconds).

        Returns:
            list of dicts, one per image in index order: ``image_id`` (int), ``labels [N]``,
            ``masks [N, S, S]`` bool, ``boxes [N, 4]`` ``(x1, y1, x2, y2)``.
        """
        out = []
        for i in range(len(self)):
            target = self[i][1]
            out.append({"image_id": i, "labels": target.labels, "masks": target.masks,
                        "boxes": target.boxes})
        return out

    def write_coco(self, path: str | PathLike) -> None:
        """Write the dataset's objects as a COCO instances json (RLE masks, named categories).

        Read it back with :func:`course.coco.load_ground_truth`, or give it to pycocotools.
        """
        categories = {k: name for k, name in enumerate(self.CLASSES, start=1)}
        data = ground_truth_to_coco(self.coco_ground_truth(), categories)
        with open(path, "w") as f:
            json.dump(data, f)


class ShapesDataset(GeneratedDataset):
    """Circles, squares and triangles on a textured background, for training Mask R-CNN.

    Image ``i`` comes from its own generator, seeded from ``(split, seed, i)`` through
    ``numpy.random.SeedSequence``: any image can be made alone, in any order and in any
    DataLoader worker, and ``ds[i]`` is the same every time; the train and val splits share
    no image. Each image holds 1-4 objects of the classes of :data:`CLASSES` (labels 1-3),
    of size (circle diameter, square or triangle side) uniform in 16-64 px, rotated at random,
    centred inside the image (they may be cut by its border). Each object's colour is drawn
    uniformly in RGB, redrawn while it lies closer than 0.4 to the mean background colour
    around it or to an earlier object's colour (16 draws at most, then the farthest is taken),
    and textured by a slight multiplicative noise.

    With ``overlap=False`` the objects keep a gap: pixels of two objects are more than 2 px
    apart, centre to centre, so two never touch, not even diagonally; an object that finds no
    such place in 10 tries is left out. With ``overlap=True`` they are placed freely and later
    objects hide earlier ones. Either way an object with fewer than 20 visible pixels is
    dropped, and its visible pixels are painted as background, so that every object pixel of
    the image belongs to exactly one ground-truth mask. There is always at least one object.

    Args:
        split: ``"train"`` or ``"val"``.
        length: the number of images; default 100,000 for train, 200 for val. The first images
            do not depend on it.
        overlap: let objects overlap (and occlude each other).
        image_size: the side ``S`` of the square images, at least 32.
        seed: a non-negative int; each ``(split, seed)`` is a different set of images.

    ``ds[i]`` returns ``(image, target)``: ``image (Tensor[3, S, S])`` float32 RGB in [0, 1],
    and ``target`` an :class:`~course.structures.Instances` with ``boxes (Tensor[N, 4])``
    float32 tight ``(x1, y1, x2, y2)`` boxes of the visible masks
    (:func:`course.boxes.masks_to_boxes`), ``labels (Tensor[N])`` int64, ``masks (Tensor[N, S,
    S])`` bool visible masks in drawing order (back to front, pairwise disjoint), ``scores``
    None, ``image_size`` ``(S, S)`` and ``image_id`` ``i``. Batch with :func:`collate`.
    """

    def __init__(self, split: str = "train", length: int | None = None, overlap: bool = False,
                 image_size: int = 128, seed: int = 0) -> None:
        super().__init__(split, length, image_size, seed)
        self.overlap = bool(overlap)

    def __repr__(self) -> str:
        return (f"ShapesDataset(split={self.split!r}, length={self.length}, "
                f"overlap={self.overlap}, image_size={self.image_size}, seed={self.seed})")

    def _draw(self, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """One image from ``g``: ``(image [3, S, S], masks [N, S, S], labels [N])``."""
        s = self.image_size
        background, shade = _textures(s, g)  # [3, S, S], [S, S]
        ids = torch.zeros(s, s, dtype=torch.int64)  # [S, S] 1 + index of the object on top
        labels: list[int] = []
        colours: list[Tensor] = []
        for k in range(int(torch.randint(1, 5, (), generator=g))):
            placed = self._place(ids, g, first=k == 0)
            if placed is None:
                continue
            label, window, mask = placed
            local = background[(slice(None), *window)].mean(dim=(1, 2))  # [3]
            colours.append(_distinct_colour(torch.stack([local, *colours]), g))
            ids[window].masked_fill_(mask, len(labels) + 1)  # in place, through the view
            labels.append(label)
        return _render(background, shade, ids, labels, colours)

    def _place(self, ids: Tensor, g: torch.Generator, first: bool,
               allowed: Tensor | None = None, sizes: tuple[float, float] = _SIZE_RANGE
               ) -> tuple[int, tuple[slice, slice], Tensor] | None:
        """A random shape where it may go: ``(label, window, mask in the window)`` or None.

        It must show at least ``_MIN_VISIBLE`` pixels inside the image and, without overlap,
        keep ``_GAP`` away from the objects already in ``ids``; with ``allowed`` (Tensor[S, S]
        bool) every pixel of it must lie there. The first object falls back to the image
        centre after the last try, so that every image has one (not with ``allowed``).
        """
        s = self.image_size
        for attempt in range(_TRIES):
            u = torch.rand(5, generator=g, dtype=torch.float64).tolist()
            label = 1 + min(int(u[0] * len(CLASSES)), len(CLASSES) - 1)
            size = sizes[0] + (sizes[1] - sizes[0]) * u[1]
            centre = (s * u[3], s * u[4])
            if first and allowed is None and attempt == _TRIES - 1:
                centre = (s / 2, s / 2)
            window, field = _shape_field(label, centre, size, 2 * math.pi * u[2], s, s, _GAP)
            mask = field <= 0
            if int(mask.sum()) < _MIN_VISIBLE:
                continue
            if not self.overlap and bool(((field <= _GAP) & (ids[window] > 0)).any()):
                continue
            if allowed is not None and not bool(allowed[window][mask].all()):
                continue
            return label, window, mask
        return None


def collate(batch: list[tuple[Tensor, Instances]]) -> tuple[Tensor, list[Instances]]:
    """Stack images of one size and keep their targets in a list (a DataLoader ``collate_fn``).

    Args:
        batch: ``(image [3, H, W], target)`` pairs, as :class:`ShapesDataset` gives them.

    Returns:
        ``(images [B, 3, H, W], targets)``, ``targets`` a list of B :class:`Instances`.

    Raises:
        TypeError naming the item and what it should be, when an item is not an ``(image
        Tensor[3, H, W], Instances)`` pair; ValueError when the images differ in size (then
        use :func:`collate_list`).
    """
    images, targets = collate_list(batch)
    for i, image in enumerate(images):
        if image.shape != images[0].shape:
            raise ValueError(f"collate stacks images of one size, but item 0 is "
                             f"{list(images[0].shape)} and item {i} {list(image.shape)}; for "
                             "images of several sizes use collate_fn=collate_list (train's "
                             "collate=collate_list), the model pads them")
    return torch.stack(images), targets


def collate_list(batch: list[tuple[Tensor, Instances]]) -> tuple[list[Tensor], list[Instances]]:
    """Like :func:`collate`, but the images stay a list, so they may differ in size.

    :class:`course.model.MaskRCNN` takes such a list and pads the images itself.

    Returns:
        ``(images, targets)``: a list of B ``Tensor[3, H_i, W_i]`` and one of B
        :class:`Instances`.
    """
    if len(batch) == 0:
        raise ValueError("collate needs at least one (image, target) pair")
    pairs = [_pair(item, i) for i, item in enumerate(batch)]
    return [image for image, _ in pairs], [target for _, target in pairs]


def _pair(item: Any, i: int) -> tuple[Tensor, Instances]:
    """A data set's item, checked: ``(image Tensor[3, H, W], Instances)``."""
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise TypeError(f"item {i} of the batch must be a pair (image, target), got "
                        f"{_describe(item)}")
    image, target = item
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise TypeError(f"item {i}: the image must be a Tensor[3, H, W], got "
                        f"{_describe(image)}")
    if not isinstance(target, Instances):
        raise TypeError(f"item {i}: the target must be a course.structures.Instances, got "
                        f"{_describe(target)}; e.g. Instances(boxes, labels, masks=masks, "
                        "image_id=index)")
    return image, target


def _describe(value: Any) -> str:
    """:func:`course.structures.describe` read as a noun phrase, with a sequence's length."""
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return ("a Tensor of " if isinstance(value, Tensor) else "a ") + describe(value)


# ---------------------------------------------------------------------------------------------
# Chapter 11: panoptic scenes for a model with a semantic head
# ---------------------------------------------------------------------------------------------

SEMANTIC_CATEGORIES = (0, *STUFF_IDS)
"""The panoptic category of each class of :class:`PanopticShapesDataset`'s semantic maps:
class 0 is "a thing is here", classes 1, 2, 3 are sky, grass and water."""

_THING_SIZES = (16.0, 44.0)
_DECOY_SIZES = (12.0, 32.0)
_DECOY_TAG = 100  # added to a decoy's label while it is drawn, to tell it from the things


class PanopticShapesDataset(ShapesDataset):
    """Panoptic scenes to train on: sky, grass and water ("stuff") with shapes ("things").

    Each image is a landscape: sky above a wavy horizon (at 30-50% of the height), grass
    below, half the time water along the bottom (its shore at 80-90%), every region its own
    jittered colour with a grain. The things (1-5 circles, squares and triangles, sizes 16-44
    px, random colours kept apart from the ground around them and from each other, never
    touching) stand entirely on the grass: a thing is never in the sky or the water, so a
    model that puts one there is wrong (a "flying car"). To make that a mistake a model can
    make, the sky holds 0-2 *decoys*: shapes of the same kinds and colours (12-32 px) that
    belong to the sky (think of a kite, or a car on a billboard) and are labelled sky. A
    one-pixel band where two stuff regions meet is left unlabelled (void), as COCO's stuff
    boundaries often are.

    Image ``i`` is drawn from its own generator, as in :class:`ShapesDataset` (whose
    arguments it takes, without ``overlap``), and never equals a :class:`ShapesDataset` image.

    ``ds[i]`` returns ``(image, target)`` like :class:`ShapesDataset` (``target`` holds the
    things), with ``target.semantic`` the ``Tensor[S, S]`` int64 class of each pixel for a
    semantic head: 0 thing, 1 sky, 2 grass, 3 water (:data:`SEMANTIC_CATEGORIES`), -1 void.
    :meth:`panoptic` gives the COCO panoptic encoding of an image.
    """

    DOMAIN = 11
    semantic_categories = SEMANTIC_CATEGORIES
    thing_ids = THING_IDS
    stuff_ids = STUFF_IDS

    def __init__(self, split: str = "train", length: int | None = None, image_size: int = 128,
                 seed: int = 0) -> None:
        super().__init__(split, length, False, image_size, seed)

    def __repr__(self) -> str:
        return GeneratedDataset.__repr__(self)

    def __getitem__(self, index: int) -> tuple[Tensor, Instances]:
        i = self._check_index(index)
        image, masks, labels, semantic = self._draw_scene(self.generator(i))
        size = (self.image_size, self.image_size)
        return image, Instances(masks_to_boxes(masks).float(), labels, None, masks, size, i,
                                semantic)

    def panoptic(self, index: int) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
        """Image ``index``'s ground truth as ``(ids [S, S] int64, {id: (category, False)})``.

        Stuff segments (one per category present) get ids 1, 2, ...; things the next ids in
        drawing order; void pixels are 0. Categories: things :data:`THING_IDS`, stuff
        :data:`STUFF_IDS`, as :func:`course.pq.panoptic_quality` takes them.
        """
        target = self[index][1]
        ids = torch.zeros(target.image_size, dtype=torch.int64)
        segments: dict[int, tuple[int, bool]] = {}
        for k, category in enumerate(SEMANTIC_CATEGORIES[1:], start=1):
            region = target.semantic == k
            if bool(region.any()):
                segments[len(segments) + 1] = (category, False)
                ids[region] = len(segments)
        for mask, label in zip(target.masks, target.labels.tolist(), strict=True):
            segments[len(segments) + 1] = (label, False)
            ids[mask] = len(segments)
        return ids, segments

    def pairs(self, index: int) -> Tensor:
        """Image ``index``'s ground truth in the ``(category, instance)`` pair encoding.

        Things are numbered 1, 2, ... within their category in drawing order, stuff has
        instance 0, void pixels are ``(0, 0)`` (:func:`course.pq.panoptic_to_pairs`).

        Returns:
            Tensor[S, S, 2] int64.
        """
        return panoptic_to_pairs(*self.panoptic(index), void_category=0)

    def _draw_scene(self, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One scene: ``(image [3, S, S], masks [N, S, S], labels [N], semantic [S, S])``."""
        s = self.image_size
        layout = _landscape_layout(s, g)  # [S, S] stuff category
        background, shade = _landscape(layout, g)
        ids = torch.zeros(s, s, dtype=torch.int64)
        labels: list[int] = []
        colours: list[Tensor] = []
        wanted = [(layout == STUFF_IDS[1], _THING_SIZES, 0)] * int(
            torch.randint(1, 6, (), generator=g))
        wanted += [(layout == STUFF_IDS[0], _DECOY_SIZES, _DECOY_TAG)] * int(
            torch.randint(0, 3, (), generator=g))
        for allowed, sizes, tag in wanted:
            placed = self._place(ids, g, False, allowed, sizes)
            if placed is None:
                continue
            label, window, mask = placed
            local = background[(slice(None), *window)].mean(dim=(1, 2))  # [3]
            colours.append(_distinct_colour(torch.stack([local, *colours]), g))
            ids[window].masked_fill_(mask, len(labels) + 1)
            labels.append(label + tag)
        image, masks, drawn = _render(background, shade, ids, labels, colours)
        thing = drawn < _DECOY_TAG  # decoys are part of the sky
        return image, masks[thing], drawn[thing], _semantic_map(layout, masks[thing])


def _landscape_layout(size: int, g: torch.Generator) -> Tensor:
    """Sky above a wavy horizon, grass below it, half the time water along the bottom.

    Returns:
        Tensor[S, S] int64 stuff category of each pixel.
    """
    sky, grass, water = STUFF_IDS
    ys = torch.arange(size, dtype=torch.float64)[:, None] + 0.5  # [S, 1]
    xs = torch.arange(size, dtype=torch.float64)[None, :] / size  # [1, S]
    u = torch.rand(6, generator=g, dtype=torch.float64).tolist()
    horizon = size * (0.3 + 0.2 * u[0] + 0.04 * torch.sin(2 * math.pi * (
        (0.5 + 1.5 * u[1]) * xs + u[2])))  # [1, S]
    layout = torch.where(ys < horizon, sky, grass)  # [S, S]
    if u[3] < 0.5:
        shore = size * (0.8 + 0.1 * u[4] + 0.03 * torch.sin(2 * math.pi * (2 * xs + u[5])))
        layout = torch.where(ys >= shore, water, layout)
    return layout.to(torch.int64)


def _landscape(layout: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Colour a stuff layout: each region its jittered colour, a grain; and a texture.

    Returns:
        ``(background [3, S, S] float32 in [0, 1], shade [S, S] float32)``.
    """
    size = layout.shape[0]
    colours = (_STUFF_RGB + 0.08 * torch.randn(3, 3, generator=g)).clamp(0, 1)  # [K, 3]
    noise = torch.randn(2, size, size, generator=g)  # [2, S, S]
    background = colours[layout - STUFF_IDS[0]].permute(2, 0, 1)  # [3, S, S]
    return (background + 0.03 * noise[0]).clamp(0, 1), 1 + 0.06 * noise[1]


def _semantic_map(layout: Tensor, things: Tensor) -> Tensor:
    """Semantic classes of a scene: 0 on things, 1-3 the stuff under the rest, -1 void.

    The void is the band of :func:`_stuff_edges`, except on things.

    Returns:
        Tensor[S, S] int64.
    """
    semantic = layout - STUFF_IDS[0] + 1
    semantic[_stuff_edges(layout)] = -1
    if len(things):
        semantic[things.any(dim=0)] = 0
    return semantic


def _shape_field(label: int, centre: tuple[float, float], size: float, angle: float,
                 height: int, width: int, margin: float) -> tuple[tuple[slice, slice], Tensor]:
    """A shape as a field over the window around it: ``f <= 0`` exactly where it is.

    The fast form of :func:`shape_mask` (the same pixels): the field is computed only over the
    shape's window, widened by ``margin`` and cut to the image. A circle's ``f`` is the signed
    distance to its outline; a polygon's is the largest signed distance to the lines of its
    sides (minus the distance to the outline inside, at most the distance to the shape outside),
    so ``f <= margin`` holds every pixel centre within ``margin`` of the shape.

    Args:
        label: 1 circle, 2 square, 3 triangle (:data:`CLASSES`).
        centre: ``(cx, cy)``; ``size``: diameter or side; ``angle``: rotation in radians.
        height, width: the image size.
        margin: how far around the shape the window reaches.

    Returns:
        ``((rows, cols), f)``: the window as slices and ``f`` Tensor[h, w] float64.
    """
    cx, cy = centre
    reach = size * _REACH[label - 1] + margin
    x0, x1 = max(0, math.floor(cx - reach)), min(width, math.ceil(cx + reach) + 1)
    y0, y1 = max(0, math.floor(cy - reach)), min(height, math.ceil(cy + reach) + 1)
    xs = torch.arange(x0, x1, dtype=torch.float64) + 0.5 - cx  # [w]
    ys = torch.arange(y0, y1, dtype=torch.float64) + 0.5 - cy  # [h]
    window = (slice(y0, y1), slice(x0, x1))
    if label == 1:
        return window, torch.hypot(xs[None, :], ys[:, None]) - size / 2  # [h, w]
    sides, offset, apothem = (4, 0.0, size / 2) if label == 2 else \
        (3, math.pi / 2, size / (2 * math.sqrt(3)))
    a = angle + offset + 2 * math.pi / sides * torch.arange(sides, dtype=torch.float64)  # [K]
    along = a.cos()[:, None, None] * xs[None, None, :] + a.sin()[:, None, None] * ys[None, :, None]
    return window, along.amax(dim=0) - apothem  # [K, h, w] -> [h, w]


def _textures(size: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """A background and the objects' texture, for a ``size x size`` image.

    The background is a random colour with a gradient in a random direction and a grain, the
    idea of :func:`_background` at half its cost (the grain is one channel, not three); the
    texture is the factor that object colours are multiplied by, a slight noise around 1.

    Returns:
        ``(background [3, S, S] float32 in [0, 1], shade [S, S] float32)``.
    """
    base = 0.35 + 0.3 * torch.rand(3, 1, 1, generator=g)  # [3, 1, 1]
    angle = 2 * math.pi * float(torch.rand((), generator=g))
    steps = torch.linspace(-0.08, 0.08, size)  # the gradient spans 0.16 across the image
    ramp = math.cos(angle) * steps[None, :] + math.sin(angle) * steps[:, None]  # [S, S]
    noise = torch.randn(2, size, size, generator=g)  # [2, S, S]
    background = (base + (ramp + 0.04 * noise[0])).clamp(0, 1)  # [3, S, S]
    return background, 1 + 0.06 * noise[1]


def _distinct_colour(references: Tensor, g: torch.Generator) -> Tensor:
    """A random RGB colour at least ``_MIN_COLOUR_DISTANCE`` from each of ``references [R, 3]``.

    Draws a few candidates at once and takes the first that is far enough (the farthest if
    none is). Returns Tensor[3] float32.
    """
    candidates = torch.rand(_COLOUR_CANDIDATES, 3, generator=g)  # [C, 3]
    distance = torch.cdist(candidates, references.float()).amin(dim=1)  # [C]
    far = distance >= _MIN_COLOUR_DISTANCE
    pick = int(far.int().argmax()) if bool(far.any()) else int(distance.argmax())
    return candidates[pick]


def _render(background: Tensor, shade: Tensor, ids: Tensor, labels: list[int],
            colours: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Paint the objects of the id map; drop those with fewer than ``_MIN_VISIBLE`` pixels.

    Args:
        background (Tensor[3, H, W]), shade (Tensor[H, W]): the background and the objects'
            texture.
        ids (Tensor[H, W]): int64, ``k + 1`` where object ``k`` is on top, 0 elsewhere.
        labels, colours: each object's class and RGB colour (Tensor[3]).

    Returns:
        ``(image [3, H, W] float32, masks [N, H, W] bool, labels [N] int64)``.
    """
    height, width = ids.shape
    if not labels:
        return (background, torch.zeros(0, height, width, dtype=torch.bool),
                torch.zeros(0, dtype=torch.int64))
    masks = ids[None] == torch.arange(1, len(labels) + 1)[:, None, None]  # [n, H, W]
    keep = masks.flatten(1).sum(dim=1) >= _MIN_VISIBLE  # [n]
    masks = masks[keep]  # [N, H, W]
    cover = masks.flatten(1).float()  # [N, HW]
    # one matrix product paints every object its colour (0 where there is none)
    colour = (torch.stack(colours)[keep].T @ cover).view(3, height, width)  # [3, H, W]
    painted = cover.sum(dim=0).view(height, width)  # [H, W] 1 on objects, else 0
    image = torch.lerp(background, colour * shade, painted).clamp(0, 1)
    return image, masks, torch.tensor(labels, dtype=torch.int64)[keep]
