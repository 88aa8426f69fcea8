"""python -m course eval prints what pycocotools prints, and fails cleanly on bad files."""

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course import cli
from course.boxes import masks_to_boxes
from course.coco import ground_truth_to_coco, predictions_to_coco
from course.data import make_scene, simulate_predictions

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    g = torch.Generator().manual_seed(0)
    gt, preds = [], []
    for i in range(6):
        scene = make_scene(48, 48, num_objects=(2, 6), size_range=(6.0, 24.0), generator=g)
        pred = simulate_predictions(scene, false_positives=(0, 2), generator=g)
        gt.append({"image_id": i + 1, "masks": scene.masks, "labels": scene.labels,
                   "iscrowd": torch.rand(len(scene), generator=g) < 0.2,
                   "boxes": scene.boxes})
        preds.append({"image_id": i + 1, "masks": pred.masks, "labels": pred.labels,
                      "scores": pred.scores, "boxes": masks_to_boxes(pred.masks)})
    paths = {"gt": tmp / "instances.json"}
    paths["gt"].write_text(json.dumps(ground_truth_to_coco(gt, {1: "circle", 2: "square",
                                                                3: "triangle"})))
    for iou_type in ("segm", "bbox"):
        paths[iou_type] = tmp / f"results_{iou_type}.json"
        paths[iou_type].write_text(json.dumps(predictions_to_coco(preds, iou_type)))
    return paths


def printed_by_pycocotools(gt_path, results_path, iou_type):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco = COCO(str(gt_path))
        evaluator = COCOeval(coco, coco.loadRes(str(results_path)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        start = out.tell()
        evaluator.summarize()
    return out.getvalue()[start:]


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_prints_the_lines_pycocotools_prints(files, iou_type, capsys):
    assert cli.main(["eval", "--gt", str(files["gt"]), "--results", str(files[iou_type]),
                     "--iou-type", iou_type]) == 0
    out = capsys.readouterr().out
    assert out == printed_by_pycocotools(files["gt"], files[iou_type], iou_type)
    assert len(out.splitlines()) == 12


def test_runs_as_a_module_with_a_per_class_table(files):
    done = subprocess.run([sys.executable, "-m", "course", "eval", "--gt", str(files["gt"]),
                           "--results", str(files["segm"]), "--per-class"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")
    assert any(line.startswith("circle") for line in lines)
    assert done.stderr == ""  # small sets: no progress bar


def test_progress_bar_on_large_sets(files, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_MIN_ITEMS", 1)
    assert cli.main(["eval", "--gt", str(files["gt"]), "--results", str(files["segm"])]) == 0
    captured = capsys.readouterr()
    assert "reading ground truth" in captured.err and len(captured.out.splitlines()) == 12


def test_skipped_categories_are_reported(files, tmp_path, capsys):
    results = json.loads(files["segm"].read_text())
    results[0]["category_id"] = 42
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    assert cli.main(["eval", "--gt", str(files["gt"]), "--results", str(path)]) == 0
    captured = capsys.readouterr()
    assert "1 results have a category_id" in captured.err
    assert captured.out == printed_by_pycocotools(files["gt"], path, "segm")


@pytest.mark.parametrize("breakage, message", [
    (lambda gt, res: gt.pop("annotations"), "no 'annotations'"),
    (lambda gt, res: res[0].update(image_id=999), r"results\[0\]\['image_id'\] = 999"),
    (lambda gt, res: res[0]["segmentation"].update(counts="o"), "not a valid compressed RLE"),
])
def test_bad_files_end_with_one_line_on_stderr(files, tmp_path, breakage, message, capsys):
    gt, res = json.loads(files["gt"].read_text()), json.loads(files["segm"].read_text())
    breakage(gt, res)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    status = cli.main(["eval", "--gt", str(tmp_path / "gt.json"), "--results",
                       str(tmp_path / "res.json")])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and len(captured.err.strip().splitlines()) == 1
    assert re.search(message, captured.err)


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path, capsys):
    assert cli.main(["eval", "--gt", str(tmp_path / "none.json"), "--results", "x.json"]) == 2
    assert "No such file" in capsys.readouterr().err


def test_no_results_give_zero_ap(files, tmp_path, capsys):
    (tmp_path / "empty.json").write_text("[]")
    assert cli.main(["eval", "--gt", str(files["gt"]), "--results",
                     str(tmp_path / "empty.json")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("= 0.000")


def test_json_gives_the_twelve_stats_at_full_precision_and_per_class_ap(files, capsys):
    assert cli.main(["eval", "--gt", str(files["gt"]), "--results", str(files["segm"]),
                     "--json", "--per-class"]) == 0
    report = json.loads(capsys.readouterr().out)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(files["gt"]))
        evaluator = COCOeval(coco, coco.loadRes(str(files["segm"])), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert list(report["stats"]) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                                     "AR100", "ARs", "ARm", "ARl"]
    assert max(abs(a - b) for a, b in zip(report["stats"].values(), evaluator.stats,
                                          strict=True)) <= 1e-12
    assert set(report["per_class_ap"]) == {"1", "2", "3"}


def test_a_missing_file_names_its_argument(files, tmp_path, capsys):
    assert cli.main(["eval", "--gt", str(tmp_path / "no.json"), "--results",
                     str(files["segm"])]) == 2
    assert "--gt" in capsys.readouterr().err
    assert cli.main(["eval", "--gt", str(files["gt"]), "--results",
                     str(tmp_path / "no.json")]) == 2
    assert "--results" in capsys.readouterr().err


def test_an_annotation_with_id_0_is_warned_about_and_shows_the_divergence(files, tmp_path,
                                                                          capsys):
    gt = json.loads(files["gt"].read_text())
    assert all(ann["id"] != 0 for ann in gt["annotations"])  # what the course writes
    assert cli.main(["eval", "--gt", str(files["gt"]), "--results", str(files["segm"])]) == 0
    assert "id 0" not in capsys.readouterr().err
    gt["annotations"][0]["id"] = 0
    path = tmp_path / "zero.json"
    path.write_text(json.dumps(gt))
    assert cli.main(["eval", "--gt", str(path), "--results", str(files["segm"])]) == 0
    captured = capsys.readouterr()
    assert "1 annotation(s) with id 0" in captured.err and "pycocotools" in captured.err
    # the ids are not used: the numbers are those of the file numbered from 1
    assert captured.out == printed_by_pycocotools(files["gt"], files["segm"], "segm")


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_eval_never_imports_torch(files, iou_type):
    """eval is numpy only, so it starts as fast as a pycocotools script (importing torch takes
    seconds): run it in a fresh interpreter and look at what was imported."""
    code = ("import sys\nfrom course.cli import main\n"
            f"status = main(['eval', '--gt', {str(files['gt'])!r}, '--results', "
            f"{str(files[iou_type])!r}, '--iou-type', {iou_type!r}])\n"
            "print('torch imported:', 'torch' in sys.modules, 'status:', status)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "torch imported: False status: 0"
    assert done.stdout.startswith(" Average Precision  (AP) @[ IoU=0.50:0.95")
