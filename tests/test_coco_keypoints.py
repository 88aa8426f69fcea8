"""COCO keypoint evaluation (OKS) against pycocotools on randomised person-keypoint files.

A generator writes a ground-truth dict and a results list that mix, in one file: several
images (some without people), crowd regions, people without labelled keypoints (``num_keypoints``
0, measured against their enlarged box), partly and fully labelled people, an annotated
``area`` that disagrees with the box (range bounds too), the same person twice, a second
keypoint category, over 20 detections on an image, tied scores, keypoints off the image,
results sized by a ``bbox`` or a ``segmentation`` (``loadRes`` reads the first result), and
changed ``COCOeval.params``. The 10 stats and the precision and recall arrays must equal
pycocotools' to 1e-12.
"""

import contextlib
import copy
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course import cli
from course.ap import KEYPOINT_STAT_NAMES, COCOParams, coco_evaluate, coco_evaluate_reference
from course.coco import (
    COCO_KEYPOINT_SIGMAS,
    load_ground_truth,
    load_results,
    predictions_to_coco,
)
from course.cocoeval.keypoints import keypoint_similarity, pair_oks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_coco_conformance import differences, only_categories, run_pycocotools  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

K = 17
NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
         "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
         "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]


# --- the generator ---------------------------------------------------------------------------


def random_person(rng, image, grid):
    """``(bbox, keypoints [K, 3], kind)`` of one annotated person."""
    h, w = image["height"], image["width"]
    x, y = rng.uniform(-5, w), rng.uniform(-5, h)
    bw, bh = rng.uniform(0, w / 2 + 2), rng.uniform(0, h / 2 + 2)
    if rng.random() < 0.05:
        bw = 0.0
    points = np.stack([x + rng.uniform(0, 1, K) * bw, y + rng.uniform(0, 1, K) * bh,
                       rng.choice([1, 2], K)], axis=1)
    kind = rng.choice(["all", "part", "none"], p=[0.3, 0.5, 0.2])
    if kind == "part":
        points[rng.random(K) < rng.uniform(0.2, 0.9), 2] = 0
    elif kind == "none":
        points[:, 2] = 0
    if kind != "all" and rng.random() < 0.7:  # unlabelled keypoints are written as 0, 0, 0
        points[points[:, 2] == 0, :2] = 0
    box = [x, y, bw, bh]
    if grid:
        points[:, :2], box = np.round(points[:, :2]), [float(round(v)) for v in box]
    return [round(float(v), 2) for v in box], points, kind


def gt_person(rng, image, cat, ann_id, grid):
    """One ground-truth annotation: a person, sometimes a crowd region without keypoints."""
    crowd = int(rng.random() < 0.1)
    box, points, kind = random_person(rng, image, grid)
    if crowd:
        points[:] = 0
    labelled = int((points[:, 2] > 0).sum())
    if rng.random() < 0.05:  # num_keypoints as written, not as counted
        labelled = 0 if labelled else 3
    choice = rng.random()
    area = box[2] * box[3] if choice < 0.5 else float(rng.choice(
        [32.0**2, 96.0**2, 0.0])) if choice < 0.65 else round(float(rng.uniform(0, 20000)), 2)
    return {"id": ann_id, "image_id": image["id"], "category_id": int(cat), "iscrowd": crowd,
            "bbox": box, "area": area, "num_keypoints": labelled,
            "keypoints": [round(float(v), 2) for v in points.reshape(-1)]}, kind


