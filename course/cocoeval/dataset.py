"""The inputs of COCO evaluation, validated once for both evaluators.

:func:`prepare` checks the per-image dicts that :func:`course.ap.coco_evaluate` and
:func:`course.ap.coco_evaluate_reference` take (ground truth and predictions; numpy arrays,
torch tensors or :class:`course.structures.Instances`) and brings them to one form, a
:class:`Dataset`: per image, its :class:`Objects` (labels, areas, crowd flags, scores and
masks as :class:`~course.cocoeval.rle.RLEMasks`, boxes as COCO ``(x, y, w, h)``, or
:class:`~course.cocoeval.keypoints.Keypoints`). Every
error names the field (``predictions[3]['scores']``). Chapter 03 describes the dicts.

numpy only: tensors are converted with :func:`course.cocoeval.common.to_numpy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from course.cocoeval.common import Progress, as_dense_masks, no_progress, to_numpy
from course.cocoeval.keypoints import Keypoints, as_keypoints, keypoint_extent
from course.cocoeval.rle import RLEMasks

IOU_TYPES = ("segm", "bbox", "keypoints")


@dataclass
class Objects:
    """The objects (ground truth or detections) of one image, validated.

    ``geometry`` is :class:`RLEMasks` for segm, ``[N, 4]`` COCO ``(x, y, w, h)`` for bbox,
    :class:`Keypoints` for keypoints. ``crowd`` is all False and ``scores`` all 0 where they
    do not apply. ``ignore`` is COCOeval's ``gt['ignore']``: crowd regions, and for keypoints
    also ground truth whose ``num_keypoints`` is 0 (such an object is ignored, yet unlike a
    crowd region it absorbs one detection at most).
    """

    labels: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    scores: np.ndarray
    geometry: Any
    ignore: np.ndarray


@dataclass
class Image:
    """One image: its id, its size (``None`` for boxes without masks) and both sides' objects."""

    image_id: int
    size: tuple[int, int] | None
    gt: Objects
    dt: Objects


@dataclass
class Dataset:
    """Every image to evaluate, the evaluated class ids, and the detections left out."""

    images: list[Image]  # ascending image id
    categories: np.ndarray  # [K] ascending
    iou_type: str
    skipped: int


def _vector(value: Any, n: int, where: str, dtype: type) -> np.ndarray:
    arr = np.asarray(to_numpy(value))
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{where} must have shape [{n}] (one per object), got {list(arr.shape)}")
    if dtype is bool:
        if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{where} must hold 0/1 or booleans")
        return arr.astype(bool)
    if dtype is np.int64:
        if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and
                                                 np.array_equal(arr, np.round(arr))):
            raise ValueError(f"{where} must hold integer class ids, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{where} must be finite, found NaN or inf")
    return out


def _image_id(item: Any, where: str) -> int:
    if not isinstance(item, dict):
        raise TypeError(f"{where} must be a dict, got {type(item).__name__}")
    if "image_id" not in item:
        raise ValueError(f"{where} has no 'image_id'")
    value = to_numpy(item["image_id"])
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{where}['image_id'] must be an int, got {value!r}")
    return int(value)


def _geometry(item: dict, n: int, where: str, iou_type: str, size: tuple[int, int] | None,
              is_gt: bool) -> tuple[Any, tuple[int, int] | None]:
    """Masks as RLEMasks (segm), boxes as COCO xywh (bbox) or Keypoints (keypoints), and the
    image size seen."""
    if iou_type == "keypoints":
        return _keypoints(item, n, where, is_gt), size
    if iou_type != "segm":
        return _boxes(item, n, where, "iou_type='bbox' needs boxes [N, 4] xyxy, or 'bbox' "
                      "[N, 4] COCO xywh; course.boxes.masks_to_boxes makes them from masks"), size
    if "masks" not in item:
        raise ValueError(f"{where} has no 'masks' (iou_type='segm' needs masks; "
                         "use iou_type='bbox' for boxes)")
    masks = item["masks"]
    if not isinstance(masks, RLEMasks):
        masks = RLEMasks.from_dense(as_dense_masks(masks, f"{where}['masks']"))
    if len(masks) != n:
        raise ValueError(f"{where}['masks'] holds {len(masks)} masks but 'labels' {n}")
    seen = (masks.height, masks.width)
    if size is not None and seen != size:
        raise ValueError(f"{where}['masks'] are {seen[0]}x{seen[1]} (H x W), but the "
                         f"ground truth of image {item['image_id']} is "
                         f"{size[0]}x{size[1]}")
    return masks, seen


