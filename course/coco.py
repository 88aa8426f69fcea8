"""COCO's formats, chapter 03's "COCO json and RLE": run-length encoded masks and the json files.

**Run-length encoding (RLE).** COCO stores a binary mask as the lengths of its runs of equal
pixels, read in column-major order (down the first column, then the second, ...):
``counts = [background, foreground, background, ...]``. The first run is always background,
so it is 0 when the first pixel is set, and the counts add up to ``H * W``. In json the counts
are usually compressed to a short string (pycocotools' format). :class:`RLEMasks` holds N
masks of one image size this way and converts them to and from dense masks and
pycocotools' dicts; :func:`rle_encode` and :func:`rle_decode` do the same for lists of dicts.

**Polygons.** A ``segmentation`` may also be a list of polygons; :func:`polygons_to_counts`
rasterises them pixel for pixel as pycocotools does (a polygon of fewer than 3 points covers
nothing, as there).

**Keypoints.** A person_keypoints file gives each person ``3 * K`` numbers ``(x, y, v)``;
:class:`Keypoints` holds them ``[N, K, 3]`` with the boxes and ``num_keypoints``, and
:data:`COCO_KEYPOINT_SIGMAS` are the per-keypoint tolerances of their similarity (OKS).

**Files.** :func:`load_ground_truth` reads a COCO instances file into the per-image dicts that
:func:`course.ap.coco_evaluate` takes; :func:`load_results` reads a results file the way
pycocotools' ``COCO.loadRes`` does (quirks included); :func:`ground_truth_to_coco` and
:func:`predictions_to_coco` write both formats. Annotation ids are not used: pycocotools
counts a match to a ground-truth annotation whose id is 0 as unmatched; ours does not (see
:mod:`course.cocoeval.json_io`).

This module is the chapter's door to them; the code lives in the :mod:`course.cocoeval`
subpackage: :mod:`~course.cocoeval.rle` (the codec), :mod:`~course.cocoeval.polygons` and
:mod:`~course.cocoeval.json_io` (reading and writing), all numpy only.
"""

from __future__ import annotations

from course.cocoeval.common import Progress, no_progress, ragged_arange
from course.cocoeval.json_io import (
    CocoGroundTruth,
    ground_truth_to_coco,
    load_ground_truth,
    load_results,
    predictions_to_coco,
)
from course.cocoeval.keypoints import COCO_KEYPOINT_SIGMAS, Keypoints
from course.cocoeval.polygons import polygons_to_counts
from course.cocoeval.rle import (
    RLEMasks,
    counts_to_string,
    rle_decode,
    rle_encode,
    string_to_counts,
)

__all__ = [
    "COCO_KEYPOINT_SIGMAS",
    "CocoGroundTruth",
    "Keypoints",
    "Progress",
    "RLEMasks",
    "counts_to_string",
    "ground_truth_to_coco",
    "load_ground_truth",
    "load_results",
    "no_progress",
    "polygons_to_counts",
    "predictions_to_coco",
    "ragged_arange",
    "rle_decode",
    "rle_encode",
    "string_to_counts",
]
