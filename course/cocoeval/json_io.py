"""COCO json files: reading ground truth and results for evaluation, and writing both.

:func:`load_ground_truth` reads a COCO instances file (or a person_keypoints file, for
``iou_type="keypoints"``) into the per-image dicts that
:func:`course.ap.coco_evaluate` takes; :func:`load_results` reads a results file the way
pycocotools' ``COCO.loadRes`` does (quirks included, see there); :func:`ground_truth_to_coco`
and :func:`predictions_to_coco` write both formats. Chapter 03 ("COCO json and RLE") writes a
set with them and evaluates it with pycocotools and with the course; :mod:`course.coco` is
the chapter's entry to this module. When a file cannot be read, the error names the first
culprit (``annotations[7]['category_id']``), found after a fast read of all fields failed.

**Annotation ids.** They are not used here. pycocotools stores the id of the matched
annotation in its match arrays, where 0 also means "unmatched", so a detection matched to a
ground-truth annotation whose id is 0 counts there as unmatched (a false positive) and that
object as missed; here it is a true positive. :attr:`CocoGroundTruth.zero_ids` counts such
annotations, and ``python -m course eval`` warns about them, as faster-coco-eval does.

numpy only: nothing here imports torch (a tensor in the dicts given to the writers is
converted by :func:`course.cocoeval.common.to_numpy`).
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from course.cocoeval.common import Progress, check_size, no_progress, to_numpy
from course.cocoeval.keypoints import Keypoints, keypoint_extent, keypoints_from_lists
from course.cocoeval.rle import RLEMasks, coco_bbox_of_counts, decode_segmentations


@dataclass
class CocoGroundTruth:
    """A COCO instances file, read for :func:`course.ap.coco_evaluate`.

    Attributes:
        images: one ground-truth dict per image listed in the file (in file order), with
            ``image_id``, ``labels``, ``iscrowd``, ``area`` and ``masks`` (:class:`RLEMasks`,
            for ``iou_type="segm"``) or ``bbox`` (``[N, 4]`` COCO ``(x, y, w, h)``); for
            ``iou_type="keypoints"`` also ``keypoints [N, K, 3]`` and ``num_keypoints [N]``.
        categories: category id -> name, ascending id.
        sizes: image id -> ``(height, width)``.
        zero_ids: how many annotations have the id 0, which pycocotools would count as
            unmatched (see the module docstring); ours does not.
        duplicate_ids: how many annotations share their id with a later one; they are read
            as pycocotools reads them (see :func:`load_ground_truth`).
        dropped: how many annotations have a ``category_id`` that is not among the
            categories; they are not evaluated, as in ``COCOeval``.
    """

    images: list[dict[str, Any]]
    categories: dict[int, str]
    sizes: dict[int, tuple[int, int]]
    zero_ids: int = 0
    duplicate_ids: int = 0
    dropped: int = 0


def read_json(source: str | PathLike | dict | list, what: str) -> Any:
    """The parsed json of the file ``source`` (a dict or list is taken as already parsed),
    read with the cycle collector paused; invalid json is a ValueError naming ``what``."""
    if isinstance(source, dict | list):
        return source
    try:
        with open(source, encoding="utf-8") as f, _collection_paused():
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {source} is not valid json: {err}") from None


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cycle collector off while json builds its objects. Parsing a COCO file makes
    hundreds of thousands of dicts and lists, none in a cycle; each batch of them would start
    a collection that walks every object the program holds, which took a third of the time of
    reading a 500-image file in a program that held other data."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_iou_type(iou_type: str) -> None:
    if iou_type not in ("segm", "bbox", "keypoints"):
        raise ValueError(f"iou_type must be 'segm', 'bbox' or 'keypoints', got {iou_type!r}")


def _bbox_array(boxes: list[Any], names: list[str]) -> np.ndarray:
    try:
        out = np.array(boxes, dtype=np.float64).reshape(len(boxes), 4)
    except (TypeError, ValueError):
        for i, b in enumerate(boxes):
            if not isinstance(b, list | tuple | np.ndarray) or len(b) != 4:
                raise ValueError(f"{names[i]} must be [x, y, width, height], got {b!r}") from None
        raise ValueError(f"{names[0].split('[')[0]}: a bbox holds something other than "
                         "numbers") from None
    if len(out) and not np.isfinite(out).all():
        i = int(np.argmax(~np.isfinite(out).all(axis=1)))
        raise ValueError(f"{names[i]} must be finite, got {boxes[i]!r}")
    return out


def _by_image(image_of: np.ndarray, num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Annotations grouped by image, in file order within each: ``(order, bounds)``, image
    ``i`` holding ``order[bounds[i]:bounds[i + 1]]``."""
    order = np.argsort(image_of, kind="stable")
    return order, np.searchsorted(image_of[order], np.arange(num_images + 1))


