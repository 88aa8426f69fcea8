"""The fast ``COCOeval``: :func:`coco_evaluate` checks the inputs
(:func:`course.cocoeval.dataset.prepare`), then hands every image and class at once to
:mod:`course.cocoeval.engine`. Chapter 03 teaches the same computation in loops
(:func:`course.ap.coco_evaluate_reference`); :mod:`course.ap` re-exports this function.

numpy only: ``python -m course eval`` runs without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from course.cocoeval import engine
from course.cocoeval.common import Progress
from course.cocoeval.dataset import prepare, select
from course.cocoeval.result import COCOParams, COCOResult, default_params, make_result


def coco_evaluate(ground_truth: Sequence[Any], predictions: Sequence[Any],
                  iou_type: str = "segm", categories: Sequence[int] | None = None,
                  params: COCOParams | None = None, progress: Progress | None = None
                  ) -> COCOResult:
    """COCO AP and AR of ``predictions`` against ``ground_truth``, equal to pycocotools' COCOeval.

    Args:
        ground_truth: one dict per image, every image to evaluate (also those without
            objects): ``image_id`` (int), ``labels [N]`` (class ids), ``masks [N, H, W]``
            (bool or 0/1, or :class:`course.coco.RLEMasks`) for ``"segm"``, or ``boxes
            [N, 4]`` ``(x1, y1, x2, y2)`` (or ``bbox [N, 4]`` COCO ``(x, y, w, h)``) for
            ``"bbox"``; for ``"keypoints"``, ``keypoints [N, K, 3]`` ``(x, y, v)`` (or COCO's
            flat ``[N, 3 * K]``), boxes as for ``"bbox"`` (an object without labelled
            keypoints is measured against its box) and optional ``num_keypoints [N]``
            (default: the count of ``v > 0``; 0 marks an object that is ignored); optional
            ``iscrowd [N]`` (default 0) and ``area [N]`` (default: the mask's pixel count,
            the box's area without masks). Tensors or numpy arrays. An
            :class:`course.structures.Instances` with its ``image_id`` set stands for its dict.
        predictions: one dict (or ``Instances``) per image with detections (images may be
            left out):
            ``image_id``, ``labels [P]``, ``scores [P]``, and ``masks``, ``boxes`` / ``bbox``
            or ``keypoints`` as above; optional ``area [P]`` (default as COCO's ``loadRes``:
            the mask's pixel count, the box's ``w * h``, or the area of the keypoints'
            extent).
        iou_type: ``"segm"`` (mask IoU), ``"bbox"`` (box IoU) or ``"keypoints"`` (OKS, with
            :meth:`COCOParams.for_keypoints`).
        categories: the class ids to evaluate, the K axis of the result in ascending order.
            Default: the ground truth's classes; detections of other classes are then skipped
            (they have nothing to match, and COCOeval skips categories it does not evaluate)
            and counted in ``skipped_predictions``. Given explicitly, a label outside it is a
            ValueError.
        params: :class:`COCOParams` (COCO's defaults; :meth:`COCOParams.for_keypoints` for
            keypoints).
        progress: optional ``progress(items, description)`` wrapper for the per-image loops
            (e.g. a tqdm bar).

    Returns:
        COCOResult (12 stats; 10 for keypoints). Without any detections, every class with
        objects has AP 0 (where pycocotools' ``loadRes([])`` raises an IndexError).

    Raises:
        ValueError / TypeError naming the field: missing or mis-shaped fields, masks of
        another size than the image's ground truth, predictions for an image not in the
        ground truth, NaN scores, labels outside an explicit ``categories``, parameters that
        do not fit ``iou_type``.
    """
    params = params or default_params(iou_type)
    params.check_iou_type(iou_type)
    dataset = prepare(ground_truth, predictions, iou_type, categories, progress)
    dataset = select(dataset, params.image_ids, params.use_cats)
    precision, recall = engine.evaluate(dataset, params)  # every image and class at once
    return make_result(dataset, precision, recall, params)
