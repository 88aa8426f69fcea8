"""Matching predictions to ground truth, and the TP / FP / FN counts that follow.

All functions take an IoU matrix ``iou [P, G]``: rows are predictions, columns ground truth
(what :func:`course.masks.mask_iou` returns). A pair can match when its IoU is at least the
threshold (``>=``, as COCO does). Each prediction and each ground-truth object is used at most
once, so ``tp + fp = P`` and ``tp + fn = G``.

Two rules are given:

- :func:`hungarian_match` chooses the one-to-one pairing with the largest total IoU among the
  pairs that reach the threshold (an optimal bipartite matching).
- :func:`greedy_match` is COCO's rule: predictions in descending score order, each taking the
  best still-free ground truth.

Where the ground-truth masks do not overlap and the threshold is above 0.5, every prediction
can reach at most one ground truth, so the two rules agree (chapter 02 shows where they don't).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

ArrayLike = Tensor | np.ndarray


@dataclass(frozen=True)
class MatchResult:
    """The outcome of matching ``num_pred`` predictions to ``num_gt`` ground-truth objects.

    Attributes:
        pairs (Tensor[K, 2]): int64 ``(prediction, gt)`` index pairs, sorted by prediction.
        ious (Tensor[K]): float64 IoU of each pair.
        num_pred, num_gt: how many predictions and ground-truth objects took part.
    """

    pairs: Tensor
    ious: Tensor
    num_pred: int
    num_gt: int

    @property
    def tp(self) -> int:
        """Matched predictions."""
        return len(self.pairs)

    @property
    def fp(self) -> int:
        """Predictions left without a partner."""
        return self.num_pred - self.tp

    @property
    def fn(self) -> int:
        """Ground-truth objects left without a partner."""
        return self.num_gt - self.tp

    def unmatched_pred(self) -> Tensor:
        """Indices of the false-positive predictions, ascending."""
        return _complement(self.pairs[:, 0], self.num_pred)

    def unmatched_gt(self) -> Tensor:
        """Indices of the missed (false-negative) ground-truth objects, ascending."""
        return _complement(self.pairs[:, 1], self.num_gt)

    def __repr__(self) -> str:
        pairs = [tuple(p) for p in self.pairs.tolist()]
        return f"MatchResult(tp={self.tp}, fp={self.fp}, fn={self.fn}, pairs={pairs})"


def _complement(used: Tensor, n: int) -> Tensor:
    free = torch.ones(n, dtype=torch.bool)
    free[used] = False
    return free.nonzero().flatten()


def _result(pairs: list[tuple[int, int]], iou: Tensor) -> MatchResult:
    pairs_t = torch.tensor(sorted(pairs), dtype=torch.int64).reshape(-1, 2)  # [K, 2]
    ious = iou[pairs_t[:, 0], pairs_t[:, 1]]  # [K]
    return MatchResult(pairs_t, ious, num_pred=iou.shape[0], num_gt=iou.shape[1])


def as_iou_matrix(iou: ArrayLike, name: str = "iou") -> Tensor:
    """Validate an IoU matrix: 2-D, finite, values in [0, 1]. Returns a float64 CPU tensor."""
    if isinstance(iou, np.ndarray):
        iou = torch.from_numpy(iou)
    if not isinstance(iou, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(iou).__name__}")
    if iou.ndim != 2:
        raise ValueError(f"{name} must have shape [P, G] (predictions x ground truth), "
                         f"got {list(iou.shape)}")
    iou = iou.detach().to("cpu", torch.float64)
    if bool(torch.isnan(iou).any()):
        raise ValueError(f"{name} contains NaN")
    if iou.numel() and (iou.min() < 0 or iou.max() > 1):
        raise ValueError(f"{name} values must lie in [0, 1], got min {iou.min().item():.4g} "
                         f"and max {iou.max().item():.4g}")
    return iou


def check_threshold(threshold: float, name: str = "threshold") -> float:
    """Validate an IoU threshold in [0, 1] and return it as a float."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
        raise TypeError(f"{name} must be a number, got {type(threshold).__name__}")
    if not 0.0 <= float(threshold) <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {threshold}")
    return float(threshold)


def _as_vector(x: ArrayLike, length: int, name: str, rows: str) -> Tensor:
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim != 1 or len(t) != length:
        raise ValueError(f"{name} must have shape [{length}] (one per {rows}), got {list(t.shape)}")
    return t