def _boxes(item: dict, n: int, where: str, needed: str) -> np.ndarray:
    """``boxes [N, 4]`` (xyxy) or ``bbox [N, 4]`` (COCO xywh) as COCO xywh, checked."""
    if "bbox" in item:
        xywh = np.asarray(to_numpy(item["bbox"]), dtype=np.float64)
        key = "bbox"
    elif "boxes" in item:
        b = np.asarray(to_numpy(item["boxes"]), dtype=np.float64)
        key = "boxes"
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{where}['boxes'] must have shape [{n}, 4] as (x1, y1, x2, y2), "
                             f"got {list(b.shape)}")
        xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    else:
        raise ValueError(f"{where} has no 'boxes' ({needed})")
    if xywh.ndim != 2 or xywh.shape != (n, 4):
        raise ValueError(f"{where}['{key}'] must have shape [{n}, 4], got {list(xywh.shape)}")
    if not np.isfinite(xywh).all() or (xywh[:, 2:] < 0).any():
        raise ValueError(f"{where}['{key}'] must be finite with x2 >= x1 and y2 >= y1")
    return xywh


def _keypoints(item: dict, n: int, where: str, is_gt: bool) -> Keypoints:
    """``keypoints [N, K, 3]``; for ground truth also its boxes and ``num_keypoints``."""
    if "keypoints" not in item:
        raise ValueError(f"{where} has no 'keypoints' (iou_type='keypoints' needs keypoints "
                         "[N, K, 3] as (x, y, visibility))")
    points = as_keypoints(to_numpy(item["keypoints"]), n, f"{where}['keypoints']")
    boxes = np.zeros((n, 4))
    if is_gt:  # an object without labelled keypoints is measured against its box
        boxes = _boxes(item, n, where, "iou_type='keypoints' needs the ground truth's boxes "
                       "[N, 4] xyxy, or 'bbox' [N, 4] COCO xywh")
    labelled = _vector(item["num_keypoints"], n, f"{where}['num_keypoints']", float) \
        if is_gt and "num_keypoints" in item else (points[:, :, 2] > 0).sum(axis=1)
    return Keypoints(points, boxes, labelled)


def _default_area(item: dict, geometry: Any, where: str, iou_type: str,
                  is_gt: bool) -> np.ndarray:
    """The area when none is given: the mask's pixel count (also a box's or keypoints'
    ground truth with masks), a box's ``w * h``, a keypoint detection's extent (loadRes)."""
    if iou_type == "segm":
        return geometry.area().astype(np.float64)
    if is_gt and "masks" in item:  # COCO's ground-truth area is the mask's, also for boxes
        masks = item["masks"]
        return (masks if isinstance(masks, RLEMasks) else RLEMasks.from_dense(
            as_dense_masks(masks, f"{where}['masks']"))).area().astype(np.float64)
    if iou_type == "keypoints":
        return geometry.boxes[:, 2] * geometry.boxes[:, 3] if is_gt else \
            keypoint_extent(geometry.points)[0]
    return geometry[:, 2] * geometry[:, 3]


