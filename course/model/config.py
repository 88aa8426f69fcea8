"""The configuration of the compact Mask R-CNN: every knob, one dataclass.

The defaults are tuned for the course's 128 x 128 shapes on a laptop CPU: a ResNet-18 at a
quarter of its width, a 64-channel pyramid ``P2..P5``, narrow heads and few RoIs. What the stock
Mask R-CNN (ResNet-50, 256 channels, 1,024 proposals, 512 RoIs per image) spends on 800-pixel
photographs is wasted on images of 128 pixels holding four objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class MaskRCNNConfig:
    """Everything that shapes the model; ``MaskRCNN(MaskRCNNConfig(...))`` builds it.

    Backbone and pyramid:
        num_classes: object classes, not counting the background (labels ``1..num_classes``).
        width: channels of the backbone's ``C2`` (ResNet-18: 64).
        blocks: residual blocks per backbone stage.
        channels: channels of every pyramid level and of the heads' convolutions.
        levels: pyramid levels used, e.g. ``(2, 3, 4, 5)`` for ``P2..P5``.
        norm: ``"group"`` (batch-independent, so several processes train exactly as one) or
            ``"batch"``.
        image_mean, image_std: per-channel normalisation of the [0, 1] input.

    Region proposals (RPN):
        anchor_sizes: one anchor side (pixels) per pyramid level, finest first.
        anchor_ratios: height / width of the anchors at every position.
        rpn_fg_iou, rpn_bg_iou: an anchor is positive at IoU >= fg, negative below bg with
            its best ground-truth box (and each box's best anchors are positive too).
        rpn_batch_per_image, rpn_positive_fraction: anchors sampled for the loss.
        rpn_pre_nms_top_n, rpn_post_nms_top_n: proposals kept per level before NMS and per
            image after it, as (training, inference).
        rpn_nms: IoU threshold of the proposals' NMS.

    Box and mask heads:
        pooler: ``"align"`` (ROIAlign) or ``"pool"`` (RoIPool), for both heads.
        box_pool, mask_pool: pooled grid sides for the box and mask heads.
        representation: width of the box head's two fully connected layers.
        mask_convs: 3x3 convolutions in the mask head before its 2x upsampling, so masks
            are ``2 * mask_pool`` on a side.
        roi_batch_per_image, roi_positive_fraction: proposals sampled for the heads' losses.
        roi_fg_iou: a proposal is a positive (of its box's class) at IoU >= this.
        box_weights: scaling of the heads' box coding ``(wx, wy, ww, wh)``.
        score_threshold, box_nms, detections_per_image: post-processing at inference.
        mask_threshold: probability above which a pasted mask pixel is foreground.

    Semantic head (chapter 11's panoptic model; absent when ``stuff_classes`` is 0):
        stuff_classes: stuff categories the head labels; it predicts ``stuff_classes + 1``
            classes per pixel, class 0 standing for every thing.
        semantic_channels: width of the head's convolutions.
        semantic_weight: the semantic loss's weight in the total (Panoptic FPN's 0.5).
    """

    num_classes: int = 3
    width: int = 16
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    channels: int = 64
    levels: tuple[int, ...] = (2, 3, 4, 5)
    norm: str = "group"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    anchor_sizes: tuple[float, ...] = (16.0, 32.0, 64.0, 128.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n: tuple[int, int] = (500, 250)
    rpn_post_nms_top_n: tuple[int, int] = (200, 50)
    rpn_nms: float = 0.7

    pooler: str = "align"
    box_pool: int = 7
    mask_pool: int = 14
    representation: int = 256
    mask_convs: int = 4
    roi_batch_per_image: int = 64
    roi_positive_fraction: float = 0.25
    roi_fg_iou: float = 0.5
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_threshold: float = 0.05
    box_nms: float = 0.5
    detections_per_image: int = 50
    mask_threshold: float = 0.5

    stuff_classes: int = 0
    semantic_channels: int = 32
    semantic_weight: float = 0.5

    def __post_init__(self) -> None:
        for name in ("levels", "blocks", "anchor_sizes", "anchor_ratios", "image_mean",
                     "image_std", "rpn_pre_nms_top_n", "rpn_post_nms_top_n", "box_weights"):
            setattr(self, name, tuple(getattr(self, name)))  # lists from json become tuples
        _positive(self, "num_classes", "width", "channels", "representation", "box_pool",
                  "mask_pool", "rpn_batch_per_image", "roi_batch_per_image",
                  "detections_per_image")
        if isinstance(self.stuff_classes, bool) or not isinstance(self.stuff_classes, int) \
                or self.stuff_classes < 0:
            raise ValueError(f"stuff_classes must be an int >= 0, got {self.stuff_classes!r}")
        _positive(self, "semantic_channels")
        if not self.semantic_weight >= 0:
            raise ValueError(f"semantic_weight must be >= 0, got {self.semantic_weight}")
        if len(self.anchor_sizes) != len(self.levels):
            raise ValueError(f"anchor_sizes needs one size per level: {len(self.levels)} levels "
                             f"{self.levels}, got {len(self.anchor_sizes)} sizes")
        if self.pooler not in ("align", "pool"):
            raise ValueError(f"pooler must be 'align' or 'pool', got {self.pooler!r}")
        if not 0 <= self.rpn_bg_iou <= self.rpn_fg_iou <= 1:
            raise ValueError(f"need 0 <= rpn_bg_iou <= rpn_fg_iou <= 1, got {self.rpn_bg_iou}, "
                             f"{self.rpn_fg_iou}")
        for name in ("rpn_positive_fraction", "roi_positive_fraction", "roi_fg_iou",
                     "rpn_nms", "box_nms", "score_threshold", "mask_threshold"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if min(self.anchor_sizes) <= 0 or min(self.anchor_ratios) <= 0 or min(self.image_std) <= 0:
            raise ValueError("anchor sizes, anchor ratios and image_std must be positive")

    @property
    def strides(self) -> tuple[int, ...]:
        """Input pixels per feature pixel of each level: ``2 ** level``."""
        return tuple(2**k for k in self.levels)

    @property
    def mask_size(self) -> int:
        """Side of the predicted masks (the mask head upsamples its pooled grid by 2)."""
        return 2 * self.mask_pool

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, for a checkpoint or json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MaskRCNNConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MaskRCNNConfig fields: {unknown}")
        return cls(**values)


def _positive(config: MaskRCNNConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