def detection(rng, image, cats, people, style):
    """One keypoint result: a ground truth's keypoints moved a little, or a random person."""
    res = {"image_id": image["id"], "score": float(rng.choice([0.1, 0.5, 0.5, 0.9]))
           if style["ties"] else round(float(rng.random()), 6)}
    if people and rng.random() < 0.8:
        ann = people[int(rng.integers(len(people)))]
        cat = ann["category_id"] if rng.random() < 0.9 else int(rng.choice(cats))
        points = np.array(ann["keypoints"], dtype=np.float64).reshape(K, 3)
        scale = np.sqrt(max(ann["area"], 1.0)) * style["noise"] * rng.uniform(0, 1)
        if rng.random() > 0.2:  # else the very keypoints: OKS 1
            points[:, :2] += rng.normal(0, scale + 0.5, (K, 2))
    else:
        cat = int(rng.choice(cats))
        _, points, _ = random_person(rng, image, style["grid"])
    if rng.random() < 0.1:  # off the image
        points[:, 0] += float(rng.choice([-1, 1])) * (image["width"] + 30)
    points[:, 2] = rng.choice([0, 1, 2], K)
    if style["grid"]:
        points[:, :2] = np.round(points[:, :2])
    res["category_id"] = cat
    res["keypoints"] = [round(float(v), 3) for v in points.reshape(-1)]
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    if style["sized_by"] == "bbox":
        res["bbox"] = [float(lo[0]), float(lo[1]), *(float(v) * rng.uniform(0.8, 1.3)
                                                     for v in hi - lo)]
    elif style["sized_by"] == "segmentation":
        mask = np.zeros((image["height"], image["width"]), np.uint8)
        mask[:int(rng.integers(0, image["height"] + 1)), :int(rng.integers(0, image["width"]))] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        res["segmentation"] = {"size": [int(v) for v in rle["size"]],
                               "counts": rle["counts"].decode()}
    return res


def make_images(rng):
    ids = rng.choice(np.arange(1, 60), int(rng.integers(1, 6)), replace=False)
    return [{"id": int(i), "height": int(rng.integers(20, 200)),
             "width": int(rng.integers(20, 200))} for i in ids]


def make_case(seed):
    """``(ground truth dict, results list, params dict)`` of one random case."""
    rng = np.random.default_rng(seed)
    images = make_images(rng)
    cats = [1] if rng.random() < 0.8 else [1, 3]
    style = {"ties": rng.random() < 0.5, "grid": rng.random() < 0.25,
             "noise": float(rng.choice([0.02, 0.1, 0.3])),
             "sized_by": rng.choice(["keypoints", "bbox", "segmentation"], p=[0.6, 0.3, 0.1])}
    annotations, results, ann_id = [], [], 1
    for image in images:
        people = []
        for _ in range(int(rng.choice([0, 1, 3, 6, 10]))):
            ann, _ = gt_person(rng, image, rng.choice(cats), ann_id, style["grid"])
            people.append(ann)
            ann_id += 1
            if rng.random() < 0.1:  # the same person twice: equal OKS
                people.append({**copy.deepcopy(ann), "id": ann_id})
                ann_id += 1
        annotations += people
        num = int(rng.choice([0, 2, 8, 25, 45], p=[0.1, 0.3, 0.3, 0.2, 0.1]))
        results += [detection(rng, image, cats + [7], people, style) for _ in range(num)]
    if not results:  # pycocotools' loadRes([]) raises
        results.append(detection(rng, images[0], cats, [], style))
    rng.shuffle(results)
    gt = {"info": {}, "images": images, "annotations": annotations,
          "categories": [{"id": c, "name": "person", "supercategory": "person",
                          "keypoints": NAMES, "skeleton": [[16, 14], [14, 12]]} for c in cats]}
    return gt, results, random_params(rng, gt)


def random_params(rng, gt):
    """Changes to the keypoint ``COCOeval.params``."""
    params = {}
    if rng.random() < 0.2:
        params["iouThrs"] = np.sort(rng.choice(np.linspace(0.5, 0.95, 10),
                                               int(rng.integers(1, 6)), replace=False))
    if rng.random() < 0.2:
        params["maxDets"] = [int(v) for v in rng.choice([1, 5, 20, 30], int(rng.integers(1, 4)),
                                                        replace=False)]
    if rng.random() < 0.2:
        lo, hi = sorted(rng.uniform(0, 5000, 2))
        params["areaRng"] = [[0.0, 1e10], [float(lo), float(hi)], [float(hi), 1e10]]
    if rng.random() < 0.15:
        chosen = rng.choice([img["id"] for img in gt["images"]],
                            int(rng.integers(1, len(gt["images"]) + 1)), replace=False)
        params["imgIds"] = sorted(int(v) for v in chosen)
    if rng.random() < 0.15 and len(gt["categories"]) > 1:
        params["catIds"] = [int(rng.choice([c["id"] for c in gt["categories"]]))]
    return params


