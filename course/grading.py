"""Grading submitted notebooks: ``python -m course grade`` and ``python -m course merge``.

The grade comes only from the grader's own processes. For each submission the grader

1. reads the notebook (an unreadable one is ``invalid``) and restores its locked check cells
   from the teacher's solution notebook, by ``grade_id``: deleted ones come back after their
   exercise, edited ones are reverted, duplicates are dropped; each is noted;
2. runs the restored notebook in a kernel of its own, under the memory cap and a per-cell
   timeout, for feedback only (``--no-run`` skips it); it runs while step 3 goes on, with its
   check cells empty (step 3 is the check);
3. grades each exercise in a fresh untrusted worker (:mod:`course.grading_worker`): the
   worker runs the exercise cell (with the imports of the other cells) and computes what the
   grader asks; the grader runs the chapter's visible checker from :mod:`course.checks` and the
   teacher's hidden tests on a proxy of the learner's function. Nothing the submission prints,
   writes or patches reaches the grader: results come back in a safe encoding, without pickle.

Feedback never quotes free text that a submission's code produced: an exception is reported
by its (builtin) name, not its message, and lines that quote the hidden tests' files are
removed, since that code can read any file the grader can. Whatever processes a submission
left behind are killed before the outputs are written (the grader adopts orphans as a child
subreaper).

An exercise earns its points when the visible checker and every hidden test pass. Outcomes:
``passed``, ``failed``, ``not yet`` (it still raises ``NotImplementedError``), ``missing``
(no exercise cell, or it does not define the function), ``timeout``, ``memory``, ``crashed``.

Hidden tests live in ``teacher/hidden_tests/<grade_id>.py`` (outside the package and the
release): functions ``test_<name>(fn)`` that call ``fn`` and raise ``AssertionError`` with a
message. Feedback names them and shows their messages, never their code.

Outputs (``--out DIR``, written at the end, each file replaced atomically): ``grades.csv``,
``grades.json`` and ``feedback/<student>.md``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import csv
import importlib.util
import io
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course import grading_worker as worker
from course.teaching import cell_source, chapters, nbgrader_metadata

PASSED, FAILED, NOT_YET, MISSING = "passed", "failed", "not yet", "missing"
TIMEOUT, MEMORY, CRASHED = "timeout", "memory", "crashed"
OK, RESTORED, INVALID, WRONG_CHAPTER = "ok", "restored", "invalid", "wrong-chapter"
MAX_NOTEBOOK_BYTES = 50 * 2**20
"""A submission larger than this is ``invalid``."""
_CHAPTER_FILE = re.compile(r"^(\d\d)_[^/]*\.ipynb$")


def notebook_run_limits(timeout: float) -> tuple[float, float]:
    """The notebook run's limits for an exercise timeout of ``timeout`` seconds: each cell gets
    ``timeout`` (a check cell then has what the exercise had), the whole run
    ``max(10 * timeout, 300)`` seconds, after which its processes are killed."""
    return timeout, max(10 * timeout, 300)


# ---------------------------------------------------------------------------------------------
# The chapter: exercises, points and check cells, from the solution notebook
# ---------------------------------------------------------------------------------------------


@dataclass
class Exercise:
    """One exercise of a chapter: ``grade_id`` (``ch01-mask-iou``), its points, the checker the
    check cell calls (``check_mask_iou``), the function it is given (``mask_iou``) and the
    solution notebook's check cell, from which a submission's is restored."""

    grade_id: str
    points: float
    checker: str
    function: str
    check_cell: dict


@dataclass
class Chapter:
    """A chapter to grade: its name (``01_iou_dice``) and exercises, in notebook order."""

    name: str
    exercises: list[Exercise]

    @property
    def max_points(self) -> float:
        return sum(e.points for e in self.exercises)


def _check_call(source: str) -> tuple[str, str]:
    """``check_mask_iou(mask_iou)`` -> ``("check_mask_iou", "mask_iou")``."""
    for node in reversed(ast.parse(source).body):
        call = getattr(node, "value", None)
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id.startswith("check_") and len(call.args) == 1
                and isinstance(call.args[0], ast.Name)):
            return call.func.id, call.args[0].id
    raise ValueError(f"a check cell does not call a checker on a function: {source!r}")


def load_chapter(notebooks_dir: Path, chapter: str) -> Chapter:
    """The chapter ``chapter`` (``"01"`` or ``"01_iou_dice"``) of the solution notebooks."""
    number = chapter[:2]
    found = [p for p in chapters(Path(notebooks_dir))
             if p.name.startswith(f"{number}_") and chapter in (number, p.stem)]
    if len(found) != 1:
        raise ValueError(f"--chapter {chapter}: no solution notebook {chapter}*.ipynb in "
                         f"{notebooks_dir}" if not found else f"--chapter {chapter} is ambiguous")
    nb = json.loads(found[0].read_text(encoding="utf-8"))
    exercises = []
    for cell in nb["cells"]:
        meta = nbgrader_metadata(cell)
        if cell["cell_type"] == "code" and meta.get("grade") and not meta.get("solution"):
            checker, function = _check_call(cell_source(cell))
            exercises.append(Exercise(meta["grade_id"].removesuffix("-check"),
                                      meta.get("points", 0), checker, function, cell))
    if not exercises:
        raise ValueError(f"chapter {found[0].stem} has no exercises to grade")
    return Chapter(found[0].stem, exercises)


# ---------------------------------------------------------------------------------------------
# Submissions: student ids, the chapter, shards
# ---------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """A notebook to grade and whose it is."""

    student: str
    path: Path


def student_id(path: Path) -> str:
    """``collected/alice/01_iou_dice.ipynb`` -> ``alice`` (the file is named after a chapter:
    its folder names the student); ``collected/alice.ipynb`` -> ``alice``."""
    path = Path(path)
    if _CHAPTER_FILE.match(path.name):
        return path.resolve().parent.name
    return path.stem


def find_submissions(paths: Iterable[Path]) -> list[Submission]:
    """The notebooks among ``paths`` (a folder is searched recursively, without
    ``.ipynb_checkpoints``), sorted by student id; two with the same id are an error."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.ipynb")
                            if ".ipynb_checkpoints" not in p.parts and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no submission at {path}")
    if not files:
        raise ValueError("no notebooks (*.ipynb) among the submissions")
    seen: dict[str, Path] = {}
    for file in files:
        student = student_id(file)
        if student in ("", ".", ".."):
            raise ValueError(f"cannot tell whose submission {file} is")
        if student in seen:
            raise ValueError(f"two submissions for student {student!r}: {seen[student]} and "
                             f"{file}")
        seen[student] = file
    return [Submission(s, seen[s]) for s in sorted(seen)]