def _ground_truth_dict(data: Any) -> dict[str, Any]:
    """The parsed file, checked to be an object with the three lists evaluation needs."""
    if not isinstance(data, dict):
        hint = " (is this a results file?)" if isinstance(data, list) else ""
        raise ValueError("a COCO ground-truth json must be an object with 'images', "
                         f"'annotations' and 'categories', got a {type(data).__name__}{hint}")
    for key in ("annotations", "images", "categories"):
        if key not in data:
            raise ValueError(f"the ground-truth json has no '{key}'")
    return data


def _read_categories(cats: list[Any]) -> dict[int, str]:
    """Category id -> name, ascending id."""
    categories = {}
    for i, cat in enumerate(cats):
        if not isinstance(cat, dict) or "id" not in cat:
            raise ValueError(f"categories[{i}] must be an object with an 'id'")
        categories[int(cat["id"])] = str(cat.get("name", cat["id"]))
    return dict(sorted(categories.items()))


def _read_images(images: list[Any], iou_type: str
                 ) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """Each image's ``(height, width)`` and its position in the file, by image id."""
    sizes, position = {}, {}
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise ValueError(f"images[{i}] must be an object with an 'id'")
        if not _is_whole(img["id"]):
            raise ValueError(f"images[{i}]['id'] must be an integer, got {img['id']!r} (image "
                             "ids are integers here; renumber the images to evaluate)")
        image_id = int(img["id"])
        if image_id in position:
            raise ValueError(f"images[{i}]['id'] = {image_id} is listed twice")
        position[image_id] = i
        if iou_type == "segm" and ("height" not in img or "width" not in img):
            raise ValueError(f"images[{i}] needs 'height' and 'width' to decode segmentations")
        sizes[image_id] = (_image_size(img.get("height", 0), f"images[{i}]['height']"),
                            _image_size(img.get("width", 0), f"images[{i}]['width']"))
    return sizes, position


