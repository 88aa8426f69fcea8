import numpy as np
import pytest
import torch
import torchvision
from pycocotools import mask as mask_utils

from course.boxes import as_boxes, box_area, box_iou, box_iou_loop, fpn_level, masks_to_boxes


def random_boxes(rng, n, size=50.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(0, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def xywh(boxes):
    return torchvision.ops.box_convert(torch.as_tensor(boxes), "xyxy", "xywh").numpy()


@pytest.mark.parametrize("seed", range(8))
def test_box_iou_equals_torchvision_and_pycocotools(seed):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 6), random_boxes(rng, 5)
    ours = box_iou(a, b)
    tv = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b))
    torch.testing.assert_close(ours, tv, rtol=0, atol=1e-12)
    crowd = (rng.random(5) < 0.4).astype(np.uint8)
    coco = mask_utils.iou(xywh(a), xywh(b), crowd)
    np.testing.assert_allclose(box_iou(a, b, iscrowd=crowd).numpy(), coco, rtol=0, atol=1e-12)


def test_box_iou_loop_agrees():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 4)
    torch.testing.assert_close(box_iou(a, b), box_iou_loop(a, b), rtol=0, atol=1e-15)


def test_degenerate_boxes_give_zero_not_nan():
    a = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    out = box_iou(a, a)
    assert not torch.isnan(out).any()
    assert out[0, 0] == 0 and out[1, 1] == 1


def test_masks_to_boxes_matches_coco_tobbox():
    rng = np.random.default_rng(1)
    masks = np.zeros((5, 20, 30), bool)
    for i in range(4):
        y, x = rng.integers(0, 15), rng.integers(0, 25)
        masks[i, y:y + rng.integers(1, 6), x:x + rng.integers(1, 6)] = True
    rle = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    coco = mask_utils.toBbox(rle)  # (x, y, w, h), zeros for the empty fifth mask
    ours = masks_to_boxes(masks)
    np.testing.assert_array_equal(xywh(ours), coco)
    assert torch.equal(ours[4], torch.zeros(4, dtype=torch.float64))
    # the masks are filled rectangles, so the tight box covers exactly their pixels
    assert torch.equal(box_area(ours), torch.from_numpy(masks.sum((1, 2))).double())
    # torchvision's convention is inclusive on the far side: one pixel less
    tv = torchvision.ops.masks_to_boxes(torch.from_numpy(masks[:4]))
    torch.testing.assert_close(ours[:4, 2:] - 1, tv[:, 2:].double())


def test_masks_to_boxes_of_nothing():
    assert masks_to_boxes(np.zeros((0, 5, 5), bool)).shape == (0, 4)
    assert masks_to_boxes(np.zeros((2, 0, 5), bool)).shape == (2, 4)


@pytest.mark.parametrize("bad, words", [
    (np.array([[5.0, 0.0, 1.0, 1.0]]), r"pred\[0\].*x2 < x1"),
    (np.array([[0.0, 5.0, 1.0, 1.0]]), r"x2 < x1 or y2 < y1"),
    (np.zeros((2, 3)), r"pred must have shape \[N, 4\]"),
    (np.array([[0.0, np.nan, 1.0, 1.0]]), r"pred must be finite"),
])
def test_bad_boxes_are_named(bad, words):
    with pytest.raises(ValueError, match=words):
        box_iou(bad, np.zeros((1, 4)))


def test_as_boxes_rejects_lists():
    with pytest.raises(TypeError, match="boxes must be"):
        as_boxes([[0, 0, 1, 1]])


def test_fpn_level_equals_torchvision_level_mapper():
    from torchvision.ops.poolers import LevelMapper

    rng = np.random.default_rng(2)
    sides = np.concatenate([2.0 ** np.arange(0, 11), rng.uniform(1, 1000, 200), [0.0]])
    xy = rng.uniform(0, 100, (len(sides), 2))
    aspect = rng.uniform(0.5, 2, len(sides))
    wh = np.stack([sides * np.sqrt(aspect), sides / np.sqrt(aspect)], axis=1)
    boxes = torch.from_numpy(np.concatenate([xy, xy + wh], axis=1))
    expected = LevelMapper(k_min=2, k_max=5)([boxes]) + 2  # it returns an index from k_min
    assert torch.equal(fpn_level(boxes), expected)


def test_fpn_level_of_canonical_boxes():
    boxes = torch.tensor([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 111, 111], [0, 0, 4000, 10],
                          [0, 0, 2000, 2000]])
    assert fpn_level(boxes).tolist() == [4, 3, 2, 3, 5]  # 4000 x 10 has the area of 200 x 200
    with pytest.raises(ValueError, match="k_min"):
        fpn_level(boxes, k_min=5, k_max=3)


@pytest.mark.parametrize("seed", range(6))
def test_one_box_iou_formula_serves_box_iou_and_the_coco_evaluators(seed):
    """box_iou (torch) and the evaluators' coco_box_iou (numpy, COCO xywh) are one formula:
    on the same boxes the numbers agree to the last bit with torchvision and pycocotools."""
    from course.cocoeval.common import box_overlap_iou, coco_box_iou

    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 6), random_boxes(rng, 5)
    b[0] = a[0]  # identical boxes: IoU exactly 1
    b[1, 0] = b[1, 2]  # an empty box
    crowd = rng.random(5) < 0.4
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    as_numpy = box_overlap_iou(a[:, None, :2], a[:, None, 2:], area_a[:, None],
                               b[None, :, :2], b[None, :, 2:], area_b[None, :], crowd)
    assert np.array_equal(box_iou(a, b, iscrowd=crowd).numpy(), as_numpy)  # torch == numpy
    tv = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ours = box_iou(a, b).numpy()
    assert np.array_equal(ours[:, 2:], tv[:, 2:]) and ours[0, 0] == 1.0
    d, g = xywh(a), xywh(b)
    coco = coco_box_iou(d[:, None, :], g[None, :, :], crowd)  # [6, 5] by broadcasting
    assert np.array_equal(coco, mask_utils.iou(d, g, crowd.astype(np.uint8)))
    pairs = coco_box_iou(d[[0, 3, 5]], g[[1, 2, 4]], crowd[[1, 2, 4]])  # pairs, as the engine
    assert np.array_equal(pairs, coco[[0, 3, 5], [1, 2, 4]])