def infer_chapter(submissions: Sequence[Submission]) -> str:
    """The chapter number all the submissions' file names agree on, else an error."""
    numbers = {m.group(1) if (m := _CHAPTER_FILE.match(s.path.name)) else None
               for s in submissions}
    if len(numbers) != 1 or None in numbers:
        raise ValueError("cannot tell the chapter from the file names; give --chapter NN")
    return numbers.pop()


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``, with ``1 <= I <= N``."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--shard {text}: expected I/N with 1 <= I <= N, e.g. 1/4")
    return int(match.group(1)), int(match.group(2))


def shard(submissions: Sequence[Submission], index: int, count: int) -> list[Submission]:
    """Shard ``index`` of ``count`` (1-based): the submissions at positions ``index - 1``,
    ``index - 1 + count``, ... of the list sorted by student id."""
    ordered = sorted(submissions, key=lambda s: s.student)
    return ordered[index - 1::count]


# ---------------------------------------------------------------------------------------------
# Reading a submission and restoring its check cells
# ---------------------------------------------------------------------------------------------


class InvalidNotebook(ValueError):
    """The file is not a readable nbformat-4 notebook."""


def read_notebook(path: Path) -> dict:
    """The notebook's JSON, checked to be nbformat 4 with well-formed cells."""
    path = Path(path)
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"the file is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    try:
        nb = json.loads(path.read_bytes().decode("utf-8-sig"))  # a BOM from some editors
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InvalidNotebook(f"not a notebook (bad JSON: {str(err)[:200]})") from None
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"),
                                                                             list):
        raise InvalidNotebook("not an nbformat-4 notebook")
    for cell in nb["cells"]:
        source = cell.get("source") if isinstance(cell, dict) else None
        if (not isinstance(source, str | list) or cell.get("cell_type") not in
                ("code", "markdown", "raw") or not isinstance(cell.get("metadata", {}), dict)):
            raise InvalidNotebook("a cell is not a notebook cell")
        if isinstance(source, list) and not all(isinstance(s, str) for s in source):
            raise InvalidNotebook("a cell's source is not text")
        if not isinstance(cell.get("metadata", {}).get("nbgrader", {}), dict):
            raise InvalidNotebook("a cell's nbgrader metadata is not a mapping")
    return nb


