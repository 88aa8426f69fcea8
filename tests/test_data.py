import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from course.data import (
    CLASSES,
    Scene,
    grow_masks,
    make_scene,
    make_shape_batch,
    shape_mask,
    shift_masks,
    simulate_predictions,
)
from course.masks import mask_iou


def test_scene_is_reproducible_from_its_seed():
    a, b = make_scene(seed=3), make_scene(seed=3)
    assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.image, make_scene(seed=4).image)


@pytest.mark.parametrize("seed", range(10))
def test_scene_masks_are_disjoint_and_labelled(seed):
    scene = make_scene(seed=seed, height=96, width=80)
    assert scene.image.shape == (3, 96, 80) and scene.image.dtype == torch.float32
    assert scene.masks.dtype == torch.bool and scene.masks.shape[1:] == (96, 80)
    assert int(scene.masks.sum(0).max()) <= 1  # no pixel belongs to two instances
    assert bool((scene.masks.flatten(1).sum(1) >= 12).all())
    assert set(scene.labels.tolist()) <= set(range(1, len(CLASSES) + 1))
    assert len(scene) == len(scene.masks) == len(scene.boxes)


def test_shapes_have_the_area_of_their_geometry():
    h = w = 200
    centre = (100.3, 99.7)
    circle = shape_mask("circle", centre, 80, 0.0, h, w).sum().item()
    square = shape_mask("square", centre, 80, 0.4, h, w).sum().item()
    triangle = shape_mask("triangle", centre, 80, 1.0, h, w).sum().item()
    assert circle == pytest.approx(math.pi * 40**2, rel=0.01)
    assert square == pytest.approx(80**2, rel=0.01)
    assert triangle == pytest.approx(math.sqrt(3) / 4 * 80**2, rel=0.01)
    with pytest.raises(ValueError, match="kind must be one of"):
        shape_mask("hexagon", centre, 10, 0.0, h, w)


def test_shift_and_grow():
    m = torch.zeros(1, 7, 7, dtype=torch.bool)
    m[0, 3, 3] = True
    assert shift_masks(m, 2, -1)[0, 5, 2]
    assert shift_masks(m, 9, 0).sum() == 0  # shifted out of the image
    assert grow_masks(m, 1).sum() == 9
    assert torch.equal(grow_masks(grow_masks(m, 1), -1), m)


def test_simulated_predictions_are_imperfect_copies():
    scene = make_scene(seed=1, num_objects=(6, 6))
    pred = simulate_predictions(scene, seed=2, miss_rate=0.0, false_positives=(0, 0),
                                duplicate_rate=0.0, label_flip_rate=0.0)
    assert len(pred) == len(scene)
    iou = mask_iou(pred.masks, scene.masks)
    assert bool((iou.diagonal() > 0.3).all())
    assert bool(((pred.scores > 0) & (pred.scores < 1)).all())


def test_an_empty_scene_is_allowed():
    scene = make_scene(seed=0, num_objects=(0, 0))
    assert isinstance(scene, Scene) and len(scene) == 0 and scene.masks.shape == (0, 128, 128)
    assert len(simulate_predictions(scene, false_positives=(0, 0))) == 0


# --- chapters 06-07: make_shape_batch ---------------------------------------------------------


