"""COCO evaluation against pycocotools on randomised files of the kinds public COCO data holds.

A generator writes a ground-truth dict and a results list that mix, in one file: polygons of
several parts (float coordinates, partly outside the image), uncompressed RLE (a counts list)
and compressed RLE (a counts string), crowd regions, explicit ``area`` that disagrees with the
mask, ``ignore`` keys, images of different sizes and without objects, category ids that are
not 1..K, large non-contiguous image ids, over 100 detections on an image, tied scores, boxes
of zero width or height, results of categories the ground truth lacks, and changed
``COCOeval.params``. Both the 12 stats and the precision and recall arrays must equal
pycocotools' to 1e-12.
"""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course import cli
from course.ap import COCOParams, coco_evaluate
from course.coco import load_ground_truth, load_results

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

DEFAULT_THRESHOLDS = np.linspace(0.5, 0.95, 10)


# --- the generator ---------------------------------------------------------------------------


def random_mask(rng, h, w):
    """A dense mask [H, W]: a box, an ellipse, a speckle or nothing, often near an edge."""
    yy, xx = np.mgrid[:h, :w]
    kind = rng.choice(["box", "ellipse", "speckle", "empty"], p=[0.45, 0.35, 0.15, 0.05])
    cy, cx = rng.uniform(-0.2 * h, 1.2 * h), rng.uniform(-0.2 * w, 1.2 * w)
    ry, rx = rng.uniform(0.5, 0.6 * h + 1), rng.uniform(0.5, 0.6 * w + 1)
    if kind == "box":
        return (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
    if kind == "ellipse":
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    if kind == "speckle":
        return rng.random((h, w)) < rng.uniform(0.05, 0.6)
    return np.zeros((h, w), bool)


def encode(mask):
    """pycocotools' compressed RLE of one mask, counts as str (as json holds it)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def uncompressed(mask):
    """The uncompressed RLE (counts list) of one mask, column-major runs from background."""
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts or [0]}


def random_polygons(rng, h, w):
    """1-3 polygons of 3-8 float points, about the image and partly outside it."""
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(-0.2 * w, 1.2 * w), rng.uniform(-0.2 * h, 1.2 * h)
        k = int(rng.integers(3, 9))
        angle = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = rng.uniform(0.5, 0.5 * max(h, w) + 1, k)
        xy = np.stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)], 1)
        if rng.random() < 0.2:
            xy = np.round(xy)  # vertices on pixel corners: exact ties in the rasteriser
        parts.append([round(float(v), 2) for v in xy.reshape(-1)])
    return parts


def polygon_mask(parts, h, w):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, h, w))).astype(bool)


def random_box(rng, h, w):
    """A float ``[x, y, w, h]``; sometimes of zero width or height."""
    x, y = rng.uniform(-2, w), rng.uniform(-2, h)
    bw, bh = rng.uniform(0, w / 1.5 + 1), rng.uniform(0, h / 1.5 + 1)
    if rng.random() < 0.08:
        bw = 0.0
    if rng.random() < 0.08:
        bh = 0.0
    return [round(float(v), 3) for v in (x, y, bw, bh)]


def jitter_box(rng, box, style):
    """A box near ``box``; on integer corners when ``style["grid"]`` (exact IoU ties)."""
    x, y, bw, bh = box
    s = style["noise"] * rng.uniform(0, 1)
    out = [x + rng.normal(0, s * bw + 0.1 * s), y + rng.normal(0, s * bh + 0.1 * s),
           max(bw * rng.uniform(1 - s, 1 + s), 0.0), max(bh * rng.uniform(1 - s, 1 + s), 0.0)]
    if style["grid"]:
        return [float(round(v)) for v in out]
    return [round(float(v), 3) for v in out]


def jitter_mask(rng, mask, style):
    if rng.random() < 0.3:
        return mask.copy()  # the very mask: IoU 1
    shift = int(np.ceil(3 * style["noise"]))
    dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, 2))
    out = np.roll(mask, (dy, dx), axis=(0, 1))
    flip = rng.random(mask.shape) < rng.choice([0.0, 0.02, 0.1]) * style["noise"]
    return out ^ flip


def random_area(rng, mask_area):
    """The ``area`` of an annotation: the mask's, or one that disagrees (range bounds too)."""
    choice = rng.random()
    if choice < 0.55:
        return float(mask_area)
    if choice < 0.75:
        return float(rng.choice([0.0, 32.0**2, 96.0**2, 1e10, 32.0**2 + 0.5]))
    return round(float(rng.uniform(0, 12000)), 2)


def gt_annotation(rng, image, cat, ann_id, grid):
    """One ground-truth annotation and its dense mask (what detections are made from)."""
    h, w = image["height"], image["width"]
    crowd = int(rng.random() < 0.15)
    kind = rng.choice(["polygon", "counts list", "counts str"],
                      p=[0.2, 0.6, 0.2] if crowd else [0.6, 0.1, 0.3])
    if kind == "polygon":
        seg = random_polygons(rng, h, w)
        mask = polygon_mask(seg, h, w)
    else:
        mask = random_mask(rng, h, w)
        seg = uncompressed(mask) if kind == "counts list" else encode(mask)
    rle = encode(mask)
    bbox = [float(v) for v in mask_utils.toBbox(rle)] if rng.random() < 0.6 else \
        random_box(rng, h, w)
    if grid:
        bbox = [float(round(v)) for v in bbox]
    ann = {"id": ann_id, "image_id": image["id"], "category_id": int(cat), "iscrowd": crowd,
           "segmentation": seg, "bbox": bbox,
           "area": random_area(rng, int(mask.sum()))}
    if rng.random() < 0.2:
        ann["ignore"] = int(rng.integers(0, 2))
    return ann, mask


def score(rng, ties):
    return float(rng.choice([0.1, 0.5, 0.5, 0.9, 1.0])) if ties else \
        round(float(rng.random()), 6)


def detection(rng, image, cats, gt_items, iou_type, style):
    """One result for ``image``: a copy of a ground truth moved a little, or something random."""
    h, w = image["height"], image["width"]
    res = {"image_id": image["id"], "score": score(rng, style["ties"])}
    if gt_items and rng.random() < 0.75:
        ann, mask = gt_items[int(rng.integers(len(gt_items)))]
        cat = ann["category_id"] if rng.random() < 0.85 else int(rng.choice(cats))
        mask, box = jitter_mask(rng, mask, style), jitter_box(rng, ann["bbox"], style)
    else:
        cat, mask, box = int(rng.choice(cats)), random_mask(rng, h, w), random_box(rng, h, w)
    res["category_id"] = cat
    if style["box_only"] or (iou_type == "bbox" and not style["mask_only"]):
        res["bbox"] = box
        if rng.random() < 0.3:
            res["segmentation"] = encode(mask)
    else:
        res["segmentation"] = encode(mask)
        if style["with_bbox"]:
            res["bbox"] = [float(v) for v in mask_utils.toBbox(res["segmentation"])] \
                if rng.random() < 0.8 else box
            kind = rng.random()  # loadRes then reads any segmentation, as the ground truth's
            if kind < 0.15:
                res["segmentation"] = uncompressed(mask)
            elif kind < 0.3:
                res["segmentation"] = random_polygons(rng, h, w)
    if rng.random() < 0.2:
        res["area"] = 12345.0  # loadRes overwrites it
    return res


def make_images(rng):
    num = int(rng.integers(1, 6))
    ids = rng.choice(10**12, num, replace=False) + 1 if rng.random() < 0.5 else \
        rng.choice(np.arange(1, 40), num, replace=False)
    big = rng.random() < 0.1  # now and then a photo-sized image
    return [{"id": int(i), "height": int(rng.integers(1, 480 if big else 48)),
             "width": int(rng.integers(1, 640 if big else 48)), "file_name": f"{int(i)}.jpg"}
            for i in ids]


def make_case(seed, iou_type):
    """``(ground truth dict, results list, params dict)`` of one random case."""
    rng = np.random.default_rng(seed)
    images = make_images(rng)
    cats = sorted(int(c) for c in rng.choice(np.arange(1, 120), int(rng.integers(1, 5)),
                                             replace=False))
    gt_cats = cats if rng.random() < 0.5 else cats[:max(1, len(cats) - 1)]  # one may lack GT
    annotations, results, ann_id = [], [], int(rng.integers(1, 1000))
    style = {"ties": rng.random() < 0.5, "box_only": iou_type == "segm" and rng.random() < 0.15,
             "mask_only": iou_type == "bbox" and rng.random() < 0.2,
             "with_bbox": rng.random() < 0.3, "noise": float(rng.choice([0.0, 0.1, 0.5])),
             "grid": rng.random() < 0.3}
    det_cats = cats + [int(c) for c in rng.choice([200, 201], int(rng.integers(0, 2)))]
    for image in images:
        items = []
        for _ in range(int(rng.choice([0, 1, 3, 6, 9]))):
            ann, mask = gt_annotation(rng, image, rng.choice(gt_cats), ann_id, style["grid"])
            ann_id += int(rng.integers(1, 4))
            items.append((ann, mask))
            if rng.random() < 0.1:  # the same object twice: equal IoUs
                items.append(({**copy.deepcopy(ann), "id": ann_id}, mask))
                ann_id += 1
        annotations += [ann for ann, _ in items]
        num_dets = int(rng.choice([0, 2, 8, 20, 130], p=[0.15, 0.3, 0.3, 0.15, 0.1]))
        dets = [detection(rng, image, det_cats, items, iou_type, style) for _ in range(num_dets)]
        results += dets + [copy.deepcopy(d) for d in dets if rng.random() < 0.05]
    if not results:  # pycocotools' loadRes([]) raises
        results.append(detection(rng, images[0], det_cats, [], iou_type, style))
    rng.shuffle(results)
    if results and style["with_bbox"] and "bbox" not in results[0]:
        results[0]["bbox"] = [float(v) for v in mask_utils.toBbox(results[0]["segmentation"])]
    gt = {"info": {}, "images": images, "annotations": annotations,
          "categories": [{"id": c, "name": f"c{c}", "supercategory": "thing"} for c in cats]}
    params = random_params(rng, gt)
    odd_ids(rng, gt, results, shared="imgIds" not in params and "catIds" not in params)
    return gt, results, params


def odd_ids(rng, gt, results, shared):
    """Ids pycocotools reads in its own way: annotations of a category the file does not list,
    ids written as floats (``7.0``), and (``shared``) annotations that share an id."""
    anns = gt["annotations"]
    if anns and rng.random() < 0.15:
        anns[int(rng.integers(len(anns)))]["category_id"] = 300  # not among the categories
    if rng.random() < 0.15:
        for item in anns + results:
            if rng.random() < 0.5:
                item["category_id"] = float(item["category_id"])
        for res in results:
            if rng.random() < 0.5:
                res["image_id"] = float(res["image_id"])
    if shared and len(anns) > 1 and rng.random() < 0.15:
        for _ in range(int(rng.integers(1, 3))):
            i, j = (int(v) for v in rng.integers(len(anns), size=2))
            anns[i]["id"] = anns[j]["id"]


def subset(rng, values):
    """A sorted non-empty random subset of ``values``."""
    chosen = rng.choice(values, int(rng.integers(1, len(values) + 1)), replace=False)
    return sorted(int(v) for v in chosen)


def random_params(rng, gt):
    """Changes to ``COCOeval.params``: thresholds, detection limits, area ranges, the images
    and classes evaluated, classes pooled."""
    params = {}
    if rng.random() < 0.25:
        params["iouThrs"] = np.sort(rng.choice(DEFAULT_THRESHOLDS, int(rng.integers(1, 6)),
                                               replace=False))
    if rng.random() < 0.25:
        params["maxDets"] = [int(v) for v in rng.choice([1, 3, 5, 10, 20, 100, 120],
                                                        int(rng.choice([3, 3, 4])), replace=False)]
    if rng.random() < 0.25:
        lo, hi = sorted(rng.uniform(0, 3000, 2))
        params["areaRng"] = [[0.0, 1e10], [0.0, float(lo)], [float(lo), float(hi)],
                             [float(hi), 1e10]]
    if rng.random() < 0.2:
        params["imgIds"] = subset(rng, [img["id"] for img in gt["images"]])
    if rng.random() < 0.2:
        params["catIds"] = subset(rng, [c["id"] for c in gt["categories"]])
    if rng.random() < 0.2:
        params["useCats"] = 0
    return params


# --- running both ----------------------------------------------------------------------------


def run_pycocotools(gt, results, iou_type, params):
    """``(stats, precision, recall)`` of COCOeval on copies of the files."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
        for key, value in params.items():
            setattr(evaluator.params, key, value)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats, evaluator.eval["precision"], evaluator.eval["recall"]


def course_params(params):
    names = {"iouThrs": "iou_thresholds", "maxDets": "max_dets", "areaRng": "area_ranges",
             "imgIds": "image_ids", "useCats": "use_cats"}
    kwargs = {names[key]: value for key, value in params.items() if key in names}
    for key in ("iou_thresholds", "max_dets", "area_ranges", "image_ids"):
        if key in kwargs:
            kwargs[key] = tuple(tuple(v) if isinstance(v, list) else v for v in kwargs[key])
    if "use_cats" in kwargs:
        kwargs["use_cats"] = bool(kwargs["use_cats"])
    return COCOParams(**kwargs)


def only_categories(items, categories):
    """The per-image dicts with the objects of ``categories`` only (COCOeval's catIds)."""
    out = []
    for item in items:
        keep = np.isin(item["labels"], categories)
        out.append({key: (value.select(np.flatnonzero(keep)) if key == "masks" else value[keep])
                    if key != "image_id" else value for key, value in item.items()})
    return out


def run_course(gt, results, iou_type, params):
    truth = load_ground_truth(copy.deepcopy(gt), iou_type)
    predictions, _ = load_results(copy.deepcopy(results), truth, iou_type)
    images, categories = truth.images, list(truth.categories)
    if "catIds" in params:  # an explicit class list takes only its classes' objects
        categories = params["catIds"]
        images = only_categories(images, categories)
        predictions = only_categories(predictions, categories)
    return coco_evaluate(images, predictions, iou_type, categories,
                         params=course_params(params))


def differences(ours, reference):
    """The largest difference of the stats, precision and recall (inf on a shape mismatch)."""
    stats, precision, recall = reference
    out = {"stats": float(np.abs(ours.stats - stats).max())}
    for name, a, b in (("precision", ours.precision, precision),
                       ("recall", ours.recall, recall)):
        out[name] = float(np.abs(a - b).max()) if a.shape == b.shape and a.size else \
            (0.0 if a.shape == b.shape else np.inf)
    return out


def pycocotools_stats(gt, results, iou_type):
    return run_pycocotools(gt, results, iou_type, {})[0]


# --- the random files ------------------------------------------------------------------------

BLOCKS, PER_BLOCK = 8, 40  # 320 random cases per IoU type


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("block", range(BLOCKS))
def test_random_files_evaluate_as_pycocotools(iou_type, block):
    failures = []
    for seed in range(block * PER_BLOCK, (block + 1) * PER_BLOCK):
        gt, results, params = make_case(seed, iou_type)
        gap = differences(run_course(gt, results, iou_type, params),
                          run_pycocotools(gt, results, iou_type, params))
        if max(gap.values()) > 1e-12:
            failures.append((seed, gap, params))
    assert not failures, failures


def test_the_generator_makes_what_it_claims():
    """Over the seeds of the tests, every feature the module docstring names turns up."""
    seen = dict.fromkeys(["counts list", "counts str", "polygons", "crowd", "ignore", "area",
                          "no objects", "over 100", "ties", "zero box", "float ids",
                          "shared ids", "other category", "useCats", "imgIds", "catIds",
                          "maxDets", "areaRng", "iouThrs"], 0)
    for seed in range(BLOCKS * PER_BLOCK):
        gt, results, params = make_case(seed, "bbox" if seed % 2 else "segm")
        anns = gt["annotations"]
        segs = [a["segmentation"] for a in anns]
        seen["counts list"] += any(isinstance(s, dict) and isinstance(s["counts"], list)
                                   for s in segs)
        seen["counts str"] += any(isinstance(s, dict) and isinstance(s["counts"], str)
                                  for s in segs)
        seen["polygons"] += any(isinstance(s, list) and len(s) > 1 for s in segs)
        seen["crowd"] += any(a["iscrowd"] for a in anns)
        seen["ignore"] += any("ignore" in a for a in anns)
        seen["area"] += any(a["area"] in (1024.0, 9216.0) for a in anns)
        seen["no objects"] += len({a["image_id"] for a in anns}) < len(gt["images"])
        per_image = np.unique([r["image_id"] for r in results], return_counts=True)[1]
        seen["over 100"] += int(per_image.max() > 100)
        scores = [r["score"] for r in results]
        seen["ties"] += len(set(scores)) < len(scores)
        seen["zero box"] += any(0 in r.get("bbox", [1, 1, 1, 1])[2:] for r in results)
        seen["float ids"] += any(isinstance(r["category_id"], float) for r in results)
        ids = [a["id"] for a in anns]
        seen["shared ids"] += len(set(ids)) < len(ids)
        seen["other category"] += any(a["category_id"] == 300 for a in anns)
        seen["useCats"] += params.get("useCats", 1) == 0
        for key in ("imgIds", "catIds", "maxDets", "areaRng", "iouThrs"):
            seen[key] += key in params
    assert min(seen.values()) >= 5, seen


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_the_command_line_prints_pycocotools_stats_for_random_files(iou_type, tmp_path, capsys):
    for seed in range(12):
        gt, results, _ = make_case(1000 + seed, iou_type)
        paths = {name: tmp_path / f"{name}.json" for name in ("gt", "results")}
        paths["gt"].write_text(json.dumps(gt))
        paths["results"].write_text(json.dumps(results))
        assert cli.main(["eval", "--gt", str(paths["gt"]), "--results", str(paths["results"]),
                         "--iou-type", iou_type, "--json"]) == 0
        stats = list(json.loads(capsys.readouterr().out)["stats"].values())
        assert np.abs(np.array(stats) - pycocotools_stats(gt, results, iou_type)).max() <= 1e-12


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_agrees_on_random_files(iou_type):
    """faster-coco-eval agrees with both at COCO's default settings (its summary reads other
    detection limits than pycocotools' when ``maxDets`` changes)."""
    faster = pytest.importorskip("faster_coco_eval")
    for seed in range(2000, 2020):
        gt, results, _ = make_case(seed, iou_type)
        with contextlib.redirect_stdout(io.StringIO()):
            coco = faster.COCO(copy.deepcopy(gt))
            evaluator = faster.COCOeval_faster(coco, coco.loadRes(copy.deepcopy(results)),
                                               iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        ours = run_course(gt, results, iou_type, {})
        assert np.abs(ours.stats - np.asarray(evaluator.stats[:12])).max() <= 1e-12


# --- what the random files found, one small file each ----------------------------------------


def one_image(annotations, size=(60, 60), categories=(1,)):
    return {"images": [{"id": 1, "height": size[0], "width": size[1]}],
            "categories": [{"id": c, "name": str(c)} for c in categories],
            "annotations": [{"id": i + 1, "image_id": 1, "iscrowd": 0, **a}
                            for i, a in enumerate(annotations)]}


def both(gt, results, iou_type, params=None):
    """Our result and pycocotools' ``(stats, precision, recall)``, checked equal to 1e-12."""
    params = params or {}
    ours = run_course(gt, results, iou_type, params)
    reference = run_pycocotools(gt, results, iou_type, params)
    assert max(differences(ours, reference).values()) <= 1e-12
    return ours, reference


def test_box_evaluation_sizes_a_result_without_a_box_by_its_mask():
    """loadRes sizes results by their masks when the first has no ``bbox``, for box
    evaluation too: an L of 375 pixels in a 40 x 40 box is small, not medium (it was read as
    its box's 1600), so an unmatched one is a false positive among the small objects."""
    def ell(y, x):
        mask = np.zeros((100, 100), bool)
        mask[y:y + 40, x:x + 5] = mask[y + 35:y + 40, x:x + 40] = True  # 200 + 200 - 25
        return mask

    gt = one_image([{"category_id": 1, "bbox": [0.0, 0.0, 40.0, 40.0], "area": 375.0,
                     "segmentation": encode(ell(0, 0))}], size=(100, 100))
    results = [{"image_id": 1, "category_id": 1, "score": score, "segmentation": encode(m)}
               for score, m in ((0.9, ell(0, 0)), (0.95, ell(50, 50)))]
    ours, _ = both(gt, results, "bbox")
    assert int(ell(0, 0).sum()) == 375 and ours.stats[3] == pytest.approx(0.5)  # APs


def test_annotations_that_share_an_id_are_read_as_pycocotools_reads_them():
    """COCO.createIndex keeps the last annotation of an id: the first box is never evaluated
    and the second counts twice (a file that reuses ids gives these numbers there)."""
    gt = one_image([{"category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0},
                    {"category_id": 1, "bbox": [30.0, 30.0, 10.0, 10.0], "area": 100.0}])
    gt["annotations"][1]["id"] = gt["annotations"][0]["id"]
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0.0, 0.0, 10.0, 10.0]},
               {"image_id": 1, "category_id": 1, "score": 0.8, "bbox": [30.0, 30.0, 10.0, 10.0]}]
    ours, _ = both(gt, results, "bbox")
    assert ours.stats[8] == 0.5  # one of two objects found: the copy of the second
    assert load_ground_truth(gt, "bbox").duplicate_ids == 1


def test_annotations_of_unlisted_categories_are_left_out_as_cocoeval_does(tmp_path, capsys):
    gt = one_image([{"category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0},
                    {"category_id": 5, "bbox": [30.0, 30.0, 10.0, 10.0], "area": 100.0}])
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0.0, 0.0, 10.0, 10.0]}]
    ours, _ = both(gt, results, "bbox")
    assert ours.stats[0] == pytest.approx(1.0) and load_ground_truth(gt, "bbox").dropped == 1
    paths = [tmp_path / "gt.json", tmp_path / "results.json"]
    for path, data in zip(paths, (gt, results)):
        path.write_text(json.dumps(data))
    assert cli.main(["eval", "--gt", str(paths[0]), "--results", str(paths[1]),
                     "--iou-type", "bbox"]) == 0
    assert "1 annotations" in capsys.readouterr().err