def hungarian_match(iou: ArrayLike, threshold: float = 0.5) -> MatchResult:
    """One-to-one matching with the largest total IoU, among pairs with ``IoU >= threshold``.

    Pairs below the threshold are removed *before* the assignment (their weight set to 0 and
    any that is still assigned dropped), so the assignment never trades a valid pair for an
    invalid one. Removing them *after* an assignment over the raw matrix can lose true
    positives: with ``iou = [[0.6, 0.4], [0.45, 0.0]]`` and threshold 0.5, the raw optimum
    pairs (0, 1) and (1, 0), both below 0.5, where (0, 0) alone is a valid match.

    Args:
        iou (Tensor[P, G]): IoU of each prediction (row) with each ground truth (column).
        threshold (float): the smallest IoU that counts as a match.

    Returns:
        MatchResult.
    """
    iou = as_iou_matrix(iou)
    threshold = check_threshold(threshold)
    valid = iou >= threshold  # [P, G]
    weights = torch.where(valid, iou, 0.0).numpy()
    rows, cols = linear_sum_assignment(weights, maximize=True)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if valid[r, c]]
    return _result(pairs, iou)


def greedy_match(iou: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> MatchResult:
    """COCO's matching: predictions by descending score, each takes the best free ground truth.

    The sort is stable, so equal scores keep their row order. A prediction takes the free
    column with the highest IoU, provided it is ``>= threshold``; among equal IoUs the later
    column wins, as in pycocotools' ``evaluateImg``.

    Args:
        iou (Tensor[P, G]): IoU of each prediction (row) with each ground truth (column).
        scores (Tensor[P]): confidence of each prediction.
        threshold (float): the smallest IoU that counts as a match.

    Returns:
        MatchResult.
    """
    iou = as_iou_matrix(iou)
    threshold = check_threshold(threshold)
    scores = _as_vector(scores, iou.shape[0], "scores", "row of iou").to(torch.float64)
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contains NaN")
    order = np.argsort(-scores.numpy(), kind="stable")
    free = np.ones(iou.shape[1], dtype=bool)
    ious = iou.numpy()
    pairs = []
    for d in order:
        candidates = np.where(free, ious[d], -1.0)  # taken columns can never win
        if not len(candidates):
            break
        g = len(candidates) - 1 - int(np.argmax(candidates[::-1]))  # last index of the max
        if candidates[g] >= threshold:
            free[g] = False
            pairs.append((int(d), g))
    return _result(pairs, iou)


def _check_method(method: str, scores: ArrayLike | None, num_pred: int) -> Tensor | None:
    """Validate ``method``; the scores as a vector where the greedy rule needs them."""
    if method not in ("hungarian", "greedy"):
        raise ValueError(f"method must be 'hungarian' or 'greedy', got {method!r}")
    if method == "hungarian":
        return None
    if scores is None:
        raise ValueError("method='greedy' needs scores")
    return _as_vector(scores, num_pred, "scores", "row of iou")


def tp_fp_fn(iou: ArrayLike, pred_labels: ArrayLike, gt_labels: ArrayLike,
             threshold: float = 0.5, *, scores: ArrayLike | None = None,
             method: str = "hungarian") -> MatchResult:
    """Match within each class and count TP / FP / FN for one image.

    A prediction can only match ground truth of its own label; the matching inside a class
    is :func:`hungarian_match` (``method="hungarian"``) or :func:`greedy_match`
    (``method="greedy"``, which needs ``scores``).

    Args:
        iou (Tensor[P, G]): IoU of each prediction with each ground truth, whatever the class.
        pred_labels (Tensor[P]): class of each prediction.
        gt_labels (Tensor[G]): class of each ground-truth object.
        threshold (float): the smallest IoU that counts as a match.
        scores (Tensor[P], optional): prediction confidences, for the greedy rule.
        method (str): ``"hungarian"`` or ``"greedy"``.

    Returns:
        MatchResult with pairs in the image's own indices.
    """
    iou = as_iou_matrix(iou)
    threshold = check_threshold(threshold)
    pred_labels = _as_vector(pred_labels, iou.shape[0], "pred_labels", "row of iou")
    gt_labels = _as_vector(gt_labels, iou.shape[1], "gt_labels", "column of iou")
    scores = _check_method(method, scores, iou.shape[0])
    pairs = []
    for c in torch.unique(torch.cat([pred_labels, gt_labels])).tolist():
        p = (pred_labels == c).nonzero().flatten()
        g = (gt_labels == c).nonzero().flatten()
        sub = iou[p][:, g]  # [Pc, Gc]
        if method == "greedy":
            m = greedy_match(sub, scores[p], threshold)
        else:
            m = hungarian_match(sub, threshold)
        pairs += [(int(p[i]), int(g[j])) for i, j in m.pairs.tolist()]
    return _result(pairs, iou)
