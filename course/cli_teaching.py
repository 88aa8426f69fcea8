"""The teaching commands of ``python -m course``: ``check``, ``release``, ``student-copies``,
``grade`` and ``merge``.

See :mod:`course.teaching` for what a student version is and :mod:`course.grading` for how a
submission is graded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from course.teaching import check_notebook, make_student_copies, release


def add_teaching_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``check``, ``release`` and ``student-copies`` to the command parser."""
    c = commands.add_parser(
        "check", help="self-check a notebook's exercises (not a grade)",
        description="Run a notebook top to bottom in a fresh kernel and print, per exercise, "
        "passed / not yet / failed with the checker's message and the points. This is a "
        "self-check of your own copy, not a grade. Exit status 0 only when every exercise "
        "passes.")
    c.add_argument("notebook", type=Path, help="a chapter notebook, e.g. student/01_iou_dice.ipynb")
    c.add_argument("--timeout", type=float, default=600,
                   help="seconds allowed per cell (default 600); a slower cell is interrupted")
    r = commands.add_parser(
        "release", help="write the student version of every chapter",
        description="Write the student version of every chapter notebook to a folder: each "
        "solution becomes a stub that raises NotImplementedError, hidden tests are removed, "
        "outputs are cleared and check cells are locked. Replaces the notebooks there.")
    r.add_argument("--out", type=Path, required=True, help="folder to write the notebooks to")
    _add_notebooks_option(r)
    s = commands.add_parser(
        "student-copies", help="add the missing chapters to the learner's folder",
        description="Write the student version of each chapter that the folder does not "
        "have yet; a notebook already there is never changed (make lab runs this).")
    s.add_argument("--to", type=Path, default=Path("student"),
                   help="the learner's folder (default: student)")
    _add_notebooks_option(s)
    _add_grading_commands(commands)


def _add_grading_commands(commands: argparse._SubParsersAction) -> None:
    g = commands.add_parser(
        "grade", help="grade submitted notebooks of one chapter",
        description="Grade learners' notebooks of one chapter. Each exercise runs in a fresh, "
        "confined worker process; the chapter's checker and the hidden tests run in the "
        "grader and earn the exercise's points only when all pass. Locked check cells that "
        "were deleted, edited or duplicated are restored from the solution notebook first. "
        "The notebook is also run top to bottom, for feedback only. Writes grades.csv, "
        "grades.json and feedback/<student>.md to --out. Exit status 0 when grading "
        "completed, whatever the grades.",
        epilog="Student ids: collected/alice/01_iou_dice.ipynb is alice's (a file named after "
        "a chapter takes its folder's name), collected/bob.ipynb is bob's. Outcomes: passed, "
        "failed, not yet, missing, timeout, memory, crashed.")
    g.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                   help="notebooks, or folders searched recursively for *.ipynb")
    g.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder for grades.csv, grades.json and feedback/")
    g.add_argument("--chapter", metavar="NN", help="the chapter graded, 01 or 01_iou_dice "
                   "(default: from the file names, when they all agree)")
    g.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="submissions graded at the same time (default 1); the notebook runs "
                   "take most of the time, and with 2 they overlap")
    g.add_argument("--shard", metavar="I/N",
                   help="grade only shard I of N: the submissions at positions I-1, I-1+N, ... "
                   "of the list sorted by student id (join the shards with merge)")
    g.add_argument("--timeout", type=_positive_float, default=60, metavar="S",
                   help="seconds of work per exercise (default 60); in the notebook run, each "
                   "cell gets as much and the whole run max(10 x timeout, 300)")
    g.add_argument("--memory", type=_positive_int, default=4096, metavar="MB",
                   help="memory cap of each worker and of the notebook run, in MB (default 4096)")
    g.add_argument("--hidden", type=Path, default=Path("teacher/hidden_tests"),
                   metavar="DIR",
                   help="the hidden tests, <grade_id>.py (default: teacher/hidden_tests)")
    _add_notebooks_option(g)
    g.add_argument("--no-run", action="store_true",
                   help="skip the notebook run (feedback only; the grade does not change): "
                   "about 1 s per submission instead of 10 or more")
    _add_merge_command(commands)


def _add_merge_command(commands: argparse._SubParsersAction) -> None:
    m = commands.add_parser(
        "merge", help="join the outputs of several grade --shard runs",
        description="Join the grades.json of several grade --shard runs into one grades.csv, "
        "grades.json and feedback/. The shards must grade the same chapter and may not share "
        "a student.")
    m.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR",
                   help="the --out folders of the shard runs")
    m.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder for the joined outputs")


def _add_notebooks_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"), metavar="DIR",
                        help="the solution notebooks (default: notebooks)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


TEACHING_COMMANDS = ("check", "release", "student-copies", "grade", "merge")


def run_teaching_command(args: argparse.Namespace) -> int:
    """Carry out ``check``, ``release``, ``student-copies``, ``grade`` or ``merge``; returns
    the exit status."""
    if args.command in ("grade", "merge"):
        return _run_grading_command(args)
    if args.command == "check":
        if not args.notebook.is_file():
            raise FileNotFoundError(f"no notebook at {args.notebook}")
        report = check_notebook(args.notebook, timeout=args.timeout)
        print(report.text())
        return 0 if report.all_passed else 1
    if args.command == "release":
        written = release(args.notebooks, args.out)
        print(f"wrote the student version of {len(written)} chapters to {args.out}")
        return 0
    written = make_student_copies(args.notebooks, args.to)
    for path in written:
        print(f"new in your copy: {path}")
    return 0


def _run_grading_command(args: argparse.Namespace) -> int:
    from course import grading  # the grader and its worker server load only when asked for

    if args.command == "merge":
        grades = grading.merge(args.shards, args.out)
        n = len(grades["students"])
        print(f"merged {n} student{'s' if n != 1 else ''} of chapter {grades['chapter']} "
              f"into {args.out}")
        return 0
    options = grading.GradeOptions(timeout=args.timeout, memory_mb=args.memory,
                                   hidden_dir=args.hidden, run_notebook=not args.no_run,
                                   jobs=args.jobs)
    spec = grading.parse_shard(args.shard) if args.shard else None
    grades = grading.grade(args.submissions, args.out, args.chapter, options, args.notebooks,
                           spec)
    n = len(grades["students"])
    print(f"graded {n} submission{'s' if n != 1 else ''} of chapter {grades['chapter']}: "
          f"{args.out / 'grades.csv'}")
    return 0