def _objects(item: dict, where: str, iou_type: str, size: tuple[int, int] | None,
             is_gt: bool) -> tuple[Objects, tuple[int, int] | None]:
    if "labels" not in item:
        raise ValueError(f"{where} has no 'labels'")
    labels = np.asarray(to_numpy(item["labels"]))
    if labels.ndim != 1:
        raise ValueError(f"{where}['labels'] must have shape [N], got {list(labels.shape)}")
    n = len(labels)
    labels = _vector(labels, n, f"{where}['labels']", np.int64)
    geometry, size = _geometry(item, n, where, iou_type, size, is_gt)
    if is_gt:
        crowd = _vector(item["iscrowd"], n, f"{where}['iscrowd']", bool) if "iscrowd" in item \
            else np.zeros(n, dtype=bool)
        scores = np.zeros(n)
    else:
        if "scores" not in item:
            raise ValueError(f"{where} has no 'scores' (each detection needs a confidence)")
        scores = np.asarray(to_numpy(item["scores"]), dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"{where}['scores'] must have shape [{n}], got {list(scores.shape)}")
        if np.isnan(scores).any():
            raise ValueError(f"{where}['scores'][{int(np.argmax(np.isnan(scores)))}] is NaN")
        crowd = np.zeros(n, dtype=bool)
    area = _vector(item["area"], n, f"{where}['area']", float) if "area" in item else \
        _default_area(item, geometry, where, iou_type, is_gt)
    ignore = crowd | (geometry.num_keypoints == 0) if iou_type == "keypoints" and is_gt \
        else crowd
    return Objects(labels, area, crowd, scores, geometry, ignore), size


def _empty_objects(iou_type: str, size: tuple[int, int] | None) -> Objects:
    if iou_type == "segm":
        h, w = size if size is not None else (0, 0)
        geometry = RLEMasks.unchecked(h, w, np.zeros(0, dtype=np.int64),
                                     np.zeros(1, dtype=np.int64))
    elif iou_type == "keypoints":
        geometry = Keypoints.concatenate([])
    else:
        geometry = np.zeros((0, 4))
    return Objects(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool),
                   np.zeros(0), geometry, np.zeros(0, dtype=bool))


def _keep(objects: Objects, keep: np.ndarray) -> Objects:
    if keep.all():
        return objects
    geometry = objects.geometry.select(np.flatnonzero(keep)) \
        if isinstance(objects.geometry, RLEMasks) else objects.geometry[keep]
    return Objects(objects.labels[keep], objects.area[keep], objects.crowd[keep],
                   objects.scores[keep], geometry, objects.ignore[keep])


def _as_item(item: Any) -> Any:
    """An :class:`~course.structures.Instances` (with its ``image_id``) as the per-image dict;
    recognised by its ``as_dict`` method, so that torch need not be imported here."""
    return item.as_dict() if not isinstance(item, dict) and hasattr(item, "as_dict") else item