# --- running ours ----------------------------------------------------------------------------


def course_params(params):
    names = {"iouThrs": "iou_thresholds", "maxDets": "max_dets", "areaRng": "area_ranges",
             "imgIds": "image_ids"}
    kwargs = {names[key]: tuple(tuple(v) if isinstance(v, list) else v for v in value)
              for key, value in params.items() if key in names}
    return COCOParams.for_keypoints(**kwargs)


def run_course(gt, results, params, evaluate=coco_evaluate):
    truth = load_ground_truth(copy.deepcopy(gt), "keypoints")
    predictions, _ = load_results(copy.deepcopy(results), truth, "keypoints")
    images, categories = truth.images, list(truth.categories)
    if "catIds" in params:
        categories = params["catIds"]
        images = only_categories(images, categories)
        predictions = only_categories(predictions, categories)
    return evaluate(images, predictions, "keypoints", categories, params=course_params(params))


# --- the random files ------------------------------------------------------------------------

BLOCKS, PER_BLOCK = 4, 100  # 400 random cases


@pytest.mark.parametrize("block", range(BLOCKS))
def test_random_keypoint_files_evaluate_as_pycocotools(block):
    failures = []
    for seed in range(block * PER_BLOCK, (block + 1) * PER_BLOCK):
        gt, results, params = make_case(seed)
        gap = differences(run_course(gt, results, params),
                          run_pycocotools(gt, results, "keypoints", params))
        if max(gap.values()) > 1e-12:
            failures.append((seed, gap, params))
    assert not failures, failures


def test_the_generator_makes_what_it_claims():
    seen = dict.fromkeys(["crowd", "no keypoints", "num_keypoints 0 yet labelled", "part",
                          "no objects", "over 20", "ties", "off the image", "twice",
                          "two categories", "bbox", "segmentation", "boundary area",
                          "maxDets", "areaRng", "imgIds", "catIds", "iouThrs"], 0)
    for seed in range(BLOCKS * PER_BLOCK):
        gt, results, params = make_case(seed)
        anns = gt["annotations"]
        labelled = [int((np.array(a["keypoints"])[2::3] > 0).sum()) for a in anns]
        seen["crowd"] += any(a["iscrowd"] for a in anns)
        seen["no keypoints"] += any(n == 0 and not a["iscrowd"] for n, a in zip(labelled, anns))
        seen["num_keypoints 0 yet labelled"] += any(a["num_keypoints"] == 0 and n
                                                    for n, a in zip(labelled, anns))
        seen["part"] += any(0 < n < K for n in labelled)
        seen["no objects"] += len({a["image_id"] for a in anns}) < len(gt["images"])
        per_image = np.unique([r["image_id"] for r in results], return_counts=True)[1]
        seen["over 20"] += int(per_image.max() > 20)
        scores = [r["score"] for r in results]
        seen["ties"] += len(set(scores)) < len(scores)
        seen["off the image"] += any(min(r["keypoints"][0::3]) < -30 for r in results)
        seen["twice"] += len({json.dumps(a["keypoints"]) for a in anns}) < len(anns)
        seen["two categories"] += len(gt["categories"]) > 1
        seen["bbox"] += "bbox" in results[0]
        seen["segmentation"] += "segmentation" in results[0]
        seen["boundary area"] += any(a["area"] in (1024.0, 9216.0) for a in anns)
        for key in ("maxDets", "areaRng", "imgIds", "catIds", "iouThrs"):
            seen[key] += key in params
    assert min(seen.values()) >= 5, seen


