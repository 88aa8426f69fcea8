"""The command line, ``python -m course COMMAND``; each command has ``--help``.

- ``eval --gt instances.json --results results.json``: prints the 12 lines pycocotools'
  ``COCOeval.summarize()`` prints (10 with ``--iou-type keypoints``, for a person_keypoints
  file and keypoint results), computed by :func:`course.ap.coco_evaluate`;
  ``--per-class`` adds AP per class. On large sets a progress bar runs on stderr while the
  files are read.
- ``pq --gt-json panoptic_val2017.json --pred-json predictions.json``: Panoptic Quality of
  COCO panoptic files (PNG + json), the table panopticapi prints; see :mod:`course.cli_pq`.
- ``train --minutes 10 --out runs/x``: trains the compact Mask R-CNN on the shapes with
  :func:`course.train.train`, saves ``runs/x/model.pt`` and prints the validation summary.
- ``evaluate runs/x``: the COCO summary of a trained model on the validation split.
- ``predict runs/x image.png --out overlay.png``: detections drawn on any RGB image, and a COCO
  results json beside it.
- ``check NOTEBOOK``, ``release --out DIR``, ``student-copies``: the learner's side, see
  :mod:`course.cli_teaching`.

Bad input ends with a one-line error on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from course.cli_model import add_model_commands, run_model_command
from course.cli_pq import add_pq_command, run_pq_command
from course.cli_teaching import TEACHING_COMMANDS, add_teaching_commands, run_teaching_command
from course.cocoeval.evaluate import coco_evaluate  # numpy only: eval starts without torch
from course.cocoeval.json_io import load_ground_truth, load_results

PROGRESS_MIN_ITEMS = 5000
"""A progress bar is shown for loops over at least this many images or annotations."""


def _progress(items: Sequence[Any], description: str) -> Iterable[Any]:
    if len(items) < PROGRESS_MIN_ITEMS:
        return items
    from tqdm import tqdm  # only for large sets: a small eval starts without it

    return tqdm(items, desc=description, total=len(items), file=sys.stderr, leave=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course",
                                     description="Tools of the segmentation course.")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser(
        "eval", help="COCO AP of a results file against a ground-truth file",
        description="COCO AP / AR of detections, the same numbers pycocotools prints.")
    evaluate.add_argument("--gt", required=True, type=Path,
                          help="COCO instances (or person_keypoints) json: images, "
                          "annotations, categories")
    evaluate.add_argument("--results", required=True, type=Path,
                          help="COCO results json (a list of detections)")
    evaluate.add_argument("--iou-type", choices=("segm", "bbox", "keypoints"), default="segm",
                          help="mask IoU (segm, the default), box IoU (bbox) or keypoint "
                          "similarity, OKS (keypoints)")
    evaluate.add_argument("--per-class", action="store_true", help="also print AP per class")
    evaluate.add_argument("--json", action="store_true",
                          help="print the stats (12; 10 for keypoints) and per-class AP as "
                          "JSON, full precision")
    add_pq_command(commands)
    add_model_commands(commands)
    add_teaching_commands(commands)
    return parser


def evaluate_files(gt: Path, results: Path, iou_type: str, per_class: bool,
                   as_json: bool = False) -> str:
    """The text ``python -m course eval`` prints for these files (JSON with ``as_json``)."""
    for flag, path in (("--gt", gt), ("--results", results)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{flag}: No such file: {path}")
    truth = load_ground_truth(gt, iou_type, _progress)
    if truth.zero_ids:
        print(f"warning: {gt} has {truth.zero_ids} annotation(s) with id 0. pycocotools "
              "marks 'unmatched' with id 0, so it counts a detection matched to such an "
              "annotation as a false positive and the object as missed; this evaluation does "
              "not use ids and counts the match. Number annotations from 1 to get the same "
              "numbers from both.", file=sys.stderr)
    if truth.duplicate_ids:
        print(f"warning: {gt} has {truth.duplicate_ids} annotation(s) whose id a later one "
              "repeats. pycocotools keeps one annotation per id, the last, and reads it in "
              "place of each annotation with that id; this evaluation does the same. Give "
              "each annotation its own id to evaluate every one.", file=sys.stderr)
    if truth.dropped:
        print(f"note: {truth.dropped} annotations of {gt} have a category_id that is not "
              "among its categories; they are not evaluated (as in pycocotools)",
              file=sys.stderr)
    predictions, dropped = load_results(results, truth, iou_type, _progress)
    if dropped:
        print(f"note: {dropped} results have a category_id that is not among the ground "
              "truth's categories; they are not evaluated (as in pycocotools)", file=sys.stderr)
    result = coco_evaluate(truth.images, predictions, iou_type, list(truth.categories),
                           progress=_progress)
    if as_json:
        report: dict = {"stats": result.as_dict()}
        if per_class:
            report["per_class_ap"] = {str(k): v for k, v in result.per_class_ap().items()}
        return json.dumps(report)
    text = result.coco_summary()
    if per_class:
        text += "\n\n" + result.summary(truth.categories).split("\n\n", 1)[1]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "eval":
            print(evaluate_files(args.gt, args.results, args.iou_type, args.per_class,
                                 args.json))
        elif args.command == "pq":
            print(run_pq_command(args))
        elif args.command in TEACHING_COMMANDS:
            return run_teaching_command(args)
        else:
            run_model_command(args)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
