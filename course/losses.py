"""Mask losses: soft Dice, soft Jaccard (IoU), binary cross-entropy, and their mix.

A mask head produces one map of logits per instance, ``[N, H, W]``; each loss here takes those
logits and binary targets of the same shape, computes one number per mask and then reduces
them (``reduction`` is ``"none"`` for ``Tensor[N]``, ``"mean"`` or ``"sum"`` for a scalar).

With ``p = sigmoid(logits)`` and ``g`` the target, summed over the pixels of one mask,

    I = sum p * g,     S = sum p + sum g,     U = S - I      (soft intersection, total, union)

    dice loss    = 1 - (2 I + eps) / (S + eps)
    jaccard loss = 1 - (I + eps) / (U + eps)

On hard 0/1 predictions and ``eps = 0`` these are one minus :func:`course.masks.mask_dice` and
:func:`course.masks.mask_iou`. The smoothing ``eps`` defaults to 1.0 (one pixel's worth; the
"+1" of DETR's and Mask2Former's dice loss). It makes an empty prediction on an empty target
a perfect score, loss 0 with a finite gradient, instead of 0 / 0, and it softens the loss of
objects only a few pixels large: for a 4-pixel object it is a fifth of the denominator.

Both set losses are *non-local*: the gradient at one pixel depends on the sums over the whole
mask (see :func:`dice_grad` and :func:`jaccard_grad`, the closed forms). BCE's does not.

Empty inputs are defined: zero masks give ``Tensor[0]`` (``"none"``) or a zero loss that
still has a gradient (``"mean"``, ``"sum"``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1.0
"""Default smoothing of the set losses (see the module docstring)."""

_REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _check_logits(logits: Tensor, name: str = "logits") -> Tensor:
    if not isinstance(logits, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.ndim != 3:
        hint = " (for a single mask pass x[None])" if logits.ndim == 2 else ""
        raise ValueError(f"{name} must have shape [N, H, W], got {list(logits.shape)}{hint}")
    finite = torch.isfinite(logits.detach())
    if not bool(finite.all()):
        what = "NaN" if bool(torch.isnan(logits.detach()).any()) else "inf"
        raise ValueError(f"{name} contain {what} at {int((~finite).sum())} of {logits.numel()} "
                         "pixels; check the model and the learning rate")
    return logits


def _check_targets(targets: Tensor | np.ndarray, like: Tensor, name: str = "targets") -> Tensor:
    if isinstance(targets, np.ndarray):
        targets = torch.from_numpy(targets)
    if not isinstance(targets, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, "
                        f"got {type(targets).__name__}")
    if targets.shape != like.shape:
        raise ValueError(f"{name} must have the shape of the predictions: got "
                         f"{list(targets.shape)} for {list(like.shape)}")
    if targets.is_complex():
        raise TypeError(f"{name} must be bool or hold 0/1 numbers, got dtype {targets.dtype}")
    if targets.dtype != torch.bool:
        binary = (targets == 0) | (targets == 1)
        if not bool(binary.all()):
            bad = targets[~binary][0].item()
            raise ValueError(f"{name} must be binary (bool or 0/1), found the value {bad}")
    return targets.to(device=like.device, dtype=like.dtype)


def _check_probs(probs: Tensor, name: str = "probs") -> Tensor:
    _check_logits(probs, name)
    if bool(((probs < 0) | (probs > 1)).any()):
        raise ValueError(f"{name} must lie in [0, 1] (probabilities, not logits)")
    return probs


def _check_eps(eps: float) -> float:
    if not (isinstance(eps, int | float) and eps >= 0 and np.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _reduce(per_mask: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_mask
    if reduction == "sum":
        return per_mask.sum()
    if reduction == "mean":
        # sum / max(N, 1): the empty batch gives 0 (not NaN) and still has a gradient
        return per_mask.sum() / max(per_mask.numel(), 1)
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _inputs(logits: Tensor, targets: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    logits = _check_logits(logits)
    return logits, _check_targets(targets, logits)


def _sums(p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Soft intersection ``I`` and total ``S = sum p + sum g`` of each mask: two ``Tensor[N]``."""
    p, g = p.flatten(1), g.flatten(1)  # [N, HW]
    return (p * g).sum(1), p.sum(1) + g.sum(1)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def dice_loss(logits: Tensor, targets: Tensor | np.ndarray, eps: float = EPS,
              reduction: str = "mean") -> Tensor:
    """Soft Dice loss ``1 - (2 I + eps) / (S + eps)`` of each mask, then reduced.

    Args:
        logits (Tensor[N, H, W]): raw mask scores; ``sigmoid(logits)`` are the probabilities.
        targets (Tensor[N, H, W]): bool or 0/1.
        eps: smoothing added to numerator and denominator (>= 0).
        reduction: ``"none"`` (``Tensor[N]``), ``"mean"`` or ``"sum"`` (scalars).

    Returns:
        Tensor[N] or a scalar, in the dtype of ``logits``.
    """
    logits, g = _inputs(logits, targets)
    inter, total = _sums(torch.sigmoid(logits), g)
    eps = _check_eps(eps)
    return _reduce(1 - (2 * inter + eps) / (total + eps), reduction)