def test_the_command_line_prints_pycocotools_keypoint_summary(tmp_path, capsys):
    for seed in range(500, 506):
        gt, results, _ = make_case(seed)
        paths = {name: tmp_path / f"{name}.json" for name in ("gt", "results")}
        paths["gt"].write_text(json.dumps(gt))
        paths["results"].write_text(json.dumps(results))
        args = ["eval", "--gt", str(paths["gt"]), "--results", str(paths["results"]),
                "--iou-type", "keypoints"]
        assert cli.main(args) == 0
        text = capsys.readouterr().out.rstrip("\n")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            coco = COCO(str(paths["gt"]))
            evaluator = COCOeval(coco, coco.loadRes(str(paths["results"])), "keypoints")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        lines = [line for line in printed.getvalue().splitlines() if "@[" in line]
        assert len(lines) == 10 and text == "\n".join(lines)
        assert cli.main(args + ["--json"]) == 0
        stats = json.loads(capsys.readouterr().out)["stats"]
        assert list(stats) == list(KEYPOINT_STAT_NAMES)
        assert np.abs(np.array(list(stats.values())) - evaluator.stats).max() <= 1e-12
    assert cli.main(args + ["--per-class"]) == 0
    assert "person" in capsys.readouterr().out.split("\n\n")[1]


# --- OKS itself, and the loop COCOeval -------------------------------------------------------


def test_pair_oks_equals_the_one_pair_formula_bit_for_bit():
    rng = np.random.default_rng(0)
    num = 400
    gt = np.stack([rng.uniform(0, 50, (num, K)), rng.uniform(0, 50, (num, K)),
                   rng.choice([0, 1, 2], (num, K), p=[0.5, 0.25, 0.25])], axis=2)
    gt[:40, :, 2] = 0  # no labelled keypoint: the box rule
    dt = gt + np.concatenate([rng.normal(0, 3, (num, K, 2)), np.zeros((num, K, 1))], axis=2)
    boxes = np.concatenate([rng.uniform(0, 40, (num, 2)), rng.uniform(0, 20, (num, 2))], 1)
    area = rng.uniform(0, 900, num)
    fast = pair_oks(dt, gt, boxes, area, COCO_KEYPOINT_SIGMAS)
    loop = [keypoint_similarity(dt[p], gt[p], boxes[p], area[p], COCO_KEYPOINT_SIGMAS)
            for p in range(num)]
    assert fast.tolist() == loop
    assert keypoint_similarity(gt[50], gt[50], boxes[50], 100.0, COCO_KEYPOINT_SIGMAS) == 1.0
    assert 0.0 < fast.min() and fast.max() <= 1.0


def test_a_person_without_keypoints_is_measured_against_the_enlarged_box():
    """``dx = max(0, x0 - xd) + max(0, xd - x1)`` with ``x0 = x - w``, ``x1 = x + 2 w``:
    every keypoint inside the box grown by its size on each side is at distance 0."""
    gt = np.zeros((K, 3))
    box = np.array([10.0, 20.0, 5.0, 4.0])  # grown: x in [5, 20], y in [16, 28]
    inside = np.zeros((K, 3))
    inside[:, 0], inside[:, 1] = 5.0, 28.0
    assert keypoint_similarity(inside, gt, box, 50.0, COCO_KEYPOINT_SIGMAS) == 1.0
    outside = inside.copy()
    outside[0, 0] = 2.0  # 3 to the left of the grown box
    e = 9.0 / (2 * COCO_KEYPOINT_SIGMAS[0]) ** 2 / (50.0 + np.spacing(1)) / 2
    assert keypoint_similarity(outside, gt, box, 50.0, COCO_KEYPOINT_SIGMAS) == \
        pytest.approx((16 + np.exp(-e)) / K, abs=1e-15)


