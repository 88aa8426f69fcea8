"""COCO panoptic files: the PNG + json pairs that panopticapi's ``pq_compute`` reads, and PQ
over them, with the same numbers.

A data set in the COCO panoptic format is a json file (``annotations``: per image its
``image_id``, ``file_name`` and ``segments_info``; ``categories`` with ``isthing``) and a folder
of PNGs whose colours are segment ids (``R + 256 G + 256**2 B``). The predictions that
detectron2's and mmdetection's panoptic evaluators write are in the same format.
:func:`panoptic_quality_from_files` evaluates them as panopticapi does, including how it reads
the files:

- only ``annotations`` and the ground truth's ``categories`` are read (``images`` is not);
  each image is looked up in its own folder by its own annotation's ``file_name``;
- every ground-truth image needs a prediction (an error otherwise); predictions of other
  images are not evaluated;
- a ground-truth segment's area is its ``area`` in the json (:func:`course.pq.pq_stats`);
- a later ``segments_info`` entry with the same id replaces an earlier one;
- ground-truth pixels whose id ``segments_info`` does not list are neither void nor a
  segment: no prediction matches them, and they are not missed;
- a ground-truth segment whose category is not among ``categories`` is left out of the
  results; a predicted one is an error.

Where panopticapi stops with a ``KeyError`` or ``TypeError``, the errors here name the file,
the image and the segment. Some files panopticapi cannot read are read here: a palette,
grayscale or black-and-white PNG (what PNG optimisers make of an RGB PNG with few colours) is
read by the colours it shows, and a ground-truth segment without ``iscrowd`` is not crowd.
Anything that bends the numbers (json areas that are not the pixel counts, unlisted ids,
repeated ids) is reported in the result's ``notes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from course.cocoeval.common import Progress, no_progress
from course.cocoeval.json_io import read_json
from course.panoptic_format import is_int, rgb_to_id
from course.pq import PQStats, overlap_counts, panoptic_quality, pq_stats

__all__ = ["panoptic_quality_from_files", "read_panoptic_png"]

_AS_COLOURS = ("RGBA", "RGBX", "P", "PA", "L", "LA", "1")
"""Modes read by the colours they show (alpha is left out, as panopticapi leaves it out)."""
_MAX_RGB_ID = 256**3 - 1


# ---------------------------------------------------------------------------------------------
# One PNG
# ---------------------------------------------------------------------------------------------


def read_panoptic_png(path: str | Path) -> Tensor:
    """The segment ids of a COCO panoptic PNG: ``Tensor[H, W]`` int64, ``R + 256 G + 256**2 B``.

    An RGB or RGBA PNG gives what panopticapi reads (alpha is ignored); a palette ('P'),
    grayscale ('L', 'LA') or black-and-white ('1') PNG gives the ids of the colours it shows,
    where panopticapi raises.

    Raises:
        FileNotFoundError: no such file (with a hint when a file of another extension or case
            is there).
        ValueError: not an image, a JPEG (lossy: its colours are not the ids any more), or an
            image of 16-bit grayscale or another mode with no RGB colours.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}{_near_miss(path)}")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file") from None
    with image:
        if image.format == "JPEG":
            raise ValueError(f"{path} is a JPEG: its lossy compression changes the colours, so "
                             "they are no longer segment ids; panoptic maps must be PNGs")
        if image.mode in _AS_COLOURS:
            image = image.convert("RGB")
        elif image.mode != "RGB":
            kind = ("a grayscale image of more than 8 bits" if image.mode[0] in "IF"
                    else "not an RGB image")
            raise ValueError(f"{path} is {kind} (mode {image.mode!r}); COCO panoptic "
                             "PNGs are 8-bit RGB with id = R + 256 G + 256**2 B (write them "
                             "with course.pq.id_to_rgb)")
        rgb = np.asarray(image)  # [H, W, 3] uint8
    return rgb_to_id(rgb)