def jaccard_loss(logits: Tensor, targets: Tensor | np.ndarray, eps: float = EPS,
                 reduction: str = "mean") -> Tensor:
    """Soft Jaccard (IoU) loss ``1 - (I + eps) / (U + eps)`` of each mask, then reduced.

    Args and Returns as :func:`dice_loss`.
    """
    logits, g = _inputs(logits, targets)
    inter, total = _sums(torch.sigmoid(logits), g)
    eps = _check_eps(eps)
    return _reduce(1 - (inter + eps) / (total - inter + eps), reduction)


def bce_mask_loss(logits: Tensor, targets: Tensor | np.ndarray, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy averaged over the pixels of each mask, then reduced.

    This is Mask R-CNN's mask loss: every pixel on its own, so the gradient at a pixel is
    ``sigmoid(logit) - target`` divided by the pixel count, whatever the rest of the mask does.
    A mask with no pixels (``H * W == 0``) has loss 0.

    Args and Returns as :func:`dice_loss` (no ``eps``).
    """
    logits, g = _inputs(logits, targets)
    pixels = logits.shape[1] * logits.shape[2]
    per_pixel = F.binary_cross_entropy_with_logits(logits, g, reduction="none")  # [N, H, W]
    return _reduce(per_pixel.flatten(1).sum(1) / max(pixels, 1), reduction)


def composite_loss(logits: Tensor, targets: Tensor | np.ndarray, w_dice: float = 1.0,
                   w_jaccard: float = 0.0, w_bce: float = 0.0, eps: float = EPS,
                   reduction: str = "mean") -> Tensor:
    """``w_dice * dice + w_jaccard * jaccard + w_bce * bce``, per mask, then reduced.

    Args:
        logits (Tensor[N, H, W]), targets (Tensor[N, H, W]): as :func:`dice_loss`.
        w_dice, w_jaccard, w_bce: non-negative weights; a zero weight skips that term.
        eps: smoothing of the two set losses.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Tensor[N] or a scalar.
    """
    weights = {"w_dice": w_dice, "w_jaccard": w_jaccard, "w_bce": w_bce}
    for name, w in weights.items():
        if not (isinstance(w, int | float) and w >= 0 and np.isfinite(w)):
            raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")
    logits, g = _inputs(logits, targets)
    total = logits.new_zeros(len(logits)) + 0 * logits.flatten(1).sum(1)  # [N], on the graph
    if w_dice:
        total = total + w_dice * dice_loss(logits, g, eps, "none")
    if w_jaccard:
        total = total + w_jaccard * jaccard_loss(logits, g, eps, "none")
    if w_bce:
        total = total + w_bce * bce_mask_loss(logits, g, "none")
    return _reduce(total, reduction)


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def dice_loss_loop(logits: Tensor, targets: Tensor | np.ndarray, eps: float = EPS) -> Tensor:
    """:func:`dice_loss` (``reduction="none"``) as the formula reads, pixel by pixel (slow)."""
    logits, g = _inputs(logits, targets)
    out = []
    for z_mask, g_mask in zip(logits, g, strict=True):
        inter = total = 0.0
        for z, t in zip(z_mask.flatten().tolist(), g_mask.flatten().tolist(), strict=True):
            p = _sigmoid(z)
            inter += p * t
            total += p + t
        out.append(1 - (2 * inter + eps) / (total + eps))
    return torch.tensor(out, dtype=torch.float64)


def jaccard_loss_loop(logits: Tensor, targets: Tensor | np.ndarray, eps: float = EPS) -> Tensor:
    """:func:`jaccard_loss` (``reduction="none"``) as the formula reads, pixel by pixel (slow)."""
    logits, g = _inputs(logits, targets)
    out = []
    for z_mask, g_mask in zip(logits, g, strict=True):
        inter = union = 0.0
        for z, t in zip(z_mask.flatten().tolist(), g_mask.flatten().tolist(), strict=True):
            p = _sigmoid(z)
            inter += p * t
            union += p + t - p * t
        out.append(1 - (inter + eps) / (union + eps))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Closed-form gradients with respect to each pixel's probability
# ---------------------------------------------------------------------------------------------


def dice_grad(probs: Tensor, targets: Tensor | np.ndarray, eps: float = EPS) -> Tensor:
    """``d(dice loss of mask n) / d p[n, k]`` for every pixel, in closed form.

    With ``I``, ``S`` the sums of mask ``n`` (module docstring) and ``dI/dp_k = g_k``,
    ``dS/dp_k = 1``, the quotient rule gives

        dL/dp_k = -(2 g_k (S + eps) - (2 I + eps)) / (S + eps)**2.

    Every pixel's gradient holds ``I`` and ``S``, sums over the whole mask: change the
    prediction far away and the gradient here changes (the non-local property). Inside the
    object (``g_k = 1``) it is negative (raise ``p``), outside positive (lower it). To get the
    gradient with respect to the logits multiply by ``p * (1 - p)``.

    Args:
        probs (Tensor[N, H, W]): probabilities in [0, 1].
        targets (Tensor[N, H, W]): bool or 0/1.
        eps: smoothing, as in :func:`dice_loss`. With ``eps = 0``, a mask whose prediction and
            target are both all zero has no defined gradient (0 / 0).

    Returns:
        Tensor[N, H, W] in the dtype of ``probs``.
    """
    probs = _check_probs(probs)
    g = _check_targets(targets, probs)
    eps = _check_eps(eps)
    inter, total = _sums(probs, g)
    numer = 2 * inter[:, None, None] + eps  # [N, 1, 1]: 2 I + eps
    total = total[:, None, None] + eps  # [N, 1, 1]: S + eps
    return -(2 * g * total - numer) / total**2  # [N, H, W]


def jaccard_grad(probs: Tensor, targets: Tensor | np.ndarray, eps: float = EPS) -> Tensor:
    """``d(jaccard loss of mask n) / d p[n, k]`` for every pixel, in closed form.

    With ``U = S - I`` (so ``dU/dp_k = 1 - g_k``),

        dL/dp_k = -(g_k (U + eps) - (I + eps) (1 - g_k)) / (U + eps)**2,

    that is ``-1 / (U + eps)`` inside the object and ``(I + eps) / (U + eps)**2`` outside.
    For ``eps = 0`` and the same ``probs``, ``dice_grad = 2 / (1 + J)**2 * jaccard_grad`` where
    ``J = I / U`` is the soft IoU: the two differ by a factor that depends on the overlap only.

    Args and Returns as :func:`dice_grad`.
    """
    probs = _check_probs(probs)
    g = _check_targets(targets, probs)
    eps = _check_eps(eps)
    inter, total = _sums(probs, g)
    union = (total - inter)[:, None, None] + eps  # [N, 1, 1]: U + eps
    inter = inter[:, None, None] + eps  # [N, 1, 1]: I + eps
    return -(g * union - inter * (1 - g)) / union**2  # [N, H, W]


def bce_grad(probs: Tensor, targets: Tensor | np.ndarray) -> Tensor:
    """``d(bce_mask_loss of mask n) / d p[n, k]`` in closed form: local, one pixel at a time.

        dL/dp_k = (p_k - g_k) / (p_k (1 - p_k)) / (H W).

    Args:
        probs (Tensor[N, H, W]): probabilities strictly inside (0, 1).
        targets (Tensor[N, H, W]): bool or 0/1.

    Returns:
        Tensor[N, H, W].
    """
    probs = _check_probs(probs)
    g = _check_targets(targets, probs)
    if bool(((probs == 0) | (probs == 1)).any()):
        raise ValueError("probs must lie strictly inside (0, 1) for the BCE gradient")
    pixels = max(probs.shape[1] * probs.shape[2], 1)
    return (probs - g) / (probs * (1 - probs)) / pixels


# ---------------------------------------------------------------------------------------------
# Choosing the weights from an experiment
# ---------------------------------------------------------------------------------------------


def pick_weighting(ratios: Tensor | np.ndarray, ious: Tensor | np.ndarray) -> float | None:
    """The weighting that clearly wins an experiment, or ``None`` when none does.

    Each row of ``ious`` holds the final IoU one weighting reached with each seed. Its *spread*
    is the standard deviation over seeds (with Bessel's correction, ``torch.std``). A weighting
    clearly wins when its mean beats every other weighting's mean by more than the two
    spreads added: the mean +- spread bars do not overlap. Only then is a verdict given.

    Args:
        ratios (Tensor[K]): the weighting of each row (e.g. ``w_jaccard / w_dice``).
        ious (Tensor[K, S]): final IoU of weighting ``k`` with seed ``s``; ``S >= 2``.

    Returns:
        ``float(ratios[k])`` of the clear winner, or ``None``.
    """
    ratios = torch.as_tensor(ratios, dtype=torch.float64)
    ious = torch.as_tensor(ious, dtype=torch.float64)
    if ratios.ndim != 1 or ious.ndim != 2 or len(ratios) != len(ious):
        raise ValueError(f"ratios must be [K] and ious [K, S], got {list(ratios.shape)} "
                         f"and {list(ious.shape)}")
    if len(ratios) == 0:
        raise ValueError("there are no weightings to pick from (K = 0)")
    if ious.shape[1] < 2:
        raise ValueError(f"a spread needs at least 2 seeds per weighting, got {ious.shape[1]}")
    mean, spread = ious.mean(1), ious.std(1)  # [K], [K]
    best = int(mean.argmax())
    others = torch.arange(len(mean)) != best
    margin = mean[best] - mean[others]  # [K - 1]
    if bool((margin > spread[best] + spread[others]).all()):
        return float(ratios[best])
    return None
