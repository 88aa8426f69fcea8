"""Pictures for the chapters: instances drawn over images, overlaps, matrices, matches."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch, Rectangle
from torch import Tensor

from course.data import CLASSES
from course.matching import MatchResult
from course.structures import Instances

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#469990", "#9a6324", "#800000", "#808000", "#000075", "#a9a9a9"]
TP_COLOUR, FP_COLOUR, FN_COLOUR = "#2ca02c", "#d62728", "#ff7f0e"


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _axes(ax: Axes | None, size: tuple[float, float] = (4, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _image(image: Tensor | np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if image is None:
        return np.full((*shape, 3), 0.92)
    img = _np(image)
    return img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] in (1, 3) else img


def _overlay(base: np.ndarray, mask: np.ndarray, colour: str, alpha: float) -> None:
    base[mask] = (1 - alpha) * base[mask] + alpha * np.array(to_rgb(colour))


def draw_instances(image: Tensor | np.ndarray | None, masks: Tensor | np.ndarray,
                   labels: Tensor | Sequence[int] | None = None, ax: Axes | None = None,
                   class_names: Sequence[str] = CLASSES, alpha: float = 0.5,
                   title: str | None = None) -> Axes:
    """Draw each instance mask in its own colour, outlined, with its class name.

    Args:
        image (Tensor[3, H, W] or None): the picture underneath (float in [0, 1]).
        masks (Tensor[N, H, W]): binary masks.
        labels (Tensor[N], optional): 1-based class ids into ``class_names``.
    """
    m = _np(masks).astype(bool)
    ax = _axes(ax)
    canvas = _image(image, m.shape[1:]).astype(float).copy()
    for i, mask in enumerate(m):
        _overlay(canvas, mask, PALETTE[i % len(PALETTE)], alpha)
    ax.imshow(canvas, interpolation="nearest")
    for i, mask in enumerate(m):
        if not mask.any():
            continue
        colour = PALETTE[i % len(PALETTE)]
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
        if labels is not None:
            ys, xs = np.nonzero(mask)
            name = class_names[int(labels[i]) - 1]
            ax.text(xs.min(), ys.min() - 1, f"{i}:{name}", color="white", fontsize=7,
                    bbox={"facecolor": colour, "pad": 1, "lw": 0})
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_overlap(a: Tensor | np.ndarray, b: Tensor | np.ndarray, ax: Axes | None = None,
                 title: str | None = None) -> Axes:
    """Two ``[H, W]`` masks: only ``a``, only ``b`` and their intersection in three colours."""
    a, b = _np(a).astype(bool), _np(b).astype(bool)
    ax = _axes(ax)
    canvas = np.full((*a.shape, 3), 0.95)
    canvas[a & ~b] = to_rgb("#4363d8")
    canvas[b & ~a] = to_rgb("#f58231")
    canvas[a & b] = to_rgb("#3cb44b")
    ax.imshow(canvas, interpolation="nearest")
    ax.legend(handles=[Patch(color="#4363d8", label="prediction only"),
                       Patch(color="#f58231", label="ground truth only"),
                       Patch(color="#3cb44b", label="both")],
              loc="lower right", fontsize=7, framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_matrix(matrix: Tensor | np.ndarray, ax: Axes | None = None,
                row_label: str = "prediction", col_label: str = "ground truth",
                fmt: str = "{:.2f}", cmap: str = "viridis") -> Axes:
    """A small matrix (an IoU matrix, say) as a heatmap with its values written in."""
    m = _np(matrix).astype(float)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * m.shape[1] + 1.5, 0.45 * m.shape[0] + 1))
    ax.imshow(m, cmap=cmap, vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(m):
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=7,
                color="black" if v > 0.6 else "white")
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    return ax


def draw_matches(image: Tensor | np.ndarray | None, gt_masks: Tensor | np.ndarray,
                 pred_masks: Tensor | np.ndarray, result: MatchResult, ax: Axes | None = None,
                 title: str | None = None) -> Axes:
    """Matched predictions in green, false positives in red, missed ground truth in orange."""
    gt, pred = _np(gt_masks).astype(bool), _np(pred_masks).astype(bool)
    ax = _axes(ax)
    canvas = _image(image, gt.shape[1:]).astype(float).copy()
    fp = set(result.unmatched_pred().tolist())
    for i, mask in enumerate(pred):
        _overlay(canvas, mask, FP_COLOUR if i in fp else TP_COLOUR, 0.55)
    ax.imshow(canvas, interpolation="nearest")
    for j in result.unmatched_gt().tolist():
        if gt[j].any():
            ax.contour(gt[j].astype(float), levels=[0.5], colors=[FN_COLOUR], linewidths=2)
    ax.legend(handles=[Patch(color=TP_COLOUR, label=f"TP ({result.tp})"),
                       Patch(color=FP_COLOUR, label=f"FP ({result.fp})"),
                       Patch(color=FN_COLOUR, label=f"FN ({result.fn})")],
              loc="lower right", fontsize=7, framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax



# ---------------------------------------------------------------------------------------------
# Chapters 04-05: panoptic segmentations
# ---------------------------------------------------------------------------------------------

VOID_COLOUR = "#202020"


def draw_panoptic(ids: Tensor | np.ndarray, segments: dict[int, tuple[int, bool]],
                  image: Tensor | np.ndarray | None = None, ax: Axes | None = None,
                  class_names: Sequence[str] | None = None, title: str | None = None,
                  alpha: float = 0.6) -> Axes:
    """A panoptic segmentation: each segment in its own colour, crowd hatched, void dark.

    Args:
        ids (Tensor[H, W]): segment id of each pixel, 0 for void.
        segments: ``{id: (category_id, iscrowd)}``.
        image (Tensor[3, H, W], optional): the picture underneath.
        class_names: names of the categories, 1-based; default
            :data:`course.data.PANOPTIC_CLASSES`.
    """
    from course.data import PANOPTIC_CLASSES

    names = PANOPTIC_CLASSES if class_names is None else class_names
    m = _np(ids)
    ax = _axes(ax)
    canvas = _image(image, m.shape).astype(float).copy()
    for k, sid in enumerate(sorted(segments)):
        _overlay(canvas, m == sid, PALETTE[k % len(PALETTE)], alpha)
    canvas[m == 0] = to_rgb(VOID_COLOUR)
    ax.imshow(canvas, interpolation="nearest")
    for k, (sid, (cat, crowd)) in enumerate(sorted(segments.items())):
        mask = m == sid
        if not mask.any():
            continue
        ax.contour(mask.astype(float), levels=[0.5], colors=["white"], linewidths=0.8)
        if crowd:
            ax.contourf(mask.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
        ys, xs = np.nonzero(mask)
        i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # nearest the centroid
        label = f"{names[int(cat) - 1]}{' (crowd)' if crowd else ''}"
        ax.text(xs[i], ys[i], label, color="white", fontsize=6, ha="center", va="center",
                bbox={"facecolor": PALETTE[k % len(PALETTE)], "pad": 0.8, "lw": 0, "alpha": 0.8})
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_detections(image: Tensor | np.ndarray | None, instances: Instances,
                    ax: Axes | None = None, class_names: Sequence[str] = CLASSES,
                    min_score: float = 0.5, alpha: float = 0.45,
                    title: str | None = None) -> Axes:
    """Draw an :class:`~course.structures.Instances`: masks (if any), boxes, class and score.

    Args:
        image (Tensor[3, H, W] or None): the picture underneath (float in [0, 1]).
        instances: detections or ground truth (without scores, every object is drawn).
        min_score: detections scoring below this are left out.
    """
    if instances.scores is not None:
        instances = instances[instances.scores >= min_score]
    labels = _np(instances.labels).astype(int)
    if labels.size and (labels.min() < 1 or labels.max() > len(class_names)):
        raise ValueError(f"labels must be in 1..{len(class_names)} (class_names has "
                         f"{len(class_names)}), got {sorted(set(labels.tolist()))}")
    ax = _axes(ax)
    canvas = _image(image, instances.image_size).astype(float).copy()
    masks = _np(instances.masks).astype(bool) if instances.masks is not None else None
    for i in range(len(instances)):
        if masks is not None:
            _overlay(canvas, masks[i], PALETTE[i % len(PALETTE)], alpha)
    ax.imshow(canvas, interpolation="nearest")
    for i, (x1, y1, x2, y2) in enumerate(_np(instances.boxes).tolist()):
        colour = PALETTE[i % len(PALETTE)]
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                               edgecolor=colour, linewidth=1.0))
        text = class_names[labels[i] - 1]
        if instances.scores is not None:
            text += f" {float(instances.scores[i]):.2f}"
        ax.text(x1 - 0.5, y1 - 1.5, text, color="white", fontsize=6,
                bbox={"facecolor": colour, "pad": 1, "lw": 0})
    if title:
        ax.set_title(title, fontsize=9)
    return ax