def _image_size(value: Any, name: str) -> int:
    """A height or width read from json: a non-negative int; ``480.0`` is read as 480."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_size(value, name)


def load_ground_truth(source: str | PathLike | dict, iou_type: str = "segm",
                      progress: Progress | None = None) -> CocoGroundTruth:
    """Read a COCO instances file (or its already-parsed dict) into per-image dicts.

    Segmentations may be polygons, uncompressed or compressed RLE; they are rasterised exactly
    as pycocotools does. As in ``COCOeval``, ``iscrowd`` (default 0) marks regions that are
    ignored (an ``ignore`` field is not used: COCOeval overwrites it with ``iscrowd``), and
    ``area`` decides the size range; where ``area`` is missing, the mask's pixel count
    (``bbox`` area for ``iou_type="bbox"`` and ``"keypoints"``) is used, where pycocotools
    would fail. For keypoints, each annotation needs ``keypoints`` (``3 * K`` numbers, the same
    ``K`` for all) and ``bbox``; ``num_keypoints`` (where missing: the count of labelled
    keypoints) 0 marks an object COCOeval ignores. Annotation
    ids are not used (see the module docstring on id 0), except where two annotations share
    one: pycocotools then reads the last annotation with that id in place of each of them
    (``COCO.createIndex`` keeps one per id), and so does this reader. That reading is the one
    of an evaluation of every image and class; with ``imgIds`` or ``catIds`` narrowed,
    pycocotools would pick the copies among the narrowed annotations only. Annotations of a
    category that ``categories`` does not list are left out, as ``COCOeval`` passes over them
    (counted in :attr:`CocoGroundTruth.dropped`).

    Raises:
        ValueError: naming the field, for a file without ``annotations``, ``images`` or
            ``categories``, an annotation of an unknown image, or a malformed segmentation
            or box.
    """
    _check_iou_type(iou_type)
    data = _ground_truth_dict(read_json(source, "ground truth"))
    categories = _read_categories(data["categories"])
    sizes, position = _read_images(data["images"], iou_type)
    anns = data["annotations"]
    fields = _annotation_fields(anns, position, iou_type, progress or no_progress)
    ids = list(position)  # in file order
    ann_ids = [a.get("id") for a in anns]
    fields, dropped = _as_cocoeval_reads(fields, ann_ids, ids, categories)
    images = _ground_truth_images(ids, sizes, fields, iou_type)
    named = [a for a in ann_ids if a is not None]
    return CocoGroundTruth(images, categories, sizes, sum(1 for a in ann_ids if a == 0),
                           len(named) - len(set(named)), dropped)


def _as_cocoeval_reads(fields: tuple[Any, ...], ann_ids: list[Any], image_ids: list[int],
                       categories: dict[int, str]) -> tuple[tuple[Any, ...], int]:
    """The annotations ``COCOeval`` evaluates, as it reads them: ``(fields, dropped)``.

    It passes over annotations of a category not among ``categories`` (``dropped`` counts
    them). Where two annotations share an id, ``COCO.createIndex`` keeps one, the last, while
    each image still lists every annotation it holds; reading the images in ascending id, and
    for each listed annotation the one kept under its id, it reads an annotation whose id
    comes again later as that later one (in the later one's image, once for each time the id
    occurs) and itself not at all. Annotations without an id (which pycocotools cannot read)
    are taken as they are.
    """
    known = np.isin(fields[1], list(categories))
    last = {a: i for i, a in enumerate(ann_ids) if a is not None}
    unique = len(last) == sum(a is not None for a in ann_ids)
    if unique and known.all():
        return fields, 0  # nothing changes
    read = np.flatnonzero(known)
    if not unique:
        source = np.array([i if a is None else last[a] for i, a in enumerate(ann_ids)],
                          dtype=np.int64)
        rank = np.argsort(np.argsort(np.array(image_ids), kind="stable"), kind="stable")
        read = source[read[np.argsort(rank[fields[0][read]], kind="stable")]]
        read = read[known[read]]  # read as an annotation of a category not evaluated
    geometry = [fields[4][i] for i in read] if isinstance(fields[4], list) else fields[4][read]
    return (*(f[read] for f in fields[:4]), geometry), int((~known).sum())


def _ground_truth_images(ids: list[int], sizes: dict[int, tuple[int, int]],
                         fields: tuple[Any, ...], iou_type: str) -> list[dict[str, Any]]:
    """One ground-truth dict per image from the annotations' fields (masks decoded at once)."""
    image_of, labels, crowd, area, geometry = fields
    order, bounds = _by_image(image_of, len(ids))
    if iou_type == "segm":
        hw = np.array([sizes[i] for i in ids], dtype=np.int64).reshape(-1, 2)
        counts, offsets = decode_segmentations(
            [geometry[i] for i in order], hw[image_of[order]],
            [f"annotations[{i}]['segmentation']" for i in order])
    images = []
    for i, image_id in enumerate(ids):
        idx = order[bounds[i]:bounds[i + 1]]
        item = {"image_id": image_id, "labels": labels[idx], "iscrowd": crowd[idx]}
        if iou_type == "segm":
            lo, hi = offsets[bounds[i]], offsets[bounds[i + 1]]
            item["masks"] = RLEMasks.unchecked(*sizes[image_id], counts[lo:hi],
                                               offsets[bounds[i]:bounds[i + 1] + 1] - lo)
        elif iou_type == "keypoints":
            kp = geometry[idx]
            item.update(keypoints=kp.points, bbox=kp.boxes, num_keypoints=kp.num_keypoints)
        else:
            item["bbox"] = geometry[idx]
        given = ~np.isnan(area[idx])
        if given.all():
            item["area"] = area[idx]
        else:
            default = item["masks"].area() if iou_type == "segm" else \
                item["bbox"][:, 2] * item["bbox"][:, 3]
            item["area"] = np.where(given, area[idx], default)
        images.append(item)
    return images


