"""The ``pq`` command of ``python -m course``: Panoptic Quality of COCO panoptic files.

``python -m course pq --gt-json panoptic_val2017.json --pred-json predictions.json`` prints
the table panopticapi's ``pq_compute`` prints (PQ, SQ, RQ in percent and N, for All, Things
and Stuff), computed by :func:`course.panoptic_files.panoptic_quality_from_files`. The PNG
folders default to the json paths without ``.json``, as in panopticapi, whose option names
(``--gt_json_file``, ``--pred_json_file``, ``--gt_folder``, ``--pred_folder``) work too.
``--per-class`` adds a line per category, ``--json`` prints everything at full precision.
What in the files bent the numbers is noted on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PROGRESS_MIN_IMAGES = 500
"""A progress bar is shown on stderr for at least this many images."""


def add_pq_command(commands: argparse._SubParsersAction) -> None:
    """Add ``pq`` to the command parser."""
    pq = commands.add_parser(
        "pq", help="Panoptic Quality of COCO panoptic files (PNG + json)",
        description="PQ, SQ and RQ of predicted COCO panoptic files against ground-truth "
        "ones, the numbers panopticapi's pq_compute gives.")
    pq.add_argument("--gt-json", "--gt_json_file", dest="gt_json", required=True, type=Path,
                    help="ground-truth json (annotations, categories with isthing)")
    pq.add_argument("--pred-json", "--pred_json_file", dest="pred_json", required=True,
                    type=Path, help="predictions json (annotations)")
    pq.add_argument("--gt-folder", "--gt_folder", dest="gt_folder", type=Path, default=None,
                    help="ground-truth PNGs (default: GT_JSON without .json)")
    pq.add_argument("--pred-folder", "--pred_folder", dest="pred_folder", type=Path,
                    default=None, help="predicted PNGs (default: PRED_JSON without .json)")
    pq.add_argument("--per-class", action="store_true", help="also print PQ per category")
    pq.add_argument("--json", action="store_true", help="print the results as JSON")


def _progress(items: Sequence[Any], description: str) -> Iterable[Any]:
    if len(items) < PROGRESS_MIN_IMAGES:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, total=len(items), file=sys.stderr, leave=False)


def per_class_table(result: dict[str, Any]) -> str:
    """One line per category: id, name, thing / stuff, PQ, SQ, RQ (percent), TP, FP, FN."""
    lines = [f"{'id':>5s} {'category':24s} {'kind':5s} {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} "
             f"{'TP':>6s} {'FP':>6s} {'FN':>6s}"]
    for c, info in sorted(result["categories"].items()):
        r = result["per_class"][c]
        lines.append(f"{c:5d} {info['name'][:24]:24s} {'thing' if info['isthing'] else 'stuff'} "
                     f"{100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  {100 * r['rq']:5.1f} "
                     f"{r['tp']:6d} {r['fp']:6d} {r['fn']:6d}")
    return "\n".join(lines)


def run_pq_command(args: argparse.Namespace) -> str:
    """The text ``python -m course pq`` prints; notes go to stderr."""
    from course.panoptic_files import panoptic_quality_from_files
    from course.pq import pq_table

    result = panoptic_quality_from_files(args.gt_json, args.pred_json, args.gt_folder,
                                         args.pred_folder, progress=_progress)
    for line in result["notes"]:
        print(f"note: {line}", file=sys.stderr)
    if args.json:
        report = {name: result[name] for name in ("All", "Things", "Stuff")}
        report["per_class"] = {str(c): v for c, v in result["per_class"].items()}
        return json.dumps(report)
    text = pq_table(result)
    if args.per_class:
        text += "\n\n" + per_class_table(result)
    return text
