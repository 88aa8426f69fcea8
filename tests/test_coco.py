"""course.coco: RLE and polygons exactly as pycocotools makes them; the json readers and writers."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course.ap import coco_evaluate
from course.coco import (
    RLEMasks,
    counts_to_string,
    ground_truth_to_coco,
    load_ground_truth,
    load_results,
    polygons_to_counts,
    predictions_to_coco,
    rle_decode,
    rle_encode,
    string_to_counts,
)

# pycocotools' decode trips numpy 2's copy-keyword deprecation; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def coco_encode(masks):
    """pycocotools' RLE of [N, H, W] masks, counts as str."""
    if not len(masks):
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": r["size"], "counts": r["counts"].decode()} for r in rles]


def random_masks(rng, n, h, w):
    density = rng.choice([0.0, 0.02, 0.3, 0.7, 1.0])
    return rng.random((n, h, w)) < density


@pytest.mark.parametrize("seed", range(30))
def test_encode_decode_area_and_bbox_equal_pycocotools(seed):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, int(rng.integers(1, 5)), int(rng.integers(1, 30)),
                         int(rng.integers(1, 30)))
    masks[0, 0, 0] = seed % 2 == 0  # masks that start with foreground and with background
    ours, ref = rle_encode(masks), coco_encode(masks)
    assert ours == ref
    rle = RLEMasks.from_dense(masks)
    assert np.array_equal(rle.to_dense(), masks)
    assert np.array_equal(rle.area(), mask_utils.area(ref))
    assert np.array_equal(rle.coco_bbox(), mask_utils.toBbox(ref))
    assert np.array_equal(rle_decode(ref), masks)
    assert np.array_equal(rle_decode(rle.to_coco(compressed=False)), masks)


def test_edge_masks_encode_as_pycocotools_does():
    empty, full = np.zeros((1, 4, 3), bool), np.ones((1, 4, 3), bool)
    corner = np.zeros((1, 4, 3), bool)
    corner[0, 3, 2] = True  # the last pixel in column-major order
    for masks in (empty, full, corner, np.zeros((2, 1, 7), bool), np.ones((1, 1, 1), bool)):
        assert rle_encode(masks) == coco_encode(masks)
    assert RLEMasks.from_dense(full).to_coco(compressed=False)[0]["counts"] == [0, 12]
    assert RLEMasks.from_dense(torch.zeros(0, 5, 6)).to_coco() == []