def prepare(ground_truth: Sequence[Any], predictions: Sequence[Any], iou_type: str,
            categories: Sequence[int] | None, progress: Progress | None = None) -> Dataset:
    """Validate both lists and bring them to one :class:`Dataset`.

    The arguments are :func:`course.ap.coco_evaluate`'s (see there); the images come out in
    ascending id, and detections of classes outside the evaluated ones are left out (counted
    in ``skipped``).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be 'segm', 'bbox' or 'keypoints', got {iou_type!r}")
    progress = progress or no_progress
    ground_truth = [_as_item(x) for x in ground_truth]
    predictions = [_as_item(x) for x in predictions]
    images = _ground_truth_images(ground_truth, iou_type, progress)
    _add_predictions(images, predictions, iou_type, progress)
    ordered = [images[k] for k in sorted(images)]
    if iou_type == "keypoints":
        _check_keypoint_counts(ordered)
    gt_labels = np.concatenate([im.gt.labels for im in ordered] + [np.zeros(0, np.int64)])
    dt_labels = np.concatenate([im.dt.labels for im in ordered] + [np.zeros(0, np.int64)])
    if categories is None:
        cats = np.unique(gt_labels)
    else:
        cats = np.unique(np.asarray([int(c) for c in categories], dtype=np.int64))
        if not np.isin(gt_labels, cats).all() or not np.isin(dt_labels, cats).all():
            _raise_unknown_label(cats, ground_truth, predictions)
    keep = np.isin(dt_labels, cats)
    if not keep.all():
        bounds = np.cumsum([0] + [len(im.dt.labels) for im in ordered])
        for i, im in enumerate(ordered):
            im.dt = _keep(im.dt, keep[bounds[i]:bounds[i + 1]])
    return Dataset(ordered, cats.astype(np.int64), iou_type, int((~keep).sum()))


def _check_keypoint_counts(images: list[Image]) -> None:
    """Every object of every image has as many keypoints as the first one found."""
    first = None  # (K, side, image id) of the first objects seen
    for im in images:
        for side, objects in (("ground truth", im.gt), ("predictions", im.dt)):
            if not len(objects.labels):
                continue
            k = objects.geometry.points.shape[1]
            if first is None:
                first = (k, side, im.image_id)
            elif k != first[0]:
                raise ValueError(f"the {side} of image {im.image_id} have {k} keypoints per "
                                 f"object, but the {first[1]} of image {first[2]} have "
                                 f"{first[0]}")


def _ground_truth_images(ground_truth: list[Any], iou_type: str, progress: Progress
                         ) -> dict[int, Image]:
    """Each ground-truth image by id, with its objects and (for now) no detections."""
    images: dict[int, Image] = {}
    for i, item in enumerate(progress(ground_truth, "ground truth")):
        where = f"ground_truth[{i}]"
        image_id = _image_id(item, where)
        if image_id in images:
            raise ValueError(f"{where}['image_id'] = {image_id} appears twice in ground_truth")
        gt, size = _objects(item, where, iou_type, None, is_gt=True)
        images[image_id] = Image(image_id, size, gt, _empty_objects(iou_type, size))
    return images


def _add_predictions(images: dict[int, Image], predictions: list[Any], iou_type: str,
                     progress: Progress) -> None:
    """Set the detections of each image that has predictions (each image at most once)."""
    seen: set[int] = set()
    for i, item in enumerate(progress(predictions, "predictions")):
        where = f"predictions[{i}]"
        image_id = _image_id(item, where)
        if image_id not in images:
            raise ValueError(f"{where}['image_id'] = {image_id} is not an image of the ground "
                             "truth (every image evaluated must be listed there, even without "
                             "objects)")
        if image_id in seen:
            raise ValueError(f"{where}['image_id'] = {image_id} appears twice in predictions")
        seen.add(image_id)
        images[image_id].dt, _ = _objects(item, where, iou_type, images[image_id].size,
                                          is_gt=False)


def _raise_unknown_label(cats: np.ndarray, ground_truth: Sequence[dict],
                         predictions: Sequence[dict]) -> None:
    """With an explicit category list, a label outside it is an error (not silently dropped)."""
    for name, items in (("ground_truth", ground_truth), ("predictions", predictions)):
        for i, item in enumerate(items):
            labels = np.asarray(to_numpy(item["labels"])).reshape(-1)
            bad = ~np.isin(labels, cats)
            if bad.any():
                raise ValueError(
                    f"{name}[{i}]['labels'] holds {int(labels[np.argmax(bad)])}, which is not in "
                    f"categories {cats.tolist()}; add it to categories, or leave categories=None "
                    "to evaluate the ground truth's classes and skip other detections (as "
                    "COCOeval skips categories it does not evaluate)")


def _by_category(objects: Objects) -> Objects:
    """The objects in ascending category, in their own order within each, all of class -1."""
    order = np.argsort(objects.labels, kind="stable")
    geometry = objects.geometry.select(order) if isinstance(objects.geometry, RLEMasks) \
        else objects.geometry[order]
    return Objects(np.full(len(order), -1, dtype=np.int64), objects.area[order],
                   objects.crowd[order], objects.scores[order], geometry, objects.ignore[order])


def select(dataset: Dataset, image_ids: Sequence[int] | None, use_cats: bool) -> Dataset:
    """COCOeval's ``params.imgIds`` and ``params.useCats`` applied to a prepared dataset.

    ``image_ids``: only these images are evaluated (ids that are not images of the ground
    truth are passed over, as COCOeval does); ``None`` keeps all. ``use_cats=False`` pools
    the classes into one, ``-1``, as COCOeval does: each image's objects and detections are
    put in ascending class (the order COCOeval lists them in, which decides ties), then any
    detection may match any object. The evaluated classes still choose what takes part.
    """
    images = dataset.images
    if image_ids is not None:
        wanted = {int(i) for i in image_ids}
        images = [im for im in images if im.image_id in wanted]
    categories = dataset.categories
    if not use_cats:
        images = [Image(im.image_id, im.size, _by_category(im.gt), _by_category(im.dt))
                  for im in images]
        categories = np.array([-1], dtype=np.int64)
    return Dataset(images, categories, dataset.iou_type, dataset.skipped)

