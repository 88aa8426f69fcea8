"""Student versions of the chapters, the learner's copies and the self-check.

The solution notebooks are only read. Executing notebooks is slow, so only chapter 00 (one
exercise) and chapter 01 (two) are run: about 25 s on the 2-core development machine.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from course import cli, teaching

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = teaching.chapters(NOTEBOOKS)


def load(path):
    return json.loads(Path(path).read_text())


def source(cell):
    return "".join(cell["source"])


def grading(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def solution_lines(text):
    """The lines between the markers, stripped, without blank and comment-only lines."""
    body = text.split(teaching.BEGIN, 1)[1].split(teaching.END, 1)[0]
    return [s for s in (line.strip() for line in body.splitlines()) if s and s[0] != "#"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    return {p.name: p for p in teaching.release(NOTEBOOKS, out)}


def test_every_chapter_is_released(released):
    assert sorted(released) == [p.name for p in CHAPTERS]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_solution_line_survives_the_release(path, released):
    """Every line of every solution is absent from the whole released file, except the lines
    the chapter itself shows outside its solutions (teaching code the exercise reuses)."""
    nb = load(path)
    public = "\n".join(teaching._stub_regions(source(c), "") for c in nb["cells"])
    text = released[path.name].read_text()
    lines = [line for c in nb["cells"] if teaching.BEGIN in source(c)
             for line in solution_lines(source(c))]
    assert all(line not in text for line in lines if line not in public)
    assert "SOLUTION" not in text and "HIDDEN TESTS" not in text


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_becomes_a_stub_that_raises(path, released):
    before = [c for c in load(path)["cells"] if grading(c).get("solution")]
    after = [c for c in load(released[path.name])["cells"] if grading(c).get("solution")]
    assert len(after) == len(before)
    for old, new in zip(before, after):
        tree = ast.parse(source(new))
        (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        (old_fn,) = [n for n in ast.parse(source(old)).body if isinstance(n, ast.FunctionDef)]
        assert ast.dump(fn.args) == ast.dump(old_fn.args)  # the signature is kept
        raised = fn.body[-1]
        assert isinstance(raised, ast.Raise) and raised.exc.func.id == "NotImplementedError"
        message = raised.exc.args[0].value
        assert re.fullmatch(r"Exercise \d+\.\d+: see the section '.+' of this chapter", message)
        namespace = {}
        exec(compile(tree, path.name, "exec"), namespace)
        with pytest.raises(NotImplementedError, match="Exercise"):
            namespace[fn.name](*([None] * len(fn.args.args)))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_outputs_are_cleared_and_checks_stay_locked_with_their_ids(path, released):
    before, after = load(path)["cells"], load(released[path.name])["cells"]
    assert [c["cell_type"] for c in after] == [c["cell_type"] for c in before]
    assert [source(c) for c in after if c["cell_type"] == "markdown"] == \
        [source(c) for c in before if c["cell_type"] == "markdown"]
    for old, new in zip(before, after):
        if new["cell_type"] == "code":
            assert new["outputs"] == [] and new["execution_count"] is None
        if grading(old).get("grade"):
            assert grading(new) == {**grading(old), "locked": True}
            assert grading(new)["points"] > 0 and grading(new)["grade_id"].endswith("-check")
            assert new["metadata"]["editable"] is False
            assert new["metadata"]["deletable"] is False
            assert source(new) == source(old)
        elif not grading(old).get("solution"):
            assert source(new) == source(old)


def test_the_stub_keeps_what_stands_around_the_markers():
    text = ('def f(x):\n    """Doc."""\n    # hint\n    if x:\n        ### BEGIN SOLUTION\n'
            '        return 1\n        ### END SOLUTION\n    return 0\n'
            '### BEGIN HIDDEN TESTS\nassert f(1) == 1\n### END HIDDEN TESTS')
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "### Exercise 3.2: f\n"},
                    {"cell_type": "code", "metadata": {}, "source": text, "outputs": [],
                     "execution_count": 3}]}
    out = teaching.student_notebook(nb)
    assert source(out["cells"][1]) == (
        'def f(x):\n    """Doc."""\n    # hint\n    if x:\n        raise NotImplementedError('
        '"Exercise 3.2: see the section \'f\' of this chapter")\n    return 0')
    assert nb["cells"][1]["execution_count"] == 3  # the input is not changed


def test_unbalanced_markers_are_an_error():
    cell = {"cell_type": "code", "metadata": {}, "source": "### BEGIN SOLUTION\nx = 1\n",
            "outputs": [], "execution_count": None}
    with pytest.raises(ValueError, match="without"):
        teaching.student_notebook({"cells": [cell]})


def test_release_refuses_to_overwrite_the_solutions():
    with pytest.raises(ValueError, match="overwrite"):
        teaching.release(NOTEBOOKS, NOTEBOOKS)


def test_student_copies_never_overwrite_and_add_missing_chapters(tmp_path):
    student = tmp_path / "student"
    written = teaching.make_student_copies(NOTEBOOKS, student)
    assert [p.name for p in written] == [p.name for p in CHAPTERS]
    mine = student / CHAPTERS[1].name
    mine.write_text("my work")
    (student / CHAPTERS[2].name).unlink()  # reset one chapter, or a chapter added later
    assert teaching.make_student_copies(NOTEBOOKS, student) == [student / CHAPTERS[2].name]
    assert mine.read_text() == "my work"
    assert teaching.make_student_copies(NOTEBOOKS, student) == []
    assert not list(student.glob(".*"))  # no partial files left behind


def test_student_copies_command(tmp_path, capsys):
    args = ["student-copies", "--notebooks", str(NOTEBOOKS), "--to", str(tmp_path)]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("new in your copy:") == len(CHAPTERS)
    assert cli.main(args) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("command", ["check", "release", "student-copies"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m course " + command)


def test_check_says_it_is_a_self_check_from_the_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "course", "check", "--help"],
                          capture_output=True, text=True, check=True)
    text = " ".join(done.stdout.split())
    assert "passed / not yet / failed" in text and "not a grade" in text


def test_check_of_a_missing_notebook_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "nope.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Running notebooks (chapter 00: about 8 s a run, chapter 01: about 9 s)
# ---------------------------------------------------------------------------------------------


def test_check_passes_the_solution_and_not_the_student_version(released, tmp_path, capsys):
    tour = NOTEBOOKS / "00_tour.ipynb"
    assert cli.main(["check", str(tour)]) == 0
    text = capsys.readouterr().out
    assert "passed   ch00-mask-area  1/1  mask_area:" in text
    assert text.splitlines()[-1] == "1/1 points: 1 passed, 0 not yet, 0 failed"

    assert cli.main(["check", str(released[tour.name])]) == 1
    text = capsys.readouterr().out
    assert "not yet  ch00-mask-area  0/1  not written yet: it raises NotImplementedError" in text
    assert text.splitlines()[-1] == "0/1 points: 0 passed, 1 not yet, 0 failed"
    assert "note:" not in text  # the cells after the exercise still run


def test_a_wrong_exercise_fails_with_the_checkers_message_and_costs_only_its_points(tmp_path):
    nb = load(NOTEBOOKS / "01_iou_dice.ipynb")
    (cell,) = [c for c in nb["cells"] if grading(c).get("grade_id") == "ch01-mask-iou"]
    text = source(cell)
    start, end = text.index(teaching.BEGIN), text.index(teaching.END) + len(teaching.END)
    cell["source"] = text[:start] + "return (a.flatten(1).double() @ b.flatten(1).double().T) > 0" \
        + text[end:]  # overlap or not, instead of IoU
    path = tmp_path / "01_iou_dice.ipynb"
    path.write_text(json.dumps(nb))
    report = teaching.check_notebook(path, timeout=300)
    iou, dice = report.exercises
    assert (iou.grade_id, iou.status, iou.earned, iou.points) == ("ch01-mask-iou", "failed", 0, 2)
    assert re.match(r"mask_iou: \d+/15 checks passed\n  - case 1 ", iou.message)
    assert (dice.status, dice.earned) == ("passed", 2)
    assert report.other_errors == [] and not report.all_passed
    assert (report.earned, report.points) == (2, 4)
    assert "failed   ch01-mask-iou   0/2  mask_iou:" in report.text()


def executed(*cells):
    """A notebook as nbclient leaves it: code cells with their nbgrader metadata and outputs."""
    def cell(grade_id, outputs, solution=False):
        meta = {"grade_id": grade_id, "solution": solution, "grade": not solution, "points": 2}
        return {"cell_type": "code", "metadata": {"nbgrader": meta}, "source": "",
                "execution_count": 1, "outputs": outputs}
    return {"cells": [cell(*c) for c in cells]}


def error(ename, evalue):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def test_the_report_reads_each_check_cell():
    stdout = {"output_type": "stream", "name": "stdout", "text": ["f: 3/3 checks passed\n"]}
    nie = "f: 0/3 checks passed\n  - case 1 'a' (arguments: 1): raised NotImplementedError: E"
    wrong = "f: 1/3 checks passed\n  - case 2 'b' (arguments: 2): 1 is wrong. Hint: h"
    nb = executed(("a", [], True), ("a-check", [stdout]),
                  ("b", [], True), ("b-check", [error("AssertionError", nie)]),
                  ("c", [], True), ("c-check", [error("AssertionError", wrong)]),
                  ("d", [error("SyntaxError", "invalid syntax")], True),
                  ("d-check", [error("NameError", "name 'f' is not defined")]))
    nb["cells"].append({"cell_type": "code", "metadata": {}, "source": "", "execution_count": 2,
                        "outputs": [error("ValueError", "boom")]})  # not an exercise
    nb["cells"].append({**nb["cells"][-1], "outputs": [error("KeyboardInterrupt", "")]})
    report = teaching.read_checks(nb, Path("x.ipynb"))
    assert [(e.grade_id, e.status) for e in report.exercises] == [
        ("a", "passed"), ("b", "not yet"), ("c", "failed"), ("d", "failed")]
    assert report.exercises[0].message == "f: 3/3 checks passed"
    assert report.exercises[2].message == wrong
    assert report.exercises[3].message == "your exercise cell raised SyntaxError: invalid syntax"
    assert report.other_errors == ["code cell 9 raised ValueError: boom",
                                   "code cell 10 was interrupted (it ran past the timeout)"]
    assert (report.earned, report.points, report.all_passed) == (2, 8, False)
    lines = report.text().splitlines()
    assert "  note: code cell 9 raised ValueError: boom" in lines
    assert lines[3:5] == ["  failed   c  0/2  f: 1/3 checks passed",
                          "                   - case 2 'b' (arguments: 2): 1 is wrong. Hint: h"]
    assert lines[-1] == "2/8 points: 1 passed, 1 not yet, 2 failed"


def test_a_notebook_without_exercises_passes():
    report = teaching.read_checks({"cells": []}, Path("10_training.ipynb"))
    assert report.all_passed and "no exercises" in report.text()