def _near_miss(path: Path) -> str:
    """`` (found NAME: ...)`` when the folder holds the file under another extension or case."""
    if not path.parent.is_dir():
        return f" (the folder {path.parent} does not exist)"
    stem = path.stem.lower()
    found = sorted(p.name for p in path.parent.iterdir() if p.stem.lower() == stem)
    if not found:
        return ""
    return (f" (the folder has {', '.join(found[:3])}; file_name in the json must name the "
            "PNG exactly, as panopticapi opens it)")


# ---------------------------------------------------------------------------------------------
# The json files
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    data = read_json(path, "the json file")
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} must hold a json object with {', '.join(keys)}, "
                         f"got a {type(data).__name__}")
    for key in keys:
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path} has no list {key!r} (the COCO panoptic format)")
    return dict(data)


def _categories(gt: dict[str, Any], path: Path) -> dict[int, dict[str, Any]]:
    """``{id: category}`` of the ground truth; panopticapi's Things are ``isthing == 1``."""
    categories = {}
    for i, c in enumerate(gt["categories"]):
        if not isinstance(c, Mapping) or not is_int(c.get("id")):
            raise ValueError(f"{path}: categories[{i}] must be a dict with an integer 'id'")
        if "isthing" not in c:
            raise ValueError(f"{path}: category {c['id']} ({c.get('name', 'no name')}) has no "
                             "'isthing'; PQ Things and Stuff need it (panopticapi raises "
                             "KeyError too)")
        categories[int(c["id"])] = {"name": str(c.get("name", c["id"])),
                                    "isthing": c["isthing"] == 1}
    return categories


def _annotation(ann: Any, i: int, path: Path) -> tuple[Any, str, list]:
    """``(image_id, file_name, segments_info)`` of ``annotations[i]``, checked."""
    if not isinstance(ann, Mapping):
        raise ValueError(f"{path}: annotations[{i}] must be a dict")
    for key, kind in (("image_id", object), ("file_name", str), ("segments_info", list)):
        if key not in ann or not isinstance(ann[key], kind):
            raise ValueError(f"{path}: annotations[{i}] (image_id {ann.get('image_id')!r}) "
                             f"has no {key!r}" + ("" if key not in ann else
                                                  f" of type {kind.__name__}"))
    return ann["image_id"], ann["file_name"], ann["segments_info"]


def _pair_images(gt: dict, pred: dict, paths: tuple[Path, Path], notes: _Notes
                 ) -> list[tuple[tuple, tuple]]:
    """Each ground-truth annotation with the prediction of its image (the last one listed)."""
    predictions = {}
    for i, ann in enumerate(pred["annotations"]):
        read = _annotation(ann, i, paths[1])
        if read[0] in predictions:
            notes.add("predicted image listed twice", f"image_id {read[0]!r}")
        predictions[read[0]] = read
    pairs, seen = [], set()
    for i, ann in enumerate(gt["annotations"]):
        read = _annotation(ann, i, paths[0])
        if read[0] not in predictions:
            raise ValueError(f"{paths[1]} has no prediction for image_id {read[0]!r} "
                             f"({read[1]}); every ground-truth image needs one")
        pairs.append((read, predictions[read[0]]))
        seen.add(read[0])
    extra = [k for k in predictions if k not in seen]
    if extra:
        notes.add("predictions of images not in the ground truth (not evaluated)",
                  f"image_id {extra[0]!r}", len(extra))
    return pairs


def _by_id(segments_info: list, where: str, notes: _Notes) -> dict[Any, Mapping]:
    """``{id: entry}``, a later entry replacing an earlier one as in panopticapi."""
    out: dict[Any, Mapping] = {}
    for k, info in enumerate(segments_info):
        if not isinstance(info, Mapping) or "id" not in info or "category_id" not in info:
            raise ValueError(f"{where}: segments_info[{k}] must be a dict with 'id' and "
                             "'category_id'")
        if info["id"] in out:
            notes.add("segment ids listed twice in one image (the last entry is used)",
                      f"{where}, id {info['id']!r}")
        out[info["id"]] = info
    return out


