"""From head outputs to detections: scores, boxes, non-maximum suppression, full-image masks.

Each proposal yields one candidate per class: the class's softmax score and the proposal
decoded with that class's offsets. Candidates below ``score_threshold`` or with an empty box
are dropped, non-maximum suppression runs per class, and the ``detections_per_image`` best
remain. Their masks come from the mask head (the predicted class's channel), are turned into
probabilities and pasted into the image at their box with :func:`course.roi_align.paste_masks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from course.model.box_coding import clip_boxes, decode_boxes
from course.model.config import MaskRCNNConfig
from course.roi_align import paste_masks
from course.structures import Instances

MIN_BOX_SIDE = 1e-2
"""Detections narrower or lower than this (pixels) are dropped."""


def detect(class_logits: Tensor, deltas: Tensor, proposals: Sequence[Tensor],
           image_sizes: Sequence[tuple[int, int]], config: MaskRCNNConfig) -> list[Instances]:
    """Detections (boxes, labels, scores; no masks yet) of each image.

    Args:
        class_logits (Tensor[R, K + 1]), deltas (Tensor[R, K + 1, 4]): the box head's output
            for the proposals of every image, in order.
        proposals: ``Tensor[P_i, 4]`` per image, ``sum P_i = R``.
        image_sizes: ``(H, W)`` per image.
    """
    sizes = [len(p) for p in proposals]
    out = []
    for logits, d, boxes, (h, w) in zip(class_logits.split(sizes), deltas.split(sizes),
                                        proposals, image_sizes, strict=True):
        scores = F.softmax(logits.float(), dim=1)[:, 1:]  # [P, K], background dropped
        decoded = clip_boxes(decode_boxes(d[:, 1:].float(), boxes[:, None].float(),
                                          config.box_weights), h, w)  # [P, K, 4]
        labels = torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(scores)
        scores, decoded, labels = scores.reshape(-1), decoded.reshape(-1, 4), labels.reshape(-1)
        sides = torch.minimum(decoded[:, 2] - decoded[:, 0], decoded[:, 3] - decoded[:, 1])
        keep = torch.nonzero((scores > config.score_threshold)
                             & (sides >= MIN_BOX_SIDE)).squeeze(1)
        keep = keep[batched_nms(decoded[keep], scores[keep], labels[keep], config.box_nms)]
        keep = keep[:config.detections_per_image]  # NMS returns them by decreasing score
        out.append(Instances(decoded[keep], labels[keep], scores[keep], image_size=(h, w)))
    return out


def paste_detections(detections: Sequence[Instances], mask_logits: Tensor,
                     threshold: float) -> list[Instances]:
    """Each detection with its full-image bool mask.

    Args:
        mask_logits (Tensor[D, K, S, S]): the mask head's output for every detection, in order.
        threshold: probability above which a pixel belongs to the object.
    """
    out, start = [], 0
    for det in detections:
        n = len(det)
        logits = mask_logits[start:start + n]
        start += n
        picked = logits[torch.arange(n, device=logits.device), det.labels - 1]  # [n, S, S]
        h, w = det.image_size
        probs = paste_masks(picked.float().sigmoid(), det.boxes.float(), h, w)  # [n, H, W]
        out.append(Instances(det.boxes, det.labels, det.scores, probs > threshold, (h, w),
                             det.image_id))
    return out