@pytest.mark.parametrize("seed", range(20))
def test_encoding_inside_bounding_boxes_equals_pycocotools_on_boxes_touching_the_edges(seed):
    """from_dense finds runs inside each mask's bounding box: a run going on from the bottom of
    one column into the top of the next, boxes on any edge, and the last pixel, as pycocotools."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    masks = np.zeros((6, h, w), bool)
    for m in masks:
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0, h)) + 1, int(rng.integers(x0, w)) + 1
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.choice([0.5, 1.0])
    masks[1, :, : w // 2 + 1] = True  # full columns: one run over several columns
    masks[2, -1, :] = masks[2, 0, :] = True  # the bottom of a column meets the next one's top
    masks[3] = rng.random((h, w)) < 0.5
    masks[3, -1, -1] = True  # the last pixel set
    assert rle_encode(masks) == coco_encode(masks)
    assert np.array_equal(RLEMasks.from_dense(masks).to_dense(), masks)


def test_boxes_are_the_tight_boxes_of_course_boxes():
    from course.boxes import masks_to_boxes

    rng = np.random.default_rng(3)
    masks = rng.random((6, 9, 11)) < 0.05
    masks[0] = False
    assert np.array_equal(RLEMasks.from_dense(masks).boxes(), masks_to_boxes(masks).numpy())


def test_string_codec_round_trips_large_and_negative_differences():
    counts = np.array([0, 70000, 3, 5, 69990, 1, 2**31 - 1, 4, 1])
    text = counts_to_string(counts)
    assert np.array_equal(string_to_counts(text), counts)
    assert np.array_equal(string_to_counts(text.encode()), counts)


@pytest.mark.parametrize("seed", range(60))
def test_polygons_rasterise_exactly_as_pycocotools(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        xy = rng.uniform(-8, 58, 2 * int(rng.integers(3, 9)))
        if seed % 4 == 0:
            xy = np.round(xy)  # vertices on pixel corners: exact ties
        if seed % 5 == 0:
            xy[2:4] = xy[0:2]  # a repeated point
        parts.append(xy.tolist())
    ours = polygons_to_counts(parts, h, w)
    ref = mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
    decoded = RLEMasks.from_counts([ours], h, w).to_dense()[0]
    assert np.array_equal(decoded, mask_utils.decode(ref).astype(bool))
    if len(parts) == 1:
        assert counts_to_string(ours) == ref["counts"].decode()


def test_from_coco_reads_every_segmentation_kind():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 12, 10)) < 0.3
    poly = [[1.0, 1.0, 8.0, 1.0, 8.0, 9.0]]
    segs = [coco_encode(masks[:1])[0], RLEMasks.from_dense(masks[1:2]).to_coco(False)[0], poly,
            {"size": [12, 10], "counts": coco_encode(masks[2:])[0]["counts"].encode()}]
    dense = RLEMasks.from_coco(segs, 12, 10).to_dense()
    assert np.array_equal(dense[:2], masks[:2]) and np.array_equal(dense[3], masks[2])
    assert np.array_equal(dense[2], mask_utils.decode(mask_utils.frPyObjects(poly, 12, 10)[0]))


@pytest.mark.parametrize("segmentation, message", [
    ({"size": [4, 4], "counts": "0 "}, "characters must lie"),
    ({"size": [4, 4], "counts": "1o"}, "ends in the middle of a number"),
    ({"size": [4, 4], "counts": "52"}, "adding up to 7"),
    ({"size": [4, 4], "counts": ""}, "no counts"),
    ({"size": [4, 4], "counts": [10, -2, 8]}, "a negative count"),
    ({"size": [5, 4], "counts": [20]}, r"\['size'\] is \[5, 4\]"),
    ({"counts": [16]}, "without 'counts' and 'size'"),
    ({"size": [4, 4], "counts": 16}, "must be a string"),
    ([[1, 2, 3, 4]], r"holds 4 numbers; a polygon needs at least 3 points"),
    ([[1, 2], [0, 0, 3, 0, 3, 3]], r"\[0\] holds 2 numbers"),
    ([[]], r"\[0\] holds 0 numbers"),
    ([[0, 0, 3, 0, 3, float("nan")]], "finite"),
    ([[0, 0, 3, 0, 3, 3], [0, 0, 3, "a", 3, 3]], r"\[1\] must hold numbers"),
    ("mask", "must be an RLE dict or a list of polygons"),
])
def test_malformed_segmentations_raise_naming_the_object(segmentation, message):
    with pytest.raises(ValueError, match=message) as info:
        RLEMasks.from_coco([{"size": [4, 4], "counts": [16]}, segmentation], 4, 4,
                           ["first", "annotations[7]['segmentation']"])
    assert "annotations[7]['segmentation']" in str(info.value)


def test_rlemasks_checks_its_arrays():
    with pytest.raises(ValueError, match="add up to 5, not height"):
        RLEMasks(2, 3, np.array([2, 3]), np.array([0, 2]))
    with pytest.raises(ValueError, match="offsets"):
        RLEMasks(2, 3, np.array([6]), np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="negative"):
        RLEMasks(2, 3, np.array([7, -1]), np.array([0, 2]))
    sub = RLEMasks.from_dense(np.eye(3, dtype=bool)[None].repeat(2, 0)).select([1])
    assert len(sub) == 1 and sub.area().tolist() == [3]


# --- json ------------------------------------------------------------------------------------


def small_set(rng, with_boxes=False):
    gt, preds = [], []
    for image_id in (4, 2, 9):
        n, p = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        item = {"image_id": image_id, "masks": rng.random((n, 16, 12)) < 0.3,
                "labels": rng.integers(1, 3, n), "iscrowd": rng.random(n) < 0.3}
        pred = {"image_id": image_id, "masks": rng.random((p, 16, 12)) < 0.3,
                "labels": rng.integers(1, 3, p), "scores": rng.random(p)}
        if with_boxes:
            item["boxes"] = rng.uniform(0, 5, (n, 2)).repeat(2, 1) + [0, 0, 3, 4]
            pred["boxes"] = rng.uniform(0, 5, (p, 2)).repeat(2, 1) + [0, 0, 2, 6]
        gt.append(item)
        preds.append(pred)
    return gt, preds


def test_ground_truth_round_trips_and_pycocotools_reads_the_same_masks(tmp_path):
    rng = np.random.default_rng(1)
    gt, _ = small_set(rng)
    data = ground_truth_to_coco(gt, {1: "circle", 2: "square"})
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    back = load_ground_truth(path)
    assert back.categories == {1: "circle", 2: "square"}
    assert [b["image_id"] for b in back.images] == [4, 2, 9]
    coco = COCO(str(path))
    for item, read in zip(gt, back.images):
        assert np.array_equal(read["masks"].to_dense(), item["masks"])
        assert np.array_equal(read["labels"], item["labels"])
        assert np.array_equal(read["iscrowd"], item["iscrowd"])
        assert np.array_equal(read["area"], item["masks"].sum((1, 2)))
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[item["image_id"]]))
        theirs = [coco.annToMask(a).astype(bool) for a in anns]
        assert np.array_equal(np.array(theirs).reshape(-1, 16, 12), item["masks"])


def test_results_round_trip_boxes_and_masks():
    rng = np.random.default_rng(2)
    gt, preds = small_set(rng, with_boxes=True)
    truth = load_ground_truth(ground_truth_to_coco(gt, [1, 2]), "bbox")
    boxes, dropped = load_results(predictions_to_coco(preds, "bbox"), truth, "bbox")
    assert dropped == 0
    for p, read in zip(preds, boxes):
        xyxy = read["bbox"].copy()
        xyxy[:, 2:] += xyxy[:, :2]
        assert np.allclose(xyxy, p["boxes"]) and np.array_equal(read["scores"], p["scores"])
        assert np.array_equal(read["area"], read["bbox"][:, 2] * read["bbox"][:, 3])
    truth = load_ground_truth(ground_truth_to_coco(gt, [1, 2]))
    masks, _ = load_results(predictions_to_coco(preds), truth)
    for p, read in zip(preds, masks):
        assert np.array_equal(read["masks"].to_dense(), p["masks"])
        assert np.array_equal(read["area"], p["masks"].sum((1, 2)))


def test_results_follow_loadres_quirks():
    mask = np.zeros((1, 16, 12), bool)
    mask[0, 2:5, 3:5] = True  # 6 pixels
    truth = load_ground_truth(ground_truth_to_coco([{"image_id": 1, "masks": mask,
                                                     "labels": [1]}]))
    seg = rle_encode(mask)[0]
    with_box = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": seg,
                 "bbox": [0, 0, 10, 10]}]
    preds, _ = load_results(with_box, truth)
    assert preds[0]["area"].tolist() == [100.0]  # the box's area, not the mask's
    preds, _ = load_results([{k: v for k, v in with_box[0].items() if k != "bbox"}], truth)
    assert preds[0]["area"].tolist() == [6.0]
    preds, _ = load_results([{"image_id": 1, "category_id": 1, "score": 0.5,
                              "segmentation": seg}], truth, "bbox")
    assert preds[0]["bbox"].tolist() == [[3.0, 2.0, 2.0, 3.0]]  # toBbox of the mask
    box_only = [{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [3, 2, 2, 3]}]
    preds, _ = load_results(box_only, truth)
    assert np.array_equal(preds[0]["masks"].to_dense(), mask)  # the box as a polygon
    preds, dropped = load_results([dict(box_only[0], category_id=7)] + box_only, truth)
    assert dropped == 1 and preds[0]["labels"].tolist() == [1]
    preds, dropped = load_results([], truth)  # where pycocotools' loadRes([]) raises
    assert dropped == 0 and [len(p["labels"]) for p in preds] == [0]


def test_missing_area_is_the_pixel_count(tmp_path):
    data = ground_truth_to_coco([{"image_id": 1, "masks": np.ones((1, 3, 3), bool),
                                  "labels": [1], "area": [50.0]}])
    assert load_ground_truth(data).images[0]["area"].tolist() == [50.0]
    del data["annotations"][0]["area"]
    assert load_ground_truth(data).images[0]["area"].tolist() == [9.0]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("annotations"), "no 'annotations'"),
    (lambda d: d.pop("categories"), "no 'categories'"),
    (lambda d: d["annotations"][0].update(image_id=99), r"annotations\[0\]\['image_id'\] = 99"),
    (lambda d: d["annotations"][0].pop("segmentation"), r"annotations\[0\] has no 'segmentation'"),
    (lambda d: d["annotations"][0]["segmentation"].update(counts="1o"), r"annotations\[0\]"),
    (lambda d: d["images"][0].pop("height"), r"images\[0\] needs 'height'"),
    (lambda d: d["images"].append(dict(d["images"][0])), "listed twice"),
    (lambda d: (d["images"][0].update(id="1"), d["annotations"][0].update(image_id="1")),
     r"images\[0\]\['id'\] must be an integer, got '1'"),
    (lambda d: d["annotations"][0].update(category_id=1.5),
     r"annotations\[0\]\['category_id'\] must be an int, got 1.5"),
])
def test_bad_ground_truth_json_raises_naming_the_field(change, message):
    data = ground_truth_to_coco([{"image_id": 1, "masks": np.ones((1, 3, 3), bool),
                                  "labels": [1]}])
    change(data)
    with pytest.raises(ValueError, match=message):
        load_ground_truth(data)


def test_a_results_file_as_ground_truth_is_explained(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="is this a results file"):
        load_ground_truth(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid json"):
        load_ground_truth(path)


@pytest.mark.parametrize("result, message", [
    ({"image_id": 5, "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1]}, r"\['image_id'\] = 5"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, "has no 'score'"),
    ({"image_id": 1, "category_id": 1, "score": float("nan"), "bbox": [0, 0, 1, 1]}, "NaN"),
    ({"image_id": 1, "category_id": 1, "score": "high", "bbox": [0, 0, 1, 1]}, "a number"),
    ({"image_id": 1, "category_id": 1, "score": 0.5}, "neither 'segmentation' nor 'bbox'"),
    ({"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [0, 0, 1]}, r"\['bbox'\] must be"),
    ({"image_id": "1", "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1]},
     r"\['image_id'\] must be an integer, got '1'"),
    ({"image_id": 1, "category_id": 1.5, "score": 0.5, "bbox": [0, 0, 1, 1]},
     r"\['category_id'\] must be an int, got 1.5"),  # never truncated to class 1
])
def test_bad_results_raise_naming_the_result(result, message):
    truth = load_ground_truth(ground_truth_to_coco([{"image_id": 1, "masks": np.ones((1, 3, 3),
                                                     bool), "labels": [1]}]))
    with pytest.raises(ValueError, match=message) as info:
        load_results([result], truth)
    assert "results[0]" in str(info.value)
    with pytest.raises(ValueError, match="must be a list"):
        load_results({"annotations": []}, truth)


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_files_with_polygons_ignore_flags_and_boxes_evaluate_as_pycocotools(iou_type):
    import contextlib
    import copy
    import io

    from pycocotools.cocoeval import COCOeval

    from course.ap import coco_evaluate
    from course.data import make_scene, simulate_predictions

    gt, preds = [], []
    for i in range(8):
        scene = make_scene(96, 96, num_objects=(3, 8), size_range=(8.0, 60.0), seed=i)
        pred = simulate_predictions(scene, seed=100 + i, false_positives=(0, 3))
        gt.append({"image_id": i + 1, "masks": scene.masks, "labels": scene.labels,
                   "iscrowd": torch.arange(len(scene)) % 6 == 5})
        preds.append({"image_id": i + 1, "masks": pred.masks, "labels": pred.labels,
                      "scores": pred.scores})
    data, results = ground_truth_to_coco(gt, [1, 2, 3]), predictions_to_coco(preds)
    for j, ann in enumerate(data["annotations"]):
        if j % 3 == 0:  # a polygon instead of the RLE
            ann["segmentation"] = [[5.0 + j % 7, 5.0, 40.0, 8.5 + j % 5, 30.5, 44.2, 9.1, 30.0]]
        ann["ignore"] = int(j % 4 == 0)  # COCOeval overwrites it with iscrowd
    for j, res in enumerate(results):  # a bbox in mask results: loadRes sizes them by it
        res["bbox"] = [0.0, 0.0, 50.0, 50.0] if j % 9 == 0 else \
            [float(v) for v in mask_utils.toBbox(res["segmentation"])]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(data)
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    truth = load_ground_truth(data, iou_type)
    predictions, _ = load_results(results, truth, iou_type)
    ours = coco_evaluate(truth.images, predictions, iou_type, list(truth.categories))
    assert np.abs(ours.stats - evaluator.stats).max() <= 1e-12
    assert np.abs(ours.precision - evaluator.eval["precision"]).max() <= 1e-12
    assert np.abs(ours.recall - evaluator.eval["recall"]).max() <= 1e-12


# --- polygons of fewer than 3 points, odd coordinates, impossible image sizes ----------------

SQUARE = [1.0, 1.0, 8.0, 1.0, 8.0, 8.0, 1.0, 8.0]


@pytest.mark.parametrize("later", [[2.0, 2.0, 5.0, 5.0], [3.0, 3.0], [], [2.0, 2.0, 5.0, 5.0, 6.0],
                                   [2.0, 2.0, 9.5, 2.0, 9.5, 9.0, 2.0]])
def test_a_later_polygon_of_few_points_or_odd_coordinates_is_rasterised_as_pycocotools(later):
    parts = [SQUARE, later]
    ours = polygons_to_counts(parts, 10, 11)
    ref = mask_utils.merge(mask_utils.frPyObjects(parts, 10, 11))
    decoded = RLEMasks.from_counts([ours], 10, 11).to_dense()[0]
    assert np.array_equal(decoded, mask_utils.decode(ref).astype(bool))
    assert int(decoded.sum()) == int(mask_utils.area(ref))
    if len(later) < 6:
        assert int(decoded.sum()) == 49  # the square alone: the short polygon adds nothing


@pytest.mark.parametrize("seed", range(20))
def test_a_polygon_of_two_points_covers_nothing_as_in_pycocotools(seed):
    rng = np.random.default_rng(seed)
    segment = rng.uniform(-3, 20, 5).tolist()  # 5 numbers: two points and an odd coordinate
    ours = polygons_to_counts([segment], 16, 14)
    ref = mask_utils.frPyObjects([segment], 16, 14)[0]
    assert ours.tolist() == [16 * 14] and int(mask_utils.area(ref)) == 0


def test_a_ground_truth_with_short_polygons_gives_pycocotools_masks_areas_and_ap(tmp_path):
    polygons = [[SQUARE, [2.0, 2.0, 5.0, 5.0]], [[10.0, 1.0, 18.0, 1.0, 18.0, 9.0], [3.0, 3.0]],
                [[1.0, 10.0, 9.0, 10.0, 9.0, 18.0, 1.0, 18.0, 5.0], []]]
    data = {"images": [{"id": 1, "height": 20, "width": 20}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": seg, "area": 0.0, "bbox": [0, 0, 1, 1]}
                            for i, seg in enumerate(polygons)]}
    coco = COCO()
    coco.dataset = json.loads(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    for ann in data["annotations"]:  # areas as pycocotools computes them
        ann["area"] = float(mask_utils.area(coco.annToRLE(coco.anns[ann["id"]])))
    coco.dataset = json.loads(json.dumps(data))
    truth = load_ground_truth(data)
    masks = truth.images[0]["masks"].to_dense()
    for j, ann in enumerate(data["annotations"]):
        assert np.array_equal(masks[j], coco.annToMask(ann).astype(bool))
        assert masks[j].sum() == ann["area"]
    detections = np.stack([masks[0], masks[1] | masks[2], masks[2], masks[0] & ~masks[0]])
    results = [{"image_id": 1, "category_id": 1, "score": score, "segmentation": seg}
               for score, seg in zip([0.9, 0.8, 0.7, 0.6], RLEMasks.from_dense(detections)
                                     .to_coco(), strict=True)]
    predictions, _ = load_results(results, truth)
    ours = coco_evaluate(truth.images, predictions, categories=list(truth.categories))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(json.loads(json.dumps(results))), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert np.array_equal(ours.stats, evaluator.stats)
    assert np.array_equal(ours.precision, evaluator.eval["precision"])
    assert 0 < ours.stats[0] < 1  # some detections match, some do not


@pytest.mark.parametrize("call, message", [
    (lambda: polygons_to_counts([SQUARE], -4, 10), r"height must be a non-negative int"),
    (lambda: polygons_to_counts([SQUARE], 10, 2.5), r"width must be a non-negative int"),
    (lambda: polygons_to_counts([SQUARE], True, 10), r"height must be a non-negative int"),
    (lambda: RLEMasks.from_counts([[6]], 2.0, 3), r"height must be a non-negative int"),
    (lambda: RLEMasks.from_counts([[6]], 2, -3), r"width must be a non-negative int"),
    (lambda: RLEMasks(-2, -3, np.array([6]), np.array([0, 1])), "height must be a non-negative"),
    (lambda: RLEMasks.from_coco([{"size": [2, 3], "counts": [6]}], 2, 3.5), "width must be"),
    (lambda: rle_decode([{"size": [-2, 3], "counts": [6]}]), r"rles\[0\]\['size'\]\[0\]"),
    (lambda: rle_decode([{"size": [2, 1.5], "counts": [3]}]), r"rles\[0\]\['size'\]\[1\]"),
    (lambda: ground_truth_to_coco([{"image_id": 1, "labels": [1], "bbox": [[0, 0, 1, 1]],
                                    "height": -5, "width": 8}]),
     r"ground_truth\[0\]\['height'\] must be a non-negative int"),
    (lambda: ground_truth_to_coco([{"image_id": 1, "labels": [1], "bbox": [[0, 0, 1, 1]],
                                    "height": 5, "width": 8.5}]),
     r"ground_truth\[0\]\['width'\] must be a non-negative int"),
    (lambda: load_ground_truth({"images": [{"id": 1, "height": -3, "width": 4}],
                                "annotations": [], "categories": []}),
     r"images\[0\]\['height'\] must be a non-negative int"),
    (lambda: load_ground_truth({"images": [{"id": 1, "height": 3, "width": 4.5}],
                                "annotations": [], "categories": []}),
     r"images\[0\]\['width'\] must be a non-negative int"),
])
def test_impossible_image_sizes_are_refused_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_whole_float_image_size_in_a_file_is_read_as_an_int():
    data = {"images": [{"id": 1, "height": 3.0, "width": 4}], "categories": [{"id": 1}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "segmentation": {"size": [3, 4], "counts": [2, 10]}}]}
    truth = load_ground_truth(data)
    assert truth.sizes == {1: (3, 4)} and truth.images[0]["area"].tolist() == [10.0]


def test_from_dense_takes_tensors_and_arrays_and_refuses_non_binary_masks():
    masks = torch.rand(3, 7, 5, generator=torch.Generator().manual_seed(0)) > 0.5
    from_tensor = RLEMasks.from_dense(masks)
    assert np.array_equal(from_tensor.to_dense(), masks.numpy())
    assert np.array_equal(RLEMasks.from_dense(masks.numpy().astype(np.uint8)).counts,
                          from_tensor.counts)
    with pytest.raises(ValueError, match="must be binary"):
        RLEMasks.from_dense(np.full((1, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"shape \[N, H, W\].*mask\[None\]"):
        RLEMasks.from_dense(np.zeros((2, 2), bool))
    with pytest.raises(TypeError, match="torch.Tensor or numpy.ndarray"):
        RLEMasks.from_dense([[[True]]])


def test_an_annotation_with_id_0_is_counted_and_matched_where_pycocotools_misses_it():
    square = [[0, 0, 2, 0, 2, 2, 0, 2]]
    data = {"images": [{"id": 1, "height": 4, "width": 4}], "categories": [{"id": 1}],
            "annotations": [{"id": 0, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "area": 4.0, "bbox": [0, 0, 2, 2], "segmentation": square}]}
    truth = load_ground_truth(data)
    assert truth.zero_ids == 1
    renumbered = {**data, "annotations": [{**data["annotations"][0], "id": 1}]}
    assert load_ground_truth(renumbered).zero_ids == 0
    results = [{"image_id": 1, "category_id": 1, "score": 0.9,
                "segmentation": RLEMasks.from_coco([square], 4, 4).to_coco()[0]}]
    predictions, _ = load_results(results, truth)
    ours = coco_evaluate(truth.images, predictions).stats[0]  # ids are not used
    stats = {}
    for name, gt in (("id 0", data), ("id 1", renumbered)):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
            evaluator = COCOeval(coco, coco.loadRes(json.loads(json.dumps(results))), "segm")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats[name] = evaluator.stats[0]
    assert stats["id 0"] == 0.0 and stats["id 1"] > 0.99  # the divergence documented
    assert ours == stats["id 1"]
