"""Grading submitted notebooks (course/grading.py, course/grading_worker.py).

Each submission below is a real notebook: the teacher's solution notebook, its student version,
or one of them with cells changed. Most tests share one ``grade`` run of chapter 01 over many
students (without the notebook run, which only adds feedback); one test runs the notebook.
"""

from __future__ import annotations

import copy
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from course import grading, grading_worker
from course.cli import main
from course.teaching import cell_source, nbgrader_metadata, student_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
HIDDEN = Path(__file__).resolve().parent.parent / "teacher" / "hidden_tests"
CH01 = "01_iou_dice.ipynb"


def _solution(name: str = CH01) -> dict:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


def _index(nb: dict, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb["cells"])
                if nbgrader_metadata(c).get("grade_id") == grade_id)


def _set_source(nb: dict, grade_id: str, text: str) -> dict:
    nb["cells"][_index(nb, grade_id)]["source"] = text
    return nb


def _write(folder: Path, student: str, nb: dict | str, name: str = CH01) -> Path:
    path = folder / student / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb), encoding="utf-8")
    return path


def _one_done() -> dict:
    """mask_iou solved, mask_dice still the stub."""
    nb = student_notebook(_solution(), "01")
    i = _index(nb, "ch01-mask-iou")
    nb["cells"][i] = copy.deepcopy(_solution()["cells"][i])
    return nb


def _restore_cases() -> dict:
    """The solution with the mask_iou check cell deleted and the mask_dice one duplicated."""
    nb = _solution()
    del nb["cells"][_index(nb, "ch01-mask-iou-check")]
    j = _index(nb, "ch01-mask-dice-check")
    nb["cells"].insert(j, copy.deepcopy(nb["cells"][j]))
    return nb


FAKE_PASS = ('def mask_iou(a, b):\n    raise NotImplementedError("later")\n\n'
             'print("mask_iou: 15/15 checks passed")\n'
             'import course.checks\n'
             'course.checks.check_mask_iou = lambda fn: print("mask_iou: 15/15 checks passed")\n')
WRONG = ("def mask_iou(a, b):\n    a, b = a.flatten(1).float(), b.flatten(1).float()\n"
         "    inter = a @ b.T\n"
         "    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter\n"
         "    return inter / union.clamp(min=1)\n")

MEMORISED = ("import torch\nfrom course.checks import load_cases\n\n"
             "STORED = load_cases('mask_iou')\n\n\n"
             "def mask_iou(a, b):\n"
             "    for case in STORED:\n"
             "        x, y = case.args\n"
             "        if x.shape == tuple(a.shape) and y.shape == tuple(b.shape) and \\\n"
             "                (x == a.numpy()).all() and (y == b.numpy()).all():\n"
             "            return torch.from_numpy(case.expected['value'])\n"
             "    return torch.zeros(len(a), len(b), dtype=torch.float64)\n")


