"""python -m course train / evaluate / predict: a run folder made, read back, and clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from course import cli
from course.data import ShapesDataset


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "x"
    assert cli.main(["train", "--steps", "2", "--batch-size", "2", "--out", str(out)]) == 0
    return out


def test_train_writes_a_run_folder_and_prints_the_summary(run, capsys):
    assert (run / "model.pt").is_file()
    history = json.loads((run / "history.json").read_text())
    assert len(history["steps"]) == 2 and "mask" in history["steps"][0]


def test_evaluate_prints_the_coco_summary_or_json(run, capsys):
    assert cli.main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert text.count("Average Precision") == 6 and text.count("Average Recall") == 6
    assert cli.main(["evaluate", str(run / "model.pt"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) >= {"AP", "AP50", "AP75"} and 0 <= stats["AP"] <= 1


def test_predict_draws_on_any_image_and_writes_coco_results(run, tmp_path, capsys):
    image, _ = ShapesDataset("val")[0]
    pixels = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)[:100, :90]
    Image.fromarray(pixels).save(tmp_path / "in.png")
    out = tmp_path / "overlay.png"
    assert cli.main(["predict", str(run), str(tmp_path / "in.png"), "--out", str(out),
                     "--min-score", "0"]) == 0
    assert out.is_file() and Image.open(out).size[0] > 0
    results = json.loads((tmp_path / "overlay.json").read_text())
    assert isinstance(results, list)
    for r in results:
        assert r["segmentation"]["size"] == [100, 90] and r["category_id"] in (1, 2, 3)
    assert "drawn on" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "no model at" in capsys.readouterr().err
    assert cli.main(["predict", str(tmp_path), str(tmp_path / "x.png"), "--out",
                     str(tmp_path / "o.png")]) == 2
    with pytest.raises(SystemExit):
        cli.main(["train", "--out", str(tmp_path)])  # no budget: argparse refuses


def test_every_command_has_help(capsys):
    for command in ("train", "evaluate", "predict", "eval"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
    assert "--minutes" in capsys.readouterr().out


def test_a_panoptic_run_reports_pq_under_both_policies(tmp_path, capsys):
    out = tmp_path / "p"
    assert cli.main(["train", "--panoptic", "--steps", "1", "--batch-size", "2", "--out",
                     str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("Average Precision") == 6
    for policy in ("instance_priority", "stuff_protected"):
        assert f"policy {policy}" in text
    assert text.count("Things    |") == 2 and text.count("Stuff     |") == 2
    assert cli.main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["panoptic"]) == {"instance_priority", "stuff_protected"}
    assert 0 <= report["panoptic"]["stuff_protected"]["All"]["pq"] <= 1
    with pytest.raises(SystemExit):
        cli.main(["train", "--panoptic", "--overlap", "--steps", "1", "--out", str(out)])