def test_the_loop_cocoeval_gives_the_same_keypoint_numbers():
    for seed in range(1000, 1012):
        gt, results, params = make_case(seed)
        fast = run_course(gt, results, params)
        loop = run_course(gt, results, params, coco_evaluate_reference)
        assert np.array_equal(fast.stats, loop.stats)
        assert np.array_equal(fast.precision, loop.precision)
        assert np.array_equal(fast.recall, loop.recall)


def test_a_person_without_keypoints_is_ignored_but_absorbs_one_detection_only():
    """num_keypoints 0 sets pycocotools' ``ignore``: unlike a crowd region, which absorbs any
    number of detections, such a person takes one, and the second detection on it counts as
    a false positive."""
    person = {"image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 20.0, 40.0],
              "area": 800.0, "keypoints": [0] * (3 * K)}
    labelled = [v for i in range(K) for v in (12.0 + i, 15.0 + 2 * i, 2)]
    gt = {"images": [{"id": 1, "height": 100, "width": 100}],
          "categories": [{"id": 1, "name": "person"}],
          "annotations": [{**person, "id": 1, "iscrowd": 0, "num_keypoints": 0},
                          {**person, "id": 2, "iscrowd": 0, "num_keypoints": K,
                           "bbox": [60.0, 10.0, 20.0, 40.0],
                           "keypoints": [v + 50 * (i % 3 == 0) for i, v in
                                         enumerate(labelled)]}]}
    on_box = [v for _ in range(K) for v in (15.0, 20.0, 1)]
    results = [{"image_id": 1, "category_id": 1, "score": s, "keypoints": on_box}
               for s in (0.9, 0.8)]
    results.append({"image_id": 1, "category_id": 1, "score": 0.7,
                    "keypoints": gt["annotations"][1]["keypoints"]})
    ours = run_course(gt, results, {})
    reference = run_pycocotools(gt, results, "keypoints", {})
    assert max(differences(ours, reference).values()) <= 1e-12
    assert ours.stats[0] == pytest.approx(0.5)  # a false positive, then the true positive
    for annotation in gt["annotations"][:1]:
        annotation["iscrowd"] = 1  # a crowd region absorbs both
    ours = run_course(gt, results, {})
    assert ours.stats[0] == pytest.approx(1.0)
    assert max(differences(ours, run_pycocotools(gt, results, "keypoints", {})).values()) \
        <= 1e-12


# --- clear errors ----------------------------------------------------------------------------


def small_files():
    gt, results, _ = make_case(7)
    assert gt["annotations"] and results
    results[0]["category_id"] = 1  # evaluated (results of other classes are not read)
    return gt, results


def test_keypoint_results_of_the_wrong_length_are_refused(tmp_path, capsys):
    gt, results = small_files()
    truth = load_ground_truth(copy.deepcopy(gt), "keypoints")
    for bad in (results[0]["keypoints"][:-1], results[0]["keypoints"] + [1.0, 2.0, 0],
                None, [0.0] * 3 * K + ["x"]):
        broken = copy.deepcopy(results)
        if bad is None:
            del broken[0]["keypoints"]
        else:
            broken[0]["keypoints"] = bad
        with pytest.raises(ValueError, match=r"results\[0\]\['keypoints'\] must"):
            load_results(broken, truth, "keypoints")
    paths = [tmp_path / "gt.json", tmp_path / "results.json"]
    results[0]["keypoints"] = results[0]["keypoints"][:-1]
    for path, data in zip(paths, (gt, results)):
        path.write_text(json.dumps(data))
    assert cli.main(["eval", "--gt", str(paths[0]), "--results", str(paths[1]),
                     "--iou-type", "keypoints"]) == 2
    assert "3 * 17 = 51 numbers" in capsys.readouterr().err


