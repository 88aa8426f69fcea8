"""Grading speed: submissions per minute of ``python -m course grade``, with and without the
notebook run.

    .venv/bin/python bench/grading_speed.py [--chapters 01 02 03 04] [--jobs 2] [--timeout 10]

For each chapter, a class of 20 submissions made from the solution notebook by
``tests/submissions.py``: 12 correct, 3 release stubs, 3 wrong answers (every exercise returns
None), one with an exception in a cell at the top, and one whose first exercise never returns.
Each class is graded by the real command in a subprocess, as a teacher runs it (start-up
included), once with ``--no-run`` and once with the notebook run; before the times are printed
the grades are checked: full points for the correct ones and the one with the exception, none
for the stubs and the wrong answers, and a timeout of the first exercise of the loop. The
target is at least 10 submissions per minute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import submissions as subs  # noqa: E402  (tests/submissions.py builds the class)

TARGET = 10  # submissions per minute


def make_class(chapter: str, folder: Path) -> dict[str, str]:
    """Write 20 submissions of ``chapter`` to ``folder``; returns the kind of each student."""
    sol, stub = subs.solution(chapter), subs.stubs(chapter)
    first = subs.exercise_ids(sol)[0]
    kinds = {"correct": sol, "stubs": stub, "wrong": subs.wrong_answers(sol),
             "raises": subs.with_top_cell(sol, 'raise RuntimeError("a broken first cell")'),
             "loop": subs.with_body(sol, first, "while True:\n    pass")}
    counts = {"correct": 12, "stubs": 3, "wrong": 3, "raises": 1, "loop": 1}
    students = {}
    for kind, n in counts.items():
        for i in range(n):
            name = f"{kind}{i:02d}"
            subs.save(kinds[kind], folder, name, chapter)
            students[name] = kind
    return students


def check(grades: dict, students: dict[str, str], first: str) -> None:
    """The grades are what each kind of submission deserves."""
    for name, kind in students.items():
        got = grades["students"][name]
        outcomes = {g: e["outcome"] for g, e in got["exercises"].items()}
        if kind in ("correct", "raises"):
            assert got["total"] == got["max"], (name, outcomes)
        elif kind == "loop":
            assert outcomes[first] == "timeout", (name, outcomes)
        else:
            assert got["total"] == 0, (name, outcomes)


def grade(folder: Path, out: Path, chapter: str, options: list[str]) -> float:
    """Seconds taken by one ``python -m course grade`` of the folder."""
    command = [sys.executable, "-m", "course", "grade", str(folder), "--out", str(out),
               "--chapter", chapter, *options]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", nargs="+", default=["01", "02", "03", "04"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=10,
                        help="seconds per exercise worker (grade --timeout)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; grade --jobs "
          f"{args.jobs} --timeout {args.timeout}")
    print(f"{'chapter':<22} {'subs':>4} {'ex':>3} {'no-run':>8} {'per min':>8} "
          f"{'with run':>9} {'per min':>8}")
    totals = [0, 0.0, 0.0]
    options = ["--jobs", str(args.jobs), "--timeout", str(args.timeout)]
    for chapter in args.chapters:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "collected"
            students = make_class(chapter, folder)
            first = subs.exercise_ids(subs.solution(chapter))[0]
            seconds = []
            for run, extra in (("no-run", ["--no-run"]), ("run", [])):
                out = Path(tmp) / run
                seconds.append(grade(folder, out, chapter, options + extra))
                check(json.loads((out / "grades.json").read_text()), students, first)
        n = len(students)
        totals = [totals[0] + n, totals[1] + seconds[0], totals[2] + seconds[1]]
        print(f"{subs.chapter_file(chapter)[:-6]:<22} {n:>4} "
              f"{len(subs.exercise_ids(subs.solution(chapter))):>3} {seconds[0]:>7.1f}s "
              f"{60 * n / seconds[0]:>8.1f} {seconds[1]:>8.1f}s {60 * n / seconds[1]:>8.1f}")
    n, no_run, with_run = totals
    print(f"{'all':<22} {n:>4} {'':>3} {no_run:>7.1f}s {60 * n / no_run:>8.1f} "
          f"{with_run:>8.1f}s {60 * n / with_run:>8.1f}")
    print(f"per min = submissions graded per minute, start-up included; target >= {TARGET}. "
          f"Load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
