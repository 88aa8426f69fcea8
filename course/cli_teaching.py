"""The teaching commands of ``python -m course``: ``check``, ``release`` and ``student-copies``.

See :mod:`course.teaching` for what a student version is.
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
    r.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                   help="the solution notebooks (default: notebooks)")
    s = commands.add_parser(
        "student-copies", help="add the missing chapters to the learner's folder",
        description="Write the student version of each chapter that the folder does not "
        "have yet; a notebook already there is never changed (make lab runs this).")
    s.add_argument("--to", type=Path, default=Path("student"),
                   help="the learner's folder (default: student)")
    s.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                   help="the solution notebooks (default: notebooks)")


TEACHING_COMMANDS = ("check", "release", "student-copies")


def run_teaching_command(args: argparse.Namespace) -> int:
    """Carry out ``check``, ``release`` or ``student-copies``; returns the exit status."""
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
