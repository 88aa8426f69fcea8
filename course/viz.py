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
    """The picture as float RGB ``[H, W, 3]`` in [0, 1] (a light grey one for None).

    Channels first or last; a grey image (``[H, W]`` or one channel) is repeated to three
    channels; an integer image (``uint8``, 0-255) is scaled to [0, 1].
    """
    if image is None:
        return np.full((*shape, 3), 0.92)
    img = _np(image)
    img = img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] in (1, 3) else img
    img = img[..., None] if img.ndim == 2 else img
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"image must be [3, H, W] or [H, W, 3] (RGB) or [H, W] (grey), got "
                         f"shape {list(_np(image).shape)}")
    if img.dtype.kind in "iu":
        img = img / 255.0
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def _overlay(base: np.ndarray, mask: np.ndarray, colour: str, alpha: float) -> None:
    base[mask] = (1 - alpha) * base[mask] + alpha * np.array(to_rgb(colour))


def _masks(masks: Tensor | np.ndarray, name: str) -> np.ndarray:
    """``masks`` as a bool array ``[N, H, W]``, or a ValueError naming the argument."""
    m = _np(masks)
    if m.ndim != 3:
        raise ValueError(f"{name} must be [N, H, W] masks, got shape {list(m.shape)}")
    return m.astype(bool)


