"""The grader against broken and hostile submissions: the grade comes from the grader alone.

Each group of submissions is graded once by the command line (``python -m course grade`` in a
subprocess, as a teacher runs it; ``main`` of the CLI, plus a line that reports the grader's
peak memory) and each test reads one student's entry. Module-scoped fixtures make four calls:
the exercise-level cases of chapter 01 together (``--no-run --jobs 2``), three answers that
call the library, the cases that matter to the notebook run (with it), and, in its own test, a
process left behind that tries to rewrite the grades. The submissions are made from the
solution notebook by ``tests/submissions.py``. Chapter 01 has two exercises, ``mask_iou`` and
``mask_dice`` (2 points each): a hostile ``mask_iou`` must cost only its own points, so in most
submissions ``mask_dice`` stays right and must still pass.

About 1.5 minutes on the 2-core development machine (2 under a load average of 5), most of it
the notebook runs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import submissions as subs

ROOT = subs.ROOT
HIDDEN = ROOT / "teacher" / "hidden_tests"
IOU, DICE = "ch01-mask-iou", "ch01-mask-dice"
TIMEOUT = 5  # seconds per exercise worker: the right answers take well under one
MEMORY = 1024  # MB per worker
CANARY = "hidden-canary-5f1e9c"  # in a hidden test of our own; must never reach a student

# --- hostile code, put into the mask_iou exercise cell -------------------------------------

FIND_OUT = """
def _grader_out():
    # the --out folder of the grader: walk up the processes, read their command lines
    pid = os.getppid()
    while pid > 1:
        args = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\\0")
        if "--out" in args:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            return os.path.join(cwd, args[args.index("--out") + 1])
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    return None
"""

FORGE = """
import json
import os

FAKE_CSV = "student,ch01-mask-iou,ch01-mask-dice,total,max,percent,status\\n" \\
    "ghost,2,2,4,4,100.0,ok\\nwriter,2,2,4,4,100.0,ok\\n"
FAKE_JSON = {"chapter": "01_iou_dice", "students": {"ghost": {"total": 4, "status": "ok"},
                                                    "writer": {"total": 4, "status": "ok"}}}
""" + FIND_OUT + """

def _forge():
    for out in {OUT_DIR!r}, _grader_out():
        if out:
            try:
                os.makedirs(os.path.join(out, "feedback"), exist_ok=True)
                open(os.path.join(out, "grades.csv"), "w").write(FAKE_CSV)
                json.dump(FAKE_JSON, open(os.path.join(out, "grades.json"), "w"))
                open(os.path.join(out, "feedback", "ghost.md"), "w").write("all passed")
            except OSError:
                pass


_forge()
"""

READ_HIDDEN = """
import glob
import sys

secrets = ""
for path in sorted(glob.glob({HIDDEN_DIR!r} + "/ch01-mask-iou*.py")):  # this exercise's
    secrets += open(path).read()
for name, module in list(sys.modules.items()):  # hidden tests loaded into this process?
    if "hidden" in name or "ch01" in name:
        secrets += name + repr(vars(module).keys())
print(secrets)
raise ValueError(secrets[::STEP])
"""

PATCH_CHECKS = """
import contextlib

import course.checks

for _name in dir(course.checks):
    if _name.startswith("check_"):
        setattr(course.checks, _name, lambda fn: print("mask_iou: 15/15 checks passed"))
course.checks.library_disabled = lambda fn, targets: contextlib.nullcontext()
course.checks.targets_for = lambda name: []
print("mask_iou: 15/15 checks passed")
"""

MAGIC = """
class Anything:
    def __eq__(self, other):
        return True

    def __bool__(self):
        return True

return Anything()
"""

SPAM = """
for _ in range(100):  # 100 MB
    print("spam" * 262144)
"""

# A process that outlives the worker and keeps writing fake grades into --out for 30 s.
LURKER = """
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open({PID_FILE!r}, "w").write(str(os.getpid()))
        for _ in range(600):
            try:
                open(os.path.join({OUT_DIR!r}, "grades.csv"), "w").write(
                    "student,ch00-mask-area,total,max,percent,status\\nlurker,1,1,1,100.0,ok\\n")
            except OSError:
                pass
            time.sleep(0.05)
    os._exit(0)