def _with_helpers() -> dict:
    """The learner's own way: a helper cell above mask_iou (a constant, a function, and a slow
    line that must not run), mask_dice written with the learner's mask_iou, and an import of the
    library's mask_iou in a cell below, which must not replace the learner's."""
    nb = student_notebook(_solution(), "01")
    helpers = ("import time\nimport torch\n\nONE = 1\n\n\n"
               "def flat(m):\n    return m.flatten(1).double()\n\n\n"
               "time.sleep(600)\nBIG = torch.zeros(2 ** 40)\n")
    nb["cells"].insert(_index(nb, "ch01-mask-iou"), {
        "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
        "source": helpers})
    _set_source(nb, "ch01-mask-iou", (
        "def mask_iou(a, b):\n    a, b = flat(a), flat(b)\n    inter = a @ b.T\n"
        "    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter\n"
        "    return torch.where(union > 0, inter / union.clamp(min=ONE), 0.0)\n"))
    _set_source(nb, "ch01-mask-dice", (
        "def mask_dice(a, b):\n    iou = mask_iou(a, b)\n    return 2 * iou / (1 + iou)\n"))
    nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {},
                        "outputs": [], "source": "from course.masks import mask_iou\n"})
    return nb


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class's submissions of chapter 01, one folder per student."""
    root = tmp_path_factory.mktemp("collected")
    _write(root, "alice", _solution())
    _write(root, "bob", student_notebook(_solution(), "01"))
    _write(root, "carol", _one_done())
    _write(root, "dave", _restore_cases())
    edited = _set_source(student_notebook(_solution(), "01"), "ch01-mask-iou-check",
                         'print("mask_iou: 15/15 checks passed")')
    _write(root, "erin", edited)
    _write(root, "frank", _set_source(_solution(), "ch01-mask-iou", FAKE_PASS))
    _write(root, "grace", _set_source(_solution(), "ch01-mask-iou", WRONG))
    _write(root, "heidi", "{not json")
    _write(root, "lena", _with_helpers())
    _write(root, "ivan", _solution("02_matching.ipynb"))
    _write(root, "kim", _set_source(_solution(), "ch01-mask-iou", MEMORISED))
    _write(root, "judy", _set_source(_solution(), "ch01-mask-iou",
                                     "def mask_iou(a, b):\n    raise ValueError('kumquat')\n"))
    return root


@pytest.fixture(scope="module")
def graded(collected: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("grades")
    options = grading.GradeOptions(run_notebook=False, hidden_dir=HIDDEN, timeout=60)
    return grading.grade([collected], out, "01", options, NOTEBOOKS), out


def _outcomes(grades: dict, student: str) -> dict[str, str]:
    return {k: v["outcome"] for k, v in grades["students"][student]["exercises"].items()}


# ---------------------------------------------------------------------------------------------
# Grades
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", ["01_iou_dice", "02_matching", "03_coco_ap",
                                     "04_panoptic_quality"])
def test_solution_notebooks_grade_full_marks_and_release_versions_zero(
        chapter: str, tmp_path: Path) -> None:
    name = f"{chapter}.ipynb"
    _write(tmp_path / "in", "teacher", _solution(name), name)
    _write(tmp_path / "in", "blank", student_notebook(_solution(name), chapter[:2]), name)
    options = grading.GradeOptions(run_notebook=False, hidden_dir=HIDDEN)
    grades = grading.grade([tmp_path / "in"], tmp_path / "out", None, options, NOTEBOOKS)
    teacher, blank = grades["students"]["teacher"], grades["students"]["blank"]
    assert grades["chapter"] == chapter and len(grades["exercises"]) >= 2
    assert teacher["total"] == teacher["max"] > 0 and teacher["percent"] == 100.0, teacher
    assert set(_outcomes(grades, "teacher").values()) == {"passed"}
    assert blank["total"] == 0 and set(_outcomes(grades, "blank").values()) == {"not yet"}
    assert teacher["status"] == blank["status"] == "ok"
    hidden = [m for r in teacher["exercises"].values() for m in r["messages"]
              if m.startswith("hidden tests:")]
    assert len(hidden) == len(grades["exercises"])  # every exercise has hidden tests, all passed


def test_one_unfinished_exercise_costs_only_its_points(graded: tuple[dict, Path]) -> None:
    grades, _ = graded
    assert _outcomes(grades, "carol") == {"ch01-mask-iou": "passed", "ch01-mask-dice": "not yet"}
    carol = grades["students"]["carol"]
    assert (carol["total"], carol["max"], carol["percent"]) == (2, 4, 50.0)


def test_functions_and_constants_of_the_cells_above_are_there(graded: tuple[dict, Path]) -> None:
    """As in a run from the top: a helper above the exercise and the learner's own mask_iou
    serve; the slow line beside them does not run, and a later import does not replace them."""
    grades, _ = graded
    assert _outcomes(grades, "lena") == {"ch01-mask-iou": "passed", "ch01-mask-dice": "passed"}


