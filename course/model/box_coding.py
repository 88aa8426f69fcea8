"""Box coding: a box as four offsets from a reference box, and back.

The RPN refines anchors and the box head refines proposals by predicting, for a reference
box ``r`` (centre ``cx_r, cy_r``, size ``w_r, h_r``), the offsets of the true box ``g``:

    dx = wx (cx_g - cx_r) / w_r      dy = wy (cy_g - cy_r) / h_r
    dw = ww log(w_g / w_r)           dh = wh log(h_g / h_r)

Centre offsets are measured in box widths and sizes as log-ratios, so the same targets serve a
16-pixel and a 64-pixel object. The weights ``(wx, wy, ww, wh)`` scale the targets to unit
size: ``(1, 1, 1, 1)`` for the RPN and ``(10, 10, 5, 5)`` for the box head, whose proposals
are already close. Decoding clamps ``dw`` and ``dh`` at ``log(1000 / 16)`` so that an
untrained network cannot overflow ``exp``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MAX_LOG_SCALE = math.log(1000.0 / 16)
"""The largest ``dw`` / ``dh`` decoding accepts (as in Detectron and torchvision)."""


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes: Tensor, reference: Tensor,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """The offsets that turn ``reference`` into ``boxes``.

    Args:
        boxes (Tensor[..., 4]): target boxes ``(x1, y1, x2, y2)``, positive sizes.
        reference (Tensor[..., 4]): anchors or proposals, positive sizes, broadcastable.
        weights: ``(wx, wy, ww, wh)``.

    Returns:
        Tensor[..., 4] ``(dx, dy, dw, dh)``.
    """
    wx, wy, ww, wh = weights
    cx, cy, w, h = _centre_size(boxes)
    rcx, rcy, rw, rh = _centre_size(reference)
    return torch.stack([wx * (cx - rcx) / rw, wy * (cy - rcy) / rh,
                        ww * torch.log(w / rw), wh * torch.log(h / rh)], dim=-1)


def decode_boxes(deltas: Tensor, reference: Tensor,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """The boxes that ``deltas`` describe relative to ``reference`` (the inverse of encoding).

    Args:
        deltas (Tensor[..., 4]): ``(dx, dy, dw, dh)``.
        reference (Tensor[..., 4]): ``(x1, y1, x2, y2)``, broadcastable against ``deltas``.
        weights: ``(wx, wy, ww, wh)``, as used to encode.

    Returns:
        Tensor[..., 4] ``(x1, y1, x2, y2)``.
    """
    wx, wy, ww, wh = weights
    rcx, rcy, rw, rh = _centre_size(reference.to(deltas.dtype))
    cx = deltas[..., 0] / wx * rw + rcx
    cy = deltas[..., 1] / wy * rh + rcy
    w = torch.exp((deltas[..., 2] / ww).clamp(max=MAX_LOG_SCALE)) * rw
    h = torch.exp((deltas[..., 3] / wh).clamp(max=MAX_LOG_SCALE)) * rh
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """``boxes (Tensor[..., 4])`` clipped to the image ``[0, width] x [0, height]``."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
