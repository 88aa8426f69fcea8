"""COCO mask AP: ours against pycocotools and faster-coco-eval, side by side in one run.

    .venv/bin/python bench/coco_eval_speed.py [--images 500] [--repeats 5]

One generated set (by default 500 images of 256x256, about 20 objects and 23 detections per
image, 3 classes, 2% crowd), evaluated by each tool in two settings:

- **in memory**: every tool starts from the same COCO dicts already in memory (the
  ground-truth dict with compressed-RLE segmentations, and the results list), and does all
  the rest: pycocotools and faster-coco-eval build ``COCO`` objects, ``loadRes``,
  ``evaluate``, ``accumulate``, ``summarize``; ours runs ``course.coco.load_ground_truth``,
  ``load_results`` and ``course.ap.coco_evaluate``. pycocotools writes into the dicts it is
  given, so each repeat gets a fresh deep copy, made outside the timed region;
- **from json**: every tool starts from the same two files on disk and also parses them;
- **from dense masks**, the way a model's output arrives: per image a ``Tensor[N, H, W]`` of
  bool masks with labels, scores (and crowd flags for the ground truth). Ours is given them
  as they are (``course.ap.coco_evaluate`` encodes them itself); pycocotools and
  faster-coco-eval first encode them with their own ``mask.encode`` (each tool's RLE
  encoding is timed), then build their ``COCO`` objects from the dicts as a user would.

Nothing is cached between repeats (each builds everything anew). The 12 stats and the
precision and recall arrays are checked equal first; each time is the median of the repeats.
faster-coco-eval is left at its defaults (it may use threads for the mask IoU).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster
from faster_coco_eval.core import mask as faster_mask
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from timing import median_times

from course.ap import coco_evaluate
from course.coco import (
    RLEMasks,
    ground_truth_to_coco,
    load_ground_truth,
    load_results,
    predictions_to_coco,
)
from course.data import make_scene, simulate_predictions


def make_dense_set(num_images: int, size: int = 256, seed: int = 0) -> tuple[list, list]:
    """Ground truth and predictions of synthetic scenes, per image, with dense bool masks."""
    g = torch.Generator().manual_seed(seed)
    gt, preds = [], []
    for i in range(num_images):
        scene = make_scene(size, size, num_objects=(18, 26), size_range=(10.0, 60.0),
                           generator=g)
        pred = simulate_predictions(scene, miss_rate=0.1, duplicate_rate=0.15,
                                    false_positives=(1, 3), generator=g)
        crowd = torch.rand(len(scene), generator=g) < 0.02
        gt.append({"image_id": i + 1, "masks": scene.masks, "labels": scene.labels,
                   "iscrowd": crowd})
        preds.append({"image_id": i + 1, "masks": pred.masks, "labels": pred.labels,
                      "scores": pred.scores})
    return gt, preds


def as_coco(gt: list, preds: list) -> tuple[dict, list]:
    """The COCO ground-truth dict and results list of a dense set (RLE segmentations)."""
    rle = [{**item, "masks": RLEMasks.from_dense(item["masks"])} for item in gt]
    rle_preds = [{**item, "masks": RLEMasks.from_dense(item["masks"])} for item in preds]
    return ground_truth_to_coco(rle, [1, 2, 3]), predictions_to_coco(rle_preds, "segm")


def coco_dicts_from_dense(encode, area, to_bbox, gt: list, preds: list) -> tuple[dict, list]:
    """What a pycocotools user writes to evaluate dense masks: encode each image's masks with
    the tool's ``mask.encode`` (Fortran-ordered uint8 ``[H, W, N]``), then the COCO dicts."""
    images, anns, results = [], [], []
    for item, pred in zip(gt, preds, strict=True):
        h, w = item["masks"].shape[1:]
        images.append({"id": item["image_id"], "height": h, "width": w})
        rles = encode(np.asfortranarray(item["masks"].permute(1, 2, 0).numpy().astype(np.uint8)))
        for rle, a, box, label, crowd in zip(rles, area(rles), to_bbox(rles), item["labels"],
                                             item["iscrowd"], strict=True):
            anns.append({"id": len(anns) + 1, "image_id": item["image_id"],
                         "category_id": int(label), "segmentation": rle, "area": float(a),
                         "bbox": box.tolist(), "iscrowd": int(crowd)})
        rles = encode(np.asfortranarray(pred["masks"].permute(1, 2, 0).numpy().astype(np.uint8)))
        results += [{"image_id": pred["image_id"], "category_id": int(label),
                     "segmentation": rle, "score": float(score)}
                    for rle, label, score in zip(rles, pred["labels"], pred["scores"],
                                                 strict=True)]
    categories = [{"id": c, "name": str(c)} for c in (1, 2, 3)]
    return {"images": images, "annotations": anns, "categories": categories}, results


