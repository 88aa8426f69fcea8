"""Applications (chapter 12): instance segmentation in microscopy and in aerial images.

The course text ends with the fields that use instance segmentation, "from analysing our
planet from space to decoding the building blocks of life". This module makes two of them,
from seeds like :class:`course.data.ShapesDataset` (nothing is downloaded), and the
measurements the chapter takes on them:

- **microscopy** (:class:`CellsDataset`): many cells of one kind, alike in colour and texture
  and packed so that many touch. The classical pipeline, a threshold (:func:`otsu_threshold`)
  and then :func:`connected_components` or a watershed on the distance transform
  (:func:`watershed_cells`, which floods with :func:`flood`), gets the *pixels* right; whether
  it gets the *cells* right, touching ones above all, is what :func:`cell_pq_stats` measures
  with Panoptic Quality (:mod:`course.pq`) and :func:`foreground_accuracy` cannot.
  :func:`segment_outcomes` sorts the cells into match, merge, split and miss.
- **aerial images** (:class:`AerialDataset`): many buildings 4-16 px across on a 128 px field,
  the regime where the feature stride matters (chapters 05 and 07). :func:`object_sizes`,
  :func:`size_bins`, :func:`matched_iou` and :func:`recall_by_size` give the recall and the
  mean IoU per size; :func:`owns_cell` says which objects own a cell of a stride-``s``
  feature map; :func:`model_config` is the model with or without its stride-4 level.

A model's detections (overlapping masks with scores) become one segment per pixel with
:func:`paint_instances`, the highest score on top.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from course.data import GeneratedDataset, cell_counts
from course.fusion import paste_by_score
from course.masks import as_masks, intersection_counts, mask_iou
from course.matching import greedy_match
from course.model import MaskRCNNConfig
from course.panoptic_format import is_int
from course.pq import PQStats, as_id_map, classify_failures, pq_stats

CELL_CLASSES = ("cell",)
"""The one thing class of :class:`CellsDataset` (label 1)."""
AERIAL_CLASSES = ("building",)
"""The one thing class of :class:`AerialDataset` (label 1)."""
CELL, BACKGROUND = 1, 2
"""Panoptic categories of :func:`cell_pq_stats`: cells are things, the background is stuff."""


def model_config(finest_level: int = 2) -> MaskRCNNConfig:
    """The compact Mask R-CNN for the chapter's crowded one-class images.

    The default config (chapter 09) with one class, up to 100 detections per image instead of
    50 and 150 proposals per image at inference instead of 50, since an image holds up to 40
    objects. ``finest_level`` 3 drops ``P2``: the pyramid is ``P3..P6`` (strides 8-64) with
    the same anchor sizes, so that the finest stride is the one thing that changes.
    """
    if finest_level not in (2, 3):
        raise ValueError(f"finest_level must be 2 or 3, got {finest_level!r}")
    levels = tuple(range(finest_level, finest_level + 4))
    return MaskRCNNConfig(num_classes=1, levels=levels, detections_per_image=100,
                          rpn_post_nms_top_n=(200, 150))


_DEFAULT_LENGTH = {"train": 100_000, "val": 100}


def _uniform(g: torch.Generator, n: int, low: float, high: float) -> Tensor:
    """``n`` draws uniform in ``[low, high)``: Tensor[n] float32."""
    return low + (high - low) * torch.rand(n, generator=g)


def _blur(x: Tensor) -> Tensor:
    """A light optical blur: ``[C, H, W]`` convolved with the separable kernel (1, 2, 1) / 4."""
    k = torch.tensor([0.25, 0.5, 0.25])
    c = x.shape[0]
    x = F.conv2d(F.pad(x[None], (1, 1, 0, 0), mode="replicate"), k.view(1, 1, 1, 3).expand(
        c, 1, 1, 3), groups=c)  # [1, C, H, W] along rows
    x = F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), k.view(1, 1, 3, 1).expand(
        c, 1, 3, 1), groups=c)  # [1, C, H, W] along columns
    return x[0]


def _pixel_grid(size: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates ``(xs [1, 1, S], ys [1, S, 1])`` (pixel ``i`` spans [i, i+1))."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    return grid.view(1, 1, size), grid.view(1, size, 1)


# ---------------------------------------------------------------------------------------------
# Microscopy: touching cells
# ---------------------------------------------------------------------------------------------

_CELLS_PER_AREA = (16, 28)  # cells in a 128 x 128 image (scaled with the area)
_CELL_SEMI_AXIS = (6.5, 9.0)  # the longer semi-axis of a cell, pixels
_CELL_ASPECT = (0.6, 1.0)  # shorter / longer semi-axis
_CELL_SPACING = 1.25  # centres at least this many mean semi-axes apart
_CLUSTER_SPREAD = 0.12  # the spread of a cluster, a fraction of the image side
_LONERS = 0.2  # fraction of cells placed anywhere rather than in a cluster
_MIN_CELL_PIXELS = 20
_CANDIDATES = 32  # centres drawn at once for each cell; the first far enough is taken


class CellsDataset(GeneratedDataset):
    """Fluorescence-microscopy-like images: cells of one kind, many of them touching.

    Each image holds 16-28 cells (for 128 x 128; scaled with the area), ellipses with a longer
    semi-axis of 6.5-9 px and an aspect of 0.6-1, most of them in one to three clusters and a
    fifth scattered. Cell centres keep 1.25 mean semi-axes apart, so neighbours in a cluster
    overlap a little: the pixels they share go to the cell whose ellipse they lie deeper in
    (the smaller normalised radius), which cuts a straight-ish border between two touching
    cells, as membranes do. A cell is bright, its brightness drawn from a narrow range and
    falling towards its edge (a dome, so a border between two cells is slightly darker than
    their middles, nothing more); every cell has the image's one colour, and the image is
    blurred and noisy. The background is dark with an uneven illumination. Cells with fewer
    than 20 visible pixels are dropped (painted as background). Label 1 is ``"cell"``.
    """

    DOMAIN = 1
    CLASSES = CELL_CLASSES
    DEFAULT_LENGTH = _DEFAULT_LENGTH

    def _draw(self, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        s = self.image_size
        centres = self._centres(g)  # [N, 2]
        n = len(centres)
        semi = _uniform(g, n, *_CELL_SEMI_AXIS)  # [N]
        axes = torch.stack([semi, semi * _uniform(g, n, *_CELL_ASPECT)], dim=1)  # [N, 2]
        angles = _uniform(g, n, 0.0, math.pi)  # [N]
        ids, radius = cell_layout(centres, axes, angles, s)  # [S, S], [S, S]
        masks = ids[None] == torch.arange(1, n + 1)[:, None, None]  # [N, S, S]
        masks = masks[masks.flatten(1).sum(1) >= _MIN_CELL_PIXELS]  # [N', S, S]
        return self._paint(masks, radius, g), masks, torch.ones(len(masks), dtype=torch.int64)

    def _centres(self, g: torch.Generator) -> Tensor:
        """Cell centres ``[N, 2]`` (x, y): clustered, at least the spacing apart."""
        s = self.image_size
        low, high = (round(c * s * s / 128**2) for c in _CELLS_PER_AREA)
        count = int(torch.randint(low, high + 1, (), generator=g))
        clusters = _uniform(g, 6, 0.2 * s, 0.8 * s).view(3, 2)[:int(torch.randint(
            1, 4, (), generator=g))]  # [K, 2]
        spacing = _CELL_SPACING * sum(_CELL_SEMI_AXIS) / 2
        placed: list[Tensor] = []
        for _ in range(count):
            home = clusters[int(torch.randint(len(clusters), (), generator=g))]  # [2]
            near = home + _CLUSTER_SPREAD * s * torch.randn(_CANDIDATES, 2, generator=g)
            anywhere = _uniform(g, 2 * _CANDIDATES, 0, s).view(_CANDIDATES, 2)
            loner = torch.rand(_CANDIDATES, 1, generator=g) < _LONERS
            candidates = torch.where(loner, anywhere, near).clamp(0, s)  # [C, 2]
            if placed:
                gap = torch.cdist(candidates, torch.stack(placed)).amin(dim=1)  # [C]
                free = (gap >= spacing).nonzero()
                if not len(free):
                    continue
                candidates = candidates[free[0]]
            placed.append(candidates[0])
        return torch.stack(placed)

    def _paint(self, masks: Tensor, radius: Tensor, g: torch.Generator) -> Tensor:
        """The image of the cells ``masks [N, S, S]``: Tensor[3, S, S] float32 in [0, 1]."""
        s = self.image_size
        level = _uniform(g, len(masks), 0.6, 0.75)  # [N] brightness of each cell
        inside = masks.any(0)  # [S, S]
        cells = (level[:, None, None] * masks).sum(0)  # [S, S] each pixel its cell's level
        dome = 1 - 0.35 * radius.clamp(max=1) ** 2  # [S, S] darker towards the edge
        xs, ys = _pixel_grid(s)
        centre = _uniform(g, 2, 0.0, s)
        light = 1 - 0.5 * ((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2)[0] / (2 * s * s)
        background = _uniform(g, 1, 0.06, 0.12) * light  # [S, S] uneven illumination
        grey = torch.where(inside, cells * dome, background)  # [S, S]
        colour = (torch.tensor([0.35, 0.95, 0.45]) + 0.05 * torch.randn(3, generator=g))
        image = _blur(grey[None]) * colour.clamp(0, 1)[:, None, None]  # [3, S, S]
        image = image + 0.03 * torch.randn(1, s, s, generator=g)  # sensor noise, all channels
        return image.clamp(0, 1).float()


def cell_layout(centres: Tensor, axes: Tensor, angles: Tensor, size: int
                ) -> tuple[Tensor, Tensor]:
    """Give each pixel to the ellipse it lies deepest in: the id map of touching cells.

    Ellipse ``k`` has centre ``centres[k]``, semi-axes ``axes[k]`` and is rotated by
    ``angles[k]``; a pixel centre's *normalised radius* in it is ``sqrt((u/a)^2 + (v/b)^2)``
    in the ellipse's frame (1 on its outline). A pixel inside at least one ellipse goes to the
    one with the smallest normalised radius, so overlapping ellipses become cells that touch
    along a border and never overlap.

    Args:
        centres (Tensor[N, 2]): ``(x, y)`` in pixels.
        axes (Tensor[N, 2]): semi-axes ``(a, b)``, positive.
        angles (Tensor[N]): rotations in radians.
        size: the image side ``S``.

    Returns:
        ``(ids [S, S] int64, k + 1 for ellipse k and 0 outside all, radius [S, S] float32,
        the normalised radius in the pixel's own ellipse)``.
    """
    n = len(centres)
    if centres.shape != (n, 2) or axes.shape != (n, 2) or angles.shape != (n,):
        raise ValueError(f"centres and axes must be [N, 2] and angles [N], got "
                         f"{list(centres.shape)}, {list(axes.shape)}, {list(angles.shape)}")
    if n and not bool((axes > 0).all()):
        raise ValueError("axes must be positive")
    if n == 0:
        return torch.zeros(size, size, dtype=torch.int64), torch.ones(size, size)
    xs, ys = _pixel_grid(size)
    dx = xs - centres[:, 0, None, None].float()  # [N, 1, S]
    dy = ys - centres[:, 1, None, None].float()  # [N, S, 1]
    cos, sin = angles.cos()[:, None, None].float(), angles.sin()[:, None, None].float()
    u, v = cos * dx + sin * dy, cos * dy - sin * dx  # [N, S, S] in each ellipse's frame
    u, v = u / axes[:, 0, None, None], v / axes[:, 1, None, None]
    squared, owner = (u * u + v * v).min(dim=0)  # [S, S] the smallest squared radius
    return torch.where(squared <= 1, owner + 1, 0), squared.sqrt()


# ---------------------------------------------------------------------------------------------
# Aerial images: many tiny buildings
# ---------------------------------------------------------------------------------------------

_BUILDINGS_PER_AREA = (20, 40)  # buildings in a 128 x 128 image (scaled with the area)
_BUILDING_SIZE = (4.0, 16.0)  # sqrt of the area, pixels; drawn log-uniformly
_BUILDING_ASPECT = (1.0, 1.8)  # long side / short side
_BUILDING_GAP = 2  # pixels between two buildings (and between a building and a road)
_MIN_BUILDING_PIXELS = 8
_TRIES = 6
_SHADOW = (1, 1)  # (dy, dx): where the shadow falls, the sun being to the upper left
# roof colours: terracotta, grey, pale concrete, dark slate
_ROOFS = torch.tensor([[0.72, 0.36, 0.26], [0.62, 0.62, 0.64], [0.88, 0.85, 0.78],
                       [0.28, 0.30, 0.36]])


class AerialDataset(GeneratedDataset):
    """Overhead images of a countryside: many small buildings, a road or two, fields.

    Each image holds up to 20-40 buildings (for 128 x 128; scaled with the area): rotated
    rectangles whose size, the square root of the area, is log-uniform in 4-16 px (as many
    buildings of 4-8 px as of 8-16 px), with a long-to-short side ratio of 1-1.8. Buildings stay
    2 px apart and off the roads; one that finds no place in 6 tries is left out, and one with
    fewer than 8 pixels is dropped. A roof has one of four colours (terracotta, grey, pale
    concrete, dark slate), jittered, and the one farthest from the ground colour is taken when
    the drawn one is too close to it; each building casts a one-pixel shadow to the lower
    right (not part of its mask). The ground is a patchwork of greens and browns that varies
    slowly, with grain. Label 1 is ``"building"``.
    """

    DOMAIN = 2
    CLASSES = AERIAL_CLASSES
    DEFAULT_LENGTH = _DEFAULT_LENGTH

    def _draw(self, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        s = self.image_size
        image = self._ground(g)  # [3, S, S]
        roads = self._roads(g)  # [S, S]
        image = torch.where(roads, 0.5 + 0.03 * torch.randn(1, s, s, generator=g), image)
        taken = _grow(roads, _BUILDING_GAP)  # [S, S] where no building may go
        low, high = (round(c * s * s / 128**2) for c in _BUILDINGS_PER_AREA)
        masks = []
        for _ in range(int(torch.randint(low, high + 1, (), generator=g))):
            mask = _place_building(taken, g)  # marks its place in taken
            if mask is not None and int(mask.sum()) >= _MIN_BUILDING_PIXELS:
                masks.append(mask)
        masks_t = torch.stack(masks) if masks else torch.zeros(0, s, s, dtype=torch.bool)
        return self._paint(image, masks_t, g), masks_t, torch.ones(len(masks_t),
                                                                   dtype=torch.int64)

    def _ground(self, g: torch.Generator) -> Tensor:
        """Fields: a coarse random patchwork, smoothly upsampled, with grain: [3, S, S]."""
        s = self.image_size
        base = torch.tensor([0.36, 0.46, 0.26]) + torch.tensor([0.10, 0.06, 0.04]) * (
            torch.rand(3, generator=g) - 0.5)  # [3] the region's green-brown
        coarse = base[:, None, None] + 0.07 * torch.randn(1, 6, 6, generator=g) * torch.tensor(
            [1.0, 0.8, 0.6])[:, None, None]  # [3, 6, 6]
        ground = F.interpolate(coarse[None], size=(s, s), mode="bilinear",
                               align_corners=False)[0]  # [3, S, S]
        return (ground + 0.025 * torch.randn(1, s, s, generator=g)).clamp(0, 1)

    def _roads(self, g: torch.Generator) -> Tensor:
        """Zero to two straight roads, 4-6 px wide: Tensor[S, S] bool."""
        s = self.image_size
        xs, ys = _pixel_grid(s)
        roads = torch.zeros(s, s, dtype=torch.bool)
        for _ in range(int(torch.randint(0, 3, (), generator=g))):
            angle = float(_uniform(g, 1, 0.0, math.pi))
            through = _uniform(g, 2, 0.2 * s, 0.8 * s)  # [2] a point on the road
            across = (xs - through[0]) * math.sin(angle) - (ys - through[1]) * math.cos(angle)
            roads |= across[0].abs() <= float(_uniform(g, 1, 2.0, 3.0))
        return roads

    def _paint(self, image: Tensor, masks: Tensor, g: torch.Generator) -> Tensor:
        """Shadows, then roofs, over ``image [3, S, S]``; returns Tensor[3, S, S] float32."""
        if not len(masks):
            return image.float()
        s = self.image_size
        union = masks.any(0)  # [S, S]
        shadow = torch.zeros_like(union)
        shadow[_SHADOW[0]:, _SHADOW[1]:] = union[:s - _SHADOW[0], :s - _SHADOW[1]]
        image = torch.where(shadow & ~union, 0.55 * image, image)
        ground = (image[:, None] * masks[None]).flatten(2).sum(2) / masks.flatten(1).sum(1)
        pick = torch.randint(len(_ROOFS), (len(masks),), generator=g)  # [N]
        distance = torch.cdist(_ROOFS, ground.T)  # [R, N] each roof colour to each ground
        close = distance[pick, torch.arange(len(masks))] < 0.3
        pick = torch.where(close, distance.argmax(dim=0), pick)
        roofs = (_ROOFS[pick] + 0.04 * torch.randn(len(masks), 3, generator=g)).clamp(0, 1)
        painted = (roofs.T @ masks.flatten(1).float()).view(3, s, s)  # [3, S, S]
        grain = 1 + 0.04 * torch.randn(1, s, s, generator=g)
        return torch.where(union, painted * grain, image).clamp(0, 1).float()


def _grow(mask: Tensor, pixels: int) -> Tensor:
    """``mask [H, W]`` dilated by a ``(2 pixels + 1)`` square."""
    k = 2 * pixels + 1
    return F.max_pool2d(mask[None, None].float(), k, stride=1, padding=pixels)[0, 0] > 0


def _place_building(taken: Tensor, g: torch.Generator) -> Tensor | None:
    """A rotated rectangle off ``taken [S, S]``: its mask Tensor[S, S] bool, or None.

    Computed over the rectangle's window only, widened by the gap; the gap around the new
    building is added to ``taken`` in place.
    """
    s = taken.shape[0]
    lo, hi = (math.log(v) for v in _BUILDING_SIZE)
    for _ in range(_TRIES):
        u = torch.rand(5, generator=g, dtype=torch.float64).tolist()
        size = math.exp(lo + (hi - lo) * u[0])
        aspect = _BUILDING_ASPECT[0] + (_BUILDING_ASPECT[1] - _BUILDING_ASPECT[0]) * u[1]
        half_long, half_short = size * math.sqrt(aspect) / 2, size / math.sqrt(aspect) / 2
        cx, cy = half_long + (s - 2 * half_long) * u[2], half_long + (s - 2 * half_long) * u[3]
        reach = math.hypot(half_long, half_short) + _BUILDING_GAP
        x0, x1 = max(0, math.floor(cx - reach)), min(s, math.ceil(cx + reach) + 1)
        y0, y1 = max(0, math.floor(cy - reach)), min(s, math.ceil(cy + reach) + 1)
        xs = torch.arange(x0, x1, dtype=torch.float32)[None, :] + 0.5 - cx  # [1, w]
        ys = torch.arange(y0, y1, dtype=torch.float32)[:, None] + 0.5 - cy  # [h, 1]
        c, si = math.cos(math.pi * u[4]), math.sin(math.pi * u[4])
        local = ((xs * c + ys * si).abs() < half_long) & ((ys * c - xs * si).abs() < half_short)
        window = (slice(y0, y1), slice(x0, x1))
        if not bool((local & taken[window]).any()):
            taken[window] |= _grow(local, _BUILDING_GAP)  # [h, w]
            mask = torch.zeros(s, s, dtype=torch.bool)
            mask[window] = local
            return mask
    return None


# ---------------------------------------------------------------------------------------------
# The classical pipeline: threshold, connected components, watershed
# ---------------------------------------------------------------------------------------------


def _grey(image: Tensor) -> np.ndarray:
    """``image [3, H, W]`` (or ``[H, W]``) as an ``[H, W]`` float64 NumPy array, channel mean."""
    if not isinstance(image, Tensor) or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[0] not in (1, 3)):
        shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a Tensor[3, H, W] or [H, W], got {shape}")
    grey = image.float().mean(0) if image.ndim == 3 else image.float()
    return grey.detach().cpu().double().numpy()


def otsu_threshold(image: Tensor, bins: int = 256) -> float:
    """Otsu's threshold of the grey levels of ``image``: the cut that best splits two classes.

    Of all cuts between histogram bins, the one that maximises the between-class variance
    ``w0 w1 (m0 - m1)^2`` (``w`` the fractions of pixels below and above, ``m`` their means).

    Args:
        image (Tensor[3, H, W] or Tensor[H, W]): values in [0, 1]; channels are averaged.
        bins: histogram bins over [0, 1].

    Returns:
        float, the threshold: foreground is ``grey > threshold``.
    """
    if not is_int(bins) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    counts, edges = np.histogram(_grey(image), bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2  # [B]
    w0 = np.cumsum(counts)[:-1]  # [B - 1] pixels at or below each cut
    w1 = counts.sum() - w0
    s0 = np.cumsum(counts * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (np.sum(counts * centres) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2  # [B - 1]
    return float(edges[1 + int(np.argmax(between))])


def foreground(image: Tensor, threshold: float | None = None) -> Tensor:
    """The bright pixels of ``image [3, H, W]``: Tensor[H, W] bool (Otsu's threshold default)."""
    cut = otsu_threshold(image) if threshold is None else float(threshold)
    return torch.from_numpy(_grey(image) > cut)


def _as_mask(mask: Tensor | np.ndarray, name: str = "mask") -> np.ndarray:
    m = np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be an [H, W] mask, got shape {list(m.shape)}")
    return m.astype(bool)


def connected_components(mask: Tensor | np.ndarray) -> Tensor:
    """One segment per connected region of ``mask [H, W]`` (4-connected, as pixels touch).

    Returns:
        Tensor[H, W] int64, segment ids 1..K, 0 where ``mask`` is False.
    """
    ids, _ = ndimage.label(_as_mask(mask))
    return torch.from_numpy(ids.astype(np.int64))


def watershed_cells(mask: Tensor | np.ndarray, min_distance: int = 4, smooth: float = 1.0
                    ) -> Tensor:
    """Split touching blobs of ``mask [H, W]`` with a watershed on the distance transform.

    The textbook recipe: each foreground pixel's distance to the background (largest in the
    middle of a cell, low at the neck where two cells touch) is smoothed; its local maxima,
    at least ``min_distance`` pixels apart, are the markers, one per cell it believes in; from
    them :func:`flood` fills the foreground in the order of decreasing distance, so two floods
    meet at the necks. A blob with no marker keeps one segment of its own.

    Args:
        mask (Tensor[H, W]): bool foreground.
        min_distance: the radius of the neighbourhood a marker must be the maximum of.
        smooth: the sigma of the Gaussian smoothing of the distance, pixels (0: none).

    Returns:
        Tensor[H, W] int64, segment ids 1..K, 0 on the background.
    """
    fg = _as_mask(mask)
    if not is_int(min_distance) or min_distance < 1 or not smooth >= 0:
        raise ValueError(f"min_distance must be an integer >= 1 and smooth >= 0, got "
                         f"{min_distance!r} and {smooth!r}")
    distance = ndimage.distance_transform_edt(fg)  # [H, W]
    if smooth > 0:
        distance = ndimage.gaussian_filter(distance, smooth)
    peaks = (distance == ndimage.maximum_filter(distance, 2 * min_distance + 1)) & fg
    markers, count = ndimage.label(peaks)  # a plateau of maxima is one marker
    blobs, blob_count = ndimage.label(fg)
    orphans = np.setdiff1d(np.arange(1, blob_count + 1), np.unique(blobs[peaks]))
    for k, blob in enumerate(orphans.tolist(), start=count + 1):  # blobs without a peak
        markers[blobs == blob] = k
    return torch.from_numpy(flood(-distance, markers, fg))


def flood(level: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Marker-based watershed by flooding (Meyer's algorithm), as it reads.

    Water rises from the markers: the pixel of ``mask`` with the lowest ``level`` next to a
    flooded one is flooded next and takes the label of the neighbour the water came from;
    ties go first come, first served. Two floods meet along the ridges of ``level``.

    Args:
        level (ndarray[H, W]): float heights (low is flooded first).
        markers (ndarray[H, W]): int labels ``> 0`` where the floods start, 0 elsewhere.
        mask (ndarray[H, W]): bool, where the water may go; markers outside it are ignored.

    Returns:
        ndarray[H, W] int64, each pixel of ``mask`` reachable from a marker labelled, 0
        elsewhere.
    """
    if not level.shape == markers.shape == mask.shape or level.ndim != 2:
        raise ValueError(f"level, markers and mask must be [H, W] of one shape, got "
                         f"{level.shape}, {markers.shape}, {mask.shape}")
    h, w = level.shape
    labels = np.where(mask & (markers > 0), markers, 0).astype(np.int64)
    queued = labels > 0
    heap: list[tuple[float, int, int, int, int]] = []
    order = 0
    for y, x in np.argwhere(queued).tolist():
        heapq.heappush(heap, (float(level[y, x]), order, y, x, int(labels[y, x])))
        order += 1
    while heap:
        _, _, y, x, label = heapq.heappop(heap)
        labels[y, x] = label
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not queued[ny, nx]:
                queued[ny, nx] = True
                heapq.heappush(heap, (float(level[ny, nx]), order, ny, nx, label))
                order += 1
    return labels


# ---------------------------------------------------------------------------------------------
# Scoring a segmentation of cells
# ---------------------------------------------------------------------------------------------


def masks_to_ids(masks: Tensor) -> Tensor:
    """Disjoint ``masks [N, H, W]`` as one id map: Tensor[H, W] int64, ``k + 1`` on mask ``k``.

    Raises:
        ValueError: if two masks share a pixel.
    """
    masks = as_masks(masks).bool()
    if bool((masks.sum(0) > 1).any()):
        raise ValueError("masks overlap; paint them with paint_instances instead")
    index = torch.arange(1, len(masks) + 1, dtype=torch.int64)[:, None, None]  # [N, 1, 1]
    return (masks * index).sum(0) if len(masks) else torch.zeros(masks.shape[1:],
                                                                  dtype=torch.int64)


def paint_instances(masks: Tensor, scores: Tensor | None = None, min_score: float = 0.5
                    ) -> Tensor:
    """Detections as one segment per pixel: the most confident mask wins where they overlap.

    Masks scoring below ``min_score`` are left out; each pixel goes to the highest-scoring of
    the rest that covers it (:func:`course.fusion.paste_by_score`; between equal scores the
    earlier mask). A mask covered entirely by better ones disappears.

    Args:
        masks (Tensor[P, H, W]): bool detection masks.
        scores (Tensor[P], optional): their confidences; None: all equal, the first on top.

    Returns:
        Tensor[H, W] int64: ``k + 1`` where detection ``k`` wins, 0 where none is.
    """
    masks = as_masks(masks).bool().cpu()
    if scores is None:
        scores = torch.ones(len(masks))
    if not isinstance(scores, Tensor) or scores.shape != (len(masks),):
        raise ValueError(f"scores must be a Tensor[{len(masks)}], one per mask")
    kept = (scores.cpu() >= min_score).nonzero()[:, 0]  # [K] indices of the kept masks
    ids = paste_by_score(masks[kept], scores.cpu()[kept])  # 1 + position in kept
    return torch.where(ids > 0, kept[(ids - 1).clamp(min=0)] + 1, 0)


def _panoptic(ids: Tensor) -> tuple[Tensor, dict[int, tuple[int, bool]]]:
    """Cells of an id map (0 background) as a panoptic map, the background one stuff segment."""
    present = [int(v) for v in torch.unique(ids).tolist() if v != 0]
    background = max(present, default=0) + 1
    segments = {sid: (CELL, False) for sid in present}
    if bool((ids == 0).any()):
        segments[background] = (BACKGROUND, False)
    return torch.where(ids == 0, background, ids), segments


def cell_pq_stats(gt_masks: Tensor, pred_ids: Tensor) -> PQStats:
    """Panoptic Quality counts of a cell segmentation of one image.

    The cells are the thing category :data:`CELL`; everything else is one stuff segment of
    category :data:`BACKGROUND`, in the ground truth and in the prediction (so a predicted
    cell on the background is a false positive, not ignored as it would be on void).

    Args:
        gt_masks (Tensor[N, H, W]): the disjoint ground-truth cells.
        pred_ids (Tensor[H, W]): the predicted segment of each pixel, 0 for background
            (:func:`connected_components`, :func:`watershed_cells`, :func:`paint_instances`).

    Returns:
        PQStats over categories ``(CELL, BACKGROUND)``; add them over images and give the sum
        to :func:`course.pq.panoptic_quality` with ``things=[CELL], stuffs=[BACKGROUND]``.
    """
    gt_ids = masks_to_ids(gt_masks)
    pred_ids = as_id_map(pred_ids, "pred_ids")
    if pred_ids.shape != gt_ids.shape:
        raise ValueError(f"pred_ids is {list(pred_ids.shape)} but the masks are "
                         f"{list(gt_ids.shape)}")
    return pq_stats(*_panoptic(gt_ids), *_panoptic(pred_ids),
                    categories=[CELL, BACKGROUND])


def foreground_accuracy(gt_masks: Tensor, pred_ids: Tensor) -> float:
    """Pixel accuracy of the foreground: the fraction of pixels labelled right as object or
    background, whatever the instance. What a semantic segmentation is judged by.

    Args:
        gt_masks (Tensor[N, H, W]): ground-truth objects.
        pred_ids (Tensor[H, W]): predicted segment ids, 0 for background.

    Returns:
        float in [0, 1].
    """
    truth = as_masks(gt_masks).bool().any(0)  # [H, W]
    pred_ids = as_id_map(pred_ids, "pred_ids")
    if pred_ids.shape != truth.shape:
        raise ValueError(f"pred_ids is {list(pred_ids.shape)} but the masks are "
                         f"{list(truth.shape)}")
    return float(((pred_ids > 0) == truth).double().mean())


def segment_outcomes(gt_masks: Tensor, pred_ids: Tensor) -> list[str]:
    """What happened to each cell: ``"match"``, ``"merge"``, ``"split"`` or ``"miss"``.

    The rules of :func:`course.pq.classify_failures` (chapter 05) on the segments of
    ``pred_ids [H, W]`` (0 is background) against ``gt_masks [N, H, W]``.
    """
    pred_ids = as_id_map(pred_ids, "pred_ids")
    present = [v for v in torch.unique(pred_ids).tolist() if v != 0]
    pred = pred_ids[None] == torch.tensor(present, dtype=torch.int64)[:, None, None]  # [P, H, W]
    inter, pred_area, gt_area = intersection_counts(pred, gt_masks)  # [P, N], [P], [N]
    return classify_failures(inter.T, gt_area, pred_area)


def touching_pairs(masks: Tensor) -> Tensor:
    """The pairs of masks that touch: some pixel of one is a 4-neighbour of a pixel of the other.

    Args:
        masks (Tensor[N, H, W]): disjoint masks.

    Returns:
        Tensor[K, 2] int64 pairs ``(i, j)`` with ``i < j``.
    """
    m = as_masks(masks).bool()
    grown = m.clone()
    grown[:, 1:] |= m[:, :-1]
    grown[:, :-1] |= m[:, 1:]
    grown[:, :, 1:] |= m[:, :, :-1]
    grown[:, :, :-1] |= m[:, :, 1:]
    inter, _, _ = intersection_counts(grown, m)  # [N, N]
    touch = torch.triu(inter > 0, diagonal=1)
    return touch.nonzero()


# ---------------------------------------------------------------------------------------------
# Recall by object size, and the feature grid
# ---------------------------------------------------------------------------------------------


def object_sizes(masks: Tensor) -> Tensor:
    """The size of each object: the square root of its area, pixels. Tensor[N] float64."""
    return as_masks(masks).flatten(1).sum(1).double().sqrt()


def size_bins(sizes: Tensor, edges: Sequence[float]) -> Tensor:
    """The bin of each size: ``b`` where ``edges[b] <= size < edges[b + 1]``, else -1.

    Args:
        sizes (Tensor[N]): object sizes.
        edges: ascending bin edges, at least two.

    Returns:
        Tensor[N] int64.
    """
    e = torch.as_tensor(list(edges), dtype=torch.float64)
    if e.ndim != 1 or len(e) < 2 or not bool((e[1:] > e[:-1]).all()):
        raise ValueError(f"edges must be at least two ascending numbers, got {list(edges)}")
    sizes = torch.as_tensor(sizes, dtype=torch.float64)
    b = torch.bucketize(sizes, e, right=True) - 1  # [N]
    return torch.where((b >= 0) & (b < len(e) - 1), b, -1)


def matched_iou(gt_masks: Tensor, pred_masks: Tensor, scores: Tensor,
                threshold: float = 0.5) -> Tensor:
    """The mask IoU of each ground-truth object with the detection that finds it, 0 if none.

    COCO's rule (:func:`course.matching.greedy_match`): detections by decreasing score, each
    takes the best still-free object with IoU >= ``threshold``. Pass only the detections you
    keep (say, score >= 0.5). An object is *found* where the result is above 0.

    Args:
        gt_masks (Tensor[G, H, W]), pred_masks (Tensor[P, H, W]): bool masks.
        scores (Tensor[P]): the detections' confidences.
        threshold: the smallest IoU of a match, in (0, 1].

    Returns:
        Tensor[G] float64.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    if len(pred_masks) != len(scores):
        raise ValueError(f"scores must have one entry per mask, got {len(scores)} for "
                         f"{len(pred_masks)} masks")
    iou = torch.zeros(len(gt_masks), dtype=torch.float64)
    if len(gt_masks) and len(pred_masks):
        match = greedy_match(mask_iou(pred_masks.cpu(), gt_masks.cpu()), scores.cpu(),
                             threshold)
        iou[match.pairs[:, 1]] = match.ious
    return iou


def recall_by_size(ious: Tensor, sizes: Tensor, edges: Sequence[float]
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Per size bin: objects found, objects in all, and the summed IoU of the found ones.

    Recall is ``found / total``; the mean IoU of the found objects, ``iou_sum / found``, is
    the segmentation quality (PQ's SQ) of the bin. Objects outside the bins are left out.

    Args:
        ious (Tensor[N]): each object's match IoU, 0 if not found (:func:`matched_iou`).
        sizes (Tensor[N]): their sizes (:func:`object_sizes`).
        edges: the bin edges, as :func:`size_bins`.

    Returns:
        ``(found [B], total [B], iou_sum [B])``, int64, int64, float64; ``B = len(edges) - 1``.
    """
    ious = torch.as_tensor(ious, dtype=torch.float64)
    if ious.ndim != 1 or ious.shape != torch.as_tensor(sizes).shape:
        raise ValueError(f"ious and sizes must be two Tensor[N] of one length, got "
                         f"{list(ious.shape)} and {list(torch.as_tensor(sizes).shape)}")
    b = size_bins(sizes, edges)  # [N]
    inside, found = b >= 0, ious > 0
    bins = len(edges) - 1
    return (torch.bincount(b[inside & found], minlength=bins),
            torch.bincount(b[inside], minlength=bins),
            torch.bincount(b[inside], weights=ious[inside], minlength=bins).double())


def owns_cell(masks: Tensor, stride: int) -> Tensor:
    """Whether each object owns a cell of a stride-``s`` feature grid (chapter 05).

    An object owns a cell when it covers more than half of the cell's ``s * s`` pixels
    (:func:`course.data.cell_counts`). Masks whose sides are not multiples of ``s`` are padded
    at the bottom and right, as the model pads its input.

    Args:
        masks (Tensor[N, H, W]): bool masks.
        stride: the feature stride ``s >= 1``.

    Returns:
        Tensor[N] bool.
    """
    if not is_int(stride) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    m = as_masks(masks).bool()
    h, w = m.shape[1:]
    m = F.pad(m, (0, -w % stride, 0, -h % stride))
    return (2 * cell_counts(m, stride) > stride * stride).flatten(1).any(1)
