"""The box head: classify each proposal and refine its box, one set of offsets per class.

Training does not use every proposal. The ground-truth boxes are added to the proposals (so
every object has at least one perfect example), each candidate is matched to its best object
(IoU >= 0.5: a positive of that object's class, else background) and ``roi_batch_per_image``
are sampled, a quarter of them positive at most. The head pools a ``7 x 7`` grid from the
pyramid for each sampled box, and two fully connected layers feed a classifier over
``num_classes + 1`` classes (0 is background) and a regressor of ``4 (num_classes + 1)``
offsets; only the offsets of the true class are trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course.boxes import box_iou
from course.model.assign import POSITIVE, match_boxes, sample_labels
from course.model.box_coding import encode_boxes
from course.model.config import MaskRCNNConfig
from course.structures import Instances


class BoxHead(nn.Module):
    """Pooled RoIs ``[R, C, P, P]`` -> class logits ``[R, K + 1]``, offsets ``[R, K + 1, 4]``."""

    def __init__(self, config: MaskRCNNConfig):
        super().__init__()
        k, r = config.num_classes + 1, config.representation
        self.fc1 = nn.Linear(config.channels * config.box_pool**2, r)
        self.fc2 = nn.Linear(r, r)
        self.classes = nn.Linear(r, k)
        self.deltas = nn.Linear(r, 4 * k)
        nn.init.normal_(self.classes.weight, std=0.01)
        nn.init.normal_(self.deltas.weight, std=0.001)
        for layer in (self.classes, self.deltas):
            nn.init.zeros_(layer.bias)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu(self.fc2(F.relu(self.fc1(pooled.flatten(1)))))  # [R, representation]
        return self.classes(x), self.deltas(x).view(len(x), -1, 4)


class RoISample(NamedTuple):
    """The sampled boxes of each image, positives first, with what they should learn."""

    boxes: list[Tensor]  # [S_i, 4] proposals
    labels: list[Tensor]  # [S_i] class of the matched object, 0 for background
    objects: list[Tensor]  # [S_i] index of the matched object in the image's targets
    num_positive: list[int]


def sample_proposals(proposals: Sequence[Tensor], targets: Sequence[Instances],
                     config: MaskRCNNConfig,
                     generators: Sequence[torch.Generator] | None = None) -> RoISample:
    """Add the ground-truth boxes to each image's proposals, match and sample them."""
    out = RoISample([], [], [], [])
    for i, (boxes, target) in enumerate(zip(proposals, targets, strict=True)):
        candidates = torch.cat([boxes, target.boxes.to(boxes)])  # [P + G, 4]
        iou = box_iou(target.boxes, candidates).to(boxes.dtype)  # [G, P + G]
        match = match_boxes(iou, config.roi_fg_iou, config.roi_fg_iou)
        pos, neg = sample_labels(match.label, config.roi_batch_per_image,
                                 config.roi_positive_fraction,
                                 generators[i] if generators else None)
        picked = torch.cat([pos, neg])
        labels = torch.where(match.label[picked] == POSITIVE,
                             target.labels.to(boxes.device)[match.index[picked]]
                             if len(target) else 0, 0)
        out.boxes.append(candidates[picked])
        out.labels.append(labels)
        out.objects.append(match.index[picked])
        out.num_positive.append(len(pos))
    return out


def box_loss(class_logits: Tensor, deltas: Tensor, sample: RoISample, targets:
             Sequence[Instances], weights: Sequence[float]) -> dict[str, Tensor]:
    """Cross-entropy over the classes and smooth-L1 on the true class's offsets of positives
    (summed, divided by the sampled count), each averaged over images."""
    sizes = [len(b) for b in sample.boxes]
    classification, regression = [], []
    parts = zip(class_logits.split(sizes), deltas.split(sizes), sample.boxes, sample.labels,
                sample.objects, sample.num_positive, targets, strict=True)
    for logits, d, boxes, labels, objects, npos, target in parts:
        classification.append(F.cross_entropy(logits, labels) if len(labels)
                              else logits.sum() * 0)
        goal = encode_boxes(target.boxes.to(boxes)[objects[:npos]], boxes[:npos], weights)
        mine = d[torch.arange(npos, device=d.device), labels[:npos]]  # [npos, 4]
        regression.append(F.smooth_l1_loss(mine, goal, beta=1 / 9, reduction="sum")
                          / max(len(labels), 1))
    return {"box_class": torch.stack(classification).mean(),
            "box_regression": torch.stack(regression).mean()}