def test_deleted_and_duplicated_check_cells_are_restored(graded: tuple[dict, Path]) -> None:
    grades, _ = graded
    dave = grades["students"]["dave"]
    assert dave["status"] == "restored" and dave["total"] == 4
    notes = " | ".join(dave["notes"])
    assert "ch01-mask-iou was missing" in notes and "ch01-mask-dice appeared 2 times" in notes


def test_an_edited_check_cell_is_reverted_and_earns_nothing(graded: tuple[dict, Path]) -> None:
    grades, _ = graded
    erin = grades["students"]["erin"]
    assert erin["status"] == "restored" and erin["total"] == 0
    assert any("ch01-mask-iou was edited" in n for n in erin["notes"])


def test_restore_puts_the_solution_check_cell_back_in_place() -> None:
    chapter = grading.load_chapter(NOTEBOOKS, "01")
    nb, notes = grading.restore_check_cells(_restore_cases(), chapter)
    ids = [nbgrader_metadata(c).get("grade_id") for c in nb["cells"] if nbgrader_metadata(c)]
    assert ids == ["ch01-mask-iou", "ch01-mask-iou-check", "ch01-mask-dice",
                   "ch01-mask-dice-check"]
    assert len(notes) == 2
    clean, none = grading.restore_check_cells(_solution(), chapter)
    assert none == [] and [cell_source(c) for c in clean["cells"]] == [
        cell_source(c) for c in _solution()["cells"]]


def test_printing_a_pass_line_or_patching_the_checker_earns_nothing(
        graded: tuple[dict, Path]) -> None:
    grades, _ = graded
    assert _outcomes(grades, "frank") == {"ch01-mask-iou": "not yet", "ch01-mask-dice": "passed"}
    assert grades["students"]["frank"]["total"] == 2


def test_a_wrong_answer_fails_with_the_checkers_message(graded: tuple[dict, Path]) -> None:
    grades, out = graded
    grace = grades["students"]["grace"]["exercises"]["ch01-mask-iou"]
    assert grace["outcome"] == "failed" and grace["earned"] == 0
    assert "checks passed" in grace["messages"][0] and "float64" in grace["messages"][0]
    feedback = (out / "feedback" / "grace.md").read_text(encoding="utf-8")
    assert "## ch01-mask-iou: failed (0/2)" in feedback and "float64" in feedback


def test_answers_memorised_from_the_visible_cases_fail_the_hidden_tests(
        graded: tuple[dict, Path]) -> None:
    grades, _ = graded
    kim = grades["students"]["kim"]["exercises"]["ch01-mask-iou"]
    visible, *hidden = kim["messages"]
    assert visible.endswith("checks passed") and visible.split()[1].split("/")[0] == \
        visible.split()[1].split("/")[1]  # n/n: the visible checker is fooled
    assert kim["outcome"] == "failed" and kim["earned"] == 0
    assert any(m.startswith("hidden test ") for m in hidden)


def test_an_exception_is_reported_by_name_not_by_its_message(graded: tuple[dict, Path]) -> None:
    grades, out = graded
    judy = grades["students"]["judy"]["exercises"]["ch01-mask-iou"]
    assert judy["outcome"] == "failed" and "raised ValueError" in judy["messages"][0]
    assert "kumquat" not in (out / "feedback" / "judy.md").read_text(encoding="utf-8")


def test_unreadable_and_wrong_chapter_notebooks(graded: tuple[dict, Path]) -> None:
    grades, _ = graded
    heidi, ivan = grades["students"]["heidi"], grades["students"]["ivan"]
    assert heidi["status"] == "invalid" and heidi["total"] == 0
    assert ivan["status"] == "wrong-chapter" and ivan["total"] == 0
    assert set(_outcomes(grades, "ivan").values()) == {"missing"}


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------