def test_keypoint_evaluation_of_ground_truth_without_keypoints_is_refused(tmp_path, capsys):
    gt, results = small_files()
    for ann in gt["annotations"]:
        del ann["keypoints"]
    with pytest.raises(ValueError, match=r"annotations\[0\] has no 'keypoints'"):
        load_ground_truth(gt, "keypoints")
    paths = [tmp_path / "gt.json", tmp_path / "results.json"]
    for path, data in zip(paths, (gt, results)):
        path.write_text(json.dumps(data))
    assert cli.main(["eval", "--gt", str(paths[0]), "--results", str(paths[1]),
                     "--iou-type", "keypoints"]) == 2
    assert "has no 'keypoints'" in capsys.readouterr().err
    boxes_only = load_ground_truth(gt, "bbox")  # read for boxes, then asked for keypoints
    with pytest.raises(ValueError, match="not read for keypoints"):
        load_results(results, boxes_only, "keypoints")
    with pytest.raises(ValueError, match="has no 'keypoints'"):
        coco_evaluate(boxes_only.images, [], "keypoints")


def test_parameters_must_fit_the_iou_type():
    gt, results = small_files()
    truth = load_ground_truth(gt, "keypoints")
    predictions, _ = load_results(results, truth, "keypoints")
    for evaluate in (coco_evaluate, coco_evaluate_reference):
        with pytest.raises(ValueError, match="for_keypoints"):
            evaluate(truth.images, predictions, "keypoints", params=COCOParams())
        with pytest.raises(ValueError, match="use_cats=False"):
            evaluate(truth.images, predictions, "keypoints",
                     params=COCOParams.for_keypoints(use_cats=False))
        with pytest.raises(ValueError, match="keypoint parameters"):
            evaluate(truth.images, [], "bbox", params=COCOParams.for_keypoints())
    with pytest.raises(ValueError, match="keypoint_sigmas"):
        COCOParams.for_keypoints(keypoint_sigmas=(0.1, -1.0))
    with pytest.raises(ValueError, match="one .* pair for each"):
        COCOParams.for_keypoints(area_ranges=((0, 1e10),))
    with pytest.raises(ValueError, match="holds 5, one per keypoint"):
        coco_evaluate(truth.images, predictions, "keypoints",
                      params=COCOParams.for_keypoints(keypoint_sigmas=(0.1,) * 5))
    assert COCOParams.for_keypoints().keypoint_sigmas == COCO_KEYPOINT_SIGMAS
    assert np.array_equal(COCOeval(iouType="keypoints").params.kpt_oks_sigmas,
                          COCO_KEYPOINT_SIGMAS)


def test_dicts_with_keypoint_arrays_evaluate_like_the_files():
    """The per-image dicts take ``keypoints [N, K, 3]`` and ``boxes`` xyxy; a mismatch of K
    between objects is named."""
    gt, results, _ = make_case(11)
    truth = load_ground_truth(copy.deepcopy(gt), "keypoints")
    predictions, _ = load_results(copy.deepcopy(results), truth, "keypoints")
    as_dicts = [{"image_id": im["image_id"], "labels": im["labels"], "iscrowd": im["iscrowd"],
                 "area": im["area"], "keypoints": im["keypoints"],
                 "num_keypoints": im["num_keypoints"],
                 "boxes": np.concatenate([im["bbox"][:, :2], im["bbox"][:, :2] +
                                          im["bbox"][:, 2:]], axis=1)} for im in truth.images]
    files = coco_evaluate(truth.images, predictions, "keypoints")
    dicts = coco_evaluate(as_dicts, predictions, "keypoints")
    assert np.abs(files.stats - dicts.stats).max() <= 1e-12
    assert list(files.as_dict()) == list(KEYPOINT_STAT_NAMES)
    written = load_results(predictions_to_coco(predictions, "keypoints"), truth, "keypoints")[0]
    assert np.array_equal(coco_evaluate(truth.images, written, "keypoints").stats, files.stats)
    short = [dict(p, keypoints=p["keypoints"][:, :5]) for p in predictions]
    with pytest.raises(ValueError, match="5 keypoints per object"):
        coco_evaluate(truth.images, short, "keypoints")