def test_whole_float_ids_are_read_as_ints_and_other_floats_refused():
    gt = one_image([{"category_id": 7.0, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0}],
                   categories=(7,))
    gt["images"][0]["id"] = 1.0
    results = [{"image_id": 1.0, "category_id": 7.0, "score": 0.9,
                "bbox": [0.0, 0.0, 10.0, 10.0]}]
    ours, _ = both(gt, results, "bbox")
    assert ours.stats[0] == pytest.approx(1.0) and ours.categories == (7,)
    truth = load_ground_truth(gt, "bbox")
    with pytest.raises(ValueError, match=r"results\[0\]\['category_id'\] must be an int"):
        load_results([dict(results[0], category_id=7.5)], truth, "bbox")


def test_tied_scores_are_ranked_by_image_id_then_within_the_image():
    """COCOeval sorts each image's detections by score with a stable sort, then all images'
    (in ascending id) again: of two detections scored alike, the one of the image with the
    smaller id comes first, and the precision depends on which that is."""
    box = [0.0, 0.0, 10.0, 10.0]
    aps = []
    for hit_image in (3, 8):  # the true positive on the image with the larger or smaller id
        gt = {"images": [{"id": i, "height": 20, "width": 20} for i in (8, 3)],
              "categories": [{"id": 1}],
              "annotations": [{"id": 1, "image_id": hit_image, "category_id": 1, "iscrowd": 0,
                               "bbox": box, "area": 100.0}]}
        results = [{"image_id": i, "category_id": 1, "score": 0.5, "bbox": box} for i in (8, 3)]
        ours, _ = both(gt, results, "bbox")
        aps.append(ours.stats[0])
    assert aps[0] == pytest.approx(1.0) and aps[1] == pytest.approx(0.5)


