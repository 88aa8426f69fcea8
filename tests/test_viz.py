import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb

from course import viz
from course.data import make_scene, simulate_predictions
from course.masks import mask_iou
from course.matching import tp_fp_fn


def test_drawing_functions_draw_without_error():
    scene = make_scene(seed=0)
    pred = simulate_predictions(scene, seed=1)
    iou = mask_iou(pred.masks, scene.masks)
    result = tp_fp_fn(iou, pred.labels, scene.labels)
    fig, axes = plt.subplots(1, 4)
    viz.draw_instances(scene.image, scene.masks, scene.labels, ax=axes[0], title="scene")
    viz.draw_overlap(scene.masks[0], pred.masks[0], ax=axes[1])
    viz.plot_matrix(iou, ax=axes[2])
    viz.draw_matches(scene.image, scene.masks, pred.masks, result, ax=axes[3])
    assert len(axes[2].texts) == iou.numel()
    assert [t.get_text() for t in axes[3].get_legend().get_texts()] == [
        f"TP ({result.tp})", f"FP ({result.fp})", f"FN ({result.fn})"]
    plt.close(fig)


def test_draw_instances_without_an_image():
    ax = viz.draw_instances(None, torch.zeros(2, 5, 5, dtype=torch.bool))
    assert ax.images
    plt.close("all")


# --- chapters 04-05 ---


def test_draw_panoptic_labels_every_segment():
    from course.data import make_panoptic_scene

    scene = make_panoptic_scene(48, 48, crowd_rate=1.0, seed=2)
    ax = viz.draw_panoptic(scene.ids, scene.segments, scene.image, title="gt")
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == len(scene.segments) and any("(crowd)" in t for t in labels)
    plt.close("all")


# --- edge cases: one object, labels that would collide, masks that fill the image ---------


def _label_boxes(ax):
    """Window extents of the labels written on ``ax`` (bbox padding included)."""
    renderer = ax.figure.canvas.get_renderer()
    pad = renderer.points_to_pixels(1.0)
    return [t.get_window_extent(renderer).padded(pad) for t in ax.texts]


def _assert_labels_inside_and_apart(ax):
    frame = ax.get_window_extent(ax.figure.canvas.get_renderer())
    boxes = _label_boxes(ax)
    for t, b in zip(ax.texts, boxes, strict=True):
        assert frame.x0 - 0.5 <= b.x0 and b.x1 <= frame.x1 + 0.5, t.get_text()
        assert frame.y0 - 0.5 <= b.y0 and b.y1 <= frame.y1 + 0.5, t.get_text()  # not on the title
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[:i]):
            assert not a.overlaps(b), (ax.texts[i].get_text(), ax.texts[j].get_text())


def _pixel(ax, fx, fy):
    """The RGB drawn at a fraction (fx, fy) of the axes, fy from the top."""
    fig = ax.figure
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    box = ax.get_window_extent()
    col = int(box.x0 + fx * box.width)
    row = rgba.shape[0] - int(box.y1 - fy * box.height)
    return rgba[row, col, :3] / 255


def _outlined(ax):
    return any(len(p.vertices) for c in ax.collections for p in c.get_paths())


@pytest.mark.parametrize("value", [True, False])
def test_draw_mask_shows_true_white_even_when_every_pixel_is_true(value):
    ax = viz.draw_mask(torch.full((6, 6), value))
    assert ax.images[0].get_clim() == (0, 1)
    assert np.allclose(_pixel(ax, 0.5, 0.5), 1.0 if value else 0.0, atol=0.02)
    plt.close("all")


def test_draw_instances_one_object():
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[0, 5:15, 5:15] = True
    ax = viz.draw_instances(None, mask, [2], title="one")
    assert [t.get_text() for t in ax.texts] == ["0:square"]
    _assert_labels_inside_and_apart(ax)
    assert np.allclose(_pixel(ax, 0.5, 0.5), 0.5 * 0.92 + 0.5 * np.array(to_rgb(viz.PALETTE[0])),
                       atol=0.02)
    plt.close("all")


def test_draw_instances_labels_of_overlapping_and_full_masks_do_not_collide():
    masks = torch.zeros(4, 24, 40, dtype=torch.bool)
    masks[0] = True  # the whole image: its label cannot go above it
    masks[1, :, :20] = True  # three masks with the same top-left corner
    masks[2, :, :10] = True
    masks[3, :12, :30] = True
    fig, ax = plt.subplots(figsize=(4, 2.5))
    viz.draw_instances(None, masks, [1, 2, 3, 1], ax=ax, title="crowded")
    assert sorted(t.get_text() for t in ax.texts) == ["0:circle", "1:square", "2:triangle",
                                                       "3:circle"]
    _assert_labels_inside_and_apart(ax)
    assert _outlined(ax)  # a mask that fills the image still has an outline
    plt.close("all")


def test_draw_overlap_of_identical_full_masks_is_all_intersection():
    full = torch.ones(8, 8, dtype=torch.bool)
    ax = viz.draw_overlap(full, full)
    assert np.allclose(_pixel(ax, 0.3, 0.3), to_rgb("#3cb44b"), atol=0.02)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "prediction only", "ground truth only", "both"]
    plt.close("all")