def _is_whole(value: Any) -> bool:
    """Whether a json id is a whole number: an int (not a bool), or a float such as ``7.0``,
    which pycocotools takes for the int (``7.0 == 7`` in its lookups)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or \
        (isinstance(value, float) and value.is_integer())


def _integer_ids(values: list[Any]) -> np.ndarray:
    """Category ids as int64 (``7.0`` read as 7); a ValueError (the caller then names the
    culprit) when one is not a whole number, so that 1.5 is never read as 1."""
    array = np.array(values)
    if len(values) and array.dtype.kind not in "iu" and not (
            array.dtype.kind == "f" and np.array_equal(array, np.floor(array))):
        raise ValueError("category ids must be integers")
    return array.astype(np.int64)


def _annotation_fields(anns: list[dict], position: dict, iou_type: str, progress: Progress
                       ) -> tuple[Any, ...]:
    """Image position, label, crowd flag, area (NaN if absent) and geometry of each annotation."""
    key = {"segm": "segmentation", "bbox": "bbox", "keypoints": "keypoints"}[iou_type]
    items = list(progress(anns, "reading ground truth"))
    try:  # all at once; on any trouble, find and name the culprit
        image_of = np.array([position[a["image_id"]] for a in items], dtype=np.int64)
        labels = _integer_ids([a["category_id"] for a in items])
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in items], dtype=bool)
        area = np.array([a.get("area", np.nan) for a in items], dtype=np.float64)
        geometry = [a[key] for a in items]
    except (KeyError, TypeError, ValueError, AttributeError):
        _explain_bad_annotations(items, position, key, iou_type)
        raise
    if iou_type == "bbox":
        geometry = _bbox_array(geometry, [f"annotations[{i}]['bbox']" for i in range(len(anns))])
    elif iou_type == "keypoints":
        geometry = _keypoint_annotations(items, geometry)
    return image_of, labels, crowd, area, geometry


def _keypoint_annotations(anns: list[dict], points: list[Any]) -> Keypoints:
    """The keypoints ``[N, K, 3]``, boxes and ``num_keypoints`` of the annotations."""
    names = [f"annotations[{i}]" for i in range(len(anns))]
    missing = next((i for i, a in enumerate(anns) if "bbox" not in a), None)
    if missing is not None:
        raise ValueError(f"{names[missing]} has no 'bbox' (iou_type='keypoints' measures an "
                         "object without labelled keypoints against its box)")
    boxes = _bbox_array([a["bbox"] for a in anns], [f"{n}['bbox']" for n in names])
    kp = keypoints_from_lists(points, [f"{n}['keypoints']" for n in names], None)
    given = [a.get("num_keypoints") for a in anns]
    bad = next((i for i, v in enumerate(given) if v is not None and
                (isinstance(v, bool) or not isinstance(v, int | float))), None)
    if bad is not None:
        raise ValueError(f"{names[bad]}['num_keypoints'] must be a number, got {given[bad]!r}")
    counts = np.array([np.nan if v is None else v for v in given], dtype=np.float64)
    labelled = np.where(np.isnan(counts), (kp[:, :, 2] > 0).sum(axis=1), counts)
    return Keypoints(kp, boxes, labelled)


def _explain_bad_annotations(anns: list[Any], position: dict, key: str, iou_type: str) -> None:
    """Raise a ValueError naming the first annotation whose fields cannot be read."""
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise ValueError(f"annotations[{i}] must be an object")
        if ann.get("image_id") not in position:
            raise ValueError(f"annotations[{i}]['image_id'] = {ann.get('image_id')!r} is not "
                             "among the images")
        if not _is_whole(ann.get("category_id")):
            raise ValueError(f"annotations[{i}]['category_id'] must be an int, got "
                             f"{ann.get('category_id')!r}")
        try:
            float(ann.get("area", 0))
        except (TypeError, ValueError):
            raise ValueError(f"annotations[{i}]['area'] must be a number, got "
                             f"{ann['area']!r}") from None
        if key not in ann:
            raise ValueError(f"annotations[{i}] has no '{key}' (needed for iou_type={iou_type!r})")


def load_results(source: str | PathLike | list, ground_truth: CocoGroundTruth,
                 iou_type: str = "segm", progress: Progress | None = None
                 ) -> tuple[list[dict[str, Any]], int]:
    """Read a COCO results file (or its parsed list) into per-image prediction dicts.

    Follows pycocotools' ``COCO.loadRes``, quirks included:

    - if the *first* result has a non-empty ``bbox``, every detection's ``area`` (which
      decides its size range) is its box's ``w * h``, even for mask evaluation (detectron2
      deletes ``bbox`` from mask results for this reason); otherwise it is the mask's pixel
      count;
    - a detection without ``segmentation`` is its box, rasterised as a polygon; one without
      ``bbox`` gets the box of its mask (``toBbox``);
    - keypoint results (``iou_type="keypoints"``, ``3 * K`` numbers each, ``K`` as the ground
      truth's) are sized as the first result says: by their ``bbox`` if it has one, else by
      their masks if it has a ``segmentation``, else by the extent of their keypoints.

    Results whose ``category_id`` is not among the ground truth's categories are dropped, as
    ``COCOeval`` skips them. An empty list gives images without predictions (pycocotools'
    ``loadRes([])`` raises an IndexError instead).

    Returns:
        ``(predictions, dropped)``: one dict per ground-truth image (``image_id``, ``labels``,
        ``scores``, ``area``, and ``masks``, ``bbox`` or ``keypoints``), and the number of
        results dropped.
    """
    _check_iou_type(iou_type)
    results = _results_list(read_json(source, "results"))
    ids = [img["image_id"] for img in ground_truth.images]
    position = {image_id: i for i, image_id in enumerate(ids)}
    box_areas = bool(results) and isinstance(results[0], dict) and \
        bool(results[0].get("bbox", []))
    items = list((progress or no_progress)(results, "reading results"))
    if iou_type == "keypoints":
        return _keypoint_results(items, ground_truth, position, box_areas)
    image_of, scores, labels, boxes, segs = _result_fields(items, position, box_areas)
    order, bounds = _kept_by_image(image_of, labels, ground_truth.categories, len(ids))
    hw = np.array([ground_truth.sizes[i] for i in ids], dtype=np.int64).reshape(-1, 2)
    obj_hw = hw[image_of[order]]
    counts, offsets = _result_counts(boxes, segs, order, obj_hw) \
        if iou_type == "segm" or not box_areas else (None, None)  # masks for IoU or areas
    xywh = _result_boxes(boxes, order, obj_hw, counts, offsets) \
        if box_areas or iou_type == "bbox" else np.zeros((len(order), 4))
    area = xywh[:, 2] * xywh[:, 3] if box_areas else _pixel_counts(counts, offsets)
    out = []
    for j, image_id in enumerate(ids):
        lo, hi = bounds[j], bounds[j + 1]
        item = {"image_id": image_id, "labels": labels[order[lo:hi]],
                "scores": scores[order[lo:hi]]}
        if iou_type == "segm":
            item["masks"] = RLEMasks.unchecked(*ground_truth.sizes[image_id],
                                               counts[offsets[lo]:offsets[hi]],
                                               offsets[lo:hi + 1] - offsets[lo])
            item["area"] = area[lo:hi]
        else:
            item["bbox"] = xywh[lo:hi]
            item["area"] = area[lo:hi]
        out.append(item)
    return out, int(len(results) - len(order))


def _kept_by_image(image_of: np.ndarray, labels: np.ndarray, categories: dict[int, str],
                   num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """The results of the evaluated categories, image by image: ``(order, bounds)``."""
    kept = np.flatnonzero(np.isin(labels, list(categories)))
    order, bounds = _by_image(image_of[kept], num_images)
    return kept[order], bounds


def _keypoint_results(items: list[Any], ground_truth: CocoGroundTruth, position: dict,
                      box_areas: bool) -> tuple[list[dict[str, Any]], int]:
    """:func:`load_results` for keypoint results (``items``: the parsed list)."""
    if any("keypoints" not in im for im in ground_truth.images):
        raise ValueError("the ground truth was not read for keypoints; read it with "
                         "load_ground_truth(..., iou_type='keypoints')")
    ids = [img["image_id"] for img in ground_truth.images]
    image_of, scores, labels, boxes, segs = _result_fields(items, position, box_areas,
                                                           needs_shape=False)
    order, bounds = _kept_by_image(image_of, labels, ground_truth.categories, len(ids))
    k = next((im["keypoints"].shape[1] for im in ground_truth.images if len(im["keypoints"])),
             None)
    points = keypoints_from_lists([items[i].get("keypoints") for i in order],
                                  [f"results[{i}]['keypoints']" for i in order], k)
    if box_areas:  # as loadRes: the first result decides where every area comes from
        xywh = _bbox_array([boxes[i] for i in order], [f"results[{i}]['bbox']" for i in order])
        area = xywh[:, 2] * xywh[:, 3]
    elif items and "segmentation" in items[0]:
        area = _segmentation_areas(segs, order, ground_truth, image_of)
    else:
        area = keypoint_extent(points)[0]
    out = [{"image_id": image_id, "labels": labels[order[lo:hi]], "scores": scores[order[lo:hi]],
            "keypoints": points[lo:hi], "area": area[lo:hi]}
           for image_id, lo, hi in zip(ids, bounds[:-1], bounds[1:], strict=True)]
    return out, int(len(items) - len(order))


def _segmentation_areas(segs: list[Any], order: np.ndarray, ground_truth: CocoGroundTruth,
                        image_of: np.ndarray) -> np.ndarray:
    """The pixel counts of the results' masks (``loadRes`` when results[0] has a
    ``segmentation`` and no ``bbox``); each result needs one."""
    missing = next((i for i in order if segs[i] is None), None)
    if missing is not None:
        raise ValueError(f"results[{missing}] has no 'segmentation', but results[0] has one "
                         "(and no 'bbox'), so pycocotools would read every result's area "
                         "from its 'segmentation'")
    ids = [img["image_id"] for img in ground_truth.images]
    hw = np.array([ground_truth.sizes[i] for i in ids], dtype=np.int64).reshape(-1, 2)
    counts, offsets = decode_segmentations([segs[i] for i in order], hw[image_of[order]],
                                           [f"results[{i}]['segmentation']" for i in order])
    return _pixel_counts(counts, offsets)


def _pixel_counts(counts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The foreground pixels of each mask (its odd counts), as float64 areas."""
    if len(offsets) < 2:
        return np.zeros(0)
    odd = (np.arange(len(counts)) - np.repeat(offsets[:-1], np.diff(offsets))) % 2 == 1
    return np.add.reduceat(np.where(odd, counts, 0), offsets[:-1]).astype(np.float64)


