"""A test-only reference for Panoptic Quality: panopticapi's ``pq_compute``, re-written.

panopticapi is not on the package index. What was read: ``panopticapi/evaluation.py`` of
cocodataset/panopticapi at commit 1ad5afa4ab681fd27249136545199ee42be5defe (functions
``pq_compute``, ``pq_compute_single_core`` and ``PQStat.pq_average``) and ``rgb2id`` in
``panopticapi/utils.py``. The PyPI repackaging panopticapi-lite 0.2.0 ships the same
``evaluation.py`` (it differs only in its imports), but it requires ``numpy<2`` and
scikit-image, so it cannot be installed beside the course's numpy 2.

This file reproduces that evaluation's behaviour, one image at a time and on one process,
reading the same files (PNG + json in the COCO panoptic format), including its quirks:

- the ground-truth area of a segment is the json's ``area``; the predicted area is counted in
  the PNG;
- a predicted id in the PNG but not in the json, a json segment absent from the PNG, or a
  predicted category not in the ground truth's categories raise ``KeyError``;
- ground-truth ids in the PNG that the json does not list are skipped, not treated as void;
- for the false-positive rule a category has one crowd region: the last crowd segment listed;
- a category with ``tp + fp + fn == 0`` gets zeros and is left out of the means; a group
  (All, Things, Stuff) with no category left divides by zero (``ZeroDivisionError``);
- the PNG is read as ``rgb2id(np.array(Image.open(path), dtype=np.uint32))`` (RGBA: alpha
  ignored; palette, grayscale and 16-bit PNGs raise, see :func:`decode_png`); each image is
  found by its own annotation's ``file_name`` in its own folder;
- only ``annotations`` are read from the prediction json and ``annotations`` and
  ``categories`` from the ground truth (``images`` is not); a later entry with the same
  ``image_id``, or the same segment ``id`` in one ``segments_info``, replaces an earlier one;
- a ground-truth segment without ``iscrowd`` or (when a pair needs it) ``area``, or a category
  without ``isthing``, raise ``KeyError``; a prediction's ``iscrowd`` and ``area`` are not
  read (the area is recounted in the PNG);
- a ground-truth segment of a category not in ``categories`` is counted, under that category,
  but only the listed categories are averaged, so it is left out of the results.

It is independent of ``course`` on purpose: the tests compare ``course.pq`` with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

VOID = 0
PAIR_BASE = 256**3  # a gt id and a pred id packed into one uint64 as gt * PAIR_BASE + pred


def encode_ids(ids: np.ndarray) -> np.ndarray:
    """``[H, W]`` ids to ``[H, W, 3]`` uint8 colours, ``id = R + 256 G + 256**2 B``."""
    ids = np.asarray(ids, dtype=np.uint32)
    return np.stack([ids % 256, ids // 256 % 256, ids // 256**2], axis=-1).astype(np.uint8)


def decode_png(path: Path) -> np.ndarray:
    """A COCO panoptic PNG to its ``[H, W]`` uint32 segment ids, as panopticapi reads it.

    The pixels as PIL gives them, then ``rgb2id``: channels 0, 1, 2 of a 3-D array (so the
    alpha of an RGBA PNG is left out, and a two-channel 'LA' PNG has no channel 2); a 2-D
    array (palette, grayscale, 16-bit) falls through to ``rgb2id``'s branch for one colour,
    ``int(row 0 + 256 row 1 + 256**2 row 2)``, which raises on any image wider than a pixel.
    """
    pixels = np.array(Image.open(path), dtype=np.uint32)
    if pixels.ndim == 3:
        return pixels[:, :, 0] + 256 * pixels[:, :, 1] + 256 * 256 * pixels[:, :, 2]
    return int(pixels[0] + 256 * pixels[1] + 256 * 256 * pixels[2])


def write_png(path: Path, ids: np.ndarray) -> None:
    Image.fromarray(encode_ids(ids)).save(path)


class CategoryCounts:
    """iou, tp, fp, fn of one category."""

    def __init__(self) -> None:
        self.iou, self.tp, self.fp, self.fn = 0.0, 0, 0, 0

    def add(self, other: CategoryCounts) -> None:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn


def one_image(gt_ann: dict, pred_ann: dict, gt_folder: Path, pred_folder: Path,
              categories: dict) -> dict[int, CategoryCounts]:
    """The counts of one image, as ``pq_compute_single_core`` makes them."""
    gt_map = decode_png(Path(gt_folder) / gt_ann["file_name"])
    pred_map = decode_png(Path(pred_folder) / pred_ann["file_name"])
    return one_image_maps(gt_map, gt_ann, pred_map, pred_ann, categories)


def one_image_maps(gt_map: np.ndarray, gt_ann: dict, pred_map: np.ndarray, pred_ann: dict,
                   categories: dict) -> dict[int, CategoryCounts]:
    """:func:`one_image` on id maps already decoded (uint32 ``[H, W]``)."""
    gt_info = {s["id"]: dict(s) for s in gt_ann["segments_info"]}
    pred_info = {s["id"]: dict(s) for s in pred_ann["segments_info"]}
    counts: dict[int, CategoryCounts] = {}

    def of(category: int) -> CategoryCounts:
        return counts.setdefault(category, CategoryCounts())

    # areas of the predicted segments, counted in the PNG, and the sanity checks
    not_seen = set(pred_info)
    ids, sizes = np.unique(pred_map, return_counts=True)
    for sid, size in zip(ids, sizes):
        if sid not in pred_info:
            if sid == VOID:
                continue
            raise KeyError(f"segment {sid} is in the PNG but not in the json")
        pred_info[sid]["area"] = size
        not_seen.discard(sid)
        if pred_info[sid]["category_id"] not in categories:
            raise KeyError(f"segment {sid} has unknown category {pred_info[sid]['category_id']}")
    if not_seen:
        raise KeyError(f"segments {sorted(not_seen)} are in the json but not in the PNG")

    # every (gt id, pred id) pair that shares pixels, with its pixel count
    packed = gt_map.astype(np.uint64) * PAIR_BASE + pred_map.astype(np.uint64)
    pair_ids, pair_sizes = np.unique(packed, return_counts=True)
    overlap = {(int(k // PAIR_BASE), int(k % PAIR_BASE)): n for k, n in zip(pair_ids, pair_sizes)}

    gt_hit, pred_hit = set(), set()
    for (g, p), inter in overlap.items():
        if g not in gt_info or p not in pred_info:
            continue
        if gt_info[g]["iscrowd"] == 1:
            continue
        if gt_info[g]["category_id"] != pred_info[p]["category_id"]:
            continue
        union = (pred_info[p]["area"] + gt_info[g]["area"] - inter
                 - overlap.get((VOID, p), 0))
        iou = inter / union
        if iou > 0.5:
            of(gt_info[g]["category_id"]).tp += 1
            of(gt_info[g]["category_id"]).iou += iou
            gt_hit.add(g)
            pred_hit.add(p)

    crowd_of_category = {}
    for g, info in gt_info.items():
        if g in gt_hit:
            continue
        if info["iscrowd"] == 1:
            crowd_of_category[info["category_id"]] = g  # a later one replaces an earlier one
            continue
        of(info["category_id"]).fn += 1

    for p, info in pred_info.items():
        if p in pred_hit:
            continue
        ignored = overlap.get((VOID, p), 0)
        if info["category_id"] in crowd_of_category:
            ignored += overlap.get((crowd_of_category[info["category_id"]], p), 0)
        if ignored / info["area"] > 0.5:
            continue
        of(info["category_id"]).fp += 1
    return counts


def average(counts: dict[int, CategoryCounts], categories: dict,
            isthing: bool | None) -> tuple[dict, dict]:
    """Means over the categories of one group, as ``PQStat.pq_average`` takes them."""
    pq = sq = rq = 0.0
    n = 0
    per_class = {}
    for cat, info in categories.items():
        if isthing is not None and (info["isthing"] == 1) != isthing:
            continue
        c = counts.get(cat, CategoryCounts())
        if c.tp + c.fp + c.fn == 0:
            per_class[cat] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        n += 1
        denominator = c.tp + 0.5 * c.fp + 0.5 * c.fn
        per_class[cat] = {"pq": c.iou / denominator, "sq": c.iou / c.tp if c.tp else 0,
                          "rq": c.tp / denominator}
        pq += per_class[cat]["pq"]
        sq += per_class[cat]["sq"]
        rq += per_class[cat]["rq"]
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def pq_compute(gt_json_file: Path, pred_json_file: Path, gt_folder: Path | None = None,
               pred_folder: Path | None = None) -> tuple[dict, dict[int, CategoryCounts]]:
    """The results ``pq_compute`` returns, and the summed per-category counts behind them.

    A folder left out is the json's path without ``.json``; a missing folder or a ground-truth
    image with no prediction raise a plain ``Exception``, as there.
    """
    gt_json = json.loads(Path(gt_json_file).read_text())
    pred_json = json.loads(Path(pred_json_file).read_text())
    gt_folder = gt_folder or str(gt_json_file).replace(".json", "")
    pred_folder = pred_folder or str(pred_json_file).replace(".json", "")
    categories = {c["id"]: c for c in gt_json["categories"]}
    for folder, what in ((gt_folder, "ground truth"), (pred_folder, "predicted")):
        if not Path(folder).is_dir():
            raise Exception(f"Folder {folder} with {what} segmentations doesn't exist")
    predictions = {a["image_id"]: a for a in pred_json["annotations"]}
    total: dict[int, CategoryCounts] = {}
    for gt_ann in gt_json["annotations"]:
        if gt_ann["image_id"] not in predictions:
            raise Exception(f"no prediction for the image with id: {gt_ann['image_id']}")
        image = one_image(gt_ann, predictions[gt_ann["image_id"]], gt_folder, pred_folder,
                          categories)
        for cat, c in image.items():
            total.setdefault(cat, CategoryCounts()).add(c)
    results = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        results[name], per_class = average(total, categories, isthing)
        if name == "All":
            results["per_class"] = per_class
    return results, total