# ---------------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------------


class _Notes:
    """What bent the numbers, by kind: how often, and the first example."""

    def __init__(self) -> None:
        self.seen: dict[str, list] = {}

    def add(self, kind: str, example: str, count: int = 1) -> None:
        self.seen.setdefault(kind, [0, example])[0] += count

    def lines(self) -> list[str]:
        return [f"{n} x {kind} (first: {example})" for kind, (n, example) in self.seen.items()]


def _check_pred(pred: dict, present: np.ndarray, categories: Mapping[int, Any],
                where: str) -> None:
    """panopticapi's checks of a prediction: the same ids in the PNG and in the json, and
    categories that the ground truth knows."""
    odd = [k for k in pred if not is_int(k)]
    if odd:
        raise ValueError(f"{where}: predicted segment ids must be integers, got {odd[0]!r}")
    unlisted = np.setdiff1d(present, np.array(list(pred), dtype=np.int64))
    if len(unlisted):
        raise ValueError(f"{where}: segment id(s) {unlisted[:5].tolist()} are in the predicted "
                         "PNG but not in its segments_info")
    absent = sorted(set(pred) - set(present.tolist()))
    if absent:
        large = (" (ids above 256**3 - 1 cannot be stored in an RGB PNG)"
                 if absent[-1] > _MAX_RGB_ID else "")
        raise ValueError(f"{where}: predicted segment id(s) {absent[:5]} are in segments_info "
                         f"but not in the PNG{large}")
    for sid, info in pred.items():
        if info["category_id"] not in categories:
            raise ValueError(f"{where}: predicted segment {sid} has category_id "
                             f"{info['category_id']!r}, which is not among the ground truth's "
                             "categories")


def _unlisted_to_crowd(gt_ids: Tensor, gt: dict, present: np.ndarray, spare_category: int,
                       where: str, notes: _Notes) -> tuple[Tensor, list]:
    """Ground-truth pixels with an unlisted id become one crowd segment of a category nobody
    predicts: as in panopticapi they then match nothing, are not missed and are not void."""
    segments = list(gt.values())
    unlisted = np.setdiff1d(present, np.array([k for k in gt if is_int(k)], dtype=np.int64))
    if not len(unlisted):
        return gt_ids, segments
    notes.add("ground-truth PNG ids not in segments_info (neither void nor a segment)",
              f"{where}, id(s) {unlisted[:5].tolist()}", len(unlisted))
    spare_id = int(max(present.max(), max((k for k in gt if is_int(k)), default=0))) + 1
    ids = torch.where(torch.isin(gt_ids, torch.from_numpy(unlisted)), spare_id, gt_ids)
    return ids, [*segments, {"id": spare_id, "category_id": spare_category, "iscrowd": 1}]


def _note_gt_fields(gt: dict, present: np.ndarray, pixels: np.ndarray, where: str,
                    notes: _Notes) -> None:
    """Note the ground-truth entries whose ``area`` or ``iscrowd`` bend the numbers."""
    count = dict(zip(present.tolist(), pixels.tolist(), strict=True))
    for sid, info in gt.items():
        area = info.get("area")
        if "iscrowd" not in info:
            notes.add("ground-truth segments without 'iscrowd' (taken as not crowd; "
                      "panopticapi raises KeyError)", f"{where}, segment {sid}")
        if area is None:
            notes.add("ground-truth segments without 'area' (their pixels in the PNG are "
                      "counted; panopticapi raises KeyError)", f"{where}, segment {sid}")
        elif sid in count and area != count[sid]:
            notes.add("ground-truth segments whose json area is not their pixel count in the "
                      "PNG (the json's is used, as in panopticapi)",
                      f"{where}, segment {sid}: area {area}, {count[sid]} pixels")