def _results_list(results: Any) -> list[Any]:
    """The parsed results file, checked to be a list."""
    if not isinstance(results, list):
        raise ValueError("a COCO results json must be a list of detections, got a "
                         f"{type(results).__name__}" + (" (is this a ground-truth file?)"
                                                        if isinstance(results, dict) else ""))
    return results


def _result_fields(items: list[Any], position: dict, box_areas: bool,
                   needs_shape: bool = True) -> tuple[Any, ...]:
    """Image position, score, category, box and segmentation of each result, checked (each
    needs one of the two when ``needs_shape``)."""
    try:  # the fields of all results at once; on any trouble, find and name the culprit
        image_of = np.array([position[r["image_id"]] for r in items], dtype=np.int64)
        scores = np.array([r["score"] for r in items], dtype=np.float64)
        labels = _integer_ids([r["category_id"] for r in items])
        boxes = [r.get("bbox") for r in items]
        segs = [r.get("segmentation") for r in items]
    except (KeyError, TypeError, ValueError, AttributeError):
        _explain_bad_results(items, position)
        raise
    if np.isnan(scores).any():
        raise ValueError(f"results[{int(np.argmax(np.isnan(scores)))}]['score'] is NaN")
    for i in range(len(items)):
        if needs_shape and boxes[i] is None and segs[i] is None:
            raise ValueError(f"results[{i}] has neither 'segmentation' nor 'bbox'")
        if box_areas and not boxes[i]:
            raise ValueError(f"results[{i}] has no 'bbox', but results[0] has one, so "
                             "pycocotools would read every result's area from its 'bbox'")
    return image_of, scores, labels, boxes, segs


