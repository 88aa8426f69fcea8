import matplotlib.pyplot as plt
import torch

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