def test_grades_csv_and_json_format(graded: tuple[dict, Path]) -> None:
    grades, out = graded
    rows = list(csv.reader((out / "grades.csv").open(encoding="utf-8")))
    assert rows[0] == ["student", "ch01-mask-iou", "ch01-mask-dice", "total", "max", "percent",
                       "status"]
    students = [r[0] for r in rows[1:]]
    assert students == sorted(students) and len(students) == 12
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["alice"][1:] == ["2", "2", "4", "4", "100.0", "ok"]
    assert by_name["carol"][1:] == ["2", "0", "2", "4", "50.0", "ok"]
    on_disk = json.loads((out / "grades.json").read_text(encoding="utf-8"))
    assert on_disk == grades and on_disk["chapter"] == "01_iou_dice"
    assert on_disk["exercises"] == [{"grade_id": "ch01-mask-iou", "points": 2},
                                    {"grade_id": "ch01-mask-dice", "points": 2}]
    alice = on_disk["students"]["alice"]
    assert set(alice) == {"file", "status", "notes", "total", "max", "percent", "exercises"}
    assert set(alice["exercises"]["ch01-mask-iou"]) == {"outcome", "earned", "points",
                                                        "messages"}
    assert sorted(p.stem for p in (out / "feedback").glob("*.md")) == sorted(students)


def test_hidden_test_code_never_reaches_feedback(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "ch01-mask-iou.py").write_text(
        "SECRET = 'kumquat-4417'\n\n\n"
        "def test_symmetry(fn):\n"
        "    assert SECRET and False, 'IoU(a, b) must equal IoU(b, a)'\n", encoding="utf-8")
    _write(tmp_path / "in", "alice", _solution())
    options = grading.GradeOptions(run_notebook=False, hidden_dir=hidden)
    grades = grading.grade([tmp_path / "in"], tmp_path / "out", "01", options, NOTEBOOKS)
    record = grades["students"]["alice"]["exercises"]["ch01-mask-iou"]
    assert record["outcome"] == "failed"
    assert "hidden test symmetry: IoU(a, b) must equal IoU(b, a)" in record["messages"]
    for path in [tmp_path / "out" / "grades.json", *(tmp_path / "out" / "feedback").iterdir()]:
        text = path.read_text(encoding="utf-8")
        assert "kumquat" not in text and "assert SECRET" not in text


# ---------------------------------------------------------------------------------------------
# Shards and merge
# ---------------------------------------------------------------------------------------------


def test_shards_partition_the_class_and_merge_equals_one_run(
        collected: Path, graded: tuple[dict, Path], tmp_path: Path) -> None:
    grades, out = graded
    options = grading.GradeOptions(run_notebook=False, hidden_dir=HIDDEN)
    shards, seen = [], []
    for i in (1, 2, 3):
        part = grading.grade([collected], tmp_path / f"shard{i}", "01", options, NOTEBOOKS,
                             shard_spec=(i, 3))
        seen += list(part["students"])
        shards.append(tmp_path / f"shard{i}")
    assert sorted(seen) == sorted(grades["students"]) and len(seen) == len(set(seen))
    merged = grading.merge(shards, tmp_path / "merged")
    assert merged == grades
    assert (tmp_path / "merged" / "grades.csv").read_text() == (out / "grades.csv").read_text()
    for md in (out / "feedback").iterdir():
        assert (tmp_path / "merged" / "feedback" / md.name).read_text() == md.read_text()
    with pytest.raises(ValueError, match="two shards"):
        grading.merge([shards[0], shards[0]], tmp_path / "twice")


def test_merge_refuses_shards_of_different_chapters(tmp_path: Path) -> None:
    for name, chapter in (("a", "01_iou_dice"), ("b", "02_matching")):
        grades = {"chapter": chapter, "exercises": [], "students": {}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "grades.json").write_text(json.dumps(grades))
    with pytest.raises(ValueError, match="chapter"):
        grading.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    (tmp_path / "b" / "grades.json").write_text("[]")
    with pytest.raises(ValueError, match="not a grades.json"):
        grading.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "out")