def _explain_bad_results(results: list[Any], position: dict) -> None:
    """Raise a ValueError naming the first result whose fields cannot be read."""
    for i, res in enumerate(results):
        if not isinstance(res, dict):
            raise ValueError(f"results[{i}] must be an object")
        if not _is_whole(res.get("image_id")):
            raise ValueError(f"results[{i}]['image_id'] must be an integer, got "
                             f"{res.get('image_id')!r}")
        if res.get("image_id") not in position:
            raise ValueError(f"results[{i}]['image_id'] = {res.get('image_id')!r} is not among "
                             "the ground truth's images")
        for key in ("score", "category_id"):
            if key not in res:
                raise ValueError(f"results[{i}] has no '{key}'")
        try:
            float(res["score"])
        except (TypeError, ValueError):
            raise ValueError(f"results[{i}]['score'] must be a number, got {res['score']!r}") \
                from None
        if not _is_whole(res["category_id"]):
            raise ValueError(f"results[{i}]['category_id'] must be an int, got "
                             f"{res['category_id']!r}")


def _result_boxes(boxes: list[Any], order: np.ndarray, obj_hw: np.ndarray,
                  counts: np.ndarray | None, offsets: np.ndarray | None) -> np.ndarray:
    """``(x, y, w, h)`` of the results ``order``; ``toBbox`` of the mask where none is given
    (``counts`` and ``offsets``: the results' masks, end to end, in the order ``order``)."""
    out = _bbox_array([boxes[i] if boxes[i] else [0, 0, 0, 0] for i in order],
                      [f"results[{i}]['bbox']" for i in order])
    rows = np.array([r for r, i in enumerate(order) if not boxes[i]], dtype=np.int64)
    if len(rows):
        out[rows] = coco_bbox_of_counts(counts, offsets, obj_hw[:, 0])[rows]
    return out