def test_pooled_classes_image_subsets_and_four_detection_limits_follow_cocoeval():
    """``useCats=0`` lets a detection match an object of another class; ``imgIds`` narrows
    the images; ``maxDets`` may hold more than three limits (the summary reads three)."""
    gt = {"images": [{"id": i, "height": 30, "width": 30} for i in (4, 9)],
          "categories": [{"id": 1}, {"id": 2}],
          "annotations": [{"id": 1, "image_id": 4, "category_id": 1, "iscrowd": 0,
                           "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0},
                          {"id": 2, "image_id": 9, "category_id": 2, "iscrowd": 0,
                           "bbox": [5.0, 5.0, 10.0, 10.0], "area": 100.0}]}
    results = [{"image_id": 4, "category_id": 2, "score": 0.9, "bbox": [0.0, 0.0, 10.0, 10.0]},
               {"image_id": 9, "category_id": 2, "score": 0.9, "bbox": [5.0, 5.0, 10.0, 10.0]}]
    pooled, _ = both(gt, results, "bbox", {"useCats": 0})
    assert pooled.categories == (-1,) and pooled.stats[0] == pytest.approx(1.0)
    by_class, _ = both(gt, results, "bbox")
    # class 1 missed (AP 0); class 2 found after a tied false positive on image 4 (AP 0.5)
    assert by_class.stats[0] == pytest.approx(0.25)
    narrowed, _ = both(gt, results, "bbox", {"imgIds": [4]})
    assert narrowed.stats[0] == 0 and narrowed.per_class_ap()[2] == -1
    limits, _ = both(gt, results, "bbox", {"maxDets": [1, 10, 300, 100]})
    assert limits.params.max_dets == (1, 10, 100, 300) and limits.precision.shape[-1] == 4


def test_results_for_an_image_not_in_the_ground_truth_are_refused(tmp_path, capsys):
    gt = one_image([{"category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0}])
    results = [{"image_id": 2, "category_id": 1, "score": 0.9, "bbox": [0.0, 0.0, 10.0, 10.0]}]
    with pytest.raises(AssertionError, match="do not correspond"):  # pycocotools refuses too
        run_pycocotools(gt, results, "bbox", {})
    paths = [tmp_path / "gt.json", tmp_path / "results.json"]
    for path, data in zip(paths, (gt, results)):
        path.write_text(json.dumps(data))
    assert cli.main(["eval", "--gt", str(paths[0]), "--results", str(paths[1]),
                     "--iou-type", "bbox"]) == 2
    assert "results[0]['image_id'] = 2 is not among the ground truth's images" in \
        capsys.readouterr().err


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_the_loop_cocoeval_follows_the_same_settings(iou_type):
    """Chapter 03's loop COCOeval (coco_evaluate_reference) applies imgIds, useCats and more
    than three detection limits as the fast one does."""
    from course.ap import coco_evaluate_reference

    tried = 0
    for seed in range(400):
        gt, results, params = make_case(10_000 + seed, iou_type)
        if "catIds" in params or not ({"imgIds", "useCats"} & set(params)
                                      or len(params.get("maxDets", ())) > 3):
            continue
        if len(results) > 150:
            continue
        truth = load_ground_truth(copy.deepcopy(gt), iou_type)
        predictions, _ = load_results(copy.deepcopy(results), truth, iou_type)
        fast = coco_evaluate(truth.images, predictions, iou_type, params=course_params(params))
        loop = coco_evaluate_reference(truth.images, predictions, iou_type,
                                       params=course_params(params))
        assert np.abs(fast.stats - loop.stats).max() <= 1e-12
        tried += 1
        if tried == 4:
            break
    assert tried == 4
