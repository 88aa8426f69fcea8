"""The region proposal network: score every anchor as object or not, and refine it.

A small head slides over every pyramid level: a 3x3 convolution, then per position ``A``
objectness logits and ``4 A`` box offsets (one per anchor). The best-scoring refined anchors
of each level, after non-maximum suppression, are the *proposals* that the box and mask heads
look at. Training labels anchors with :func:`course.model.assign.match_boxes` (IoU >= 0.7
positive, < 0.3 negative, each object's best anchor positive) and samples 256 per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from course.boxes import box_iou
from course.model.anchors import AnchorGenerator
from course.model.assign import match_boxes, sample_labels
from course.model.box_coding import clip_boxes, decode_boxes, encode_boxes
from course.model.config import MaskRCNNConfig
from course.structures import Instances

MIN_PROPOSAL_SIDE = 1e-3
"""Proposals narrower or lower than this (pixels) are dropped."""


class RPNHead(nn.Module):
    """``[B, C, H, W]`` per level -> objectness ``[B, A, H, W]`` and offsets ``[B, 4 A, H, W]``."""

    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Returns per level ``Tensor[B, H W A]`` logits and ``Tensor[B, H W A, 4]`` offsets."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            b, _, h, w = t.shape
            logits.append(self.objectness(t).permute(0, 2, 3, 1).reshape(b, -1))  # [B, H W A]
            d = self.deltas(t).view(b, -1, 4, h, w)  # [B, A, 4, H, W]
            deltas.append(d.permute(0, 3, 4, 1, 2).reshape(b, -1, 4))  # [B, H W A, 4]
        return logits, deltas


class RegionProposalNetwork(nn.Module):
    """Proposals for each image and, in training, the RPN's two losses."""

    def __init__(self, config: MaskRCNNConfig):
        super().__init__()
        self.config = config
        self.anchors = AnchorGenerator(config.anchor_sizes, config.anchor_ratios,
                                       config.strides)
        self.head = RPNHead(config.channels, self.anchors.num_anchors)

    def forward(self, features: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
                targets: Sequence[Instances] | None = None,
                generators: Sequence[torch.Generator] | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals ``list of Tensor[P_i, 4]`` and losses (empty dict without targets)."""
        logits, deltas = self.head(features)
        anchors = self.anchors([tuple(f.shape[-2:]) for f in features], features[0].device)
        proposals = self.propose(logits, deltas, anchors, image_sizes)
        losses: dict[str, Tensor] = {}
        if targets is not None:
            losses = self.loss(torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors),
                               targets, generators)
        return proposals, losses

    def propose(self, logits: list[Tensor], deltas: list[Tensor], anchors: list[Tensor],
                image_sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
        """Top-scoring decoded anchors per level, clipped, NMS-ed, the best of them kept."""
        stage = 0 if self.training else 1
        pre, post = self.config.rpn_pre_nms_top_n[stage], self.config.rpn_post_nms_top_n[stage]
        out = []
        for i, (h, w) in enumerate(image_sizes):
            boxes, scores, levels = [], [], []
            for level, (lg, dl, an) in enumerate(zip(logits, deltas, anchors, strict=True)):
                top = lg[i].detach().topk(min(pre, lg.shape[1])).indices  # [k]
                boxes.append(clip_boxes(decode_boxes(dl[i, top].detach(), an[top]), h, w))
                scores.append(lg[i, top].detach())
                levels.append(torch.full_like(top, level))
            boxes_t, scores_t, levels_t = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
            sides = torch.minimum(boxes_t[:, 2] - boxes_t[:, 0], boxes_t[:, 3] - boxes_t[:, 1])
            keep = torch.nonzero(sides >= MIN_PROPOSAL_SIDE).squeeze(1)
            keep = keep[batched_nms(boxes_t[keep].float(), scores_t[keep].float(),
                                    levels_t[keep], self.config.rpn_nms)]
            out.append(boxes_t[keep[:post]])  # NMS returns them by decreasing score
        return out

    def loss(self, logits: Tensor, deltas: Tensor, anchors: Tensor, targets: Sequence[Instances],
             generators: Sequence[torch.Generator] | None) -> dict[str, Tensor]:
        """Objectness BCE and box smooth-L1 on the sampled anchors, averaged over images."""
        c = self.config
        objectness, regression = [], []
        for i, target in enumerate(targets):
            iou = box_iou(target.boxes, anchors).to(anchors.dtype)  # [G, M]
            match = match_boxes(iou, c.rpn_fg_iou, c.rpn_bg_iou, low_quality=True)
            pos, neg = sample_labels(match.label, c.rpn_batch_per_image,
                                     c.rpn_positive_fraction,
                                     generators[i] if generators else None)
            picked = torch.cat([pos, neg])
            wanted = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).to(logits.dtype)
            objectness.append(F.binary_cross_entropy_with_logits(logits[i, picked], wanted))
            goal = encode_boxes(target.boxes[match.index[pos]].to(anchors), anchors[pos])
            regression.append(F.smooth_l1_loss(deltas[i, pos], goal, beta=1 / 9,
                                               reduction="sum") / max(len(picked), 1))
        return {"rpn_objectness": torch.stack(objectness).mean(),
                "rpn_box": torch.stack(regression).mean()}