"""


# --- running the grader ---------------------------------------------------------------------


@dataclass
class Graded:
    """What one ``grade`` call left: exit status, output, grades.json, grades.csv rows, the
    feedback files' text by student, the grader process's peak resident memory (MB) and the
    students submitted."""

    returncode: int
    output: str
    grades: dict
    rows: list[dict]
    feedback: dict[str, str]
    peak_mb: float
    submitted: list[str]
    hidden: Path | None = None

    def student(self, name: str) -> dict:
        assert self.returncode == 0, self.output[-3000:]
        return self.grades["students"][name]


# ``python -m course`` as it runs, plus one line at the end: the grader process's peak memory.
CLI_WITH_PEAK = """
import resource, sys
from course import cli
code = cli.main(sys.argv[1:])
print(f"grader peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
sys.exit(code)
"""


def grade(paths: list[Path], out: Path, *options: str, timeout: float = 240) -> Graded:
    """``python -m course grade PATHS --out OUT OPTIONS`` (the CLI's ``main``) in a subprocess,
    from the repository root; returns what it left in ``out``. Its output goes to a file, not a
    pipe, so that a process a submission leaves behind cannot keep the call waiting."""
    command = [sys.executable, "-c", CLI_WITH_PEAK, "grade", *map(str, paths), "--out",
               str(out), "--notebooks", str(subs.NOTEBOOKS), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = out.with_name(out.name + ".log")
    with log.open("w") as sink:
        process = subprocess.run(command, cwd=ROOT, env=env, stdout=sink,
                                 stderr=subprocess.STDOUT, timeout=timeout)
    output = log.read_text()
    peak = re.findall(r"^grader peak (\d+) MB$", output, re.MULTILINE)
    grades = json.loads((out / "grades.json").read_text()) if (out / "grades.json").exists() \
        else {}
    rows = list(csv.DictReader((out / "grades.csv").open())) if (out / "grades.csv").exists() \
        else []
    feedback = {p.stem: p.read_text() for p in sorted((out / "feedback").glob("*.md"))}
    submitted = sorted({p.parent.name for p in paths if p.is_file()}
                       | {p.parent.name for d in paths if d.is_dir() for p in d.rglob("*.ipynb")})
    return Graded(process.returncode, output, grades, rows, feedback,
                  float(peak[0]) if peak else float("nan"), submitted)


def hidden_tests(folder: Path) -> Path:
    """The teacher's hidden tests copied to ``folder``, with a test of our own added to
    mask_iou's whose code holds a canary string."""
    folder.mkdir()
    if HIDDEN.is_dir():
        for path in HIDDEN.glob("*.py"):
            shutil.copy(path, folder / path.name)
    canary = folder / f"{IOU}.py"
    text = canary.read_text() if canary.exists() else "import torch\n"
    canary.write_text(text + f"""

def test_canary(fn):  # {CANARY}: this line must never reach a learner
    a = torch.ones(1, 2, 2, dtype=torch.bool)
    assert float(fn(a, a)[0][0]) == 1.0, "a mask with itself has IoU 1"
""")
    return folder


# --- the classes ----------------------------------------------------------------------------


def exercise_class(folder: Path, out: Path, hidden: Path) -> list[Path]:
    """Chapter 01 submissions whose problems show in the exercises and the check cells."""
    sol, stub = subs.solution("01"), subs.stubs("01")
    iou_check = f"{IOU}-check"
    hostile = {
        "honest": sol,
        "stubs": stub,
        "forged": subs.with_outputs_of(stub, sol),
        "deleted": subs.without_cell(sol, iou_check),
        "edited": subs.with_cell_source(sol, iou_check, 'print("passed")'),
        "duplicated": subs.duplicated(sol, iou_check),
        "loop": subs.with_body(sol, IOU, "while True:\n    pass"),
        "bomb": subs.with_body(sol, IOU, "blocks = []\nfor _ in range(64):  # at most 4 GB\n"
                               "    blocks.append(bytearray(64 * 2**20))\nreturn None"),
        "os_exit": subs.with_body(sol, IOU, "import os\nos._exit(0)"),
        "sys_exit": subs.with_body(sol, IOU, "import sys\nsys.exit(0)"),
        "os_exit_top": subs.with_body(sol, IOU, before="import os\nos._exit(0)"),
        "sys_exit_top": subs.with_body(sol, IOU, before="import sys\nsys.exit(0)"),
        "writer": subs.with_body(sol, IOU, "raise NotImplementedError",
                                 before=FORGE.replace("{OUT_DIR!r}", repr(str(out)))),
        "reader": subs.with_body(sol, IOU, READ_HIDDEN.replace(
            "{HIDDEN_DIR!r}", repr(str(hidden))).replace("STEP", "1")),
        "reverser": subs.with_body(sol, IOU, READ_HIDDEN.replace(
            "{HIDDEN_DIR!r}", repr(str(hidden))).replace("STEP", "-1")),
        "magic": subs.with_body(sol, IOU, MAGIC),
        "julia": subs.with_kernel(sol, "julia", "julia"),
        "wrong_chapter": subs.solution("02"),
        "invalid": json.dumps(sol)[:5000],
        "empty": b"",
    }
    return [subs.save(nb, folder, name, "01") for name, nb in hostile.items()]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Graded:
    """The exercise-level class, graded in one call without the notebook run."""
    tmp = tmp_path_factory.mktemp("hostile")
    out, hidden = tmp / "grades", hidden_tests(tmp / "hidden")
    exercise_class(tmp / "collected", out, hidden)
    graded = grade([tmp / "collected"], out, "--chapter", "01", "--jobs", "2", "--no-run",
                   "--timeout", str(TIMEOUT), "--memory", str(MEMORY), "--hidden", str(hidden))
    graded.hidden = hidden
    return graded


# Tries the library, swallows what the blocker raises, then answers right by itself.
CATCHER = """try:
    import course.masks
    course.masks.mask_iou(a, b)
except BaseException:
    pass
a, b = a.bool().flatten(1).double(), b.bool().flatten(1).double()
inter = a @ b.T
union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
return torch.where(union > 0, inter / union.clamp(min=1), 0.0)"""


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Graded:
    """mask_iou answered by the library's own version, three ways; mask_dice right."""
    tmp = tmp_path_factory.mktemp("library")
    sol, call = subs.solution("01"), "from course.masks import mask_iou\nreturn mask_iou(a, b)"
    hostile = {
        "caller": subs.with_body(sol, IOU, call),
        "patcher": subs.with_body(sol, IOU, call, before=PATCH_CHECKS),
        "hoarder": subs.with_body(sol, IOU, "return SAVED[0](a, b)",
                                  before="import course.masks\n\n"
                                  "SAVED = [course.masks.mask_iou]  # out of the blocker's sight"),
        "catcher": subs.with_body(sol, IOU, CATCHER),
    }
    paths = [subs.save(nb, tmp / "collected", name, "01") for name, nb in hostile.items()]
    return grade(paths, tmp / "grades", "--chapter", "01", "--no-run", "--timeout",
                 str(TIMEOUT), "--memory", str(MEMORY), "--hidden",
                 str(hidden_tests(tmp / "hidden")))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Graded:
    """Submissions whose problems matter to the notebook run, graded with it."""
    tmp = tmp_path_factory.mktemp("hostile_run")
    sol = subs.solution("01")
    hostile = {
        "raises_at_top": subs.with_top_cell(sol, 'raise RuntimeError("the top cell fails")'),
        "julia": subs.with_kernel(sol, "julia", "julia"),
        "exit_at_top": subs.with_body(sol, IOU, before="import os\nos._exit(0)"),
        "spam": subs.with_body(sol, IOU, before=SPAM),
    }
    paths = [subs.save(nb, tmp / "collected", name, "01") for name, nb in hostile.items()]
    # the defaults of --timeout and --memory: each cell of the run gets --timeout seconds
    return grade(paths, tmp / "grades", "--chapter", "01", "--jobs", "2")


def exercise(graded: Graded, student: str, grade_id: str) -> dict:
    return graded.student(student)["exercises"][grade_id]


def assert_unaffected(graded: Graded, student: str) -> None:
    """mask_dice, untouched in the submission, still earns its points."""
    dice = exercise(graded, student, DICE)
    assert (dice["outcome"], dice["earned"]) == ("passed", 2), dice


# --- the whole class ------------------------------------------------------------------------


def test_the_grader_exits_0_and_grades_every_submission(graded):
    assert graded.returncode == 0, graded.output[-3000:]
    names = sorted(graded.grades["students"])
    assert names == sorted(graded.submitted)
    assert [row["student"] for row in graded.rows] == names
    assert sorted(graded.feedback) == names  # and no file a submission put there


def test_grades_csv_agrees_with_grades_json(graded):
    assert graded.returncode == 0
    header = ["student", IOU, DICE, "total", "max", "percent", "status"]
    assert list(graded.rows[0]) == header
    for row in graded.rows:
        entry = graded.grades["students"][row["student"]]
        assert row["status"] == entry["status"]
        assert float(row["total"]) == entry["total"] and float(row["max"]) == 4
        assert [float(row[g]) for g in (IOU, DICE)] == \
            [entry["exercises"][g]["earned"] for g in (IOU, DICE)]


def test_the_solution_earns_every_point(graded):
    honest = graded.student("honest")
    assert (honest["status"], honest["total"], honest["percent"]) == ("ok", 4, 100.0)


def test_stubs_are_not_yet(graded):
    for name in ("stubs", "forged"):  # forged: the stubs wearing the solution's outputs
        student = graded.student(name)
        assert student["total"] == 0 and student["status"] == "ok"
        assert {e["outcome"] for e in student["exercises"].values()} == {"not yet"}


# --- locked check cells ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deleted", "edited", "duplicated"])
def test_a_changed_check_cell_is_restored(graded, name):
    student = graded.student(name)
    assert (student["status"], student["total"]) == ("restored", 4)
    assert IOU in " ".join(student["notes"])
    assert IOU in graded.feedback[name]


# --- exercises that do not return -----------------------------------------------------------


def test_an_infinite_loop_is_a_timeout_of_that_exercise_only(graded):
    iou = exercise(graded, "loop", IOU)
    assert (iou["outcome"], iou["earned"]) == ("timeout", 0)
    assert_unaffected(graded, "loop")
    assert graded.student("loop")["status"] == "ok"


def test_a_memory_bomb_is_stopped_at_the_cap(graded):
    iou = exercise(graded, "bomb", IOU)
    assert (iou["outcome"], iou["earned"]) == ("memory", 0)
    assert_unaffected(graded, "bomb")


@pytest.mark.parametrize("name", ["os_exit", "sys_exit", "os_exit_top", "sys_exit_top"])
def test_exiting_crashes_only_that_exercise(graded, name):
    iou = exercise(graded, name, IOU)
    assert iou["outcome"] in ("crashed", "failed") and iou["earned"] == 0, iou
    assert_unaffected(graded, name)


def test_os_exit_in_the_function_is_a_crash(graded):
    assert exercise(graded, "os_exit", IOU)["outcome"] == "crashed"


# --- attacks on the grade -------------------------------------------------------------------


def test_grades_written_by_a_submission_are_replaced(graded):
    writer = graded.student("writer")
    assert exercise(graded, "writer", IOU)["outcome"] == "not yet"
    assert writer["total"] == 2
    assert "ghost" not in graded.grades["students"]
    assert [r["total"] for r in graded.rows if r["student"] == "writer"] == ["2"]
    assert "ghost" not in graded.feedback


def leaked(text: str, feedback: str) -> list[str]:
    """The lines of ``text`` (12 characters or more, stripped) that ``feedback`` quotes, whole
    or their first 30 characters (a message cut short keeps a line's beginning)."""
    lines = {line.strip() for line in text.splitlines() if len(line.strip()) >= 12}
    return sorted(line for line in lines if line[:30] in feedback)


def test_reading_the_hidden_tests_gains_nothing_and_leaks_nothing(graded):
    """mask_iou reads its hidden tests' file, prints it and raises it as its message."""
    iou = exercise(graded, "reader", IOU)
    assert (iou["outcome"], iou["earned"]) == ("failed", 0)
    assert_unaffected(graded, "reader")
    feedback = graded.feedback["reader"]
    assert CANARY not in feedback
    assert leaked((graded.hidden / f"{IOU}.py").read_text(), feedback) == []


def test_hidden_tests_read_backwards_do_not_leak_either(graded):
    """The same, with the text reversed in the message: keeping the hidden tests out of the
    feedback must not depend on the learner's code quoting them verbatim."""
    iou = exercise(graded, "reverser", IOU)
    assert (iou["outcome"], iou["earned"]) == ("failed", 0)
    feedback = graded.feedback["reverser"]
    assert CANARY[::-1] not in feedback
    assert leaked((graded.hidden / f"{IOU}.py").read_text()[::-1], feedback) == []


@pytest.mark.parametrize("name", ["caller", "patcher", "hoarder", "catcher"])
def test_an_answer_that_calls_the_library_fails(library, name):
    """caller: mask_iou returns the library's mask_iou; patcher: the same, after the cell has
    replaced every checker by one that prints a pass line and switched the library blocking
    off in its process; hoarder: through a reference kept in a list when the cell ran;
    catcher: calls the library, swallows the blocker's exception, then answers right."""
    iou = exercise(library, name, IOU)
    assert (iou["outcome"], iou["earned"]) == ("failed", 0), iou
    assert "library" in " ".join(iou["messages"])
    assert_unaffected(library, name)
    assert "15/15" not in library.feedback[name].split(DICE)[0]


def test_an_object_equal_to_everything_is_not_an_answer(graded):
    iou = exercise(graded, "magic", IOU)
    assert (iou["outcome"], iou["earned"]) == ("failed", 0)
    assert_unaffected(graded, "magic")


def test_a_process_left_behind_cannot_rewrite_the_grades(tmp_path):
    """The exercise cell starts a daemon (double fork, new session) that keeps writing a fake
    grades.csv into --out after the worker has gone; the grades on disk must stay the
    grader's."""
    out, pid_file = tmp_path / "grades", tmp_path / "lurker.pid"
    lurker = LURKER.replace("{PID_FILE!r}", repr(str(pid_file))).replace(
        "{OUT_DIR!r}", repr(str(out)))
    path = subs.save(subs.with_body(subs.stubs("00"), "ch00-mask-area", before=lurker),
                     tmp_path / "collected", "lurker", "00")
    try:
        graded = grade([path], out, "--chapter", "00", "--no-run", "--timeout", str(TIMEOUT),
                       "--memory", str(MEMORY))
        time.sleep(1.0)  # the daemon writes every 0.05 s
        rows = list(csv.DictReader((out / "grades.csv").open()))
        assert graded.returncode == 0, graded.output[-3000:]
        assert [(r["student"], r["total"], r["status"]) for r in rows] == [("lurker", "0", "ok")]
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


# --- files that are not notebooks of this chapter -------------------------------------------


@pytest.mark.parametrize("name", ["invalid", "empty"])
def test_an_unreadable_file_is_invalid(graded, name):
    student = graded.student(name)
    assert (student["status"], student["total"]) == ("invalid", 0)
    assert all(e["earned"] == 0 for e in student["exercises"].values())


def test_another_chapter_is_the_wrong_chapter(graded):
    student = graded.student("wrong_chapter")
    assert (student["status"], student["total"]) == ("wrong-chapter", 0)


def test_the_kernel_named_in_the_notebook_is_ignored(graded, run):
    assert graded.student("julia")["total"] == 4
    julia = run.student("julia")
    assert (julia["status"], julia["total"], julia["notes"]) == ("ok", 4, [])


# --- the notebook run -----------------------------------------------------------------------


def test_an_exception_at_the_top_is_a_note_not_a_grade(run):
    student = run.student("raises_at_top")
    assert (student["status"], student["total"]) == ("ok", 4)
    assert any("RuntimeError" in note for note in student["notes"]), student["notes"]
    assert "RuntimeError" in run.feedback["raises_at_top"]


def test_a_kernel_that_exits_is_a_note_and_costs_one_exercise(run):
    student = run.student("exit_at_top")
    assert exercise(run, "exit_at_top", IOU)["earned"] == 0
    assert_unaffected(run, "exit_at_top")
    assert student["notes"], "the notebook run's kernel died: a note should say so"


def test_100_mb_of_output_stays_out_of_the_grader_and_the_feedback(run, graded):
    spam = run.student("spam")
    assert (spam["status"], spam["total"]) == ("ok", 4)
    assert len(run.feedback["spam"]) < 20_000 and "spamspam" not in run.feedback["spam"]
    assert len(json.dumps(spam)) < 20_000
    # the grader itself: no more memory than for the class that prints nothing
    assert run.peak_mb < graded.peak_mb + 50, (run.peak_mb, graded.peak_mb)  # MB
