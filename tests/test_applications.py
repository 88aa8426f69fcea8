import math

import numpy as np
import pytest
import torch

from course.applications import (
    BACKGROUND,
    CELL,
    AerialDataset,
    CellsDataset,
    cell_layout,
    cell_pq_stats,
    connected_components,
    flood,
    foreground,
    foreground_accuracy,
    masks_to_ids,
    matched_iou,
    model_config,
    object_sizes,
    otsu_threshold,
    owns_cell,
    paint_instances,
    recall_by_size,
    segment_outcomes,
    size_bins,
    touching_pairs,
    watershed_cells,
)
from course.boxes import masks_to_boxes
from course.data import collate
from course.pq import panoptic_quality

DATASETS = [CellsDataset, AerialDataset]


def disc(cx, cy, r, h=40, w=60):
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def two_touching_and_one_alone():
    """Two discs cut apart along x = 20 (they touch) and a third one far away: [3, 40, 60]."""
    a, b = disc(14, 20, 8), disc(26, 20, 8)
    xs = torch.arange(60)[None, :].expand(40, 60)
    return torch.stack([a & (xs < 20), b & (xs >= 20), disc(48, 28, 5)])


# ---------------------------------------------------------------------------------------------
# The data sets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", DATASETS)
def test_images_are_deterministic_per_index(cls):
    ds = cls("val", length=6)
    image, target = ds[3]
    again_image, again = cls("val", length=50)[3]  # the length does not change an image
    assert torch.equal(image, again_image) and torch.equal(target.masks, again.masks)
    assert not torch.equal(image, ds[4][0])
    assert not torch.equal(image, cls("train")[3][0])  # the splits share no image
    assert not torch.equal(image, cls("val", seed=1)[3][0])
    assert torch.equal(ds[-1][0], ds[5][0])


@pytest.mark.parametrize("cls", DATASETS)
@pytest.mark.parametrize("index", range(2))
def test_images_and_targets_are_in_range(cls, index):
    image, target = cls("train")[index]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    assert target.masks.dtype == torch.bool and target.masks.shape[1:] == (128, 128)
    assert int(target.masks.sum(0).max()) <= 1  # pairwise disjoint
    assert bool((target.masks.flatten(1).sum(1) >= 8).all())
    assert torch.equal(target.labels, torch.ones(len(target), dtype=torch.int64))
    assert torch.equal(target.boxes, masks_to_boxes(target.masks).float())
    assert target.image_id == index and target.image_size == (128, 128)


def test_cells_are_many_and_many_touch():
    ds = CellsDataset("val", length=6)
    counts, touching = [], 0
    for _, target in ds:
        counts.append(len(target))
        pairs = touching_pairs(target.masks)
        touching += len(set(pairs.flatten().tolist()))
        i, j = pairs[0].tolist()  # a pair said to touch really has 4-adjacent pixels
        a, b = target.masks[i], target.masks[j]
        assert bool((a[:, 1:] & b[:, :-1]).any() | (a[:, :-1] & b[:, 1:]).any()
                    | (a[1:] & b[:-1]).any() | (a[:-1] & b[1:]).any())
    assert min(counts) >= 12 and max(counts) <= 36
    assert touching > 0.4 * sum(counts)  # most images are crowded: many cells touch another


def test_buildings_keep_apart_and_are_tiny():
    sizes = []
    for _, target in AerialDataset("val", length=6):
        assert len(touching_pairs(target.masks)) == 0  # 2 px apart: never touching
        sizes.append(object_sizes(target.masks))
    sizes = torch.cat(sizes)
    assert len(sizes) > 120
    assert float(sizes.min()) >= math.sqrt(8) and float(sizes.max()) < 18
    assert 0.3 < float((sizes < 8).double().mean()) < 0.7  # log-uniform 4-16: half below 8


@pytest.mark.parametrize("cls", DATASETS)
def test_a_batch_goes_through_collate_and_the_size_follows_image_size(cls):
    ds = cls("train", image_size=64)
    images, targets = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 64, 64) and len(targets) == 2
    assert targets[0].masks.shape[1:] == (64, 64)


@pytest.mark.parametrize("cls", DATASETS)
@pytest.mark.parametrize("kwargs", [{"split": "test"}, {"length": -1}, {"length": 2.5},
                                    {"image_size": 16}, {"seed": -1}, {"seed": True}])
def test_bad_dataset_arguments_raise(cls, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**kwargs)


