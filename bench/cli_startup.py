"""``python -m course eval`` against a pycocotools script, on a small file, in one run.

    .venv/bin/python bench/cli_startup.py [--repeats 7]

On a small file the time of an evaluation is mostly the start of the interpreter and its
imports. Both commands run in fresh processes on the same two json files (12 images of
128x128 made by ``course.data``), ``segm`` then ``bbox``: ours is ``python -m course eval``,
the reference a five-line script that imports pycocotools, loads both files, evaluates and
prints the summary. Both print the same 12 lines (checked first). Median of the repeats, the
two taking turns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from course.boxes import masks_to_boxes
from course.coco import ground_truth_to_coco, predictions_to_coco
from course.data import make_scene, simulate_predictions

PYCOCOTOOLS = """
import sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1]); evaluator = COCOeval(gt, gt.loadRes(sys.argv[2]), sys.argv[3])
evaluator.evaluate(); evaluator.accumulate(); evaluator.summarize()
"""


def write_files(folder: Path) -> tuple[Path, Path, Path]:
    g = torch.Generator().manual_seed(0)
    gt, preds = [], []
    for i in range(12):
        scene = make_scene(128, 128, generator=g)
        pred = simulate_predictions(scene, generator=g)
        gt.append({"image_id": i + 1, "masks": scene.masks, "labels": scene.labels})
        preds.append({"image_id": i + 1, "masks": pred.masks, "labels": pred.labels,
                      "scores": pred.scores, "boxes": masks_to_boxes(pred.masks)})
    paths = folder / "instances.json", folder / "segm.json", folder / "bbox.json"
    paths[0].write_text(json.dumps(ground_truth_to_coco(gt, [1, 2, 3])))
    paths[1].write_text(json.dumps(predictions_to_coco(preds, "segm")))
    paths[2].write_text(json.dumps(predictions_to_coco(preds, "bbox")))
    return paths


def run(command: list[str]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, [line for line in done.stdout.splitlines() if "Average" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gt, *results = write_files(Path(tmp))
        print(f"{'file':<12} {'ours':>8} {'pycocotools':>12} {'ratio':>7}")
        for iou_type, res in zip(("segm", "bbox"), results, strict=True):
            ours = [sys.executable, "-m", "course", "eval", "--gt", str(gt), "--results",
                    str(res), "--iou-type", iou_type]
            ref = [sys.executable, "-c", PYCOCOTOOLS, str(gt), str(res), iou_type]
            assert run(ours)[1] == run(ref)[1], "the two print different summaries"
            times: dict[str, list[float]] = {"ours": [], "ref": []}
            for _ in range(args.repeats):
                times["ours"].append(run(ours)[0])
                times["ref"].append(run(ref)[0])
            a, b = statistics.median(times["ours"]), statistics.median(times["ref"])
            print(f"{iou_type + ' (12 imgs)':<12} {a:7.2f}s {b:11.2f}s {b / a:6.2f}x")
    print(f"median of {args.repeats} fresh processes each; ratio above 1: ours starts faster")


if __name__ == "__main__":
    main()