def test_plot_matrix_one_entry():
    ax = viz.plot_matrix(torch.tensor([[0.25]]))
    assert [t.get_text() for t in ax.texts] == ["0.25"]
    assert to_rgb(ax.texts[0].get_color()) == (1.0, 1.0, 1.0)  # white on the dark end
    plt.close("all")


def test_draw_matches_one_full_match_and_a_miss():
    gt = torch.zeros(2, 10, 10, dtype=torch.bool)
    gt[0] = True
    gt[1, :3, :3] = True
    pred = gt[:1].clone()
    result = tp_fp_fn(mask_iou(pred, gt), torch.tensor([1]), torch.tensor([1, 1]))
    ax = viz.draw_matches(None, gt, pred, result)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["TP (1)", "FP (0)", "FN (1)"]
    tp = 0.45 * 0.92 + 0.55 * np.array(to_rgb(viz.TP_COLOUR))
    assert np.allclose(_pixel(ax, 0.5, 0.5), tp, atol=0.02)
    assert _outlined(ax)  # the missed object
    plt.close("all")


def test_draw_panoptic_one_segment_filling_the_image():
    ids = torch.ones(16, 16, dtype=torch.int64)
    ax = viz.draw_panoptic(ids, {1: (4, False)}, title="sky only")
    assert [t.get_text() for t in ax.texts] == ["sky"]
    _assert_labels_inside_and_apart(ax)
    assert _outlined(ax)
    plt.close("all")


def test_draw_detections_labels_of_boxes_at_the_top_edge_do_not_collide():
    from course.structures import Instances

    boxes = torch.tensor([[0.0, 0.0, 30.0, 20.0], [1.0, 0.0, 25.0, 18.0], [2.0, 1.0, 39.0, 23.0]])
    inst = Instances(image_size=(24, 40), boxes=boxes, labels=torch.tensor([1, 2, 3]),
                     scores=torch.tensor([0.9, 0.8, 0.7]))
    fig, ax = plt.subplots(figsize=(4, 2.5))
    viz.draw_detections(None, inst, ax=ax, title="detections")
    assert [t.get_text() for t in ax.texts] == ["circle 0.90", "square 0.80", "triangle 0.70"]
    _assert_labels_inside_and_apart(ax)
    plt.close("all")


# --- wrong input: a clear error naming the argument, never an IndexError from deep inside ---


def _scene_and_match():
    scene = make_scene(seed=0)
    pred = simulate_predictions(scene, seed=1)
    result = tp_fp_fn(mask_iou(pred.masks, scene.masks), pred.labels, scene.labels)
    return scene, pred, result


@pytest.mark.parametrize("labels, match", [
    ([1], "one class id per mask"),
    ([1, 9], "unknown ids \\[9\\]"),
    ([0, 1], "unknown ids \\[0\\]"),
    ([1.5, 2], "whole class ids"),
])
def test_draw_instances_refuses_labels_of_the_wrong_length_or_unknown(labels, match):
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, :3], masks[1, 3:] = True, True
    with pytest.raises(ValueError, match=match):
        viz.draw_instances(None, masks, torch.tensor(labels))
    plt.close("all")


def test_draw_instances_refuses_a_single_mask_and_an_image_of_another_size():
    with pytest.raises(ValueError, match="masks must be \\[N, H, W\\]"):
        viz.draw_instances(None, torch.zeros(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="image is \\[8, 8\\]"):
        viz.draw_instances(torch.zeros(3, 8, 8), torch.zeros(1, 6, 6, dtype=torch.bool))
    plt.close("all")


def test_draw_matches_refuses_masks_that_are_not_the_matched_ones():
    scene, pred, result = _scene_and_match()
    with pytest.raises(ValueError, match="pred_masks and .* gt_masks were given"):
        viz.draw_matches(scene.image, scene.masks, pred.masks[:-1], result)
    with pytest.raises(ValueError, match="must be one size"):
        viz.draw_matches(None, scene.masks, pred.masks[:, :-1], result)
    plt.close("all")


def test_draw_overlap_and_draw_mask_refuse_wrong_shapes():
    with pytest.raises(ValueError, match="same size"):
        viz.draw_overlap(torch.zeros(4, 4), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="one \\[H, W\\] mask"):
        viz.draw_mask(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="2-D"):
        viz.plot_matrix(torch.zeros(3))
    plt.close("all")


def test_draw_panoptic_refuses_an_unknown_category():
    ids = torch.zeros(6, 6, dtype=torch.long)
    ids[:3] = 1
    with pytest.raises(ValueError, match="segments' categories must be in 1..2"):
        viz.draw_panoptic(ids, {1: (3, False)}, class_names=["a", "b"])
    plt.close("all")


def test_draw_detections_refuses_unknown_labels():
    from course.structures import Instances
    inst = Instances(boxes=torch.tensor([[1.0, 1.0, 4.0, 4.0]]), labels=torch.tensor([7]),
                     scores=torch.tensor([0.9]), image_size=(8, 8))
    with pytest.raises(ValueError, match="unknown ids \\[7\\]"):
        viz.draw_detections(None, inst)
    plt.close("all")