def test_shape_batch_is_reproducible_and_separated():
    a = make_shape_batch(12, 48, 40, sizes=(4.0, 20.0), per_image=(2, 4), min_gap=2, seed=5)
    b = make_shape_batch(12, 48, 40, sizes=(4.0, 20.0), per_image=(2, 4), min_gap=2, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert a.images.shape == (12, 3, 48, 40) and a.images.dtype == torch.float32
    assert a.masks.shape == (12, 48, 40) and len(a) == 12
    for mask, inst in zip(a.masks, a.instances):
        assert 1 <= len(inst) <= 4 and torch.equal(inst.any(0), mask)
        assert int(inst.sum(0).max()) <= 1
        assert bool((inst.flatten(1).sum(1) >= 4).all())
        _, count = ndimage.label(mask.numpy(), structure=np.ones((3, 3)))
        assert count == len(inst)  # separated: the components are the instances


def test_shape_batch_sizes_follow_the_range():
    tiny = make_shape_batch(64, 24, 24, sizes=(2.0, 4.0), seed=0)
    large = make_shape_batch(64, 24, 24, sizes=(10.0, 16.0), seed=0)
    area_tiny = torch.cat([m.flatten(1).sum(1) for m in tiny.instances]).double()
    area_large = torch.cat([m.flatten(1).sum(1) for m in large.instances]).double()
    assert 4 <= area_tiny.min() and area_tiny.max() <= 16
    assert area_large.min() > area_tiny.max() and area_large.max() <= 16 * 16
    with pytest.raises(ValueError, match="sizes must satisfy"):
        make_shape_batch(2, 24, 24, sizes=(4.0, 30.0))
    empty = make_shape_batch(0, 8, 8, sizes=(2.0, 4.0))
    assert empty.images.shape == (0, 3, 8, 8) and empty.masks.shape == (0, 8, 8)


# --- chapters 04-05: panoptic scenes, merged and split segments, objects through a stride ---

from course.data import (  # noqa: E402
    PANOPTIC_CLASSES,
    STUFF_IDS,
    THING_IDS,
    cell_counts,
    make_panoptic_scene,
    merge_segments,
    min_resolvable_size,
    people_scene,
    scale_trial_masks,
    scale_trials,
    segment_masks,
    simulate_panoptic_prediction,
    split_segment,
)


@pytest.mark.parametrize("seed", range(8))
def test_panoptic_scene_lists_exactly_the_segments_of_its_map(seed):
    scene = make_panoptic_scene(64, 80, seed=seed)
    assert scene.ids.shape == (64, 80) and scene.image.shape == (3, 64, 80)
    present = set(torch.unique(scene.ids).tolist()) - {0}
    assert present == set(scene.segments)
    for cat, crowd in scene.segments.values():
        assert cat in THING_IDS + STUFF_IDS and (not crowd or cat in THING_IDS)
    assert set(torch.unique(scene.background).tolist()) <= set(STUFF_IDS)
    ids, segments = simulate_panoptic_prediction(scene, seed=seed + 50)
    assert set(torch.unique(ids).tolist()) == set(segments) and 0 not in segments
    assert all(cat in THING_IDS + STUFF_IDS and not crowd for cat, crowd in segments.values())
    assert len(PANOPTIC_CLASSES) == len(THING_IDS + STUFF_IDS)


def test_panoptic_scenes_have_void_and_crowd_and_repeat_from_their_seed():
    scenes = [make_panoptic_scene(48, 48, seed=s) for s in range(12)]
    assert all(bool((s.ids == 0).any()) for s in scenes)
    assert any(crowd for s in scenes for _, crowd in s.segments.values())
    assert not any(bool((make_panoptic_scene(48, 48, void=False, seed=s).ids == 0).any())
                   for s in range(4))
    again = make_panoptic_scene(48, 48, seed=3)
    assert torch.equal(again.ids, scenes[3].ids) and again.segments == scenes[3].segments


def test_segment_masks_split_the_map():
    scene = make_panoptic_scene(32, 32, seed=1)
    masks, cats, crowd = segment_masks(scene.ids, scene.segments)
    assert masks.shape == (len(scene.segments), 32, 32)
    assert torch.equal(masks.sum(0) == 0, scene.ids == 0)  # every labelled pixel once
    assert cats.tolist() == [scene.segments[k][0] for k in sorted(scene.segments)]
    assert crowd.tolist() == [scene.segments[k][1] for k in sorted(scene.segments)]


def test_merge_and_split_make_new_maps_and_keep_every_pixel():
    scene = people_scene((24.0, 24.0), seed=0)
    before = scene.ids.clone()
    ids, segments = merge_segments(scene.ids, scene.segments, 3, 4)
    assert torch.equal(scene.ids, before) and 4 in scene.segments  # inputs untouched
    assert 4 not in segments and int((ids == 3).sum()) == int((before == 3).sum() * 2)
    ids, segments = split_segment(scene.ids, scene.segments, 3, 0.25)
    area = int((before == 3).sum())
    assert int((ids == 3).sum()) == round(0.25 * area) and int((ids == 5).sum()) == area - round(
        0.25 * area)
    assert segments[5] == segments[3] and torch.equal(scene.ids, before)
    with pytest.raises(ValueError, match="not a listed segment"):
        merge_segments(scene.ids, scene.segments, 3, 9)
    with pytest.raises(ValueError, match="two different"):
        merge_segments(scene.ids, scene.segments, 3, 3)
    with pytest.raises(ValueError, match="fraction"):
        split_segment(scene.ids, scene.segments, 3, 1.0)


def test_equal_people_have_equal_areas_and_touch():
    scene = people_scene((24.0, 24.0), seed=5)
    a, b = scene.ids == 3, scene.ids == 4
    assert int(a.sum()) == int(b.sum()) > 0
    assert bool((a[:, :-1] & b[:, 1:]).any())  # side by side, with no gap
    single = people_scene((20.0,), seed=5)
    assert set(single.segments) == {1, 2, 3}
    with pytest.raises(ValueError, match="one or two"):
        people_scene((1.0, 2.0, 3.0))


@pytest.mark.parametrize("kind", ["circle", "square"])
@pytest.mark.parametrize("pair", [False, True])
def test_counting_row_runs_equals_counting_the_masks(kind, pair):
    for stride, size in ((4, 5.5), (8, 13.0), (16, 3.0), (32, 40.0)):
        masks = scale_trial_masks(size, stride, 40, kind=kind, pair=pair, seed=stride)
        counts = scale_trials(size, stride, 40, kind=kind, pair=pair, seed=stride)
        assert masks.shape[:2] == (40, 2 if pair else 1)
        assert masks.shape[-1] % stride == 0 and masks.shape[-2] == masks.shape[-1]
        assert torch.equal(counts, cell_counts(masks, stride))
        if pair:
            assert not bool((masks[:, 0] & masks[:, 1]).any())


def test_placed_objects_have_their_size_and_pairs_touch():
    squares = scale_trial_masks(7.0, 8, 50, kind="square", seed=1)
    assert bool((squares.flatten(1).sum(1) == 49).all())  # a 7-pixel square is 7 x 7 pixels
    discs = scale_trial_masks(30.0, 8, 50, seed=2).flatten(1).sum(1).double()
    assert bool(((discs - math.pi * 15**2).abs() < 0.05 * math.pi * 15**2).all())
    pairs = scale_trial_masks(10.0, 8, 30, kind="square", pair=True, seed=3)
    a, b = pairs[:, 0], pairs[:, 1]
    beside = (a[:, :, :-1] & b[:, :, 1:]).flatten(1).any(1)
    below = (a[:, :-1, :] & b[:, 1:, :]).flatten(1).any(1)
    assert bool((beside | below).all())


def test_cell_counts_refuses_a_grid_that_does_not_fit():
    with pytest.raises(ValueError, match="multiples of the stride"):
        cell_counts(torch.zeros(1, 10, 12, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match="kind"):
        scale_trials(4.0, 4, 2, kind="triangle")
    with pytest.raises(ValueError, match="stride"):
        scale_trials(4.0, 0, 2)


@pytest.mark.parametrize("stride", [1, 3, 4, 8, 16, 32])
@pytest.mark.parametrize("coverage", [0.25, 0.5, 0.9])
def test_min_resolvable_size_is_the_worst_case_bound(stride, coverage):
    d = min_resolvable_size(stride, coverage)
    assert (d / 2) ** 2 > coverage * stride**2 >= ((d - 1) / 2) ** 2
    # pixel squares of that side own a cell wherever they are placed
    counts = scale_trials(float(d), stride, 300, kind="square", seed=stride)
    assert bool((counts > coverage * stride**2).flatten(1).any(1).all())


def test_min_resolvable_size_rejects_bad_input():
    with pytest.raises(ValueError, match="stride"):
        min_resolvable_size(0)
    with pytest.raises(ValueError, match="coverage"):
        min_resolvable_size(8, 1.0)


# --- chapters 09-10: ShapesDataset, the training set of the compact Mask R-CNN ---------------

from course.ap import coco_evaluate  # noqa: E402
from course.boxes import masks_to_boxes  # noqa: E402
from course.coco import load_ground_truth  # noqa: E402
from course.data import ShapesDataset, _shape_field, collate, collate_list  # noqa: E402
from course.structures import Instances  # noqa: E402


def _same(a, b):
    (image_a, t_a), (image_b, t_b) = a, b
    return (torch.equal(image_a, image_b) and torch.equal(t_a.masks, t_b.masks)
            and torch.equal(t_a.labels, t_b.labels) and torch.equal(t_a.boxes, t_b.boxes))


def test_shapes_dataset_draws_each_image_alone_and_the_same_every_time():
    ds = ShapesDataset("train", length=50)
    first = ds[5]
    for i in (7, 3, 49, 0):
        ds[i]
    assert _same(ds[5], first)
    assert _same(ShapesDataset("train", length=10)[5], first)  # a fresh object, another length
    assert _same(ds[-45], first) and ds[-45][1].image_id == 5
    assert not _same(ds[6], first)
    assert not _same(ShapesDataset("train", seed=1)[5], first)


def test_train_and_val_differ_and_val_has_200_images():
    train, val = ShapesDataset("train"), ShapesDataset("val")
    assert len(val) == 200 and len(train) == 100_000
    assert len(ShapesDataset("val", length=7)) == 7
    for i in range(5):
        assert not torch.equal(train[i][0], val[i][0])
    assert _same(ShapesDataset("val", length=300)[199], val[199])


@pytest.mark.parametrize("overlap", [False, True])
def test_shapes_dataset_targets_describe_the_image(overlap):
    ds = ShapesDataset("val", length=30, overlap=overlap, image_size=96)
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 96, 96) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert isinstance(target, Instances) and target.scores is None
        assert target.image_id == i and target.image_size == (96, 96)
        assert 1 <= len(target) <= 4 and target.labels.dtype == torch.int64
        assert set(target.labels.tolist()) <= {1, 2, 3}
        assert target.masks.dtype == torch.bool and target.masks.shape == (len(target), 96, 96)
        assert bool((target.masks.flatten(1).sum(1) >= 20).all())  # visible part: >= 20 px
        assert int(target.masks.sum(0).max()) <= 1  # visible masks never overlap
        assert target.boxes.dtype == torch.float32
        assert torch.equal(target.boxes, masks_to_boxes(target.masks).float())


def test_without_overlap_objects_keep_apart_and_with_overlap_they_occlude():
    def touching(target):  # objects whose masks meet, even diagonally, form fewer components
        union = target.masks.any(0).numpy()
        return ndimage.label(union, structure=np.ones((3, 3)))[1] < len(target)

    apart = ShapesDataset("train", length=100, overlap=False)
    assert not any(touching(apart[i][1]) for i in range(len(apart)))
    free = ShapesDataset("train", length=100, overlap=True)
    assert sum(touching(free[i][1]) for i in range(len(free))) >= 10  # 46 of these 100


def test_shapes_dataset_sizes_follow_the_range():
    ds = ShapesDataset("train", length=100)
    sides, areas = [], []
    for i in range(len(ds)):
        target = ds[i][1]
        inside = (target.boxes[:, :2] > 0).all(1) & (target.boxes[:, 2:] < 128).all(1)
        boxes, masks = target.boxes[inside], target.masks[inside]  # not cut by the border
        sides.append(torch.cat([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]))
        areas.append(masks.flatten(1).sum(1))
    sides, areas = torch.cat(sides), torch.cat(areas)
    # sizes 16-64 px: a triangle of side 16 is 14 px high; a square of side 64 spans 91 px
    assert 13 <= float(sides.min()) and float(sides.max()) <= 64 * math.sqrt(2) + 1
    assert 100 <= int(areas.min()) and int(areas.max()) <= 64**2 + 4 * 64
    assert float(sides.min()) < 24 and float(sides.max()) > 56  # the whole range is drawn


def test_objects_stand_out_from_the_background_around_them():
    ds = ShapesDataset("train", length=40)
    for i in range(len(ds)):
        image, target = ds[i]
        background = ~target.masks.any(0)
        for mask, box in zip(target.masks, target.boxes.long().tolist()):
            x1, y1, x2, y2 = max(box[0] - 4, 0), max(box[1] - 4, 0), box[2] + 4, box[3] + 4
            around = image[:, y1:y2, x1:x2][:, background[y1:y2, x1:x2]].mean(1)
            assert float((image[:, mask].mean(1) - around).norm()) > 0.3  # drawn >= 0.4 apart


def test_the_fast_shape_field_draws_the_pixels_of_shape_mask():
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        label = int(torch.randint(1, 4, (), generator=g))
        cx, cy, size, angle = (torch.rand(4, generator=g, dtype=torch.float64) *
                               torch.tensor([80, 70, 50, 7], dtype=torch.float64)).tolist()
        window, field = _shape_field(label, (cx, cy), size + 2, angle, 70, 80, 2.0)
        drawn = torch.zeros(70, 80, dtype=torch.bool)
        drawn[window] = field <= 0
        expected = shape_mask(CLASSES[label - 1], (cx, cy), size + 2, angle, 70, 80)
        assert torch.equal(drawn, expected)


def test_collate_batches_images_and_keeps_targets():
    ds = ShapesDataset("val", length=6, image_size=64)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert [t.image_id for t in targets] == [0, 1, 2, 3]
    assert all(isinstance(t, Instances) for t in targets)
    assert torch.equal(images[2], ds[2][0])
    with pytest.raises(ValueError, match="at least one"):
        collate([])


def test_collate_names_a_bad_item_and_sends_mixed_sizes_to_collate_list():
    small, large = ShapesDataset("val", image_size=48)[0], ShapesDataset("val")[0]
    with pytest.raises(ValueError, match=r"item 1 \[3, 128, 128\].*collate_list"):
        collate([small, large])
    images, targets = collate_list([small, large])
    assert [im.shape for im in images] == [(3, 48, 48), (3, 128, 128)]
    assert targets[1] is large[1]
    for item, message in [((small[0],), "must be a pair"),
                          ((small[0][0], small[1]), r"image must be a Tensor\[3, H, W\]"),
                          ((small[0], {"boxes": small[1].boxes}), "got a dict")]:
        with pytest.raises(TypeError, match=message):
            collate([small, item])


def test_coco_ground_truth_scores_perfectly_against_itself():
    ground_truth = ShapesDataset("val", length=40).coco_ground_truth()
    assert [g["image_id"] for g in ground_truth] == list(range(40))
    predictions = [{**g, "scores": torch.ones(len(g["labels"]))} for g in ground_truth]
    for iou_type in ("segm", "bbox"):
        result = coco_evaluate(ground_truth, predictions, iou_type=iou_type)
        assert result.stats[0] == pytest.approx(1.0)  # AP at IoU 0.50:0.95
        assert tuple(result.categories) == (1, 2, 3)


def test_write_coco_round_trips(tmp_path):
    ds = ShapesDataset("val", length=12, overlap=True, image_size=48)
    path = tmp_path / "val.json"
    ds.write_coco(path)
    coco = load_ground_truth(path)
    assert coco.categories == {1: "circle", 2: "square", 3: "triangle"}
    assert [g["image_id"] for g in coco.images] == list(range(12))
    assert all(size == (48, 48) for size in coco.sizes.values())
    for item, expected in zip(coco.images, ds.coco_ground_truth()):
        assert item["labels"].tolist() == expected["labels"].tolist()
        assert np.array_equal(item["masks"].to_dense(), expected["masks"].numpy())


def test_shapes_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("test")
    with pytest.raises(ValueError, match="length"):
        ShapesDataset("train", length=-1)
    with pytest.raises(ValueError, match="image_size"):
        ShapesDataset(image_size=16)
    with pytest.raises(ValueError, match="seed"):
        ShapesDataset(seed=-1)
    ds = ShapesDataset("val", length=3)
    for index in (3, -4, 100):
        with pytest.raises(IndexError, match="out of range"):
            ds[index]
    assert len(ShapesDataset("val", length=0)) == 0


# --- chapter 11: panoptic scenes for training ---------------------------------------------------

from course.data import (  # noqa: E402
    SEMANTIC_CATEGORIES,
    PanopticShapesDataset,
)
from course.pq import panoptic_quality  # noqa: E402


def test_panoptic_dataset_is_drawn_per_index_and_differs_from_the_shapes():
    ds = PanopticShapesDataset("val")
    image, target = ds[5]
    again, same = PanopticShapesDataset("val", length=10)[5]
    assert image.equal(again) and target.semantic.equal(same.semantic)
    assert not image.equal(ShapesDataset("val")[5][0])
    assert target.image_id == 5 and target.semantic.dtype == torch.int64
    assert not ds[0][0].equal(PanopticShapesDataset("train")[0][0])


@pytest.mark.parametrize("index", range(0, 200, 7))
def test_things_stand_on_the_grass_and_the_semantic_map_agrees(index):
    image, target = PanopticShapesDataset("val")[index]
    semantic = target.semantic
    assert semantic.min() >= -1 and semantic.max() <= len(STUFF_IDS)
    things = target.masks.any(0) if len(target) else torch.zeros_like(semantic, dtype=torch.bool)
    assert bool((semantic[things] == 0).all()) and not bool((semantic[~things] == 0).any())
    assert target.masks.sum(0).max() <= 1 and bool(image.min() >= 0) and bool(image.max() <= 1)
    for mask in target.masks:  # no thing reaches the sky: its rows lie below the horizon
        sky_rows = (semantic == 1).any(dim=1).nonzero().max()
        assert mask.nonzero()[:, 0].min() > sky_rows - 0.2 * len(semantic)
    assert bool((semantic == 1).any()) and bool((semantic == 2).any())


def test_panoptic_encoding_scores_perfectly_against_itself_and_matches_the_target():
    ds = PanopticShapesDataset("val", length=20)
    images = []
    for i in range(len(ds)):
        ids, segments = ds.panoptic(i)
        target = ds[i][1]
        things = {k: v for k, v in segments.items() if v[0] in THING_IDS}
        assert len(things) == len(target) and bool(((ids == 0) == (target.semantic == -1)).all())
        for sid, (category, crowd) in segments.items():
            assert not crowd and bool((ids == sid).any())
            if category in STUFF_IDS:
                k = SEMANTIC_CATEGORIES.index(category)
                assert bool(((ids == sid) == (target.semantic == k)).all())
        images.append((ids, segments, ids, segments))
    result = panoptic_quality(images, THING_IDS, STUFF_IDS)
    assert result["All"]["pq"] == 1.0 and result["Things"]["n"] == 3


def test_some_scenes_have_decoys_in_the_sky_that_are_labelled_sky():
    ds = PanopticShapesDataset("val")
    decoyed = 0
    for i in range(40):
        image, target = ds[i]
        sky = target.semantic == 1
        colour = image[:, sky].median(dim=1).values[:, None]  # [3, 1]
        far = (image[:, sky] - colour).abs().amax(dim=0) > 0.25  # sky pixels unlike the sky
        decoyed += int(far.sum()) >= 20
    assert 5 <= decoyed <= 35


def test_panoptic_dataset_trains_a_model_with_a_semantic_head():
    from course.model import MaskRCNN, MaskRCNNConfig

    torch.manual_seed(0)
    model = MaskRCNN(MaskRCNNConfig(width=8, channels=16, representation=32, mask_convs=1,
                                    stuff_classes=3, semantic_channels=8)).train()
    images, targets = collate([PanopticShapesDataset("train", image_size=64)[i]
                               for i in range(2)])
    losses = model(images, targets, seed=0)
    assert set(losses) >= {"semantic", "mask"} and torch.isfinite(losses["semantic"])


def test_panoptic_dataset_gives_category_instance_pairs_that_round_trip():
    from course.pq import pairs_to_panoptic, pq_stats

    ds = PanopticShapesDataset("val", length=8)
    for i in range(len(ds)):
        pairs = ds.pairs(i)
        ids, segments = ds.panoptic(i)
        target = ds[i][1]
        assert pairs.shape == (*ids.shape, 2)
        assert bool(((pairs[..., 0] == 0) == (ids == 0)).all())
        things = torch.isin(pairs[..., 0], torch.tensor(THING_IDS))
        assert int(pairs[..., 1][things].unique().numel()) <= len(target)
        back = pairs_to_panoptic(pairs, THING_IDS, STUFF_IDS, void_category=0)
        stats = pq_stats(ids, segments, *back)
        assert int(stats.tp.sum()) == len(segments) and int(stats.fp.sum() + stats.fn.sum()) == 0


@pytest.mark.parametrize("call, message", [
    (lambda: shape_mask("circle", (5.0, 5.0), -4.0, 0.0, 16, 16), "size must be >= 0"),
    (lambda: shape_mask("square", (5.0, 5.0), 4.0, 0.0, -16, 16), "height and width"),
    (lambda: make_scene(32, 32, num_objects=(5, 2)), r"num_objects must be a range"),
    (lambda: make_scene(32, 32, size_range=(10.0, -1.0)), r"size_range must be a range"),
    (lambda: cell_counts(torch.zeros(4, 4, dtype=torch.bool), 0), "stride must be a positive"),
])
def test_impossible_values_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()
