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


Anchor = tuple[float, float, str, str]  # x, y (data coordinates), ha, va


def _anchors(mask: np.ndarray) -> list[Anchor]:
    """Where a mask's label may go, best first: above its top-left corner, inside it there,
    below its bottom-left corner, at its pixel nearest the centroid, then down its left side."""
    ys, xs = np.nonzero(mask)
    x0, y0, y1 = float(xs.min()), float(ys.min()), float(ys.max())
    i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # nearest the centroid
    found = [(x0 - 0.5, y0 - 1, "left", "bottom"), (x0 - 0.5, y0 - 0.5, "left", "top"),
             (x0 - 0.5, y1 + 1, "left", "top"), (float(xs[i]), float(ys[i]), "center", "center")]
    found += [(x0 - 0.5, float(y), "left", "top") for y in np.linspace(y0, y1, 8)[1:]]
    return found


def _place_labels(ax: Axes, labels: Sequence[tuple[str, str, list[Anchor]]],
                  fontsize: float, alpha: float = 1.0) -> None:
    """Write each ``(text, colour, anchors)`` at its first anchor where the label lies inside
    the axes (so never on the title) and overlaps no label already written; if there is none,
    at the anchor inside the axes that overlaps least. Sizes come from the figure's renderer."""
    renderer = _renderer(ax)
    frame = ax.get_window_extent(renderer)
    pad = renderer.points_to_pixels(1.0)  # the bbox's "pad": 1 (points)
    placed: list = []

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return max(w, 0.0) * max(h, 0.0)

    for text, colour, anchors in labels:
        artist = ax.text(0, 0, text, color="white", fontsize=fontsize,
                         bbox={"facecolor": colour, "pad": 1, "lw": 0, "alpha": alpha})
        best = None
        for x, y, ha, va in anchors:
            artist.set_position((x, y))
            artist.set_ha(ha)
            artist.set_va(va)
            box = artist.get_window_extent(renderer).padded(pad)  # the text and its bbox
            shift = min(frame.x1 - box.x1, 0.0) or max(frame.x0 - box.x0, 0.0)
            if shift:  # slide along x into the axes
                at = ax.transData.transform((x, y)) + (shift, 0.0)
                x = float(ax.transData.inverted().transform(at)[0])
                artist.set_x(x)
                box = artist.get_window_extent(renderer).padded(pad)
            if not (frame.x0 - 0.5 <= box.x0 and box.x1 <= frame.x1 + 0.5
                    and frame.y0 - 0.5 <= box.y0 and box.y1 <= frame.y1 + 0.5):
                continue
            cost = sum(overlap(box, other) for other in placed)
            if best is None or cost < best[0]:
                best = (cost, (x, y, ha, va), box)
            if cost == 0:
                break
        if best is None:  # nowhere inside: keep the first anchor, clipped to the axes
            x, y, ha, va = anchors[0]
            artist.set_position((x, y))
            artist.set_ha(ha)
            artist.set_va(va)
            artist.set_clip_on(True)
            continue
        (x, y, ha, va), box = best[1], best[2]
        artist.set_position((x, y))
        artist.set_ha(ha)
        artist.set_va(va)
        placed.append(box)


def _renderer(ax: Axes):
    canvas = ax.figure.canvas
    return canvas.get_renderer() if hasattr(canvas, "get_renderer") else ax.figure._get_renderer()


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
    texts = []
    for i, mask in enumerate(m):
        if not mask.any():
            continue
        colour = PALETTE[i % len(PALETTE)]
        _outline(ax, mask, colour, 1.2)
        if labels is not None:
            texts.append((f"{i}:{class_names[int(labels[i]) - 1]}", colour, _anchors(mask)))
    if title:
        ax.set_title(title, fontsize=9)
    _place_labels(ax, texts, fontsize=7)
    return ax


def _outline(ax: Axes, mask: np.ndarray, colour: str, width: float) -> None:
    """The mask's boundary; padded by one empty pixel so a mask that fills the image has one."""
    padded = np.pad(mask.astype(float), 1)
    ax.contour(np.arange(-1, mask.shape[1] + 1), np.arange(-1, mask.shape[0] + 1), padded,
               levels=[0.5], colors=[colour], linewidths=width)


def draw_mask(mask: Tensor | np.ndarray, ax: Axes | None = None,
              title: str | None = None) -> Axes:
    """One ``[H, W]`` boolean (or 0/1) mask, True white and False black, whatever it holds.

    ``imshow`` on its own scales the colours to the values present, so an all-True mask would
    come out black, the colour it gives False; here the scale is fixed to [0, 1].
    """
    m = _np(mask).astype(float)
    ax = _axes(ax)
    ax.imshow(m, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
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
            _outline(ax, gt[j], FN_COLOUR, 2)
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
    texts = []
    for k, (sid, (cat, crowd)) in enumerate(sorted(segments.items())):
        mask = m == sid
        if not mask.any():
            continue
        _outline(ax, mask, "white", 0.8)
        if crowd:
            ax.contourf(mask.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
        label = f"{names[int(cat) - 1]}{' (crowd)' if crowd else ''}"
        anchors = _anchors(mask)
        texts.append((label, PALETTE[k % len(PALETTE)], [anchors[3], *anchors[4:], anchors[1]]))
    if title:
        ax.set_title(title, fontsize=9)
    _place_labels(ax, texts, fontsize=6, alpha=0.8)
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
    texts = []
    for i, (x1, y1, x2, y2) in enumerate(_np(instances.boxes).tolist()):
        colour = PALETTE[i % len(PALETTE)]
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                               edgecolor=colour, linewidth=1.0))
        text = class_names[labels[i] - 1]
        if instances.scores is not None:
            text += f" {float(instances.scores[i]):.2f}"
        anchors = [(x1 - 0.5, y1 - 1, "left", "bottom"), (x1 - 0.5, y1 - 0.5, "left", "top"),
                   (x1 - 0.5, y2 - 0.5, "left", "top")]
        anchors += [(x1 - 0.5, float(y), "left", "top") for y in np.linspace(y1, y2, 8)[1:]]
        texts.append((text, colour, anchors))
    if title:
        ax.set_title(title, fontsize=9)
    _place_labels(ax, texts, fontsize=6)
    return ax
