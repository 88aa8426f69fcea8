"""The model's commands of ``python -m course``: ``train``, ``evaluate`` and ``predict``.

A run folder holds ``model.pt`` (weights, model config, training config, loss history and the
data settings) and ``history.json``; ``evaluate`` and ``predict`` need nothing else. This
module is the commands' parser; what they do is in :mod:`course.cli_model_run`, imported only
when one of them runs (it imports torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate`` and ``predict`` to the command parser."""
    t = commands.add_parser("train", help="train the compact Mask R-CNN on the shapes",
                            description="Train from scratch on generated shapes, then print "
                            "the COCO summary on the 200 validation images.")
    budget = t.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="training time (evaluation not counted)")
    budget.add_argument("--steps", type=int, help="number of SGD steps")
    t.add_argument("--out", type=Path, required=True, help="run folder to write")
    data = t.add_mutually_exclusive_group()
    data.add_argument("--overlap", action="store_true", help="shapes occlude each other")
    data.add_argument("--panoptic", action="store_true",
                      help="panoptic scenes (sky, grass, water and shapes); adds a semantic head")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=0.02)
    t.add_argument("--pooler", choices=("align", "pool"), default="align",
                   help="ROIAlign (default) or RoIPool in the heads")
    e = commands.add_parser("evaluate", help="COCO AP of a trained model on the validation set",
                            description="The COCO summary of a run's model on the 200 "
                            "validation images of the data it was trained on.")
    e.add_argument("run", type=Path, help="run folder (or a model.pt)")
    e.add_argument("--device", default=None)
    e.add_argument("--json", action="store_true", help="print the 12 stats as JSON")
    p = commands.add_parser("predict", help="detect objects in an image",
                            description="Draw a trained model's detections on an RGB image "
                            "and write them as a COCO results json. Classes are named by the "
                            "checkpoint's class_names (model.save(path, class_names=[...])), "
                            "else as the shapes' (3 classes) or by their ids.")
    p.add_argument("run", type=Path, help="run folder (or a model.pt)")
    p.add_argument("image", type=Path, help="an image file (PNG, JPEG, ...)")
    p.add_argument("--out", type=Path, required=True, help="the picture to write (PNG)")
    p.add_argument("--results", type=Path, help="COCO results json (default: OUT with .json)")
    p.add_argument("--min-score", type=float, default=0.5, help="draw detections above this")


def run_model_command(args: argparse.Namespace) -> None:
    """Carry out ``train``, ``evaluate`` or ``predict``."""
    from course.cli_model_run import run_model_command as run

    run(args)
