"""Two baselines for the compact Mask R-CNN: torchvision's Mask R-CNN, and no learning at all.

:class:`TorchvisionMaskRCNN` wraps ``torchvision.models.detection.MaskRCNN``, built at the
scale of the course's model (a ResNet-18 FPN from scratch at 64 channels, 64-channel heads,
128-pixel images), so that :func:`course.train.train` trains it and
:func:`course.train.evaluate` scores it exactly as they do :class:`course.model.MaskRCNN`.

:func:`classical_segment` finds the objects of a :class:`course.data.ShapesDataset` image
without learning: it fits the background (a colour plane), thresholds each pixel's colour
distance to it, splits the foreground into regions of one colour, and names each region's
shape from how much of its circumscribed circle it fills. :func:`classical_predict` runs it
over a dataset, ready for :func:`course.ap.coco_evaluate`.

The benchmark ``bench/maskrcnn_cpu.py`` imports both (``bench/`` is not a package: put it on
``sys.path``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import least_squares
from torch import Tensor, nn
from torchvision.models import resnet18
from torchvision.models.detection import MaskRCNN as TVMaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from course.boxes import masks_to_boxes
from course.structures import Instances

# ---------------------------------------------------------------------------------------------
# torchvision's Mask R-CNN behind the course's interface
# ---------------------------------------------------------------------------------------------


@dataclass
class TorchvisionConfig:
    """The tuned torchvision set-up; everything not named here is torchvision's default.

    Attributes:
        num_classes: object classes without the background (labels ``1..num_classes``).
        channels: channels of the FPN and of the mask head's convolutions.
        representation: width of the box head's two fully connected layers.
        image_size: torchvision's ``min_size`` and ``max_size`` (it resizes to this side).
        anchor_sizes: one anchor side per level ``P2..P6``.
        anchor_ratios: aspect ratios at every level.
        box_batch_per_image: RoIs sampled per image for the heads' losses.
        image_mean, image_std: normalisation of the [0, 1] input.
        options: further keyword arguments of torchvision's ``MaskRCNN`` (e.g.
            ``rpn_post_nms_top_n_test``), over its defaults.
    """

    num_classes: int = 3
    channels: int = 64
    representation: int = 64
    image_size: int = 128
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    box_batch_per_image: int = 128
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    options: dict[str, Any] = field(default_factory=dict)


def resnet18_fpn(channels: int) -> BackboneWithFPN:
    """A ResNet-18 from scratch, every layer trainable, with BatchNorm, under a ``channels`` FPN.

    ``resnet_fpn_backbone`` (torchvision 0.29) fixes the FPN at 256 channels, so this builds
    what it builds (``P2..P5`` from ``layer1..layer4``, ``P6`` by max-pooling ``P5``) with
    the width as a parameter. Nothing is frozen, as with ``trainable_layers=5``.
    """
    body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
    layers = {f"layer{k}": str(k - 1) for k in range(1, 5)}
    return BackboneWithFPN(body, layers, [64, 128, 256, 512], channels)


def build_torchvision_maskrcnn(config: TorchvisionConfig) -> TVMaskRCNN:
    """``torchvision.models.detection.MaskRCNN`` as :class:`TorchvisionConfig` describes."""
    c, k = config.channels, config.num_classes + 1  # torchvision counts the background
    levels = len(config.anchor_sizes)
    anchors = AnchorGenerator(tuple((s,) for s in config.anchor_sizes),
                              (tuple(config.anchor_ratios),) * levels)
    return TVMaskRCNN(
        resnet18_fpn(c), num_classes=None,
        min_size=config.image_size, max_size=config.image_size,
        image_mean=list(config.image_mean), image_std=list(config.image_std),
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(c * 7 * 7, config.representation),
        box_predictor=FastRCNNPredictor(config.representation, k),
        box_batch_size_per_image=config.box_batch_per_image,
        mask_head=MaskRCNNHeads(c, [c] * 4, 1),
        mask_predictor=MaskRCNNPredictor(c, c, k), **config.options)


class TorchvisionMaskRCNN(nn.Module):
    """torchvision's Mask R-CNN with the interface of :class:`course.model.MaskRCNN`.

    ``forward(images, targets, seed)`` returns torchvision's five losses in training mode
    (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``,
    ``loss_mask``) and ``list[Instances]`` in evaluation mode; :meth:`predict` detects in
    evaluation mode without gradients. ``config.num_classes`` is what
    :func:`course.train.evaluate` reads.

    Unlike the course's model, the anchor and RoI sampling cannot be seeded per image:
    torchvision's ``BalancedPositiveNegativeSampler`` draws from the global RNG, so ``seed`` is
    accepted and ignored (seed the run with ``torch.manual_seed`` for repeatability).
    """

    def __init__(self, config: TorchvisionConfig | None = None):
        super().__init__()
        self.config = config if config is not None else TorchvisionConfig()
        self.net = build_torchvision_maskrcnn(self.config)

    def forward(self, images: Tensor | Sequence[Tensor],
                targets: Sequence[Instances] | None = None,
                seed: int | None = None) -> dict[str, Tensor] | list[Instances]:
        """Losses (training, with ``targets``) or detections (evaluation).

        Args:
            images: ``Tensor[B, 3, H, W]`` in [0, 1] or a list of ``Tensor[3, H_i, W_i]``.
            targets: one :class:`Instances` per image with ``boxes``, ``labels``, ``masks``.
            seed: ignored (see the class docstring).

        Returns:
            training: dict of scalar losses; evaluation: ``list[Instances]``.
        """
        del seed  # torchvision samples from the global RNG
        items = list(images)
        if self.training:
            if targets is None:
                raise ValueError("a model in training mode needs targets")
            return self.net(items, [to_torchvision_target(t) for t in targets])
        outputs = self.net(items)
        return [from_torchvision_output(o, (im.shape[-2], im.shape[-1]))
                for o, im in zip(outputs, items, strict=True)]

    @torch.no_grad()
    def predict(self, images: Tensor | Sequence[Tensor]) -> list[Instances]:
        """Detections of each image, in evaluation mode; the previous mode is restored."""
        was_training = self.training
        self.eval()
        try:
            return self(images)
        finally:
            self.train(was_training)

    def num_parameters(self) -> int:
        """Learnable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def to_torchvision_target(target: Instances) -> dict[str, Tensor]:
    """An :class:`Instances` as torchvision's target dict.

    Returns:
        ``boxes (Tensor[N, 4])`` float32 ``(x1, y1, x2, y2)``, ``labels (Tensor[N])`` int64,
        ``masks (Tensor[N, H, W])`` uint8.
    """
    if target.masks is None:
        raise ValueError("torchvision's Mask R-CNN trains on targets with masks")
    return {"boxes": target.boxes.float(), "labels": target.labels.long(),
            "masks": target.masks.to(torch.uint8)}


