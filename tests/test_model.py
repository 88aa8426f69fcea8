"""The compact Mask R-CNN, part by part on tiny inputs, then assembled: anchors, box coding
(against torchvision's BoxCoder), matching and sampling, the losses, empty and degenerate
targets, bad input, inference, and checkpoints."""

import math
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from course.data import ShapesDataset, collate
from course.model import MaskRCNN, MaskRCNNConfig
from course.model.anchors import AnchorGenerator, cell_anchors, grid_anchors
from course.model.assign import IGNORED, NEGATIVE, POSITIVE, match_boxes, sample_labels
from course.model.box_coding import MAX_LOG_SCALE, clip_boxes, decode_boxes, encode_boxes
from course.model.mask_head import mask_targets
from course.structures import Instances

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import TINY  # noqa: E402  (the small config the training tests use too)


def tiny_model(seed=0, **changes):
    torch.manual_seed(seed)
    return MaskRCNN(MaskRCNNConfig(**{**TINY, **changes}))


def batch(n=2, size=64, start=0, overlap=False):
    data = ShapesDataset("train", image_size=size, overlap=overlap)
    return collate([data[i] for i in range(start, start + n)])


# --- anchors ---------------------------------------------------------------------------------


def test_cell_anchors_keep_the_area_and_have_the_ratio():
    a = cell_anchors(32.0, (0.5, 1.0, 2.0))
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    torch.testing.assert_close(w * h, torch.full((3,), 32.0**2))
    torch.testing.assert_close(h / w, torch.tensor([0.5, 1.0, 2.0]))
    torch.testing.assert_close(a[:, :2] + a[:, 2:], torch.zeros(3, 2))  # centred on 0


def test_grid_anchors_are_centred_on_the_cells_in_rpn_order():
    a = grid_anchors(8.0, (0.5, 1.0, 2.0), 4, 2, 3).view(2, 3, 3, 4)  # [H, W, A, 4]
    centres = (a[..., :2] + a[..., 2:]) / 2
    assert torch.allclose(centres[1, 2, 0], torch.tensor([10.0, 6.0]))  # ((2+.5)4, (1+.5)4)
    assert torch.allclose(centres[0, 0], torch.full((3, 2), 2.0))


def test_anchor_generator_gives_one_tensor_per_level():
    gen = AnchorGenerator((16, 32), (1.0, 2.0), (4, 8))
    levels = gen([(8, 8), (4, 4)])
    assert [len(x) for x in levels] == [8 * 8 * 2, 4 * 4 * 2]
    with pytest.raises(ValueError, match="one anchor size per level"):
        AnchorGenerator((16,), (1.0,), (4, 8))


# --- box coding ------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encoding_equals_torchvision_and_decoding_inverts_it(weights):
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(50, 2, generator=g) * 50
    ref = torch.cat([ref, ref + 1 + torch.rand(50, 2, generator=g) * 30], 1).double()
    box = torch.rand(50, 2, generator=g) * 50
    box = torch.cat([box, box + 1 + torch.rand(50, 2, generator=g) * 30], 1).double()
    deltas = encode_boxes(box, ref, weights)
    expected = BoxCoder(weights).encode_single(box, ref)
    torch.testing.assert_close(deltas, expected)
    torch.testing.assert_close(decode_boxes(deltas, ref, weights), box)


def test_decoding_clamps_the_scale():
    ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    out = decode_boxes(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), ref)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 2] - out[0, 0], torch.tensor(10 * math.exp(MAX_LOG_SCALE)))


def test_clip_boxes_keeps_boxes_in_the_image():
    out = clip_boxes(torch.tensor([[-5.0, -1.0, 70.0, 30.0]]), 20, 64)
    assert out.tolist() == [[0.0, 0.0, 64.0, 20.0]]


# --- matching and sampling ---------------------------------------------------------------------