def pycocotools_from_dense(gt: list, preds: list) -> COCOeval:
    return run_pycocotools(*coco_dicts_from_dense(mask_utils.encode, mask_utils.area,
                                                  mask_utils.toBbox, gt, preds))


def faster_from_dense(gt: list, preds: list) -> COCOeval_faster:
    return run_faster(*coco_dicts_from_dense(faster_mask.encode, faster_mask.area,
                                             faster_mask.toBbox, gt, preds))


def ours_from_dense(gt: list, preds: list):
    return coco_evaluate(gt, preds, categories=[1, 2, 3])


def run_pycocotools(gt: dict | str, results: list | str) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, dict):
            coco = COCO()
            coco.dataset = gt
            coco.createIndex()
        else:
            coco = COCO(gt)
        evaluator = COCOeval(coco, coco.loadRes(results), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def run_faster(gt: dict | str, results: list | str) -> COCOeval_faster:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = FasterCOCO(gt)
        evaluator = COCOeval_faster(coco, coco.loadRes(results), "segm",
                                    print_function=lambda *args: None)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def run_ours(gt: dict | str, results: list | str):
    truth = load_ground_truth(gt)
    predictions, _ = load_results(results, truth)
    return coco_evaluate(truth.images, predictions, categories=list(truth.categories))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    dense_gt, dense_preds = make_dense_set(args.images)
    gt, results = as_coco(dense_gt, dense_preds)
    print(f"{args.images} images, {len(gt['annotations'])} objects "
          f"({sum(a['iscrowd'] for a in gt['annotations'])} crowd), {len(results)} detections, "
          f"3 classes (made in {time.perf_counter() - start:.0f} s)")

    ours = run_ours(copy.deepcopy(gt), copy.deepcopy(results))
    ref = run_pycocotools(copy.deepcopy(gt), copy.deepcopy(results))
    assert np.array_equal(ours.stats, ref.stats), "stats differ from pycocotools"
    assert np.array_equal(ours.precision, ref.eval["precision"]), "precision differs"
    assert np.array_equal(ours.recall, ref.eval["recall"]), "recall differs"
    fast = run_faster(copy.deepcopy(gt), copy.deepcopy(results))
    assert np.array_equal(ours.stats, np.asarray(fast.stats)), "stats differ from faster-coco-eval"
    gap = max(np.abs(ours.precision - fast.eval["precision"]).max(),
              np.abs(ours.recall - fast.eval["recall"]).max())
    assert gap < 1e-12, f"faster-coco-eval's arrays differ by {gap}"
    print(f"AP {ours.stats[0]:.4f}: the 12 stats identical for all three; precision and recall "
          f"arrays identical to pycocotools' (faster-coco-eval's within {gap:.1e})")
    for name, run in (("ours", ours_from_dense), ("pycocotools", pycocotools_from_dense),
                      ("faster-coco-eval", faster_from_dense)):
        stats = np.asarray(run(dense_gt, dense_preds).stats)
        assert np.array_equal(stats, ours.stats), f"{name} from dense masks: other stats"
    print("from dense masks: the same 12 stats for all three")

    with tempfile.TemporaryDirectory() as tmp:
        gt_path, res_path = Path(tmp, "instances.json"), Path(tmp, "results.json")
        gt_path.write_text(json.dumps(gt))
        res_path.write_text(json.dumps(results))
        settings = {
            "in memory (same RLE dicts)": lambda: (copy.deepcopy(gt), copy.deepcopy(results)),
            "from json files on disk": lambda: (str(gt_path), str(res_path)),
            "from dense masks": lambda: (dense_gt, dense_preds),
        }
        print(f"\n{'setting':<28} {'ours':>8} {'pycoco':>8} {'faster':>8} "
              f"{'pycoco/ours':>12} {'faster/ours':>12}")
        for setting, make_args in settings.items():
            tools = ({"ours": ours_from_dense, "pycoco": pycocotools_from_dense,
                      "faster": faster_from_dense} if setting == "from dense masks" else
                     {"ours": run_ours, "pycoco": run_pycocotools, "faster": run_faster})
            t = median_times(tools, make_args, args.repeats)
            print(f"{setting:<28} {t['ours']:7.3f}s {t['pycoco']:7.3f}s {t['faster']:7.3f}s "
                  f"{t['pycoco'] / t['ours']:11.1f}x {t['faster'] / t['ours']:11.1f}x")
    print("median of", args.repeats, "runs each, tools taking turns; ratio above 1: ours is faster")


if __name__ == "__main__":
    main()
