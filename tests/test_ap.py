"""course.ap gives pycocotools' numbers: the 12 stats and the precision / recall arrays, to 1e-12.

Every case is written with course.coco's json writer and evaluated by pycocotools' COCOeval;
the fast evaluator and the loop reference must both agree with it. Mutants of the engine,
course/cocoeval/engine.py (a strict threshold, an unstable sort, exclusive area bounds), must
fail the same comparison.
"""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import course.ap
import course.cocoeval.engine
import course.cocoeval.evaluate
from course.ap import (
    STAT_NAMES,
    COCOParams,
    ap_over_thresholds,
    average_precision,
    coco_evaluate,
    coco_evaluate_reference,
    precision_envelope,
    precision_recall,
)
from course.boxes import masks_to_boxes
from course.coco import RLEMasks, ground_truth_to_coco, predictions_to_coco
from course.data import make_scene, simulate_predictions
from course.masks import mask_iou

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


# --- pycocotools on the same data, through the json writer ----------------------------------


def pycocotools_eval(gt, preds, iou_type="segm", categories=None, params=None):
    """COCOeval on the json our writer makes; returns (stats, precision, recall, printed)."""
    gt_json = json.loads(json.dumps(ground_truth_to_coco(gt, categories)))
    results = json.loads(json.dumps(predictions_to_coco(preds, iou_type)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco = COCO()
        coco.dataset = gt_json
        coco.createIndex()
        if results:
            detections = coco.loadRes(results)
        else:  # loadRes([]) raises an IndexError: build the empty detections by hand
            detections = COCO()
            detections.dataset = {"images": gt_json["images"], "annotations": [],
                                  "categories": gt_json["categories"]}
            detections.createIndex()
        evaluator = COCOeval(coco, detections, iou_type)
        if params is not None:
            evaluator.params.iouThrs = np.array(params.iou_thresholds)
            evaluator.params.recThrs = np.array(params.recall_thresholds)
            evaluator.params.maxDets = list(params.max_dets)
            evaluator.params.areaRng = [list(r) for r in params.area_ranges]
        evaluator.evaluate()
        evaluator.accumulate()
        start = out.tell()
        evaluator.summarize()
    printed = out.getvalue()[start:].strip("\n")
    return evaluator.stats, evaluator.eval["precision"], evaluator.eval["recall"], printed


def same(result, reference):
    stats, precision, recall, _ = reference
    return (result.precision.shape == precision.shape and result.recall.shape == recall.shape
            and np.abs(result.stats - stats).max() <= 1e-12
            and (precision.size == 0 or np.abs(result.precision - precision).max() <= 1e-12)
            and (recall.size == 0 or np.abs(result.recall - recall).max() <= 1e-12))


# --- cases ----------------------------------------------------------------------------------


def square(h, w, y0, x0, sh, sw=None):
    m = np.zeros((h, w), bool)
    m[y0:y0 + sh, x0:x0 + (sh if sw is None else sw)] = True
    return m


def with_boxes(items):
    for item in items:
        item["boxes"] = masks_to_boxes(torch.as_tensor(item["masks"]))
    return items


def scene_case(seed, images=8, size=64, crowd=0.15):
    g = torch.Generator().manual_seed(seed)
    gt, preds = [], []
    for i in range(images):
        scene = make_scene(size, size, num_objects=(1, 9), size_range=(6.0, 34.0), generator=g)
        pred = simulate_predictions(scene, duplicate_rate=0.3, label_flip_rate=0.1,
                                    false_positives=(0, 3), generator=g)
        gt.append({"image_id": 10 * i + seed, "masks": scene.masks, "labels": scene.labels,
                   "iscrowd": torch.rand(len(scene), generator=g) < crowd})
        preds.append({"image_id": 10 * i + seed, "masks": pred.masks, "labels": pred.labels,
                      "scores": pred.scores})
    return with_boxes(gt), with_boxes(preds)


def exact_threshold_case():
    """Detections whose IoU with their object is exactly 0.5, 0.55, ..., 0.95 (and 0.75)."""
    gt, preds = [], []
    for i, k in enumerate((50, 55, 60, 65, 70, 75, 80, 85, 95, 100, 75, 50)):
        obj = square(30, 30, 5, 5, 10)  # 100 pixels
        det = np.zeros_like(obj)
        det.reshape(-1)[np.flatnonzero(obj)[:k]] = True  # k of them: IoU = k / 100
        gt.append({"image_id": i + 1, "masks": obj[None], "labels": [1]})
        preds.append({"image_id": i + 1, "masks": det[None], "labels": [1],
                      "scores": [0.9 - 0.05 * i]})
    grown = square(30, 30, 5, 5, 10, 20)  # 200 pixels around a 100-pixel object: IoU 0.5
    gt.append({"image_id": 99, "masks": square(30, 30, 5, 5, 10)[None], "labels": [1]})
    preds.append({"image_id": 99, "masks": grown[None], "labels": [1], "scores": [0.3]})
    return with_boxes(gt), with_boxes(preds)


def area_bound_case():
    """Objects and detections of exactly 32**2 and 96**2 pixels (both sides of each bound)."""
    h = w = 200
    gt = [{"image_id": 1, "labels": [1, 1, 2],
           "masks": np.stack([square(h, w, 0, 0, 32), square(h, w, 50, 50, 96),
                              square(h, w, 0, 150, 31, 33)])},  # 1023 pixels
          {"image_id": 2, "labels": [2, 2], "masks": np.stack([square(h, w, 0, 0, 40),
                                                               square(h, w, 100, 100, 20)]),
           "area": [1024.0, 9216.0]}]  # areas given, not the pixel counts
    preds = [{"image_id": 1, "labels": [1, 1, 1, 2],
              "masks": np.stack([square(h, w, 0, 0, 32), square(h, w, 52, 50, 96),
                                 square(h, w, 150, 0, 32), square(h, w, 0, 150, 31, 33)]),
              "scores": [0.9, 0.8, 0.7, 0.6]},
             {"image_id": 2, "labels": [2, 2, 2],
              "masks": np.stack([square(h, w, 0, 0, 40), square(h, w, 100, 100, 20),
                                 square(h, w, 150, 150, 32)]), "scores": [0.5, 0.9, 0.7]}]
    return with_boxes(gt), with_boxes(preds)


def crowd_case():
    """A crowd region that absorbs several detections, crowds only, and crowds beside objects."""
    h = w = 60
    crowd = square(h, w, 0, 0, 40)
    gt = [{"image_id": 1, "labels": [1, 1, 1], "iscrowd": [1, 0, 0],
           "masks": np.stack([crowd, square(h, w, 45, 45, 10), square(h, w, 5, 5, 8)])},
          {"image_id": 2, "labels": [1], "iscrowd": [1], "masks": crowd[None]},
          {"image_id": 3, "labels": [2, 2], "iscrowd": [0, 1],
           "masks": np.stack([square(h, w, 10, 10, 12), square(h, w, 8, 8, 30)])}]
    dets1 = np.stack([square(h, w, 2, 2, 6), square(h, w, 20, 20, 8), square(h, w, 45, 45, 10),
                      square(h, w, 5, 5, 8), square(h, w, 35, 35, 10), square(h, w, 6, 6, 7)])
    preds = [{"image_id": 1, "labels": [1] * 6, "masks": dets1,
              "scores": [0.95, 0.9, 0.85, 0.8, 0.75, 0.7]},
             {"image_id": 2, "labels": [1, 1], "masks": dets1[:2], "scores": [0.6, 0.4]},
             {"image_id": 3, "labels": [2, 2], "masks": np.stack([square(h, w, 10, 10, 12),
                                                                 square(h, w, 9, 9, 12)]),
              "scores": [0.5, 0.9]}]
    return with_boxes(gt), with_boxes(preds)


def ties_case():
    """Equal scores everywhere, and objects that are equally good matches."""
    rng = np.random.default_rng(7)
    h = w = 40
    gt, preds = [], []
    for i in range(8):
        objs = [square(h, w, 2 + 9 * j, 3, 8) for j in range(4)]
        objs.append(objs[0].copy())  # two identical objects: equal IoU, the later one wins
        dets = [np.roll(o, int(rng.integers(-2, 3)), axis=1) for o in objs for _ in range(3)]
        gt.append({"image_id": i, "labels": [1, 1, 2, 2, 1], "masks": np.stack(objs)})
        preds.append({"image_id": i, "labels": rng.integers(1, 3, len(dets)),
                      "masks": np.stack(dets), "scores": rng.choice([0.3, 0.6, 0.9], len(dets))})
    return with_boxes(gt), with_boxes(preds)


def many_detections_case():
    """One image with 130 detections of one class, beyond maxDets = 100."""
    rng = np.random.default_rng(3)
    h = w = 64
    objs = np.stack([square(h, w, 4 + 12 * (j // 5), 4 + 12 * (j % 5), 8) for j in range(20)])
    dets = np.stack([np.roll(objs[j % 20], (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))),
                             axis=(0, 1)) for j in range(130)])
    gt = [{"image_id": 1, "labels": [1] * 20, "masks": objs},
          {"image_id": 2, "labels": [1], "masks": objs[:1]}]
    preds = [{"image_id": 1, "labels": [1] * 130, "masks": dets, "scores": rng.random(130)},
             {"image_id": 2, "labels": [1] * 3, "masks": dets[:3], "scores": [0.2, 0.2, 0.1]}]
    return with_boxes(gt), with_boxes(preds)


def empty_images_case():
    """Images without objects (their detections are false positives), without detections,
    without either, a prediction entry with zero detections, and a missing one."""
    h = w = 32
    none = np.zeros((0, h, w), bool)
    gt = [{"image_id": 1, "labels": [], "masks": none},
          {"image_id": 2, "labels": [1, 2], "masks": np.stack([square(h, w, 1, 1, 9),
                                                              square(h, w, 15, 15, 9)])},
          {"image_id": 3, "labels": [], "masks": none},
          {"image_id": 4, "labels": [1], "masks": square(h, w, 3, 3, 9)[None]},
          {"image_id": 5, "labels": [2], "masks": square(h, w, 3, 3, 9)[None]}]
    preds = [{"image_id": 1, "labels": [1, 2], "scores": [0.99, 0.98],
              "masks": np.stack([square(h, w, 1, 1, 9), square(h, w, 20, 2, 5)])},
             {"image_id": 2, "labels": [1], "scores": [0.5], "masks": square(h, w, 1, 1, 9)[None]},
             {"image_id": 3, "labels": [], "scores": [], "masks": none},
             {"image_id": 4, "labels": [1], "scores": [0.7], "masks": square(h, w, 4, 3, 9)[None]}]
    return with_boxes(gt), with_boxes(preds)


def prediction_only_class_case():
    gt, preds = scene_case(5, images=4)
    for p in preds:
        p["labels"] = torch.where(p["labels"] == 3, torch.tensor(7), p["labels"])
    return gt, preds


CASES = {
    "scenes seed 1": lambda: scene_case(1),
    "scenes seed 2": lambda: scene_case(2, images=6, size=96),
    "scenes seed 3, 40% crowd": lambda: scene_case(3, crowd=0.4),
    "IoU exactly at the thresholds": exact_threshold_case,
    "areas exactly 32**2 and 96**2": area_bound_case,
    "crowd regions": crowd_case,
    "ties in score and IoU": ties_case,
    "more than 100 detections in an image": many_detections_case,
    "empty images": empty_images_case,
    "a class only in the predictions": prediction_only_class_case,
}


@pytest.fixture(scope="module")
def cases():
    return {name: build() for name, build in CASES.items()}


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("name", CASES)
def test_fast_and_reference_equal_pycocotools(cases, name, iou_type):
    gt, preds = cases[name]
    reference = pycocotools_eval(gt, preds, iou_type)
    fast = coco_evaluate(gt, preds, iou_type)
    loops = coco_evaluate_reference(gt, preds, iou_type)
    assert same(fast, reference), name
    assert same(loops, reference), name
    assert np.array_equal(fast.precision, loops.precision)
    assert np.array_equal(fast.stats, loops.stats)
    assert fast.coco_summary() == reference[3]


def test_the_cases_exercise_what_they_claim(cases):
    fast = coco_evaluate(*cases["more than 100 detections in an image"])
    assert fast.stats[8] < 1  # AR100: the 30 lowest-scored detections are cut
    r = coco_evaluate(*cases["areas exactly 32**2 and 96**2"])
    assert r.precision[0, 0, 0, 1, 2] > -1 and r.precision[0, 0, 0, 2, 2] > -1  # both ranges
    r = coco_evaluate(*cases["a class only in the predictions"])
    assert r.skipped_predictions > 0 and 7 not in r.categories


def test_explicit_categories_include_classes_without_objects(cases):
    gt, preds = cases["a class only in the predictions"]
    result = coco_evaluate(gt, preds, categories=[1, 2, 3, 7])
    assert same(result, pycocotools_eval(gt, preds, categories=[1, 2, 3, 7]))
    assert result.categories == (1, 2, 3, 7)
    assert (result.precision[:, :, 3] == -1).all() and result.per_class_ap()[7] == -1


def test_no_predictions_give_ap_zero(cases):
    gt, _ = cases["scenes seed 1"]
    for iou_type in ("segm", "bbox"):
        for preds in ([], [{"image_id": gt[0]["image_id"], "labels": [], "scores": [],
                            "masks": np.zeros((0, 64, 64), bool), "boxes": np.zeros((0, 4))}]):
            result = coco_evaluate(gt, preds, iou_type)
            assert same(result, pycocotools_eval(gt, preds, iou_type))
            assert result.stats[0] == 0 and result.stats[8] == 0


def test_no_ground_truth_at_all_is_undefined_not_an_error():
    preds = [{"image_id": 1, "labels": [1], "scores": [0.5], "masks": np.ones((1, 4, 4), bool)}]
    result = coco_evaluate([{"image_id": 1, "labels": [], "masks": np.zeros((0, 4, 4))}], preds)
    assert result.categories == () and (result.stats == -1).all()
    assert result.skipped_predictions == 1


@pytest.mark.parametrize("params", [
    COCOParams(max_dets=(1, 5, 20)),  # stats[0] reads maxDets=100: -1, as in pycocotools
    COCOParams(iou_thresholds=(0.5 + 1e-9, 0.75 + 1e-9, 0.9)),  # AP50, AP75 not found: -1
    COCOParams(iou_thresholds=(0.0, 0.3, 1.0)),  # 0 matches any pair; 1 only perfect ones
    COCOParams(recall_thresholds=(0.0, 0.25, 0.5, 0.75, 1.0), max_dets=(100, 1, 3)),
    COCOParams(area_ranges=((0, 1e5), (0, 100), (100, 400), (400, 1e5))),
])
def test_other_parameters_and_summarize_quirks(cases, params):
    gt, preds = cases["scenes seed 1"]
    reference = pycocotools_eval(gt, preds, params=params)
    assert same(coco_evaluate(gt, preds, params=params), reference)
    assert same(coco_evaluate_reference(gt, preds, params=params), reference)


def test_without_quirks_the_first_stat_reads_the_largest_max_dets(cases):
    gt, preds = cases["scenes seed 1"]
    quirky = coco_evaluate(gt, preds, params=COCOParams(max_dets=(1, 5, 20)))
    plain = coco_evaluate(gt, preds, params=COCOParams(max_dets=(1, 5, 20), coco_quirks=False))
    s = plain.precision[:, :, :, 0, 2]
    assert quirky.stats[0] == -1 and plain.stats[0] == pytest.approx(s[s > -1].mean())
    near = COCOParams(iou_thresholds=(0.5 + 1e-9, 0.75 + 1e-9, 0.9), coco_quirks=False)
    assert coco_evaluate(gt, preds, params=near).stats[1] > -1


def test_result_reads_well(cases):
    result = coco_evaluate(*cases["scenes seed 1"])
    assert list(result.as_dict()) == list(STAT_NAMES)
    table = result.summary({1: "circle", 2: "square", 3: "triangle"})
    assert "AP50" in table and "circle" in table and f"{result.stats[0]:7.3f}" in table
    per_class = result.per_class_ap()
    assert np.mean([v for v in per_class.values() if v > -1]) == pytest.approx(result.stats[0])
    assert "COCOResult(segm, 3 classes, AP=" in repr(result)


# --- one ranked list ------------------------------------------------------------------------


def test_precision_recall_of_a_ranked_list():
    precision, recall = precision_recall(torch.tensor([True, False, True, True]), 5)
    assert precision.tolist() == [1.0, 0.5, 2 / 3, 0.75]
    assert recall.tolist() == [0.2, 0.2, 0.4, 0.6]
    assert precision.dtype == torch.float64
    empty = precision_recall(np.zeros(0, bool), 2)
    assert empty[0].shape == (0,) and empty[1].shape == (0,)
    with pytest.raises(ValueError, match="num_gt"):
        precision_recall([True], 0)
    with pytest.raises(ValueError, match=r"shape \[D\]"):
        precision_recall(np.ones((2, 2), bool), 1)


def test_envelope_and_101_point_ap():
    precision = torch.tensor([1.0, 0.5, 2 / 3, 0.75, 0.6], dtype=torch.float64)
    recall = torch.tensor([0.25, 0.25, 0.5, 0.75, 0.75], dtype=torch.float64)
    assert precision_envelope(precision).tolist() == [1.0, 0.75, 0.75, 0.75, 0.6]
    # recall 0..0.25 -> 1 (26 points), 0.26..0.75 -> 0.75 (50 points), above 0.75 -> 0
    assert average_precision(precision, recall) == pytest.approx((26 + 0.75 * 50) / 101)
    assert average_precision([], []) == 0.0
    with pytest.raises(ValueError, match="never decrease"):
        average_precision([1.0, 1.0], [0.5, 0.25])


@pytest.mark.parametrize("seed", range(6))
def test_ap_over_thresholds_is_coco_ap_of_one_image_and_class(seed):
    scene = make_scene(seed=seed, num_objects=(3, 8))
    pred = simulate_predictions(scene, seed=seed + 50, duplicate_rate=0.4, label_flip_rate=0.0)
    label = int(scene.labels.mode().values)  # the most frequent class of the scene
    keep_gt, keep_dt = scene.labels == label, pred.labels == label
    gt = [{"image_id": 1, "masks": scene.masks[keep_gt], "labels": scene.labels[keep_gt],
           "area": torch.full((int(keep_gt.sum()),), 500.0)}]
    preds = [{"image_id": 1, "masks": pred.masks[keep_dt], "labels": pred.labels[keep_dt],
              "scores": pred.scores[keep_dt], "area": torch.full((int(keep_dt.sum()),), 500.0)}]
    iou = mask_iou(pred.masks[keep_dt], scene.masks[keep_gt])
    ours = ap_over_thresholds(iou, pred.scores[keep_dt].double())
    assert ours == pytest.approx(coco_evaluate(gt, preds).stats[0], abs=1e-12)


# --- bad input --------------------------------------------------------------------------------


def one_image(**changes):
    item = {"image_id": 1, "masks": np.ones((2, 8, 8), bool), "labels": [1, 2],
            "boxes": np.array([[0, 0, 8, 8], [1, 1, 4, 4]])}
    item.update(changes)
    return item


def one_prediction(**changes):
    item = {"image_id": 1, "masks": np.ones((1, 8, 8), bool), "labels": [1], "scores": [0.5],
            "boxes": np.array([[0, 0, 8, 8]])}
    item.update(changes)
    return item


@pytest.mark.parametrize("gt, preds, kwargs, message", [
    ([one_image()], [one_prediction(masks=np.ones((1, 8, 9), bool))], {},
     r"predictions\[0\]\['masks'\] are 8x9 .* ground truth of image 1 is 8x8"),
    ([one_image()], [one_prediction(image_id=5)], {}, r"predictions\[0\]\['image_id'\] = 5"),
    ([one_image()], [one_prediction(scores=[float("nan")])], {},
     r"predictions\[0\]\['scores'\]\[0\] is NaN"),
    ([one_image()], [{k: v for k, v in one_prediction().items() if k != "scores"}], {},
     r"predictions\[0\] has no 'scores'"),
    ([one_image()], [one_prediction(labels=[3])], {"categories": [1, 2]},
     r"predictions\[0\]\['labels'\] holds 3, which is not in categories \[1, 2\]"),
    ([one_image()], [], {"categories": [1]},
     r"ground_truth\[0\]\['labels'\] holds 2, which is not in categories \[1\]"),
    ([one_image(), one_image()], [], {}, r"ground_truth\[1\]\['image_id'\] = 1 appears twice"),
    ([one_image()], [one_prediction(), one_prediction()], {}, "appears twice in predictions"),
    ([one_image(labels=[1])], [], {}, r"ground_truth\[0\]\['masks'\] holds 2 masks"),
    ([one_image(iscrowd=[0, 2])], [], {}, r"ground_truth\[0\]\['iscrowd'\] must hold 0/1"),
    ([one_image(area=[1.0])], [], {}, r"ground_truth\[0\]\['area'\] must have shape \[2\]"),
    ([one_image(masks=np.full((2, 8, 8), 0.5))], [], {}, "must be binary"),
    ([{k: v for k, v in one_image().items() if k != "masks"}], [], {},
     r"ground_truth\[0\] has no 'masks'"),
    ([{k: v for k, v in one_image().items() if k != "boxes"}], [], {"iou_type": "bbox"},
     r"ground_truth\[0\] has no 'boxes'"),
    ([one_image(boxes=np.array([[0, 0, 8, 8], [4, 4, 1, 1]]))], [], {"iou_type": "bbox"},
     r"x2 >= x1"),
    ([one_image(image_id="a")], [], {}, r"\['image_id'\] must be an int"),
    ([one_image()], [], {"iou_type": "mask"}, "iou_type must be"),
    ([one_image()], [], {"iou_type": "keypoints"}, r"ground_truth\[0\] has no 'keypoints'"),
])
def test_bad_input_raises_naming_the_field(gt, preds, kwargs, message):
    for evaluate in (coco_evaluate, coco_evaluate_reference):
        with pytest.raises(ValueError, match=message):
            evaluate(gt, preds, **kwargs)


def test_params_are_checked():
    with pytest.raises(ValueError, match="max_dets"):
        COCOParams(max_dets=(1, 10))
    with pytest.raises(ValueError, match="iou_thresholds"):
        COCOParams(iou_thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match="recall_thresholds"):
        COCOParams(recall_thresholds=(0.5, 0.2))
    assert COCOParams(max_dets=(100, 1, 10)).max_dets == (1, 10, 100)  # sorted, as COCOeval


def test_inputs_are_not_modified(cases):
    gt, preds = cases["crowd regions"]
    before = [{k: np.asarray(v).copy() for k, v in p.items()} for p in preds]
    coco_evaluate(gt, preds)
    for p, b in zip(preds, before):
        assert all(np.array_equal(np.asarray(p[k]), b[k]) for k in b)


def test_rle_masks_and_dense_masks_give_the_same_result(cases):
    gt, preds = cases["scenes seed 1"]
    as_rle = [dict(item, masks=RLEMasks.from_dense(item["masks"])) for item in gt]
    assert np.array_equal(coco_evaluate(as_rle, preds).precision,
                          coco_evaluate(gt, preds).precision)


# --- mutants of the engine (course/cocoeval/engine.py) must fail the equality suite ------

MUTANTS = {
    "IoU >= t becomes IoU > t": (
        "ok = e_iou[edges][:, None, :] >= thresholds[None, :, None]",
        "ok = e_iou[edges][:, None, :] > thresholds[None, :, None]"),
    "an unstable score sort": (
        'by_score = np.argsort(-score, kind="stable")',
        'by_score = np.argsort(-score, kind="quicksort")'),
    "exclusive area bounds": (
        "return (area < low) | (area > high)",
        "return (area <= low) | (area >= high)"),
}
MUTATION_CASES = ["IoU exactly at the thresholds", "areas exactly 32**2 and 96**2",
                  "ties in score and IoU", "scenes seed 1"]


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_equality_suite_catches_the_mutant(cases, mutant, load_mutant, monkeypatch):
    engine = load_mutant(course.cocoeval.engine, *MUTANTS[mutant])
    with monkeypatch.context() as patch:
        patch.setattr(course.cocoeval.evaluate, "engine", engine)  # coco_evaluate runs it
        caught = [name for name in MUTATION_CASES
                  if not same(coco_evaluate(*cases[name]), pycocotools_eval(*cases[name]))]
    assert caught, f"no case tells the mutant '{mutant}' from pycocotools"
    assert all(same(coco_evaluate(*cases[n]), pycocotools_eval(*cases[n])) for n in caught)


# --- the package never needs the references --------------------------------------------------

BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pycocotools", "faster_coco_eval", "torchmetrics"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np
import course, course.ap, course.coco, course.cli
from course.ap import coco_evaluate
gt = [{"image_id": 1, "masks": np.ones((1, 4, 4), bool), "labels": [1]}]
pred = [{"image_id": 1, "masks": np.ones((1, 4, 4), bool), "labels": [1], "scores": [0.5]}]
print(round(coco_evaluate(gt, pred).stats[0], 9))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pycocotools", "faster_coco_eval",
                                                          "torchmetrics")))
"""


def test_course_runs_with_the_reference_packages_blocked():
    out = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.split("\n")[:2] == ["1.0", "[]"]


def test_ap_per_threshold_holds_ap50_and_ap75_and_averages_to_ap():
    g = torch.Generator().manual_seed(5)
    gt, dt = [], []
    for i in range(6):
        masks = torch.rand(3, 24, 24, generator=g) > 0.5
        noisy = masks ^ (torch.rand(3, 24, 24, generator=g) > 0.85)
        gt.append({"image_id": i, "labels": torch.tensor([1, 2, 1]), "masks": masks})
        dt.append({"image_id": i, "labels": torch.tensor([1, 2, 1]),
                   "scores": torch.rand(3, generator=g), "masks": noisy})
    result = coco_evaluate(gt, dt)
    per = result.ap_per_threshold()
    assert list(per) == [round(0.5 + 0.05 * k, 4) for k in range(10)]
    assert per[0.5] == pytest.approx(result.as_dict()["AP50"])
    assert per[0.75] == pytest.approx(result.as_dict()["AP75"])
    assert np.mean(list(per.values())) == pytest.approx(result.as_dict()["AP"])


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_a_ground_truth_without_objects_gives_twelve_minus_ones_as_pycocotools(iou_type):
    empty = {"image_id": 1, "labels": torch.zeros(0, dtype=torch.long),
             "masks": torch.zeros(0, 8, 8, dtype=torch.bool)}
    detection = {"image_id": 1, "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
                 "masks": torch.from_numpy(square(8, 8, 2, 2, 3))[None]}
    gt, preds = with_boxes([empty]), with_boxes([detection])
    result = coco_evaluate(gt, preds, iou_type, categories=[1])
    assert result.stats.tolist() == [-1.0] * 12
    assert same(result, pycocotools_eval(gt, preds, iou_type, categories=[1]))


@pytest.mark.parametrize("precision, recall, name", [([5.0], [1.0], "precision"),
                                                     ([0.5], [1.5], "recall"),
                                                     ([-0.1], [0.5], "precision")])
def test_average_precision_refuses_values_outside_0_1(precision, recall, name):
    with pytest.raises(ValueError, match=f"{name} must lie in"):
        average_precision(precision, recall)
