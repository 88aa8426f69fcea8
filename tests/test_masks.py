import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from course.masks import (
    as_masks,
    box_counts,
    intersection_counts,
    mask_area,
    mask_boxes,
    mask_dice,
    mask_dice_loop,
    mask_iou,
    mask_iou_loop,
    product_counts,
)


def coco_iou(pred, gt, iscrowd=None):
    """pycocotools' mask IoU, [N, M] (it takes masks as [H, W, N] Fortran-ordered uint8)."""
    def rle(m):
        return mask_utils.encode(np.asfortranarray(np.asarray(m, np.uint8).transpose(1, 2, 0)))

    crowd = [0] * len(gt) if iscrowd is None else list(iscrowd)
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros((len(pred), len(gt)))
    return np.asarray(mask_utils.iou(rle(pred), rle(gt), crowd))


def random_sets(seed, n=5, m=4, h=23, w=17):
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.7)
    return rng.random((n, h, w)) < density, rng.random((m, h, w)) < density


EDGE_SETS = {
    "empty vs empty": (np.zeros((2, 6, 6), bool), np.zeros((3, 6, 6), bool)),
    "empty vs full": (np.zeros((1, 6, 6), bool), np.ones((2, 6, 6), bool)),
    "identical": (np.eye(6, dtype=bool)[None].repeat(2, 0), np.eye(6, dtype=bool)[None]),
    "one pixel": (np.pad(np.ones((1, 1, 1), bool), ((0, 0), (3, 2), (0, 5))),
                  np.pad(np.ones((1, 1, 1), bool), ((0, 0), (3, 2), (0, 5)))),
    "H = 1": (np.ones((2, 1, 9), bool), np.tri(3, 9, dtype=bool)[:, None, :]),
    "W = 1": (np.ones((2, 9, 1), bool), np.tri(3, 9, dtype=bool)[:, :, None]),
}


@pytest.mark.parametrize("seed", range(12))
def test_mask_iou_equals_pycocotools_on_random_masks(seed):
    pred, gt = random_sets(seed)
    crowd = np.random.default_rng(seed).random(len(gt)) < 0.3
    np.testing.assert_allclose(mask_iou(pred, gt).numpy(), coco_iou(pred, gt), rtol=0, atol=1e-12)
    np.testing.assert_allclose(mask_iou(pred, gt, iscrowd=crowd).numpy(),
                               coco_iou(pred, gt, crowd), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", EDGE_SETS)
@pytest.mark.parametrize("crowd", [False, True])
def test_mask_iou_equals_pycocotools_on_edge_masks(name, crowd):
    pred, gt = EDGE_SETS[name]
    flags = np.ones(len(gt), bool) if crowd else None
    np.testing.assert_allclose(mask_iou(pred, gt, iscrowd=flags).numpy(),
                               coco_iou(pred, gt, flags), rtol=0, atol=1e-12)


def test_mask_iou_is_bit_identical_to_pycocotools_on_large_masks():
    rng = np.random.default_rng(3)
    pred = rng.random((3, 512, 384)) < 0.5
    gt = rng.random((2, 512, 384)) < 0.5
    assert np.array_equal(mask_iou(pred, gt).numpy(), coco_iou(pred, gt))


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_and_loop_versions_agree_exactly(seed):
    pred, gt = random_sets(seed, n=4, m=3, h=11, w=13)
    crowd = torch.tensor([True, False, True])
    assert torch.equal(mask_iou(pred, gt), mask_iou_loop(pred, gt))
    assert torch.equal(mask_iou(pred, gt, crowd), mask_iou_loop(pred, gt, crowd))
    assert torch.equal(mask_dice(pred, gt), mask_dice_loop(pred, gt))


@pytest.mark.parametrize("name", EDGE_SETS)
def test_loop_versions_agree_on_edges(name):
    pred, gt = EDGE_SETS[name]
    assert torch.equal(mask_iou(pred, gt), mask_iou_loop(pred, gt))
    assert torch.equal(mask_dice(pred, gt), mask_dice_loop(pred, gt))


def test_dice_is_2iou_over_1_plus_iou_and_never_below_iou():
    pred, gt = random_sets(0, n=20, m=20)
    iou, dice = mask_iou(pred, gt), mask_dice(pred, gt)
    torch.testing.assert_close(dice, 2 * iou / (1 + iou), rtol=0, atol=1e-12)
    assert bool((dice >= iou).all())


def test_results_are_float64_with_predictions_as_rows():
    pred, gt = random_sets(1, n=5, m=2)
    for fn in (mask_iou, mask_dice):
        out = fn(torch.from_numpy(pred), torch.from_numpy(gt))
        assert out.dtype == torch.float64 and out.shape == (5, 2)


def test_a_ratio_on_a_threshold_stays_on_it():
    a = torch.zeros(1, 1, 10, dtype=torch.bool)
    b = torch.zeros(1, 1, 10, dtype=torch.bool)
    a[..., :7] = True
    b[..., :10] = True  # inter 7, union 10
    assert mask_iou(a, b).item() == 0.7
    assert (torch.tensor(7.0) / torch.tensor(10.0)).item() < 0.7  # what float32 would give


def test_zero_sized_sets_give_empty_matrices():
    assert mask_iou(np.zeros((0, 4, 4), bool), np.ones((3, 4, 4), bool)).shape == (0, 3)
    assert mask_dice(np.ones((2, 4, 4), bool), np.zeros((0, 4, 4), bool)).shape == (2, 0)


def test_mask_area_and_counts():
    pred, gt = random_sets(2)
    inter, ap, ag = intersection_counts(pred, gt)
    assert torch.equal(ap, mask_area(pred)) and torch.equal(ag, mask_area(gt))
    expected = np.einsum("nhw,mhw->nm", pred.astype(np.int64), gt.astype(np.int64))
    assert torch.equal(inter, torch.from_numpy(expected))
    assert ap.dtype == torch.int64


def test_uint8_and_float_01_masks_are_accepted():
    pred, gt = random_sets(4)
    expected = mask_iou(pred, gt)
    assert torch.equal(mask_iou(pred.astype(np.uint8), gt.astype(np.float32)), expected)


@pytest.mark.parametrize("bad, error, words", [
    (np.zeros((4, 4), bool), ValueError, r"pred must have shape \[N, H, W\].*mask\[None\]"),
    (np.zeros((1, 2, 4, 4), bool), ValueError, r"pred must have shape \[N, H, W\]"),
    (np.full((1, 4, 4), 0.7), ValueError, r"pred must be binary.*0.7"),
    (np.full((1, 4, 4), np.nan), ValueError, r"pred must be binary"),
    ([[[1, 0]]], TypeError, r"pred must be a torch.Tensor or numpy.ndarray"),
])
def test_bad_prediction_masks_are_named(bad, error, words):
    with pytest.raises(error, match=words):
        mask_iou(bad, np.zeros((1, 4, 4), bool))


def test_masks_of_different_size_are_refused():
    with pytest.raises(ValueError, match=r"pred and gt must have the same H and W.*\[1, 4, 5\]"):
        mask_iou(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 5), bool))