def test_match_boxes_thresholds_and_low_quality():
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.0], [0.2, 0.6, 0.25, 0.0]])  # [G=2, N=4]
    m = match_boxes(iou, high=0.7, low=0.3)
    assert m.label.tolist() == [POSITIVE, IGNORED, NEGATIVE, NEGATIVE]
    assert m.index.tolist()[:2] == [0, 1]
    m = match_boxes(iou, high=0.7, low=0.3, low_quality=True)
    assert m.label.tolist() == [POSITIVE, POSITIVE, NEGATIVE, NEGATIVE]  # object 1's best


def test_match_boxes_without_objects_is_all_background():
    m = match_boxes(torch.zeros(0, 5), 0.7, 0.3, low_quality=True)
    assert m.label.tolist() == [NEGATIVE] * 5


def test_sample_labels_respects_the_fraction_and_the_generator():
    label = torch.tensor([POSITIVE] * 10 + [NEGATIVE] * 100 + [IGNORED] * 5)
    pos, neg = sample_labels(label, 16, 0.25, torch.Generator().manual_seed(1))
    assert len(pos) == 4 and len(neg) == 12
    assert (label[pos] == POSITIVE).all() and (label[neg] == NEGATIVE).all()
    again = sample_labels(label, 16, 0.25, torch.Generator().manual_seed(1))
    assert torch.equal(pos, again[0]) and torch.equal(neg, again[1])
    few = sample_labels(label[:3], 16, 0.5)
    assert len(few[0]) == 3 and len(few[1]) == 0


def test_mask_targets_resample_the_mask_inside_the_box():
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 4:8, 4:12] = True
    t = mask_targets(masks, torch.tensor([0]), torch.tensor([[4.0, 4.0, 12.0, 8.0]]), 8)
    # the box is exactly the object: inner cells are 1, edge cells read half a pixel beyond
    # the edge (bilinear sampling) but stay >= 0.5, so a 0.5 threshold recovers the edge
    assert (t[0, 2:-2, 1:-1] == 1).all() and (t >= 0.5).all()
    t = mask_targets(masks, torch.tensor([0]), torch.tensor([[4.0, 0.0, 12.0, 8.0]]), 8)
    assert t[0, :4].max() == 0 and t[0, 4:].min() == 1  # upper half empty


# --- the assembled model ---------------------------------------------------------------------


def test_training_returns_five_finite_losses_with_gradients():
    model = tiny_model().train()
    images, targets = batch()
    losses = model(images, targets, seed=0)
    assert set(losses) == {"rpn_objectness", "rpn_box", "box_class", "box_regression", "mask"}
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads) and len(grads) > 10


def test_an_image_without_objects_trains_without_nan():
    model = tiny_model().train()
    images, targets = batch()
    targets[1] = targets[1][torch.zeros(len(targets[1]), dtype=torch.bool)]  # no objects
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(3):
        losses = model(images, targets, seed=step)
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    only_empty = model(images[1:], targets[1:], seed=0)
    assert only_empty["mask"].item() == 0 and only_empty["rpn_box"].item() == 0


def test_degenerate_boxes_are_dropped_and_outside_boxes_clipped():
    model = tiny_model().train()
    images, targets = batch(1)
    t = targets[0]
    boxes = t.boxes.clone()
    boxes[0] = torch.tensor([10.0, 10.0, 10.0, 30.0])  # zero width
    if len(t) > 1:
        boxes[1] = torch.tensor([-20.0, -20.0, 200.0, float(boxes[1, 3])])  # mostly outside
    checked = model._check_targets([Instances(boxes, t.labels, None, t.masks, image_id=0)],
                                   [(64, 64)], torch.device("cpu"))[0]
    assert len(checked) == len(t) - 1
    assert checked.boxes.min() >= 0 and checked.boxes.max() <= 64
    losses = model(images, [Instances(boxes, t.labels, None, t.masks, image_id=0)], seed=0)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("images, error, message", [
    (torch.rand(2, 1, 64, 64), ValueError, r"Tensor\[3, H, W\]"),
    (torch.rand(3, 64, 64), ValueError, r"Tensor\[B, 3, H, W\]"),
    (torch.rand(1, 3, 64, 64) * 255, ValueError, "divide by 255"),
    ((torch.rand(1, 3, 64, 64) * 255).to(torch.uint8), TypeError, "floats in"),
    (torch.full((1, 3, 8, 8), float("nan")), ValueError, r"\[0, 1\]"),
    ([], ValueError, "empty"),
])
def test_bad_images_are_refused_clearly(images, error, message):
    with pytest.raises(error, match=message):
        tiny_model().predict(images)