def _image_stats(gt_ann: tuple, pred_ann: tuple, folders: tuple[Path, Path],
                 categories: Mapping[int, Any], notes: _Notes) -> PQStats:
    """The PQ counts of one image, over the known categories."""
    (image_id, gt_name, gt_info), (_, pred_name, pred_info) = gt_ann, pred_ann
    paths = folders[0] / gt_name, folders[1] / pred_name
    where = f"image_id {image_id!r} ({paths[0]}, {paths[1]})"
    gt_ids, pred_ids = read_panoptic_png(paths[0]), read_panoptic_png(paths[1])
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"{where}: the PNGs differ in size, {list(gt_ids.shape)} and "
                         f"{list(pred_ids.shape)} (H, W)")
    gt, pred = _by_id(gt_info, where, notes), _by_id(pred_info, where, notes)
    gt_present, pred_present, counts = overlap_counts(gt_ids, pred_ids)
    _check_pred(pred, pred_present.numpy(), categories, where)
    _note_gt_fields(gt, gt_present.numpy(), counts[1:].sum(1).numpy(), where, notes)
    used = [c for c in (*categories, *(s["category_id"] for s in gt.values())) if is_int(c)]
    gt_ids, gt_segments = _unlisted_to_crowd(gt_ids, gt, gt_present.numpy(), min(used) - 1,
                                             where, notes)
    try:
        stats = pq_stats(gt_ids, gt_segments, pred_ids,
                         {sid: info["category_id"] for sid, info in pred.items()})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    known = torch.isin(stats.categories, torch.tensor(list(categories), dtype=torch.int64))
    return PQStats(stats.categories[known], stats.iou_sum[known], stats.tp[known],
                   stats.fp[known], stats.fn[known])


# ---------------------------------------------------------------------------------------------
# A data set
# ---------------------------------------------------------------------------------------------


def _folder(folder: str | Path | None, json_path: Path, what: str) -> Path:
    """The PNG folder; by default the json's path without ``.json``, as in panopticapi."""
    folder = Path(folder) if folder is not None else json_path.with_suffix("")
    if not folder.is_dir():
        raise FileNotFoundError(f"the folder of the {what} PNGs does not exist: {folder}")
    return folder


def panoptic_quality_from_files(gt_json: str | Path, pred_json: str | Path,
                                gt_folder: str | Path | None = None,
                                pred_folder: str | Path | None = None, *,
                                progress: Progress | None = None) -> dict[str, Any]:
    """PQ of predicted COCO panoptic files against ground-truth ones, as panopticapi's
    ``pq_compute(gt_json, pred_json, gt_folder, pred_folder)`` computes it.

    Args:
        gt_json, pred_json: the two json files (``annotations``; the ground truth's
            ``categories`` with ``isthing``).
        gt_folder, pred_folder: the PNG folders; by default the json's path without ``.json``
            (COCO's ``panoptic_val2017.json`` beside ``panoptic_val2017/``).
        progress: optional ``progress(items, description)`` wrapper for the loop over images.

    Returns:
        What :func:`course.pq.panoptic_quality` returns (``All``, ``Things``, ``Stuff``,
        ``per_class``), with ``categories`` (``{id: {"name", "isthing"}}``) and ``notes`` (a
        list of lines on what in the files bent the numbers; empty for well-made files).

    Raises:
        FileNotFoundError: a json file, a folder or a PNG is missing.
        ValueError: a file that cannot be evaluated; the message names the file, the image
            and the segment.
    """
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    folders = (_folder(gt_folder, gt_json, "ground-truth"),
               _folder(pred_folder, pred_json, "predicted"))
    gt = _read_json(gt_json, ("annotations", "categories"))
    categories = _categories(gt, gt_json)
    notes = _Notes()
    pairs = _pair_images(gt, _read_json(pred_json, ("annotations",)), (gt_json, pred_json),
                         notes)
    stats = [_image_stats(g, p, folders, categories, notes)
             for g, p in (progress or no_progress)(pairs, "images")]
    things = [c for c, info in categories.items() if info["isthing"]]
    stuffs = [c for c, info in categories.items() if not info["isthing"]]
    result = panoptic_quality(stats, things, stuffs)
    return {**result, "categories": categories, "notes": notes.lines()}