def test_shard_selection_is_by_sorted_student_id() -> None:
    subs = [grading.Submission(s, Path(f"{s}.ipynb")) for s in "edcba"]
    assert [s.student for s in grading.shard(subs, 1, 2)] == ["a", "c", "e"]
    assert [s.student for s in grading.shard(subs, 2, 2)] == ["b", "d"]
    assert grading.parse_shard("2/4") == (2, 4)
    for bad in ("0/3", "4/3", "1-3", "x"):
        with pytest.raises(ValueError, match="--shard"):
            grading.parse_shard(bad)


# ---------------------------------------------------------------------------------------------
# Submissions, ids, the command line
# ---------------------------------------------------------------------------------------------


def test_student_ids_and_duplicates(tmp_path: Path) -> None:
    assert grading.student_id(Path("collected/alice/01_iou_dice.ipynb")) == "alice"
    assert grading.student_id(Path("collected/bob.ipynb")) == "bob"
    _write(tmp_path, "alice", _solution())
    (tmp_path / "alice.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="two submissions for student 'alice'"):
        grading.find_submissions([tmp_path])
    (tmp_path / "alice.ipynb").unlink()
    (tmp_path / "alice" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "alice" / ".ipynb_checkpoints" / "x.ipynb").write_text("{}")
    found = grading.find_submissions([tmp_path])
    assert [(s.student, s.path.name) for s in found] == [("alice", CH01)]
    assert grading.infer_chapter(found) == "01"
    with pytest.raises(ValueError, match="--chapter"):
        grading.infer_chapter([*found, grading.Submission("bob", Path("bob.ipynb"))])


def test_cli_grade_runs_the_notebook_for_feedback(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    nb = _solution()
    nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "metadata": {},
                           "outputs": [], "source": "undefined_name_in_first_cell"})
    path = _write(tmp_path, "alice", nb)
    status = main(["grade", str(path), "--out", str(tmp_path / "out"), "--hidden", str(HIDDEN),
                   "--notebooks", str(NOTEBOOKS), "--timeout", "30"])
    assert status == 0
    grades = json.loads((tmp_path / "out" / "grades.json").read_text())
    alice = grades["students"]["alice"]
    assert alice["total"] == 4  # the run only adds notes
    assert any(n.startswith("notebook run: code cell 1 raised NameError") for n in alice["notes"])
    assert "graded 1 submission of chapter 01_iou_dice" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["grade", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no submission at" in capsys.readouterr().err
    (tmp_path / "x.ipynb").write_text("{}")
    assert main(["grade", str(tmp_path / "x.ipynb"), "--out", str(tmp_path / "o")]) == 2
    assert "--chapter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    assert "--shard" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The worker: limits and the safe encoding
# ---------------------------------------------------------------------------------------------


def _worker(source: str, function: str = "f", memory_mb: int = 1024,
            timeout: float = 20) -> grading.Worker:
    folder = tempfile.mkdtemp(prefix="test-worker-")  # removed by the OS's temp cleaning
    job = grading_worker.Job(source, [], function, "check_mask_iou", memory_mb, folder)
    return grading.Worker(job, timeout)


@pytest.mark.parametrize(("body", "outcome"), [
    ("x = bytearray(50 * 2**30)", "memory"),
    ("x = [bytearray(2**24) for _ in range(10**6)]", "memory"),
    ("import torch; torch.ones(2**33)", "memory"),
    ("while True: pass", "timeout"),
    ("import os; os._exit(3)", "crashed"),
])
def test_worker_limits_end_as_outcomes(body: str, outcome: str) -> None:
    worker = _worker(f"def f():\n    {body}\n", timeout=5)
    try:
        assert worker.receive()["kind"] == "ready"
        with pytest.raises(grading.WorkerGone) as gone:
            grading.Proxy(worker)()
        assert gone.value.outcome == outcome
    finally:
        worker.close()


def test_results_come_back_with_types_and_shapes() -> None:
    worker = _worker("import torch, numpy as np\n"
                     "def f(x):\n"
                     "    return {1: (x * 2, x.bool(), x.double().sum()), 'n': np.arange(3),"
                     " 'none': None, 's': {1, 2}, 'g': (i for i in [])}\n")
    try:
        worker.receive()
        out = grading.Proxy(worker)(torch.arange(6, dtype=torch.int32).reshape(2, 3))
    finally:
        worker.close()
    doubled, flags, total = out[1]
    assert doubled.dtype == torch.int32 and doubled.shape == (2, 3) and doubled[1, 2] == 10
    assert flags.dtype == torch.bool and total.dtype == torch.float64 and total.shape == ()
    assert np.array_equal(out["n"], np.arange(3)) and out["none"] is None and out["s"] == {1, 2}
    assert type(out["g"]).__name__ == "generator"


def test_exceptions_come_back_by_name_without_their_message() -> None:
    worker = _worker("class Leak(Exception):\n    pass\n\n"
                     "def f(x):\n    if x:\n        raise NotImplementedError('kumquat')\n"
                     "    raise Leak('kumquat')\n")
    try:
        worker.receive()
        with pytest.raises(NotImplementedError) as raised:
            grading.Proxy(worker)(1)
        assert isinstance(raised.value, grading.LearnerError)
        assert "kumquat" not in str(raised.value)
        with pytest.raises(grading.LearnerError) as raised:
            grading.Proxy(worker)(0)
        assert type(raised.value).__name__ == "Exception"  # a class name is free text too
        assert "kumquat" not in str(raised.value)
    finally:
        worker.close()


def test_decode_refuses_what_is_not_plain_data() -> None:
    import pickle

    for garbage in (b"", b"\x00\x00\x00\x02{}", pickle.dumps(object()),
                    grading_worker.encode({"kind": "returned", "value": 1})[:-1] + b"x"):
        with pytest.raises(grading_worker.DecodingError):
            grading_worker.decode(garbage)
    array = np.array([object()], dtype=object)
    with pytest.raises(grading_worker.EncodingError):
        grading_worker.encode({"kind": "returned", "value": array})


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_a_terminated_grader_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGTERM (timeout, a cancelled job) while an exercise loops and the notebook runs: the
    workers, the notebook run, its kernel and the fork server all go with the grader."""
    import signal
    import subprocess
    import sys
    import time

    nb = _set_source(_solution(), "ch01-mask-iou", "def mask_iou(a, b):\n    while True:\n"
                     "        pass\n")
    path = _write(tmp_path / "collected", "looper", nb)
    grader = subprocess.Popen([sys.executable, "-m", "course", "grade", str(path), "--out",
                               str(tmp_path / "out"), "--timeout", "120"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(grading._descendants(grader.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        below = grading._descendants(grader.pid)  # read from /proc, as the grader does
        assert len(below) >= 3, "the grader never started its workers"
        grader.send_signal(signal.SIGTERM)
        assert grader.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in below) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in below if _alive(p)]
    finally:
        grader.kill()


def test_read_notebook_takes_a_byte_order_mark_and_refuses_nbformat_3(tmp_path: Path) -> None:
    bom = tmp_path / "bom.ipynb"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(_solution()).encode("utf-8"))
    assert grading.read_notebook(bom)["cells"] == _solution()["cells"]
    old = tmp_path / "v3.ipynb"
    old.write_text(json.dumps({"nbformat": 3, "worksheets": [{"cells": []}]}), encoding="utf-8")
    with pytest.raises(grading.InvalidNotebook, match="nbformat-4"):
        grading.read_notebook(old)