@pytest.mark.parametrize("cls", DATASETS)
def test_an_index_out_of_range_raises(cls):
    with pytest.raises(IndexError, match="out of range"):
        cls("val", length=3)[3]


def test_cell_layout_gives_overlaps_to_the_deeper_ellipse():
    centres = torch.tensor([[10.0, 10.0], [20.0, 10.0]])
    axes = torch.tensor([[7.0, 7.0], [7.0, 7.0]])
    ids, radius = cell_layout(centres, axes, torch.zeros(2), 32)
    assert int(ids[10, 14]) == 1 and int(ids[10, 15]) == 2  # the border is half-way, x = 15
    assert int(ids[0, 31]) == 0 and float(radius[10, 10]) < 0.15
    with pytest.raises(ValueError, match="positive"):
        cell_layout(centres, -axes, torch.zeros(2), 32)
    with pytest.raises(ValueError, match="angles"):
        cell_layout(centres, axes, torch.zeros(3), 32)


# ---------------------------------------------------------------------------------------------
# The classical pipeline
# ---------------------------------------------------------------------------------------------


def test_otsu_threshold_falls_between_two_modes():
    g = torch.Generator().manual_seed(0)
    image = torch.cat([0.2 + 0.02 * torch.randn(500, generator=g),
                       0.7 + 0.02 * torch.randn(300, generator=g)]).view(20, 40)
    assert 0.25 < otsu_threshold(image) < 0.65
    assert int(foreground(image).sum()) == 300
    with pytest.raises(ValueError, match="image"):
        otsu_threshold(torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match="bins"):
        otsu_threshold(image, bins=1)


def test_connected_components_merge_touching_cells_and_keep_lone_ones():
    cells = two_touching_and_one_alone()
    ids = connected_components(cells.any(0))
    assert int(ids.max()) == 2  # three cells, two segments
    assert segment_outcomes(cells, ids) == ["merge", "merge", "match"]


def test_the_watershed_separates_touching_cells():
    cells = two_touching_and_one_alone()
    ids = watershed_cells(cells.any(0))
    assert int(ids.max()) == 3
    assert segment_outcomes(cells, ids) == ["match", "match", "match"]
    assert torch.equal(ids > 0, cells.any(0))


def test_the_watershed_keeps_a_blob_without_a_marker():
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True  # one pixel: its own maximum, one segment
    assert watershed_cells(mask).max() == 1
    with pytest.raises(ValueError, match="min_distance"):
        watershed_cells(mask, min_distance=0)
    with pytest.raises(ValueError, match="mask"):
        watershed_cells(torch.zeros(2, 3, 3, dtype=torch.bool))


def test_flood_meets_at_the_ridge():
    level = np.array([[0, 1, 2, 3, 2, 1, 0]], dtype=float)
    markers = np.array([[1, 0, 0, 0, 0, 0, 2]])
    mask = np.ones_like(markers, dtype=bool)
    labels = flood(level, markers, mask)
    assert labels[0, :3].tolist() == [1, 1, 1] and labels[0, 4:].tolist() == [2, 2, 2]
    mask[0, 3] = False  # a wall: the water cannot go there
    assert flood(level, markers, mask)[0, 3] == 0
    with pytest.raises(ValueError, match="one shape"):
        flood(level, markers[:, :3], mask)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def test_pq_sees_the_merge_that_pixel_accuracy_does_not():
    cells = two_touching_and_one_alone()
    exact, merged = masks_to_ids(cells), connected_components(cells.any(0))
    assert foreground_accuracy(cells, exact) == foreground_accuracy(cells, merged) == 1.0
    perfect = panoptic_quality([cell_pq_stats(cells, exact)], [CELL], [BACKGROUND])
    assert perfect["Things"]["rq"] == 1.0 and perfect["Things"]["pq"] == 1.0
    stats = cell_pq_stats(cells, merged).as_dict()
    # the blob covers both halves: IoU 1/2 with each, not above it, so neither matches
    assert stats[CELL][1:] == [1, 1, 2]  # tp, fp, fn
    assert stats[BACKGROUND][1:] == [1, 0, 0]


def test_pixel_accuracy_counts_wrong_pixels():
    cells = two_touching_and_one_alone()
    ids = masks_to_ids(cells[:2])  # the lone cell missed
    assert foreground_accuracy(cells, ids) == pytest.approx(1 - int(cells[2].sum()) / (40 * 60))
    with pytest.raises(ValueError, match="pred_ids"):
        foreground_accuracy(cells, ids[:, :10])
    with pytest.raises(ValueError, match="pred_ids"):
        cell_pq_stats(cells, ids[:10])


