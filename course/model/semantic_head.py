"""The semantic head of a panoptic model: per-pixel "stuff" classes from the pyramid.

Panoptic FPN's idea (Kirillov et al., 2019): the pyramid that feeds the instance branch already
describes every pixel at several scales, so a small extra head can label the stuff. Each level
``P_k`` goes through ``k - 2`` stages of (3x3 convolution, group norm, ReLU, 2x bilinear
upsampling), ``P2`` through one convolution stage without upsampling, so that every level
arrives at stride 4; the levels are summed, a 1x1 convolution gives one logit per class, and
a 4x bilinear upsampling brings them to the image's pixels.

The classes are those of :data:`course.data.SEMANTIC_CATEGORIES`: class 0 stands for every
thing at once (the instance branch tells them apart), the others are the stuff categories.
Training is a per-pixel cross-entropy that skips unlabelled pixels (class ``-1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from course.model.config import MaskRCNNConfig

IGNORE = -1
"""The class of pixels the semantic loss skips (void)."""


class SemanticHead(nn.Module):
    """Pyramid levels ``P2..`` -> logits ``[B, classes, H/4, W/4]`` (stride 4)."""

    def __init__(self, config: MaskRCNNConfig):
        super().__init__()
        if config.levels[0] != 2:
            raise ValueError(f"the semantic head needs P2 as the finest level, got levels "
                             f"{config.levels}")
        c, width = config.channels, config.semantic_channels
        self.branches = nn.ModuleList(
            nn.Sequential(*_stages(c, width, max(level - 2, 1), upsample=level > 2))
            for level in config.levels[:4])
        self.predictor = nn.Conv2d(width, config.stuff_classes + 1, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)  # start undecided: equal odds
        nn.init.zeros_(self.predictor.bias)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = sum(branch(f.float()) for branch, f in zip(self.branches, features, strict=False))
        return self.predictor(x)


def _stages(channels: int, width: int, count: int, upsample: bool) -> list[nn.Module]:
    """``count`` times (3x3 conv, group norm, ReLU[, 2x upsampling])."""
    layers: list[nn.Module] = []
    for k in range(count):
        layers += [nn.Conv2d(channels if k == 0 else width, width, 3, padding=1, bias=False),
                   nn.GroupNorm(min(8, width), width), nn.ReLU(inplace=True)]
        if upsample:
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return layers


def semantic_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Stride-4 logits ``[B, K, h, w]`` upsampled to the padded batch ``[B, K, H, W]``."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def semantic_loss(logits: Tensor, targets: Sequence[Tensor], sizes: Sequence[tuple[int, int]]
                  ) -> Tensor:
    """Mean cross-entropy over the labelled pixels of every image.

    Args:
        logits (Tensor[B, K, H, W]): at the padded batch's size.
        targets: one ``Tensor[H_i, W_i]`` int64 class map per image (``-1``: skip).
        sizes: each image's ``(H_i, W_i)`` (the padding is skipped too).
    """
    height, width = logits.shape[-2:]
    full = logits.new_full((len(targets), height, width), IGNORE, dtype=targets[0].dtype)
    for i, (target, (h, w)) in enumerate(zip(targets, sizes, strict=True)):
        full[i, :h, :w] = target
    return F.cross_entropy(logits.float(), full, ignore_index=IGNORE)