def _mask(mask: Tensor | np.ndarray, name: str) -> np.ndarray:
    m = _np(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be one [H, W] mask, got shape {list(m.shape)}")
    return m


def _labels(labels: Tensor | Sequence[int], n: int, class_names: Sequence[str],
            name: str = "labels") -> np.ndarray:
    """1-based class ids, one per object, each naming a class in ``class_names``."""
    arr = _np(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must hold one class id per mask ({n}), got shape "
                         f"{list(arr.shape)}")
    if arr.size and not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{name} must be whole class ids, got {arr.tolist()}")
    arr = arr.astype(int)
    unknown = sorted({int(v) for v in arr if not 1 <= v <= len(class_names)})
    if unknown:
        raise ValueError(f"{name} must be in 1..{len(class_names)} (class_names has "
                         f"{len(class_names)}), got unknown ids {unknown}")
    return arr


def _same_size(shape: tuple[int, ...], image: Tensor | np.ndarray | None, name: str) -> None:
    """The picture underneath must have the masks' height and width."""
    if image is None:
        return
    img = _image(image, shape)
    if tuple(img.shape[:2]) != tuple(shape):
        raise ValueError(f"image is {list(img.shape[:2])} (height, width) but {name} "
                         f"{list(shape)}")


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
    placed: list = []
    for text, colour, anchors in labels:
        artist = ax.text(0, 0, text, color="white", fontsize=fontsize,
                         bbox={"facecolor": colour, "pad": 1, "lw": 0, "alpha": alpha})
        best = None
        for anchor in anchors:
            fit = _fit_inside(ax, artist, anchor, renderer)
            if fit is None:
                continue
            cost = sum(_overlap(fit[1], other) for other in placed)
            if best is None or cost < best[0]:
                best = (cost, *fit)
            if cost == 0:
                break
        if best is None:  # nowhere inside: keep the first anchor, clipped to the axes
            _put(artist, anchors[0])
            artist.set_clip_on(True)
            continue
        _put(artist, best[1])
        placed.append(best[2])


def _put(artist, anchor: Anchor) -> None:
    x, y, ha, va = anchor
    artist.set_position((x, y))
    artist.set_ha(ha)
    artist.set_va(va)


def _overlap(a, b) -> float:
    """The area two display-space boxes share."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _fit_inside(ax: Axes, artist, anchor: Anchor, renderer):
    """``(anchor, box)`` with the label at ``anchor``, slid along x into the axes if it sticks
    out sideways; ``None`` if it still does not lie inside (it would cross the top or bottom)."""
    frame = ax.get_window_extent(renderer)
    pad = renderer.points_to_pixels(1.0)  # the bbox's "pad": 1 (points)
    _put(artist, anchor)
    box = artist.get_window_extent(renderer).padded(pad)  # the text and its bbox
    shift = min(frame.x1 - box.x1, 0.0) or max(frame.x0 - box.x0, 0.0)
    if shift:  # slide along x into the axes
        at = ax.transData.transform(anchor[:2]) + (shift, 0.0)
        anchor = (float(ax.transData.inverted().transform(at)[0]), *anchor[1:])
        _put(artist, anchor)
        box = artist.get_window_extent(renderer).padded(pad)
    inside = (frame.x0 - 0.5 <= box.x0 and box.x1 <= frame.x1 + 0.5
              and frame.y0 - 0.5 <= box.y0 and box.y1 <= frame.y1 + 0.5)
    return (anchor, box) if inside else None


def _renderer(ax: Axes):
    canvas = ax.figure.canvas
    return canvas.get_renderer() if hasattr(canvas, "get_renderer") else ax.figure._get_renderer()


def draw_instances(image: Tensor | np.ndarray | None, masks: Tensor | np.ndarray,
                   labels: Tensor | Sequence[int] | None = None, ax: Axes | None = None,
                   class_names: Sequence[str] = CLASSES, alpha: float = 0.5,
                   title: str | None = None) -> Axes:
    """Draw each instance mask in its own colour, outlined, with its class name.

    Args:
        image (Tensor[3, H, W] or None): the picture underneath (float in [0, 1], or
            uint8 in 0-255).
        masks (Tensor[N, H, W]): binary masks.
        labels (Tensor[N], optional): 1-based class ids into ``class_names``.
    """
    m = _masks(masks, "masks")
    _same_size(m.shape[1:], image, "the masks are")
    if labels is not None:
        labels = _labels(labels, len(m), class_names)
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
    m = _mask(mask, "mask").astype(float)
    ax = _axes(ax)
    ax.imshow(m, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_overlap(a: Tensor | np.ndarray, b: Tensor | np.ndarray, ax: Axes | None = None,
                 title: str | None = None) -> Axes:
    """Two ``[H, W]`` masks: only ``a``, only ``b`` and their intersection in three colours."""
    a, b = _mask(a, "a").astype(bool), _mask(b, "b").astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same size, got {list(a.shape)} and "
                         f"{list(b.shape)}")
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
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {list(m.shape)}")
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
    gt, pred = _masks(gt_masks, "gt_masks"), _masks(pred_masks, "pred_masks")
    _check_match(gt, pred, result)
    _same_size(gt.shape[1:], image, "the masks are")
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


def _check_match(gt: np.ndarray, pred: np.ndarray, result: MatchResult) -> None:
    """The masks must be the ones ``result`` matched: the same counts, the same image size."""
    if gt.shape[1:] != pred.shape[1:]:
        raise ValueError(f"gt_masks are {list(gt.shape[1:])} and pred_masks "
                         f"{list(pred.shape[1:])} (height, width): they must be one size")
    if (result.num_gt, result.num_pred) != (len(gt), len(pred)):
        raise ValueError(f"result matched {result.num_pred} predictions to {result.num_gt} "
                         f"ground-truth objects, but {len(pred)} pred_masks and {len(gt)} "
                         "gt_masks were given")


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
    m = _mask(ids, "ids")
    _same_size(m.shape, image, "ids is")
    _labels([cat for cat, _ in segments.values()], len(segments), names,
            "the segments' categories")
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
        image (Tensor[3, H, W] or None): the picture underneath (float in [0, 1], or
            uint8 in 0-255).
        instances: detections or ground truth (without scores, every object is drawn).
        min_score: detections scoring below this are left out.
    """
    if instances.scores is not None:
        instances = instances[instances.scores >= min_score]
    labels = _labels(instances.labels, len(instances), class_names)
    _same_size(tuple(instances.image_size), image, "the instances are")
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