def test_bad_targets_are_refused_clearly():
    model = tiny_model().train()
    images, targets = batch(1)
    t = targets[0]
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    wrong = Instances(t.boxes, t.labels + 3, None, t.masks, image_id=0)
    with pytest.raises(ValueError, match=r"labels must be in 1..3"):
        model(images, [wrong])
    with pytest.raises(ValueError, match="x2 >= x1"):
        model(images, [Instances(t.boxes[:, [2, 1, 0, 3]], t.labels, None, t.masks)])
    with pytest.raises(ValueError, match="targets for 2 images"):
        model(torch.cat([images, images]), targets)
    with pytest.raises(ValueError, match="with masks"):
        model(images, [Instances(t.boxes, t.labels, image_size=(64, 64))])


def test_boxes_must_hold_their_masks_to_one_pixel():
    model = tiny_model().train()
    images, targets = batch(1)
    t = targets[0]
    assert len(t) >= 2
    pixel_index = t.boxes - torch.tensor([0.0, 0.0, 1.0, 1.0])  # torchvision's (c0, r0, c1, r1)
    losses = model(images, [Instances(pixel_index, t.labels, None, t.masks, image_id=0)], seed=0)
    assert all(torch.isfinite(v) for v in losses.values())
    shifted = t.boxes.clone()
    shifted[-1] += torch.tensor([2.0, 0.0, 2.0, 0.0])  # the last object's box, 2 px right
    with pytest.raises(ValueError, match=f"object {len(t) - 1}'s mask spans"):
        model(images, [Instances(shifted, t.labels, None, t.masks, image_id=0)])


def test_an_images_detections_do_not_depend_on_the_others_in_the_list():
    model = tiny_model(score_threshold=0.0).eval()
    a, b = torch.rand(3, 40, 90), torch.rand(3, 70, 30)
    together = model.predict([a, b])
    for image, det in zip((a, b), together):
        alone = model.predict([image])[0]
        assert len(alone) == len(det) > 0
        torch.testing.assert_close(det.boxes, alone.boxes, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(det.scores, alone.scores, rtol=1e-4, atol=1e-5)


def test_inference_gives_full_size_instances_for_images_of_any_size():
    model = tiny_model(score_threshold=0.0).eval()
    images = [torch.rand(3, 50, 70), torch.rand(3, 64, 33)]
    out = model.predict(images)
    assert [o.image_size for o in out] == [(50, 70), (64, 33)]
    for o in out:
        assert o.masks.dtype == torch.bool and o.masks.shape[1:] == o.image_size
        assert len(o) <= model.config.detections_per_image
        assert (o.boxes[:, 2] <= o.image_size[1]).all() and (o.boxes[:, 3] <= o.image_size[0]).all()
        assert (o.scores[:-1] >= o.scores[1:]).all() if len(o) > 1 else True
    assert model.training is False


def test_predict_restores_training_mode_and_does_not_track_gradients():
    model = tiny_model().train()
    out = model.predict(torch.rand(1, 3, 32, 32))
    assert model.training and not out[0].scores.requires_grad


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(score_threshold=0.0).eval()
    model.save(tmp_path / "m.pt", note="hello")
    loaded = MaskRCNN.load(tmp_path / "m.pt")
    assert loaded.config == model.config and not loaded.training
    image = torch.rand(1, 3, 64, 64)
    a, b = model.predict(image)[0], loaded.predict(image)[0]
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.masks, b.masks)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a MaskRCNN checkpoint"):
        MaskRCNN.load(tmp_path / "other.pt")