def _result_counts(boxes: list[Any], segs: list[Any], order: np.ndarray,
                   obj_hw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the results ``order``; a result without a mask is its box as a polygon."""
    objects = []
    for i in order:
        if segs[i] is not None:
            objects.append(segs[i])
        else:  # loadRes turns a box into the polygon of its corners
            x, y, bw, bh = _bbox_array([boxes[i]], [f"results[{i}]['bbox']"])[0]
            objects.append([[x, y, x, y + bh, x + bw, y + bh, x + bw, y]])
    return decode_segmentations(objects, obj_hw, [f"results[{i}]['segmentation']" for i in order])


# ---------------------------------------------------------------------------------------------
# Writing COCO json
# ---------------------------------------------------------------------------------------------


def _as_rle(masks: Any) -> RLEMasks:
    return masks if isinstance(masks, RLEMasks) else RLEMasks.from_dense(masks)


def _xywh(item: dict[str, Any]) -> np.ndarray | None:
    if "bbox" in item:
        return np.asarray(to_numpy(item["bbox"]), dtype=np.float64).reshape(-1, 4)
    if "boxes" in item:
        b = np.asarray(to_numpy(item["boxes"]), dtype=np.float64).reshape(-1, 4)
        return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    return None


def _image_entry(item: dict[str, Any], image_id: int, masks: RLEMasks | None,
                 where: str) -> dict[str, Any]:
    """The ``images`` entry: the id, and the size of the masks (or the one given)."""
    image: dict[str, Any] = {"id": image_id}
    if masks is not None:
        image.update(height=masks.height, width=masks.width)
    elif "height" in item or "width" in item:
        image.update(height=check_size(item.get("height"), f"{where}['height']"),
                     width=check_size(item.get("width"), f"{where}['width']"))
    return image


def _annotations(item: dict[str, Any], image_id: int, masks: RLEMasks | None,
                 first_id: int) -> list[dict[str, Any]]:
    """The ``annotations`` of one image, ids counting from ``first_id``."""
    labels = np.asarray(to_numpy(item["labels"])).reshape(-1).astype(np.int64)
    n = len(labels)
    crowd = np.asarray(to_numpy(item.get("iscrowd", np.zeros(n)))).reshape(-1).astype(int)
    xywh = _xywh(item)
    if xywh is None and masks is not None:
        xywh = masks.coco_bbox()
    if "area" in item:
        area = np.asarray(to_numpy(item["area"]), dtype=np.float64).reshape(-1)
    else:
        area = masks.area().astype(np.float64) if masks is not None else xywh[:, 2] * xywh[:, 3]
    segs = masks.to_coco() if masks is not None else [None] * n
    anns = []
    for j in range(n):
        ann = {"id": first_id + j, "image_id": image_id, "category_id": int(labels[j]),
               "iscrowd": int(crowd[j]), "area": float(area[j])}
        if xywh is not None:
            ann["bbox"] = [float(v) for v in xywh[j]]
        if segs[j] is not None:
            ann["segmentation"] = segs[j]
        anns.append(ann)
    return anns


def ground_truth_to_coco(ground_truth: Sequence[dict[str, Any]],
                         categories: Sequence[int] | dict[int, str] | None = None
                         ) -> dict[str, Any]:
    """A COCO instances dict (write it with ``json.dump``) from per-image ground-truth dicts.

    Takes the dicts :func:`course.ap.coco_evaluate` takes. Masks are written as compressed
    RLE; ``bbox`` is the given box (xyxy ``boxes`` become ``(x, y, x2 - x, y2 - y)``) or the
    mask's; ``area`` is the given one or the mask's pixel count (box area without masks);
    annotation ids count from 1 (pycocotools counts a match to id 0 as unmatched). Without
    masks, an item's ``height`` and ``width`` (non-negative ints) are written when given.
    ``categories`` default: the labels present.
    """
    images, anns = [], []
    for i, item in enumerate(ground_truth):
        image_id = int(to_numpy(item["image_id"]))
        masks = _as_rle(item["masks"]) if "masks" in item else None
        images.append(_image_entry(item, image_id, masks, f"ground_truth[{i}]"))
        anns += _annotations(item, image_id, masks, len(anns) + 1)
    if categories is None:
        categories = sorted({ann["category_id"] for ann in anns})
    names = categories if isinstance(categories, dict) else {int(c): str(c) for c in categories}
    return {"images": images, "annotations": anns,
            "categories": [{"id": int(c), "name": names[c]} for c in sorted(names)]}


def predictions_to_coco(predictions: Sequence[dict[str, Any]], iou_type: str = "segm"
                        ) -> list[dict[str, Any]]:
    """A COCO results list from per-image prediction dicts (``json.dump`` it).

    For ``"segm"`` only ``segmentation`` is written (no ``bbox``, so that pycocotools sizes
    detections by their masks); for ``"bbox"`` only ``bbox``; for ``"keypoints"`` only
    ``keypoints`` (``3 * K`` numbers), which pycocotools sizes by their extent.
    """
    _check_iou_type(iou_type)
    out = []
    for item in predictions:
        image_id = int(to_numpy(item["image_id"]))
        labels = np.asarray(to_numpy(item["labels"])).reshape(-1).astype(np.int64)
        scores = np.asarray(to_numpy(item["scores"]), dtype=np.float64).reshape(-1)
        if iou_type == "segm":
            shapes = _as_rle(item["masks"]).to_coco()
            key = "segmentation"
        elif iou_type == "keypoints":
            points = np.asarray(to_numpy(item["keypoints"]), dtype=np.float64)
            shapes = points.reshape(len(labels), -1).tolist()
            key = "keypoints"
        else:
            shapes = [[float(v) for v in row] for row in _xywh(item)]
            key = "bbox"
        for label, score, shape in zip(labels.tolist(), scores.tolist(), shapes, strict=True):
            out.append({"image_id": image_id, "category_id": label, key: shape, "score": score})
    return out