def test_paint_instances_puts_the_surest_on_top():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :, :3] = True
    a[1, :, 1:] = True
    ids = paint_instances(a, torch.tensor([0.9, 0.6]))
    assert ids[:, :3].eq(1).all() and ids[:, 3].eq(2).all()
    assert paint_instances(a, torch.tensor([0.9, 0.4])).max() == 1  # below min_score: left out
    assert paint_instances(a, torch.tensor([0.6, 0.9]))[:, 1:].eq(2).all()
    with pytest.raises(ValueError, match="scores"):
        paint_instances(a, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="overlap"):
        masks_to_ids(a)


# ---------------------------------------------------------------------------------------------
# Size, recall, the feature grid
# ---------------------------------------------------------------------------------------------


def test_size_bins_are_half_open_and_outside_is_minus_one():
    sizes = torch.tensor([3.9, 4.0, 5.99, 6.0, 11.9, 12.0, 16.0, 17.0])
    assert size_bins(sizes, [4, 6, 12, 16.5]).tolist() == [-1, 0, 0, 1, 1, 2, 2, -1]
    for bad in ([4], [6, 4], [4, 4, 6]):
        with pytest.raises(ValueError, match="edges"):
            size_bins(sizes, bad)


def test_recall_by_size_counts_per_bin():
    ious = torch.tensor([0.8, 0.0, 0.6, 0.9, 0.0])
    sizes = torch.tensor([4.5, 5.0, 7.0, 20.0, 2.0])
    found, total, iou_sum = recall_by_size(ious, sizes, [4, 6, 8])
    assert found.tolist() == [1, 1] and total.tolist() == [2, 1]
    assert iou_sum.tolist() == pytest.approx([0.8, 0.6])
    with pytest.raises(ValueError, match="ious and sizes"):
        recall_by_size(ious[:3], sizes, [4, 6, 8])


def test_object_sizes_are_square_roots_of_areas():
    masks = torch.zeros(2, 10, 10, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 5:, :5] = True
    assert object_sizes(masks).tolist() == [4.0, 5.0]


def test_matched_iou_follows_scores_and_the_threshold():
    gt = two_touching_and_one_alone()
    pred = torch.stack([gt[2], gt[0] | gt[1]])  # the lone cell, and the two others as one
    scores = torch.tensor([0.9, 0.8])
    # the blob has IoU exactly 1/2 with each half; COCO's rule (IoU >= 0.5, the later of two
    # equal IoUs) gives it the second
    assert matched_iou(gt, pred, scores).tolist() == [0.0, 0.5, 1.0]
    assert matched_iou(gt, pred, scores, threshold=0.6).tolist() == [0.0, 0.0, 1.0]
    assert matched_iou(gt, pred[:0], torch.zeros(0)).tolist() == [0.0] * 3
    with pytest.raises(ValueError, match="threshold"):
        matched_iou(gt, pred, scores, threshold=0.0)
    with pytest.raises(ValueError, match="scores"):
        matched_iou(gt, pred, scores[:1])


def test_owns_cell_needs_more_than_half_a_cell():
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, 4:8, 4:8] = True  # fills one stride-4 cell, a quarter of a stride-8 cell
    masks[1, 2:6, 10:14] = True  # 4 x 4 across four stride-4 cells: a quarter of each
    masks[2, 8:16, 8:14] = True  # 8 x 6: 48 of 64 pixels of one stride-8 cell
    assert owns_cell(masks, 4).tolist() == [True, False, True]
    assert owns_cell(masks, 8).tolist() == [False, False, True]
    assert owns_cell(masks[:, :15, :13], 8).tolist() == [False, False, True]  # padded
    with pytest.raises(ValueError, match="stride"):
        owns_cell(masks, 0)


def test_model_config_changes_only_the_finest_level():
    fine, coarse = model_config(2), model_config(3)
    assert fine.levels == (2, 3, 4, 5) and coarse.levels == (3, 4, 5, 6)
    assert fine.strides[0] == 4 and coarse.strides[0] == 8
    assert fine.anchor_sizes == coarse.anchor_sizes and fine.num_classes == 1
    with pytest.raises(ValueError, match="finest_level"):
        model_config(4)