def test_default_model_is_small_enough(tmp_path):
    model = MaskRCNN()
    assert model.num_parameters() <= 15_000_000
    model.save(tmp_path / "m.pt")
    assert (tmp_path / "m.pt").stat().st_size < 20 * 2**20


@pytest.mark.parametrize("changes, message", [
    ({"anchor_sizes": (16.0,)}, "one size per level"),
    ({"pooler": "max"}, "pooler"),
    ({"rpn_bg_iou": 0.8}, "rpn_bg_iou"),
    ({"num_classes": 0}, "num_classes"),
    ({"box_nms": 1.5}, "box_nms"),
])
def test_bad_config_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        MaskRCNNConfig(**changes)


def test_config_round_trips_through_a_dict():
    c = MaskRCNNConfig(width=8, levels=(2, 3, 4), anchor_sizes=(8.0, 16.0, 32.0))
    assert MaskRCNNConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown"):
        MaskRCNNConfig.from_dict({"widht": 8})


def test_roi_pool_model_trains():
    model = tiny_model(pooler="pool").train()
    images, targets = batch()
    losses = model(images, targets, seed=0)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


# --- the semantic head (chapter 11) ----------------------------------------------------------


def panoptic_batch(n=2, size=64):
    from course.data import PanopticShapesDataset

    data = PanopticShapesDataset("train", image_size=size)
    return collate([data[i] for i in range(n)])


def test_a_panoptic_model_adds_a_semantic_loss_that_learns():
    model = tiny_model(stuff_classes=3, semantic_channels=8).train()
    images, targets = panoptic_batch()
    losses = model(images, targets, seed=0)
    assert len(losses) == 6  # starts undecided: half (the weight) of log(4 classes)
    assert losses["semantic"].item() == pytest.approx(0.5 * math.log(4), abs=0.01)
    opt = torch.optim.SGD(model.semantic_head.parameters(), lr=0.1, momentum=0.9)
    first = losses["semantic"].item()
    for step in range(15):
        loss = model(images, targets, seed=step)["semantic"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


def test_semantic_probabilities_cover_each_image_and_sum_to_one():
    model = tiny_model(stuff_classes=3, semantic_channels=8).eval()
    images = [torch.rand(3, 64, 48), torch.rand(3, 40, 64)]
    out = model.predict(images)
    for det, image in zip(out, images, strict=True):
        assert det.semantic.shape == (4, *image.shape[1:])
        assert torch.allclose(det.semantic.sum(0), torch.ones(image.shape[1:]), atol=1e-5)
    assert tiny_model().predict(images)[0].semantic is None


def test_semantic_targets_are_checked():
    model = tiny_model(stuff_classes=3, semantic_channels=8).train()
    images, targets = panoptic_batch()
    from dataclasses import replace
    with pytest.raises(ValueError, match=r"targets\[0\].semantic must be a Tensor\[H, W\]"):
        model(images, [replace(targets[0], semantic=None), targets[1]])
    with pytest.raises(ValueError, match=r"classes 0..3"):
        model(images, [replace(targets[0], semantic=targets[0].semantic + 3), targets[1]])
    with pytest.raises(ValueError, match="P2"):
        MaskRCNN(MaskRCNNConfig(levels=(3, 4, 5), anchor_sizes=(32, 64, 128), stuff_classes=2))


def test_panoptic_checkpoint_round_trip(tmp_path):
    model = tiny_model(stuff_classes=3, semantic_channels=8).eval()
    model.save(tmp_path / "m.pt")
    back = MaskRCNN.load(tmp_path / "m.pt")
    image = torch.rand(1, 3, 64, 64)
    assert back.predict(image)[0].semantic.equal(model.predict(image)[0].semantic)