def test_crowd_flags_must_match_gt():
    with pytest.raises(ValueError, match=r"iscrowd must have shape \[2\]"):
        mask_iou(np.zeros((1, 4, 4), bool), np.zeros((2, 4, 4), bool), iscrowd=[1, 0, 0])


def test_as_masks_names_its_argument():
    with pytest.raises(ValueError, match="my_masks"):
        as_masks(np.zeros(3), "my_masks")


def test_inputs_are_not_modified():
    pred, gt = (torch.from_numpy(x.astype(np.uint8)) for x in random_sets(5))
    before = pred.clone(), gt.clone()
    mask_iou(pred, gt)
    mask_dice(pred, gt)
    assert torch.equal(pred, before[0]) and torch.equal(gt, before[1])


def blobs(rng, k, h, w, largest=None):
    """``[k, h, w]`` rectangles of random size and place, some empty, some at the borders."""
    masks = np.zeros((k, h, w), bool)
    for m in masks:
        if rng.random() < 0.1:
            continue  # an empty mask
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        dy, dx = rng.integers(1, largest or h + 1), rng.integers(1, largest or w + 1)
        m[y0:y0 + dy, x0:x0 + dx] = True
        m &= rng.random((h, w)) < 0.8  # holes, so that a box is not the mask
    return masks


@pytest.mark.parametrize("seed", range(8))
def test_box_counts_equal_the_matrix_product(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(150, 250, 2)
    pred, gt = blobs(rng, 20, h, w, largest=60), blobs(rng, 15, h, w, largest=60)
    expected = product_counts(torch.from_numpy(pred), torch.from_numpy(gt))
    assert 0 < int((expected[0] > 0).sum()) < 100  # some pairs meet, most do not
    counts = box_counts(pred, gt)
    assert counts is not None  # small boxes: the pairs are visited one by one
    for got, want in zip(counts, expected, strict=True):
        assert torch.equal(got, want)
    for got, want in zip(intersection_counts(pred, gt), expected, strict=True):
        assert torch.equal(got, want)


def test_boxes_that_all_overlap_fall_back_to_the_product():
    rng = np.random.default_rng(0)
    pred, gt = rng.random((30, 16, 16)) < 0.5, rng.random((20, 16, 16)) < 0.5
    assert box_counts(pred, gt) is None  # every pair would be visited over the whole image
    expected = product_counts(torch.from_numpy(pred), torch.from_numpy(gt))
    for got, want in zip(intersection_counts(pred, gt), expected, strict=True):
        assert torch.equal(got, want)


def test_mask_boxes_are_tight_and_empty_masks_get_zeros():
    rng = np.random.default_rng(1)
    for w in (11, 24):  # 24: rows read 8 pixels at a time
        masks = blobs(rng, 20, 13, w)
        (y0, y1, x0, x1), area = mask_boxes(masks)
        for m, a, b, c, d, n in zip(masks, y0, y1, x0, x1, area, strict=True):
            assert n == m.sum()
            if not m.any():
                assert (a, b, c, d) == (0, 0, 0, 0)
                continue
            ys, xs = np.nonzero(m)
            assert (a, b, c, d) == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    assert all(len(v) == 0 for v in mask_boxes(np.zeros((0, 4, 4), bool))[0])
    assert mask_boxes(np.zeros((2, 0, 3), bool))[1].tolist() == [0, 0]