def from_torchvision_output(output: dict[str, Tensor], image_size: tuple[int, int],
                            threshold: float = 0.5) -> Instances:
    """torchvision's detections of one image as :class:`Instances`.

    Args:
        output: ``boxes [N, 4]``, ``labels [N]``, ``scores [N]``, ``masks [N, 1, H, W]``
            probabilities, as ``MaskRCNN`` returns them in evaluation mode.
        image_size: ``(H, W)`` of the input image.
        threshold: mask probability above which a pixel is foreground.
    """
    masks = output["masks"][:, 0] > threshold  # [N, 1, H, W] -> [N, H, W] bool
    return Instances(output["boxes"].float(), output["labels"].long(),
                     output["scores"].float(), masks, (int(image_size[0]), int(image_size[1])))


CLASS_COLOURS = ((0.9, 0.15, 0.15), (0.15, 0.85, 0.2), (0.2, 0.3, 0.95))
"""One RGB colour per class (1 square, 2 circle, 3 triangle in ShapesDataset's order)."""


class ClassColoured(torch.utils.data.Dataset):
    """A dataset of ``(image, Instances)`` with every object painted in its class's colour.

    The issue's figures for the tuned torchvision set-up were measured on a generator whose
    classes had colours of their own; ``ShapesDataset`` draws colours at random, so that the
    class must be told from the shape. This wrapper puts the colour cue back (the masks, boxes
    and labels are unchanged, the background too) to show what that cue is worth.
    """

    def __init__(self, base: Any, colours: Sequence[Sequence[float]] = CLASS_COLOURS):
        self.base = base
        self.colours = torch.tensor(colours, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, Instances]:
        image, target = self.base[i]
        image = image.clone()
        for mask, label in zip(target.masks, target.labels.tolist(), strict=True):
            image[:, mask] = self.colours[label - 1].to(image.dtype)[:, None]
        return image, target

    def coco_ground_truth(self) -> list[dict[str, Any]]:
        """The wrapped dataset's ground truth, unchanged."""
        return self.base.coco_ground_truth()

    def write_coco(self, path: Any) -> None:
        """The wrapped dataset's ground truth as a COCO json file."""
        self.base.write_coco(path)


