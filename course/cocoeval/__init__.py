"""The engine behind chapter 03's COCO evaluation, in numpy only (no torch at import).

- :mod:`~course.cocoeval.common`: shared helpers (tensor to numpy, ragged arrays, image
  sizes, the one box-IoU formula);
- :mod:`~course.cocoeval.polygons` and :mod:`~course.cocoeval.rle`: COCO polygons and the
  run-length codec (:class:`~course.cocoeval.rle.RLEMasks`);
- :mod:`~course.cocoeval.keypoints`: keypoints and their similarity (OKS), the overlap of
  keypoint evaluation;
- :mod:`~course.cocoeval.json_io`: reading and writing COCO json files;
- :mod:`~course.cocoeval.dataset`: the validated inputs of an evaluation;
- :mod:`~course.cocoeval.engine`: the fast COCOeval (pairs, IoUs, matching, accumulation).

Learners read :mod:`course.ap` (AP from a ranked list, the loop COCOeval) and
:mod:`course.coco` (the formats), which call into these modules.
"""
