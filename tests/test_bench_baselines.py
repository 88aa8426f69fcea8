"""The benchmark's baselines (bench/baselines.py): torchvision's Mask R-CNN behind the course's
interface, and the classical segmenter."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from course.ap import coco_evaluate
from course.data import ShapesDataset, collate
from course.masks import mask_iou
from course.structures import Instances

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from baselines import (  # noqa: E402
    TorchvisionConfig,
    TorchvisionMaskRCNN,
    classical_predict,
    classical_segment,
    fit_background,
    outline_points,
    shape_residuals,
)


@pytest.fixture(scope="module")
def adapter():
    torch.manual_seed(0)
    # the benchmark's set-up at the test images' size, with fewer proposals and detections
    few = {"rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
           "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
           "box_detections_per_img": 10}
    return TorchvisionMaskRCNN(TorchvisionConfig(image_size=64, options=few))


def small_batch():
    ds = ShapesDataset("train", length=2, image_size=64)
    return collate([ds[0], ds[1]])


def test_adapter_builds_the_64_channel_set_up(adapter):
    assert adapter.config.num_classes == 3
    assert adapter.net.backbone.out_channels == 64
    assert adapter.net.roi_heads.box_predictor.cls_score.out_features == 4  # + background
    assert not any(type(m).__name__ == "FrozenBatchNorm2d" for m in adapter.modules())
    assert all(p.requires_grad for p in adapter.parameters())


def test_adapter_training_forward_gives_finite_losses_with_gradients(adapter):
    images, targets = small_batch()
    adapter.train()
    losses = adapter(images, targets, seed=3)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                           "loss_box_reg", "loss_mask"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert adapter.net.backbone.body.conv1.weight.grad is not None


def test_adapter_predict_gives_instances_of_the_image_size_and_keeps_the_mode(adapter):
    images, _ = small_batch()
    adapter.train()
    found = adapter.predict(images)
    assert adapter.training
    assert len(found) == 2
    for inst in found:
        assert isinstance(inst, Instances)
        assert inst.image_size == (64, 64)
        assert inst.masks.dtype == torch.bool and inst.masks.shape[1:] == (64, 64)
        assert inst.labels.dtype == torch.int64 and len(inst.scores) == len(inst)


def test_adapter_needs_targets_to_train(adapter):
    adapter.train()
    with pytest.raises(ValueError, match="targets"):
        adapter(small_batch()[0])


def test_background_plane_is_recovered_under_objects():
    ds = ShapesDataset("val", length=1)
    image, target = ds[0]
    pixels = image.double().numpy()
    background = fit_background(pixels)
    free = ~target.masks.any(dim=0).numpy()
    residual = np.linalg.norm(pixels - background, axis=0)[free]
    assert residual.mean() < 0.1  # the grain alone: 0.04 per channel, 0.07 in RGB distance


def test_shape_residuals_vanish_on_the_outline():
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    circle = np.stack([10 + 5 * np.cos(angles), 20 + 5 * np.sin(angles)], axis=1)
    assert np.abs(shape_residuals(np.array([10, 20, 10, 0.3]), circle, 1)).max() < 1e-9
    side = np.linspace(-4, 4, 9)
    square = np.stack([np.full(9, 4.0), side], axis=1)  # the right side of an 8-px square
    assert np.abs(shape_residuals(np.array([0, 0, 8, 0]), square, 2)).max() < 1e-9


def test_outline_points_lie_between_a_mask_and_its_background():
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    points = outline_points(mask, np.ones_like(mask))
    expected = {(x, y) for x in (2.0, 4.0) for y in (2.5, 3.5)}  # left and right sides
    expected |= {(x, y) for y in (2.0, 4.0) for x in (2.5, 3.5)}  # top and bottom
    assert sorted(map(tuple, points.tolist())) == sorted(expected)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_classical_segment_finds_every_object_of_a_simple_image(index):
    image, target = ShapesDataset("val", length=4)[index]
    found = classical_segment(image)
    assert found.image_size == target.image_size and found.masks.dtype == torch.bool
    iou = mask_iou(found.masks, target.masks)  # [found, gt]
    assert len(found) == len(target)
    best, match = iou.max(dim=0)
    assert bool((best > 0.8).all()), best
    assert found.labels[match].tolist() == target.labels.tolist()
    assert bool(((found.scores >= 0) & (found.scores <= 1)).all())


def test_classical_segment_of_a_plain_background_is_empty():
    ramp = torch.linspace(0.4, 0.6, 64)
    image = torch.stack([ramp[None, :].expand(64, 64)] * 3)  # [3, 64, 64]
    found = classical_segment(image)
    assert len(found) == 0 and found.image_size == (64, 64)


def test_classical_predict_is_ready_for_coco_evaluate():
    ds = ShapesDataset("val", length=3)
    found = classical_predict(ds)
    assert [f.image_id for f in found] == [0, 1, 2]
    result = coco_evaluate(ds.coco_ground_truth(), [f.as_dict() for f in found],
                           categories=[1, 2, 3])
    assert result.stats[1] > 0.9


def test_class_coloured_paints_each_object_in_its_class_colour_and_keeps_the_rest():
    from baselines import CLASS_COLOURS, ClassColoured

    base = ShapesDataset("val", length=6)
    coloured = ClassColoured(base)
    for i in range(len(base)):
        (image, target), (painted, same) = base[i], coloured[i]
        assert torch.equal(same.masks, target.masks) and torch.equal(same.labels, target.labels)
        anywhere = target.masks.any(0)
        assert torch.equal(painted[:, ~anywhere], image[:, ~anywhere])
        for mask, label in zip(target.masks, target.labels.tolist()):
            want = torch.tensor(CLASS_COLOURS[label - 1])[:, None]
            assert torch.allclose(painted[:, mask], want.expand(3, int(mask.sum())))
    truth, want = coloured.coco_ground_truth(), base.coco_ground_truth()
    assert len(truth) == len(want) == len(base)
    assert all(torch.equal(torch.as_tensor(a["masks"]), torch.as_tensor(b["masks"]))
               for a, b in zip(truth, want))