# ---------------------------------------------------------------------------------------------
# A classical baseline: background model, colour distance, regions, shape from geometry
# ---------------------------------------------------------------------------------------------

FOREGROUND_DISTANCE = 0.2
"""RGB distance to the background model above which a (smoothed) pixel is an object's.

The data puts objects at least 0.4 from the mean background around them; the background's
grain is 0.04 per channel, the same in all three (0.07 in RGB distance)."""
COLOUR_RADIUS = 0.15
"""Colours within this RGB distance of a region's colour mode belong to that mode."""
MIN_AREA = 20
"""Regions with fewer pixels are dropped (the data drops objects under 20 visible pixels)."""
BACKGROUND_ROUNDS = 3
# area / (pi R^2) of a circle, a square and a triangle, R the circumradius (from the centroid)
_FILL = np.array([1.0, 2 / math.pi, 3 * math.sqrt(3) / (4 * math.pi)])


def fit_background(image: np.ndarray, rounds: int = BACKGROUND_ROUNDS) -> np.ndarray:
    """A colour plane ``a_c + b_c x + d_c y`` per channel, fitted to the background pixels.

    Starts from the per-channel median (the background is most of the image), then refits
    ``rounds`` times by least squares on the pixels within reach of the current model.

    Args:
        image (np.ndarray[3, H, W]): RGB in [0, 1].

    Returns:
        np.ndarray[3, H, W] float64: the background model.
    """
    _, h, w = image.shape
    ys, xs = np.mgrid[0:h, 0:w]
    design = np.stack([np.ones(h * w), xs.ravel() / w, ys.ravel() / h], axis=1)  # [HW, 3]
    pixels = image.reshape(3, -1).T.astype(np.float64)  # [HW, 3]
    model = np.broadcast_to(np.median(pixels, axis=0), pixels.shape)  # [HW, 3]
    reach = 1.5 * FOREGROUND_DISTANCE  # the plane's tilt is still in the first residuals
    for _ in range(rounds):
        inliers = np.linalg.norm(pixels - model, axis=1) < reach  # [HW]
        if inliers.sum() < 3:
            break
        coef, *_ = np.linalg.lstsq(design[inliers], pixels[inliers], rcond=None)  # [3, 3]
        model, reach = design @ coef, FOREGROUND_DISTANCE
    return model.T.reshape(3, h, w)


