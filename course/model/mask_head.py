"""The mask head: a small fully convolutional network that draws each object's mask in its box.

For every positive RoI the head pools a ``14 x 14`` grid from the pyramid, applies a few 3x3
convolutions, upsamples by 2 with a transposed convolution and predicts one ``28 x 28`` mask
per class; only the mask of the RoI's class is trained and used. The target is the object's
ground-truth mask *resampled into the RoI* with :func:`course.roi_align.roi_align`, the same
operation, at the same half-pixel convention, that pooled the features: so target and feature
cells describe the same points of the image, and :func:`course.roi_align.paste_masks` puts
the prediction back where it came from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course.model.box_head import RoISample
from course.model.config import MaskRCNNConfig
from course.roi_align import roi_align
from course.structures import Instances

ROI_BUCKET = 8
"""The mask head runs on a multiple of this many RoIs (zeros pad the rest). Its count of RoIs
changes at every step, and the CPU's convolution library builds and caches new kernels for
every new batch shape: hundreds of shapes cost about a gigabyte of memory. Rounding the count
up keeps a few shapes, at the price of at most 7 wasted RoIs."""


class MaskHead(nn.Module):
    """Pooled RoIs ``[R, C, P, P]`` -> mask logits ``[R, num_classes, 2 P, 2 P]``."""

    def __init__(self, config: MaskRCNNConfig):
        super().__init__()
        c = config.channels
        layers: list[nn.Module] = []
        for _ in range(config.mask_convs):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.ConvTranspose2d(c, c, 2, stride=2)
        self.predictor = nn.Conv2d(c, config.num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)  # start undecided: p = 1/2 everywhere

    def forward(self, pooled: Tensor) -> Tensor:
        n = len(pooled)
        padded = F.pad(pooled, (0, 0, 0, 0, 0, 0, 0, -n % ROI_BUCKET))  # [R', C, P, P]
        x = F.relu(self.upsample(self.convs(padded)))  # [R', C, 2 P, 2 P]
        return self.predictor(x)[:n]


def mask_targets(masks: Tensor, objects: Tensor, boxes: Tensor, size: int) -> Tensor:
    """The part of each object's mask inside its RoI, resampled to ``size x size``.

    Args:
        masks (Tensor[G, H, W]): the image's ground-truth masks.
        objects (Tensor[P]): which mask each RoI learns.
        boxes (Tensor[P, 4]): the RoIs ``(x1, y1, x2, y2)``.

    Returns:
        Tensor[P, size, size] float in [0, 1] (the fraction of each cell inside the mask).
    """
    if len(boxes) == 0:
        return boxes.new_zeros(0, size, size)
    rois = torch.cat([objects[:, None].to(boxes), boxes], dim=1)  # [P, 5]
    return roi_align(masks[:, None].to(boxes.dtype), rois, size, 1.0, -1, True)[:, 0]


def mask_loss(logits: Tensor, sample: RoISample, targets: Sequence[Instances]) -> Tensor:
    """Per-pixel BCE of each positive's class mask against its target, averaged over the
    positives of each image, then over images (an image without positives adds 0).

    Args:
        logits (Tensor[R, num_classes, S, S]): the head's output for the positives of every
            image, in order.
    """
    size = logits.shape[-1]
    per_image, start = [], 0
    for boxes, labels, objects, npos, target in zip(sample.boxes, sample.labels, sample.objects,
                                                    sample.num_positive, targets, strict=True):
        mine = logits[start:start + npos]
        start += npos
        if npos == 0:
            per_image.append(logits.sum() * 0)
            continue
        goal = mask_targets(target.masks.to(boxes.device), objects[:npos], boxes[:npos], size)
        picked = mine[torch.arange(npos, device=mine.device), labels[:npos] - 1]  # [npos, S, S]
        per_image.append(F.binary_cross_entropy_with_logits(picked, goal.to(picked.dtype)))
    return torch.stack(per_image).mean()