def _is_check(cell: dict) -> bool:
    meta = nbgrader_metadata(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get(
        "solution")


def _grade_id(cell: dict) -> str | None:
    value = nbgrader_metadata(cell).get("grade_id")
    return value if isinstance(value, str) else None


def _restored_cell(solution_cell: dict) -> dict:
    cell = copy.deepcopy(solution_cell)
    cell["outputs"], cell["execution_count"] = [], None
    cell["metadata"].pop("execution", None)
    return cell


def restore_check_cells(nb: dict, chapter: Chapter) -> tuple[dict, list[str]]:
    """A copy of ``nb`` whose check cells are the solution's (by ``grade_id``): a deleted one
    is put back after its exercise cell (or at the end), an edited one is reverted, duplicates
    are dropped. Returns the notebook and a note for each change."""
    cells, notes = [copy.deepcopy(c) for c in nb["cells"]], []
    for exercise in chapter.exercises:
        check_id = f"{exercise.grade_id}-check"
        want = _restored_cell(exercise.check_cell)
        places = [i for i, c in enumerate(cells) if _grade_id(c) == check_id]
        for i in reversed(places[1:]):
            del cells[i]
        if len(places) > 1:
            notes.append(f"the check cell of {exercise.grade_id} appeared {len(places)} times: "
                         "the copies were removed")
        if places:
            cell = cells[places[0]]
            if (cell_source(cell).rstrip() != cell_source(want).rstrip()
                    or cell["cell_type"] != "code"
                    or nbgrader_metadata(cell) != nbgrader_metadata(want)):
                notes.append(f"the check cell of {exercise.grade_id} was edited: it was restored")
                cells[places[0]] = want
            continue
        at = next((i + 1 for i, c in enumerate(cells) if _grade_id(c) == exercise.grade_id),
                  len(cells))
        cells.insert(at, want)
        notes.append(f"the check cell of {exercise.grade_id} was missing: it was put back")
    out = {k: v for k, v in nb.items() if k != "cells"}
    out["cells"] = cells
    out["metadata"] = {k: v for k, v in nb.get("metadata", {}).items()
                       if k not in ("kernelspec", "language_info")}
    return out, notes


def _exercise_cell(nb: dict, exercise: Exercise) -> tuple[int | None, list[str]]:
    """The index of the submission's cell for ``exercise`` (by ``grade_id``; failing that, the
    last code cell that defines the function) and a note when it was not found by id."""
    code = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    by_id = [i for i in code if _grade_id(nb["cells"][i]) == exercise.grade_id]
    if by_id:
        note = [f"the exercise cell {exercise.grade_id} appears {len(by_id)} times: the first "
                "was graded"] if len(by_id) > 1 else []
        return by_id[0], note
    defines = re.compile(rf"^def\s+{re.escape(exercise.function)}\s*\(", re.MULTILINE)
    by_def = [i for i in code if defines.search(cell_source(nb["cells"][i]))]
    if by_def:
        return by_def[-1], [f"no cell carries the id {exercise.grade_id}: the last cell that "
                            f"defines {exercise.function} was graded"]
    return None, []


def _other_chapter(nb: dict, chapter: Chapter) -> bool:
    """No exercise of ``chapter`` by id, but exercises of another chapter."""
    ours = {e.grade_id for e in chapter.exercises}
    ids = {_grade_id(c) for c in nb["cells"] if nbgrader_metadata(c).get("solution")} - {None}
    prefix = f"ch{chapter.name[:2]}-"
    return not ids & ours and any(re.match(r"ch\d\d-", i) and not i.startswith(prefix)
                                  for i in ids)


# ---------------------------------------------------------------------------------------------
# Workers and the proxy the checkers call
# ---------------------------------------------------------------------------------------------


class WorkerGone(BaseException):
    """The worker ran out of time or memory, or died. A BaseException, so that a checker's
    ``except Exception`` around the learner's call does not count it as one failed case."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome, self.detail = outcome, detail


class LearnerError(Exception):
    """Base of the exceptions that mirror what the learner's function raised in the worker."""


def safe_name(name: Any, default: str = "Exception") -> str:
    """``name`` when it is a builtin's name (``ValueError``, ``generator``), else ``default``:
    the names a submission sends back are shown in feedback, so they carry no free text."""
    name = str(name)
    known = name in vars(builtins) or name in _BUILTIN_TYPE_NAMES
    return name if known and name.isidentifier() else default


_BUILTIN_TYPE_NAMES = frozenset({
    "generator", "function", "method", "builtin_function_or_method", "module", "coroutine",
    "NoneType", "code", "frame", "traceback", "mappingproxy", "dict_keys", "dict_values",
    "dict_items", "list_iterator", "tuple_iterator", "range_iterator", "set_iterator",
    "SimpleNamespace", "Tensor", "ndarray"})
WITHHELD = "(its message is not shown by the grader: run your notebook to see it)"
"""What stands for the message of an exception raised by a submission's code: a message is
free text the code chose, and feedback must not carry what the code read (the hidden tests)."""


def _mirror(name: str) -> type[Exception]:
    """An exception class named ``name`` (``NotImplementedError`` stays one, so that checkers
    and the "not yet" outcome recognise it)."""
    name = safe_name(name)
    bases: tuple[type, ...] = (LearnerError,)
    if name == "NotImplementedError":
        bases = (NotImplementedError, LearnerError)
    return type(name, bases, {})


_START_LOCK = threading.Lock()
_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """While it lasts, new processes do not re-import the grader's ``__main__`` (a script or
    pytest): a worker needs only what the fork server preloaded."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def prepared(name: str) -> dict[str, Any]:
        data = original(name)
        for key in ("init_main_from_path", "init_main_from_name", "main_path"):
            data.pop(key, None)
        return data

    spawn.get_preparation_data = prepared
    try:
        yield
    finally:
        spawn.get_preparation_data = original


def _start(process: Any) -> None:
    """Start a worker through the fork server, which is started on first use (once per
    grader process), preloaded with torch and the course, with one thread per worker and a
    headless matplotlib."""
    from multiprocessing import forkserver

    with _START_LOCK, _without_main():
        multiprocessing.get_context("forkserver").set_forkserver_preload(worker.PRELOAD)
        saved = {k: os.environ.get(k) for k in _ENV}
        os.environ.update(_ENV)
        try:
            forkserver.ensure_running()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        process.start()


class Worker:
    """One exercise's untrusted worker process; ``timeout`` is the time it may spend working
    while the grader waits for it, over all calls."""

    def __init__(self, job: worker.Job, timeout: float) -> None:
        ctx = multiprocessing.get_context("forkserver")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker.serve_exercise, args=(child, job), daemon=True)
        _start(self.process)
        child.close()
        self.budget, self.timeout, self.memory_mb = timeout, timeout, job.memory_mb

    def receive(self) -> dict[str, Any]:
        """The worker's next message, decoded safely; WorkerGone when it cannot answer."""
        start = time.monotonic()
        ready = self.conn.poll(max(self.budget, 0))
        self.budget -= time.monotonic() - start
        if not ready:
            self.kill()
            raise WorkerGone(TIMEOUT, f"your code ran past the time limit of {self.timeout:g} s")
        try:
            message = worker.decode(self.conn.recv_bytes(worker.MAX_RESULT_BYTES + 2**20))
        except (EOFError, OSError):
            raise WorkerGone(CRASHED, self._death()) from None
        except worker.DecodingError:
            self.kill()
            raise WorkerGone(CRASHED, "the process running your code sent something that is "
                                      "not a result") from None
        if message.get("kind") == "memory":
            self.kill()
            raise WorkerGone(MEMORY, f"your code used more than the {self.memory_mb} MB of "
                                     "memory it may use")
        return message

    def call(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        try:
            self.conn.send_bytes(pickle.dumps((args, kwargs)))
        except OSError:
            raise WorkerGone(CRASHED, self._death()) from None
        return self.receive()

    def _death(self) -> str:
        self.process.join(1)
        self.kill()
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            return f"the process running your code was killed by signal {name}"
        return f"the process running your code ended (exit status {code})"

    def kill(self) -> None:
        """Kill the worker's whole process group (what it forked too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.kill()

    def close(self) -> None:
        if self.conn.closed:
            return
        with contextlib.suppress(OSError):
            self.conn.send_bytes(pickle.dumps(None))
        self.process.join(0.2)
        self.kill()
        self.process.join(1)
        self.conn.close()


class Proxy:
    """What the checker and the hidden tests call instead of the learner's function: the
    arguments go to the worker, the result (or the name and message of what the function
    raised) comes back. A plain callable, without ``__globals__``."""

    def __init__(self, worker_: Worker, checker: str = "") -> None:
        from course import checks

        self.worker = worker_
        self.calls = self.not_implemented = 0
        self.blocked = {f"{t.__module__}.{t.__qualname__}" for t in checks.targets_for(checker)
                        } if checker else set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from course import checks

        message = self.worker.call(args, kwargs)
        self.calls += 1
        kind = message.get("kind")
        if kind == "returned":
            return message.get("value")
        if kind == "library":
            called = str(message.get("qualname"))
            known = called in self.blocked or _loaded_name(called)
            raise checks.LibraryCalled(called if known else "functions")
        if kind == "raised":
            name = str(message.get("name"))
            self.not_implemented += name == "NotImplementedError"
            raise _mirror(name)(WITHHELD)
        self.worker.kill()
        raise WorkerGone(CRASHED, "the process running your code sent something that is not a "
                                  "result")


def _loaded_name(name: str) -> bool:
    """``name`` (``course.masks.mask_iou``) is an attribute of a module loaded here, so it is
    a library's name and not free text from a submission."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            obj: Any = module
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None) if attr.isidentifier() else None
            return obj is not None
    return False


# ---------------------------------------------------------------------------------------------
# Grading one exercise
# ---------------------------------------------------------------------------------------------


HiddenTest = tuple[str, Callable[[Any], None]]
_HIDDEN_CACHE: dict[Path, list[HiddenTest]] = {}


def load_hidden_tests(hidden_dir: Path, grade_id: str) -> list[HiddenTest]:
    """The ``test_<name>(fn)`` functions of ``hidden_dir/<grade_id>.py``, in file order, as
    ``(name, function)``; none when there is no such file."""
    path = (Path(hidden_dir) / f"{grade_id}.py").resolve()
    if path not in _HIDDEN_CACHE:
        tests: list[HiddenTest] = []
        if path.is_file():
            spec = importlib.util.spec_from_file_location(f"hidden_{grade_id.replace('-', '_')}",
                                                          path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            tests = [(name.removeprefix("test_"), fn) for name, fn in vars(module).items()
                     if name.startswith("test_") and callable(fn)]
        _HIDDEN_CACHE[path] = tests
    return _HIDDEN_CACHE[path]


def _record(outcome: str, points: float, messages: list[str]) -> dict[str, Any]:
    return {"outcome": outcome, "earned": points if outcome == PASSED else 0, "points": points,
            "messages": messages}


_HIDDEN_LINES: dict[Path, frozenset[str]] = {}


def _hidden_lines(hidden_dir: Path) -> frozenset[str]:
    """The lines (stripped, 6 characters or more) of every text file in the hidden tests'
    folder: a learner's code can read those files, so its messages are searched for them."""
    folder = Path(hidden_dir).resolve()
    if folder not in _HIDDEN_LINES:
        lines: set[str] = set()
        for path in folder.rglob("*") if folder.is_dir() else []:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                if path.is_file() and path.stat().st_size < 2**20:
                    lines |= {x.strip() for x in path.read_text("utf-8").splitlines()}
        _HIDDEN_LINES[folder] = frozenset(x for x in lines if len(x) >= 6)
    return _HIDDEN_LINES[folder]


def redact(message: str, hidden: frozenset[str]) -> str:
    """``message`` without the lines that quote the hidden tests' files."""
    kept = [line if not any(h in line for h in hidden) else "[text of the hidden tests removed]"
            for line in message.splitlines()]
    return "\n".join(kept)


def _run_checker(exercise: Exercise, proxy: Proxy) -> tuple[bool, str]:
    """The visible checker on the proxy: (passed, its line or its message)."""
    from course import checks

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            getattr(checks, exercise.checker)(proxy)
    except AssertionError as err:
        return False, str(err)
    except Exception as err:
        return False, f"the checker could not run your function: {type(err).__name__}: {err}"
    return True, printed.getvalue().strip()


def _run_hidden(tests: list[HiddenTest], proxy: Proxy) -> list[str]:
    """The hidden tests' failures, by name and message only."""
    from course import checks

    failures = []
    for name, test in tests:
        try:
            test(proxy)
        except checks.LibraryCalled as called:
            failures.append(f"hidden test {name}: your function calls the library's {called}, "
                            "which this exercise asks you to write yourself")
        except LearnerError as err:
            failures.append(f"hidden test {name}: your function raised {type(err).__name__}")
        except AssertionError as err:
            failures.append(f"hidden test {name}: {err}")
        except Exception as err:
            failures.append(f"hidden test {name}: your function's result could not be checked "
                            f"({type(err).__name__})")
    return failures


def _cell_errors(errors: list) -> list[str]:
    found = []
    for error in errors:
        if not (isinstance(error, list) and len(error) == 2):
            continue
        line = re.fullmatch(r"line (\d{1,6})", str(error[1]))
        if error[0] == "SyntaxError" and line:
            found.append(f"your exercise cell has a syntax error at line {line.group(1)}")
        else:
            found.append(f"your exercise cell raised {safe_name(error[0])} {WITHHELD}")
    return found


def grade_exercise(exercise: Exercise, worker_: Worker, hidden: list[HiddenTest]) -> dict:
    """The record of one exercise whose worker has been started."""
    try:
        ready = worker_.receive()
        errors = _cell_errors(ready.get("errors") or [])
        if ready.get("kind") != "ready":
            if any(e.startswith("your exercise cell raised NotImplementedError") for e in errors):
                return _record(NOT_YET, exercise.points, errors)
            what = f"your exercise cell does not define {exercise.function}"
            return _record(FAILED if errors else MISSING, exercise.points, [what, *errors])
        proxy = Proxy(worker_, exercise.checker)
        passed, message = _run_checker(exercise, proxy)
        if not passed and proxy.calls and proxy.not_implemented == proxy.calls:
            return _record(NOT_YET, exercise.points,
                           ["not written yet: it raises NotImplementedError"])
        failures = _run_hidden(hidden, proxy)
    except WorkerGone as gone:
        return _record(gone.outcome, exercise.points, [gone.detail])
    messages = [message, *failures]
    if hidden and not failures:
        messages.append(f"hidden tests: {len(hidden)}/{len(hidden)} passed")
    return _record(PASSED if passed and not failures else FAILED, exercise.points,
                   messages + errors)


# ---------------------------------------------------------------------------------------------
# The notebook run (feedback only)
# ---------------------------------------------------------------------------------------------


class NotebookRun:
    """The restored notebook, executed in the background by ``course/grading_worker.py
    notebook`` in an empty temporary folder; :meth:`notes` waits for it and says what went
    wrong. Its check cells run empty: the workers check the exercises, and an exercise that
    never returns would otherwise hold its check cell for a whole cell timeout."""

    def __init__(self, nb: dict, timeout: float, memory_mb: int) -> None:
        self.cell_timeout, self.total = notebook_run_limits(timeout)
        self.folder = Path(tempfile.mkdtemp(prefix="course-run-"))
        self.result = Path(tempfile.mkdtemp(prefix="course-run-result-")) / "result.json"
        nb = {**nb, "cells": [{**c, "source": ""} if _is_check(c) else c for c in nb["cells"]]}
        self.cells = nb["cells"]
        notebook = self.folder / "submission.ipynb"
        notebook.write_text(json.dumps(nb), encoding="utf-8")
        command = [*worker.command(), "notebook", str(notebook), str(self.result),
                   str(self.cell_timeout), str(memory_mb)]
        self.process = subprocess.Popen(command, cwd=self.folder, env={**os.environ, **_ENV},
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self.deadline = time.monotonic() + self.total

    def notes(self) -> list[str]:
        try:
            self.process.wait(timeout=max(self.deadline - time.monotonic(), 0))
            found = self._read()
        except subprocess.TimeoutExpired:
            found = [f"notebook run: stopped after {self.total:g} s"]
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            shutil.rmtree(self.folder, ignore_errors=True)
            shutil.rmtree(self.result.parent, ignore_errors=True)
        return found

    def _read(self) -> list[str]:
        try:
            with open(self.result, encoding="utf-8") as f:
                result = json.loads(f.read(2**20))
            cells, died = result["cells"], result["died"]
        except (OSError, ValueError, KeyError, TypeError):
            return ["notebook run: it ended without a report (the memory cap, or a crash)"]
        notes = [f"notebook run: {self._describe(c)}" for c in cells[:10]
                 if isinstance(c, list) and len(c) == 3 and isinstance(c[0], int)]
        if len(cells) > 10:
            notes.append(f"notebook run: and {len(cells) - 10} more errors")
        if died:
            notes.append("notebook run: the kernel died or stopped answering (the memory cap "
                         "is a possible cause)")
        return notes

    def _describe(self, error: list) -> str:
        index, ename, evalue = error
        cell = self.cells[index] if 0 <= index < len(self.cells) else {}
        meta = nbgrader_metadata(cell)
        if meta.get("solution"):
            where = f"the exercise cell {meta.get('grade_id')}"
        elif meta.get("grade"):
            where = f"the check cell of {str(meta.get('grade_id')).removesuffix('-check')}"
        else:
            number = sum(c["cell_type"] == "code" for c in self.cells[:index + 1])
            where = f"code cell {number}"
        if ename == "KeyboardInterrupt":
            return f"{where} ran past {self.cell_timeout:g} s and was interrupted"
        return f"{where} raised {safe_name(ename)}"  # the message is the notebook's own text


# ---------------------------------------------------------------------------------------------
# Grading a submission
# ---------------------------------------------------------------------------------------------


@dataclass
class GradeOptions:
    """The settings of ``python -m course grade`` (see its ``--help``)."""

    timeout: float = 60
    memory_mb: int = 4096
    hidden_dir: Path = Path("teacher/hidden_tests")
    run_notebook: bool = True
    jobs: int = 1


_TRUSTED = threading.Lock()
"""Checkers switch library functions off module-wide and capture stdout: one at a time."""


def _student(file: Path, status: str, notes: list[str], exercises: dict) -> dict[str, Any]:
    total = sum(r["earned"] for r in exercises.values())
    most = sum(r["points"] for r in exercises.values())
    return {"file": str(file), "status": status, "notes": notes, "total": total, "max": most,
            "percent": round(100 * total / most, 1) if most else 0.0, "exercises": exercises}


def _all(chapter: Chapter, outcome: str, message: str) -> dict[str, dict]:
    return {e.grade_id: _record(outcome, e.points, [message]) for e in chapter.exercises}


def grade_submission(submission: Submission, chapter: Chapter,
                     options: GradeOptions) -> dict[str, Any]:
    """The ``students`` entry of grades.json for one submission."""
    try:
        nb = read_notebook(submission.path)
    except InvalidNotebook as err:
        return _student(submission.path, INVALID, [str(err)],
                        _all(chapter, MISSING, "the notebook could not be read"))
    if _other_chapter(nb, chapter):
        return _student(submission.path, WRONG_CHAPTER,
                        [f"this notebook has no exercise of chapter {chapter.name}, but "
                         "exercises of another chapter"],
                        _all(chapter, MISSING, f"not a notebook of chapter {chapter.name}"))
    nb, notes = restore_check_cells(nb, chapter)
    status = RESTORED if notes else OK
    run = NotebookRun(nb, options.timeout, options.memory_mb) if options.run_notebook else None
    try:
        with _TRUSTED:
            exercises = _grade_exercises(nb, chapter, options, notes)
    finally:
        if run is not None:
            notes += run.notes()
    lines = _hidden_lines(options.hidden_dir)
    return _student(submission.path, status, [redact(n, lines) for n in notes], exercises)


def _start_worker(job: worker.Job, timeout: float) -> Worker | str:
    """A started worker; if the fork server is gone (a submission may kill it), it is started
    again once; a second failure is what the exercise's record says."""
    for attempt in range(2):
        try:
            return Worker(job, timeout)
        except (OSError, EOFError, RuntimeError) as err:
            failure = f"no worker could be started for your code ({type(err).__name__})"
            if attempt:
                return failure
    return failure


def _start_workers(nb: dict, chapter: Chapter, options: GradeOptions, notes: list[str],
                   folders: list[str]) -> dict[str, Worker | str | None]:
    """One started worker per exercise found (a message when none could start, None when the
    exercise cell is missing); each gets an empty folder, added to ``folders``."""
    code = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    started: dict[str, Worker | str | None] = {}
    for exercise in chapter.exercises:
        index, found = _exercise_cell(nb, exercise)
        notes += found
        if index is None:
            started[exercise.grade_id] = None
            continue
        folders.append(tempfile.mkdtemp(prefix="course-worker-"))
        others = [cell_source(nb["cells"][i]) for i in code if i != index]
        job = worker.Job(cell_source(nb["cells"][index]), others, exercise.function,
                         exercise.checker, options.memory_mb, folders[-1],
                         earlier=sum(i < index for i in code))
        started[exercise.grade_id] = _start_worker(job, options.timeout)
    return started


def _grade_exercises(nb: dict, chapter: Chapter, options: GradeOptions,
                     notes: list[str]) -> dict[str, dict]:
    """Start one worker per exercise (they run their cells while earlier ones are checked),
    then grade each in turn."""
    folders: list[str] = []
    started: dict[str, Worker | str | None] = {}
    records = {}
    try:
        started = _start_workers(nb, chapter, options, notes, folders)
        for exercise in chapter.exercises:
            entry = started[exercise.grade_id]
            if not isinstance(entry, Worker):
                missing = f"no exercise cell {exercise.grade_id} (defining {exercise.function})"
                records[exercise.grade_id] = _record(CRASHED if entry else MISSING,
                                                     exercise.points, [entry or missing])
                continue
            hidden = load_hidden_tests(options.hidden_dir, exercise.grade_id)
            record = grade_exercise(exercise, entry, hidden)
            lines = _hidden_lines(options.hidden_dir)
            record["messages"] = [redact(m, lines) for m in record["messages"]]
            records[exercise.grade_id] = record
            entry.close()
    finally:
        for entry in started.values():
            if isinstance(entry, Worker):
                entry.close()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return records


def _descendants(root: int) -> list[int]:
    """The pids of every process below ``root``, from ``/proc`` (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _become_subreaper() -> None:
    """Orphans of the submissions' processes (a daemon that left its process group) become
    this process's children instead of init's, so :func:`_kill_strays` finds them."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _service_pids() -> set[int]:
    """The fork server and multiprocessing's resource tracker, which outlive a grading."""
    from multiprocessing import forkserver, resource_tracker

    pids = {getattr(forkserver._forkserver, "_forkserver_pid", None),
            getattr(resource_tracker._resource_tracker, "_pid", None)}
    return {p for p in pids if p}


def _kill_strays(keep: set[int]) -> None:
    """SIGKILL every process below this one that was not there before grading (``keep``) and
    is not a service, until none is left; reap those that were re-parented here."""
    for _ in range(20):
        strays = [p for p in _descendants(os.getpid()) if p not in keep | _service_pids()]
        if not strays:
            return
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def _grade_all(submissions: Sequence[Submission], chapter: Chapter, options: GradeOptions,
               progress: bool | None) -> dict[str, dict]:
    """The ``students`` of grades.json, ``options.jobs`` submissions at a time, with a
    progress bar on stderr (shown on a terminal when ``progress`` is None)."""
    from tqdm import tqdm

    bar = tqdm(total=len(submissions), desc="grading", unit="notebook", file=sys.stderr,
               disable=not sys.stderr.isatty() if progress is None else not progress)
    students: dict[str, dict] = {}

    def one(submission: Submission) -> None:
        try:
            students[submission.student] = grade_submission(submission, chapter, options)
        except Exception as err:  # one odd notebook must not stop the class's grading
            print(f"warning: {submission.path}: {type(err).__name__}: {err}", file=sys.stderr)
            students[submission.student] = _student(
                submission.path, INVALID, [f"the grader could not read this notebook "
                                           f"({type(err).__name__})"],
                _all(chapter, MISSING, "the notebook could not be read"))
        bar.update(1)

    _become_subreaper()
    before = set(_descendants(os.getpid()))
    try:
        with bar, _killed_with_the_grader(), \
                ThreadPoolExecutor(max_workers=max(options.jobs, 1)) as pool:
            list(pool.map(one, submissions))
    finally:
        _kill_strays(before)  # nothing a submission started may outlive the grading
    return {s: students[s] for s in sorted(students)}


@contextlib.contextmanager
def _killed_with_the_grader() -> Iterator[None]:
    """While grading, a SIGTERM to the grader (``timeout``, a cancelled CI job, a teacher's
    ``kill``) first SIGKILLs every process below it, workers, notebook runs, their kernels and
    the fork server, so none keeps running; then the grader exits (status 143)."""
    def terminate(signum: int, frame: Any) -> None:
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        os._exit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def grade(paths: Sequence[Path], out: Path, chapter: str | None = None,
          options: GradeOptions | None = None, notebooks_dir: Path = Path("notebooks"),
          shard_spec: tuple[int, int] | None = None, progress: bool | None = None) -> dict:
    """Grade the submissions among ``paths`` and write grades.csv, grades.json and feedback/
    to ``out``; returns what grades.json holds."""
    options = options or GradeOptions()
    submissions = find_submissions(paths)
    graded = load_chapter(notebooks_dir, chapter or infer_chapter(submissions))
    if shard_spec is not None:
        submissions = shard(submissions, *shard_spec)
    if not Path(options.hidden_dir).is_dir():
        print(f"note: no hidden tests folder {options.hidden_dir}; only the visible checkers "
              "run", file=sys.stderr)
    grades = {"chapter": graded.name,
              "exercises": [{"grade_id": e.grade_id, "points": e.points}
                            for e in graded.exercises],
              "students": _grade_all(submissions, graded, options, progress)}
    write_outputs(Path(out), grades)
    return grades


# ---------------------------------------------------------------------------------------------
# Outputs and merging
# ---------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:g}"


def grades_csv(grades: dict) -> str:
    """grades.csv: one row per student, points per exercise, total, max, percent, status."""
    ids = [e["grade_id"] for e in grades["exercises"]]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["student", *ids, "total", "max", "percent", "status"])
    for student, r in sorted(grades["students"].items()):
        writer.writerow([student, *(_num(r["exercises"][i]["earned"]) for i in ids),
                         _num(r["total"]), _num(r["max"]), f"{r['percent']:.1f}", r["status"]])
    return text.getvalue()


def _fenced(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def feedback_markdown(student: str, chapter: str, record: dict) -> str:
    """The feedback file of one student, made from their grades.json entry only."""
    lines = [f"# Feedback for {student}: chapter {chapter}", "",
             f"**{_num(record['total'])} / {_num(record['max'])} points "
             f"({record['percent']:.1f}%)**, status: {record['status']}", ""]
    for grade_id, r in record["exercises"].items():
        lines += [f"## {grade_id}: {r['outcome']} ({_num(r['earned'])}/{_num(r['points'])})",
                  ""]
        lines += [_fenced(m) + "\n" for m in r["messages"] if m]
    if record["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in record["notes"]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_outputs(out: Path, grades: dict) -> None:
    """grades.csv, grades.json and feedback/ in ``out``, each replaced whole."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".feedback-", dir=out))
    (staging / "feedback").mkdir()
    for student, record in grades["students"].items():
        (staging / "feedback" / f"{student}.md").write_text(
            feedback_markdown(student, grades["chapter"], record), encoding="utf-8")
    if (out / "feedback").is_symlink() or (out / "feedback").is_file():
        (out / "feedback").unlink()
    elif (out / "feedback").exists():
        os.replace(out / "feedback", staging / "old")
    os.replace(staging / "feedback", out / "feedback")
    shutil.rmtree(staging, ignore_errors=True)
    _replace(out / "grades.json", json.dumps(grades, indent=1, ensure_ascii=False) + "\n")
    _replace(out / "grades.csv", grades_csv(grades))


def merge(shard_dirs: Sequence[Path], out: Path) -> dict:
    """Join the grades.json of several ``grade --shard`` runs into one set of outputs."""
    merged: dict[str, Any] | None = None
    origin: dict[str, Path] = {}
    for folder in map(Path, shard_dirs):
        path = folder / "grades.json"
        if not path.is_file():
            raise FileNotFoundError(f"no grades.json in {folder}")
        grades = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(grades, dict) and isinstance(grades.get("students"), dict)
                and {"chapter", "exercises"} <= set(grades)):
            raise ValueError(f"{path} is not a grades.json written by python -m course grade")
        if merged is None:
            merged = {"chapter": grades["chapter"], "exercises": grades["exercises"],
                      "students": {}}
        elif (grades["chapter"], grades["exercises"]) != (merged["chapter"],
                                                          merged["exercises"]):
            raise ValueError(f"{folder} graded chapter {grades['chapter']}, "
                             f"{next(iter(origin.values()), folder)} chapter {merged['chapter']}")
        for student, record in grades["students"].items():
            if student in origin:
                raise ValueError(f"student {student!r} is in two shards: {origin[student]} and "
                                 f"{folder}")
            origin[student] = folder
            merged["students"][student] = record
    if merged is None:
        raise ValueError("merge needs at least one shard folder")
    merged["students"] = dict(sorted(merged["students"].items()))
    write_outputs(Path(out), merged)
    return merged