def foreground(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels whose colour, median-smoothed over 3x3, is far from the background model.

    The smoothed map finds the objects without the grain; the cleaned regions then grow back
    into the raw map's far pixels, which restores the corners that smoothing and opening cut.

    Args:
        image, background (np.ndarray[3, H, W]).

    Returns:
        np.ndarray[H, W] bool.
    """
    smooth = ndimage.median_filter(image, size=(1, 3, 3))
    far = np.linalg.norm(smooth - background, axis=0) > FOREGROUND_DISTANCE  # [H, W]
    seeds = ndimage.binary_opening(far, structure=np.ones((3, 3), bool))
    raw = np.linalg.norm(image - background, axis=0) > FOREGROUND_DISTANCE
    return ndimage.binary_fill_holes(ndimage.binary_propagation(seeds, mask=far | raw))


def local_colours(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean colour of each pixel's 3x3 neighbourhood, over the pixels of ``mask`` only.

    Averaging away the objects' texture without mixing in the background keeps an object's
    corners its own colour. Returns np.ndarray[3, H, W] (0 outside ``mask``).
    """
    weight = ndimage.uniform_filter(mask.astype(np.float64), size=3)  # [H, W]
    total = ndimage.uniform_filter(image * mask, size=(1, 3, 3))  # [3, H, W]
    return np.where(mask, total / np.maximum(weight, 1e-12), 0.0)


def colour_modes(colours: np.ndarray, radius: float = COLOUR_RADIUS) -> np.ndarray:
    """The dominant colours of a region, densest first, by greedy mode seeking.

    Take the colour with the most others within ``radius`` (on a subsample), move it to the
    mean of its neighbours a few times (mean shift), remove every colour within ``2 radius``,
    and repeat while at least :data:`MIN_AREA` colours are left.

    Args:
        colours (np.ndarray[N, 3]).

    Returns:
        np.ndarray[K, 3].
    """
    modes, left = [], colours
    while len(left) >= MIN_AREA:
        sample = left[:: max(1, len(left) // 400)]  # [n, 3]
        pairs = np.linalg.norm(sample[:, None] - sample[None], axis=2) < radius  # [n, n]
        mode = sample[pairs.sum(axis=1).argmax()]
        for _ in range(3):
            mode = left[np.linalg.norm(left - mode, axis=1) < radius].mean(axis=0)
        modes.append(mode)
        left = left[np.linalg.norm(left - mode, axis=1) >= 2 * radius]
    return np.array(modes).reshape(-1, 3)


def split_by_colour(image: np.ndarray, colours: np.ndarray, region: np.ndarray
                    ) -> list[np.ndarray]:
    """One mask per dominant colour of ``region``: each pixel goes to its nearest mode.

    Objects that touch (or hide each other) differ in colour by at least 0.4, and an object
    is one colour under a slight texture, so a region's modes are its objects. The modes come
    from the raw pixels (the image has no blended edges, where averaged colours would make a
    band of in-between colours along a boundary); pixels are assigned by their averaged
    colours, which the texture disturbs less.

    Args:
        image (np.ndarray[3, H, W]): RGB.
        colours (np.ndarray[3, H, W]): :func:`local_colours` of ``image``.
        region (np.ndarray[H, W] bool): one connected foreground region.

    Returns:
        list of np.ndarray[H, W] bool, those with at least :data:`MIN_AREA` pixels.
    """
    modes = colour_modes(image[:, region].T)  # [K, 3]
    if len(modes) <= 1:
        return [region] if region.sum() >= MIN_AREA else []
    pixels = colours[:, region].T  # [N, 3]
    nearest = np.linalg.norm(pixels[:, None] - modes[None], axis=2).argmin(axis=1)  # [N]
    out = []
    for k in range(len(modes)):
        mask = np.zeros_like(region)
        mask[region] = nearest == k
        if mask.sum() >= MIN_AREA:
            out.append(mask)
    return out


def fill_ratio(mask: np.ndarray) -> float:
    """Area over the area of the circle around the centroid through the farthest pixel.

    Rotation-invariant: 1 for a disc, 2 / pi = 0.64 for a square, 3 sqrt(3) / (4 pi) = 0.41
    for an equilateral triangle (pixel centres, so the radius gets half a pixel back).
    """
    ys, xs = np.nonzero(mask)
    radius = np.hypot(ys - ys.mean(), xs - xs.mean()).max() + 0.5
    return float(len(ys) / (math.pi * radius**2))


def outline_points(mask: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Points on the outline of ``mask``: the midpoints between its pixels and outside ones.

    Only the outline against ``keep`` pixels counts (the background, not the image's border
    or another object, where the shape's own outline is hidden).

    Args:
        mask, keep (np.ndarray[H, W] bool).

    Returns:
        np.ndarray[P, 2] float64 ``(x, y)`` in continuous pixel coordinates (pixel ``i``
        spans ``[i, i + 1)``).
    """
    padded = np.pad(mask, 1)
    allowed = np.pad(keep & ~mask, 1)
    points = []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        across = np.roll(allowed, (-dy, -dx), axis=(0, 1))  # the neighbour in (dy, dx)
        ys, xs = np.nonzero(padded & across)
        points.append(np.stack([xs - 1 + 0.5 + 0.5 * dx, ys - 1 + 0.5 + 0.5 * dy], axis=1))
    return np.concatenate(points)


def shape_residuals(params: np.ndarray, points: np.ndarray, label: int) -> np.ndarray:
    """Signed distance of each point to a shape's outline (0 on it).

    Args:
        params (np.ndarray[4]): ``(cx, cy, size, angle)``; size is the circle's diameter or
            the polygon's side, as in :func:`course.data.shape_mask`.
        points (np.ndarray[P, 2]): ``(x, y)``.
        label: 1 circle, 2 square, 3 triangle.

    Returns:
        np.ndarray[P]; a polygon's is exact near its sides (the largest distance to the lines
        of its sides).
    """
    cx, cy, size, angle = params
    rel = points - np.array([cx, cy])  # [P, 2]
    if label == 1:
        return np.hypot(rel[:, 0], rel[:, 1]) - size / 2
    sides, offset, apothem = (4, 0.0, size / 2) if label == 2 else \
        (3, math.pi / 2, size / (2 * math.sqrt(3)))
    normals = angle + offset + 2 * math.pi / sides * np.arange(sides)  # [K]
    along = rel @ np.stack([np.cos(normals), np.sin(normals)])  # [P, K]
    return along.max(axis=1) - apothem


def fit_shape(points: np.ndarray, mask: np.ndarray, label: int) -> float:
    """How far, robustly, ``points`` lie from the best shape of class ``label`` (pixels).

    Least squares over ``(cx, cy, size, angle)`` with a soft-L1 loss, started from the mask's
    centroid and its area's size at a few angles; returns the fit's RMS distance, each
    point's distance capped at 3 px.

    Args:
        points (np.ndarray[P, 2]): :func:`outline_points` of ``mask``.
        mask (np.ndarray[H, W] bool).
        label: 1 circle, 2 square, 3 triangle.
    """
    ys, xs = np.nonzero(mask)
    side = math.sqrt(len(ys) * (4 / math.pi, 1.0, 4 / math.sqrt(3))[label - 1])
    period = (1.0, math.pi / 2, 2 * math.pi / 3)[label - 1]
    starts = 1 if label == 1 else 3
    lower, upper = [-64, -64, 8.0, -np.inf], [mask.shape[1] + 64, mask.shape[0] + 64, 96.0,
                                              np.inf]
    best = math.inf
    for k in range(starts):
        start = np.array([xs.mean() + 0.5, ys.mean() + 0.5, min(max(side, 8.5), 95.0),
                          period * k / starts])
        fit = least_squares(shape_residuals, start, bounds=(lower, upper), loss="soft_l1",
                            args=(points, label), max_nfev=60)
        residual = np.minimum(shape_residuals(fit.x, points, label) ** 2, 9.0)
        best = min(best, float(np.sqrt(residual.mean())))
    return best


def classify_shape(mask: np.ndarray, keep: np.ndarray) -> tuple[int, float]:
    """The class whose shape best fits the visible outline of ``mask``, and a confidence.

    Args:
        mask (np.ndarray[H, W] bool): one object.
        keep (np.ndarray[H, W] bool): where its outline is its own (:func:`outline_points`).

    Returns:
        ``(label, score)``: the best-fitting class (1 circle, 2 square, 3 triangle) and
        ``1 - best / second best`` residual, in [0, 1]; with too few outline points, the
        class from :func:`classify_by_fill` and a low score.
    """
    points = outline_points(mask, keep)
    if len(points) < 12:
        return classify_by_fill(mask)[0], 0.05
    residuals = np.array([fit_shape(points, mask, label) for label in (1, 2, 3)])  # [3]
    order = residuals.argsort()
    best, second = residuals[order[0]], residuals[order[1]]
    return int(order[0]) + 1, float(1 - (best + 0.1) / (second + 0.1))


def classify_by_fill(mask: np.ndarray) -> tuple[int, float]:
    """The class whose :func:`fill_ratio` is nearest the mask's, and ``1 - nearest / second``.

    The simple rule: right for whole objects, often wrong for objects the image's border
    cuts or another object hides (they fill less of their circle).
    """
    distance = np.abs(_FILL - fill_ratio(mask))  # [3]
    order = distance.argsort()
    return int(order[0]) + 1, float(1 - distance[order[0]] / distance[order[1]])


def classical_segment(image: Tensor, fit: bool = True) -> Instances:
    """The objects of one image, found without learning.

    Fit the background (:func:`fit_background`), keep the pixels far from it
    (:func:`foreground`), split each connected region into its colours
    (:func:`split_by_colour`), and name each piece by the shape that best fits its visible
    outline (:func:`classify_shape`), which also gives the score.

    Args:
        image (Tensor[3, H, W]): RGB in [0, 1], as :class:`course.data.ShapesDataset` gives it.
        fit: name shapes by fitting them (:func:`classify_shape`); False: by the simple
            :func:`classify_by_fill` (about half the time: 50 ms against
            100 ms an image of 128 x 128 on one busy CPU core).

    Returns:
        Instances with ``boxes`` (tight, :func:`course.boxes.masks_to_boxes`), ``labels``,
        ``scores`` and bool ``masks``; no ``image_id``.
    """
    pixels = image.detach().cpu().double().numpy()  # [3, H, W]
    size = (int(image.shape[1]), int(image.shape[2]))
    objects = foreground(pixels, fit_background(pixels))  # [H, W]
    colours = local_colours(pixels, objects)
    regions, count = ndimage.label(objects)
    masks = [m for k in range(1, count + 1)
             for m in split_by_colour(pixels, colours, regions == k)]
    if not masks:
        return Instances.empty(size)
    named = [classify_shape(m, ~objects) if fit else classify_by_fill(m) for m in masks]
    masks_t = torch.from_numpy(np.stack(masks))  # [N, H, W]
    return Instances(masks_to_boxes(masks_t).float(),
                     torch.tensor([label for label, _ in named], dtype=torch.int64),
                     torch.tensor([score for _, score in named], dtype=torch.float32),
                     masks_t, size)


def classical_predict(dataset: Sequence[tuple[Tensor, Instances]], fit: bool = True
                      ) -> list[Instances]:
    """:func:`classical_segment` of every image of ``dataset``, each with its ``image_id``.

    The result goes to :func:`course.ap.coco_evaluate` as ``[d.as_dict() for d in ...]``.
    """
    out = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        found = classical_segment(image, fit)
        found.image_id = target.image_id if target.image_id is not None else i
        out.append(found)
    return out
