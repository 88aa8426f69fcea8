"""Which reference box learns what: matching anchors or proposals to objects, then sampling.

Both stages of Mask R-CNN train the same way. Every reference box (an anchor for the RPN, a
proposal for the heads) is compared by IoU with the image's ground-truth boxes:

- IoU >= ``high`` with its best object: a *positive*, trained to become that object;
- IoU < ``low`` with every object: a *negative*, trained to say "background";
- in between: ignored, neither rewarded nor punished (only when ``low < high``).

With ``low_quality=True`` (the RPN), each object's best anchors are positive whatever their
IoU, so no object is left without a positive. Then a fixed number of positives and negatives is
drawn at random, because there are thousands of easy negatives for every positive.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


class Match(NamedTuple):
    """For each reference box: the index of its best object and its label (1, 0 or -1)."""

    index: Tensor  # [N] int64, 0 where there is no object
    label: Tensor  # [N] int64


def match_boxes(iou: Tensor, high: float, low: float, low_quality: bool = False) -> Match:
    """Label each reference box by its IoU with the objects (see the module docstring).

    Args:
        iou (Tensor[G, N]): IoU of every object (rows) with every reference box (columns).
        high, low: the thresholds, ``low <= high``.
        low_quality: also make each object's best reference boxes positive (ties included).

    Returns:
        Match with ``index [N]`` and ``label [N]``.
    """
    g, n = iou.shape
    if g == 0:  # no objects: everything is background
        zero = torch.zeros(n, dtype=torch.int64, device=iou.device)
        return Match(zero, zero.clone())
    best, index = iou.max(dim=0)  # [N] each
    label = torch.full_like(index, IGNORED)
    label[best >= high] = POSITIVE
    label[best < low] = NEGATIVE
    if low_quality:
        best_of_object = iou.max(dim=1, keepdim=True).values  # [G, 1]
        is_best = (iou == best_of_object) & (best_of_object > 0)  # [G, N]
        label[is_best.any(dim=0)] = POSITIVE
    return Match(index, label)


def sample_labels(label: Tensor, batch: int, positive_fraction: float,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Draw up to ``batch`` reference boxes: positives first (at most ``positive_fraction``
    of them), negatives for the rest.

    Args:
        label (Tensor[N]): 1 / 0 / -1 from :func:`match_boxes`.
        generator: a CPU generator, for sampling that does not depend on global state.

    Returns:
        ``(positives, negatives)``, int64 index tensors on ``label``'s device.
    """
    positive = torch.nonzero(label == POSITIVE).squeeze(1)
    negative = torch.nonzero(label == NEGATIVE).squeeze(1)
    num_pos = min(len(positive), int(batch * positive_fraction))
    num_neg = min(len(negative), batch - num_pos)
    pick_pos = torch.randperm(len(positive), generator=generator)[:num_pos].to(label.device)
    pick_neg = torch.randperm(len(negative), generator=generator)[:num_neg].to(label.device)
    return positive[pick_pos], negative[pick_neg]
