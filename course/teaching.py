"""The learner's side of the chapters: student versions of the notebooks, and a self-check.

The notebooks in ``notebooks/`` are the solution versions. An exercise is a code cell with
nbgrader's metadata (``solution: true``) whose answer sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION``; the cell after it is a locked check cell (``grade: true``, ``points``)
that calls a checker from :mod:`course.checks`.

- :func:`student_notebook` turns a solution notebook (its JSON, as a dict) into the student
  version: every solution region becomes ``raise NotImplementedError(...)`` naming the
  exercise, hidden tests are removed, every output is cleared and check cells are locked.
- :func:`release` writes the student version of every chapter to a folder;
  :func:`make_student_copies` writes only the chapters that are missing there, so a learner's
  work is never overwritten (``make lab`` calls it for ``student/``).
- :func:`check_notebook` runs a notebook in a fresh kernel and reads its check cells: passed,
  not yet (the exercise still raises ``NotImplementedError``) or failed, with the points.
  It is a self-check, not a grade: the notebook is the learner's own and could be edited.

The library itself is never stubbed: after each check a chapter imports the library's version
of the function, so an unfinished exercise costs only its own points.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"

_EXERCISE_HEADING = re.compile(r"^#+\s*Exercise\s+(\d+\.\d+)[^:]*:\s*(.+?)\s*$", re.MULTILINE)


# ---------------------------------------------------------------------------------------------
# Student versions
# ---------------------------------------------------------------------------------------------


def cell_source(cell: dict) -> str:
    """A cell's source as one string (nbformat may store it as a list of lines)."""
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def nbgrader_metadata(cell: dict) -> dict:
    """A cell's nbgrader metadata (``solution``, ``grade``, ``grade_id``, ``points``), or {}."""
    return cell.get("metadata", {}).get("nbgrader", {})


def _lines(text: str) -> list[str]:
    """Source as the list of lines nbformat stores (each but the last ends with a newline)."""
    return text.splitlines(keepends=True)


def _stub_regions(text: str, message: str) -> str:
    """Each ``BEGIN SOLUTION`` .. ``END SOLUTION`` region (markers included) becomes one
    ``raise NotImplementedError(message)`` at the indentation of its ``BEGIN`` marker."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError({message!r})\n")
        elif stripped.startswith(END):
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "".join(out).rstrip("\n")


def _drop_hidden_tests(text: str) -> str:
    """Remove every ``BEGIN HIDDEN TESTS`` .. ``END HIDDEN TESTS`` region, markers included."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(BEGIN_HIDDEN):
            inside = True
        elif stripped.startswith(END_HIDDEN):
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out).rstrip("\n")


def _exercise_message(cells: list[dict], index: int, chapter: str | None) -> str:
    """What the stub of the exercise in ``cells[index]`` says: its number and where it is asked.

    The number and title come from the nearest ``### Exercise N.M: title`` heading above the
    cell; without one, from the cell's ``grade_id``.
    """
    for cell in reversed(cells[:index]):
        if cell["cell_type"] == "markdown":
            found = _EXERCISE_HEADING.findall(cell_source(cell))
            if found:
                number, title = found[-1]
                return f"Exercise {number}: see the section '{title}' of this chapter"
    where = f"chapter {chapter}" if chapter else "this chapter"
    grade_id = nbgrader_metadata(cells[index]).get("grade_id", "?")
    return f"Exercise {grade_id}: see its text in {where}"


def student_notebook(nb: dict, chapter: str | None = None) -> dict:
    """The student version of a solution notebook (nbformat 4 JSON as a dict); ``nb`` is not
    changed.

    - every solution region becomes ``raise NotImplementedError("Exercise N.M: ...")`` at its
      indentation; what stands above the ``BEGIN`` marker (the signature, a docstring,
      comments) and below ``END`` is kept;
    - hidden-test regions are removed;
    - every code cell's outputs and execution count are cleared (outputs can reveal answers);
    - check cells (``grade: true``) keep their ``grade_id`` and ``points`` and are locked
      (nbgrader's ``locked`` and JupyterLab's ``editable`` / ``deletable``).

    ``chapter`` (e.g. ``"01"``) is only used in the message of an exercise without a heading.
    """
    out = copy.deepcopy(nb)
    cells = out["cells"]
    for i, cell in enumerate(cells):
        meta = cell.setdefault("metadata", {})
        text = cell_source(cell)
        if BEGIN_HIDDEN in text:
            text = _drop_hidden_tests(text)
        if BEGIN in text or END in text:
            text = _stub_regions(text, _exercise_message(cells, i, chapter))
        cell["source"] = _lines(text)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            meta.pop("execution", None)
        grading = meta.get("nbgrader", {})
        if grading.get("grade") and not grading.get("solution"):
            grading["locked"] = True
            meta["editable"], meta["deletable"] = False, False
    return out


def chapters(notebooks_dir: Path) -> list[Path]:
    """The chapter notebooks of a folder (``NN_name.ipynb``), in order."""
    return sorted(Path(notebooks_dir).glob(CHAPTER_GLOB))


def _write_student_version(source: Path, target: Path) -> None:
    nb = json.loads(source.read_text(encoding="utf-8"))
    text = json.dumps(student_notebook(nb, chapter=source.name[:2]), indent=1,
                      ensure_ascii=False) + "\n"
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)  # a crash never leaves half a notebook behind


def release(notebooks_dir: Path, out_dir: Path) -> list[Path]:
    """Write the student version of every chapter of ``notebooks_dir`` to ``out_dir``
    (replacing what is there); returns the paths written."""
    notebooks_dir, out_dir = Path(notebooks_dir), Path(out_dir)
    if out_dir.resolve() == notebooks_dir.resolve():
        raise ValueError("the release would overwrite the solution notebooks; choose another --out")
    sources = chapters(notebooks_dir)
    if not sources:
        raise ValueError(f"no chapter notebooks (NN_name.ipynb) in {notebooks_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        _write_student_version(source, out_dir / source.name)
    return [out_dir / s.name for s in sources]


def make_student_copies(notebooks_dir: Path, student_dir: Path) -> list[Path]:
    """Write the student version of each chapter that ``student_dir`` does not have yet.

    A notebook already in ``student_dir`` is never touched, so a learner's work is kept; a
    chapter added to the course later appears on the next call. Returns the paths written.
    """
    notebooks_dir, student_dir = Path(notebooks_dir), Path(student_dir)
    if student_dir.resolve() == notebooks_dir.resolve():
        raise ValueError("the student copies must not go into the solution folder")
    student_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in chapters(notebooks_dir):
        target = student_dir / source.name
        if not target.exists():
            _write_student_version(source, target)
            written.append(target)
    return written


# ---------------------------------------------------------------------------------------------
# Self-check
# ---------------------------------------------------------------------------------------------

PASSED, NOT_YET, FAILED = "passed", "not yet", "failed"


@dataclass
class ExerciseResult:
    """One exercise of a checked notebook: ``status`` is passed, not yet or failed; ``message``
    is the checker's line (or its error); ``earned`` is ``points`` when passed, else 0."""

    grade_id: str
    status: str
    points: float
    message: str

    @property
    def earned(self) -> float:
        return self.points if self.status == PASSED else 0


@dataclass
class CheckReport:
    """What :func:`check_notebook` found: one result per exercise, in notebook order, and the
    errors of the other cells (``code cell N raised ErrorName: message``), which do not count.
    A notebook without exercises (chapters 10 and 12) passes."""

    notebook: Path
    exercises: list[ExerciseResult]
    other_errors: list[str] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def earned(self) -> float:
        return sum(e.earned for e in self.exercises)

    @property
    def all_passed(self) -> bool:
        return all(e.status == PASSED for e in self.exercises)

    def text(self) -> str:
        """The report ``python -m course check`` prints."""
        width = max((len(e.grade_id) for e in self.exercises), default=0)
        lines = [f"{self.notebook.name}: self-check, not a grade"]
        for e in self.exercises:
            first, *rest = e.message.splitlines() or [""]
            lines.append(f"  {e.status:<8} {e.grade_id:<{width}}  {_num(e.earned)}/{_num(e.points)}"
                         f"  {first}")
            lines += [f"  {'':<8} {'':<{width}}       {line.strip()}" for line in rest]
        if not self.exercises:
            lines.append("  (no exercises in this notebook)")
        for error in self.other_errors:
            lines.append(f"  note: {error}")
        counts = {s: sum(e.status == s for e in self.exercises) for s in (PASSED, NOT_YET, FAILED)}
        lines.append(f"{_num(self.earned)}/{_num(self.points)} points: "
                     + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:g}"


def _errors(cell: dict) -> Iterator[dict]:
    return (o for o in cell.get("outputs", []) if o.get("output_type") == "error")


def _stdout(cell: dict) -> str:
    return "".join(cell_source({"source": o.get("text", "")}) for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _not_implemented(error: dict) -> bool:
    """The exercise is not written yet: it raised NotImplementedError, directly or on every
    case the checker reports (``0/n checks passed``, each case ``raised NotImplementedError``)."""
    if error["ename"] == "NotImplementedError":
        return True
    value = error.get("evalue", "")
    cases = [line for line in value.splitlines() if line.lstrip().startswith("- ")]
    return (bool(re.search(r"\b0/\d+ checks passed", value)) and bool(cases)
            and all("raised NotImplementedError" in line for line in cases))


def _exercise_result(exercise: dict | None, check: dict) -> ExerciseResult:
    meta = nbgrader_metadata(check)
    grade_id = meta.get("grade_id", "?").removesuffix("-check")
    points = meta.get("points", 0)
    for error in _errors(exercise or {}):  # the learner's cell itself did not run
        return ExerciseResult(grade_id, FAILED, points,
                              f"your exercise cell raised {error['ename']}: {error['evalue']}")
    error = next(_errors(check), None)
    if error is None:
        if check.get("execution_count") is None:
            return ExerciseResult(grade_id, FAILED, points, "the check cell did not run")
        return ExerciseResult(grade_id, PASSED, points, _stdout(check).strip())
    if _not_implemented(error):
        return ExerciseResult(grade_id, NOT_YET, points,
                              "not written yet: it raises NotImplementedError")
    value = error.get("evalue", "")
    message = value if error["ename"] == "AssertionError" else f"{error['ename']}: {value}"
    return ExerciseResult(grade_id, FAILED, points, message)


def read_checks(nb: dict, path: Path) -> CheckReport:
    """The report of an executed notebook (its JSON as a dict): one result per check cell."""
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    exercises, others = [], []
    for i, cell in enumerate(cells):
        meta = nbgrader_metadata(cell)
        if meta.get("grade") and not meta.get("solution"):
            solution = i > 0 and nbgrader_metadata(cells[i - 1]).get("solution")
            before = cells[i - 1] if solution else None
            exercises.append(_exercise_result(before, cell))
        elif not meta.get("solution"):
            for error in _errors(cell):
                if error["ename"] == "KeyboardInterrupt":
                    others.append(f"code cell {i + 1} was interrupted (it ran past the timeout)")
                else:
                    others.append(f"code cell {i + 1} raised {error['ename']}: {error['evalue']}")
    return CheckReport(Path(path), exercises, others)


def check_notebook(path: Path, timeout: float = 600) -> CheckReport:
    """Run the notebook at ``path`` top to bottom in a fresh kernel of this Python (in its own
    folder, as JupyterLab would; the file is not changed) and read its check cells.

    ``timeout`` is per cell, in seconds; a cell that runs longer is interrupted and the next
    cells still run, as they do after any error.
    """
    import nbformat  # the notebook tools come with the course's `lab` extra
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_name="python3", kernel_manager_class=kernel_manager(),
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    try:
        client.execute()
    except DeadKernelError as err:
        report = read_checks(nb, path)
        report.other_errors.append(f"the kernel died: {err}")
        return report
    return read_checks(nb, path)


def kernel_manager(argv: Sequence[str] | None = None) -> type:
    """A kernel manager whose ``python3`` kernel is this interpreter (the course's venv), not
    whatever ``python3`` kernel spec the machine has installed (nor the one a notebook's
    metadata names). ``argv`` replaces the kernel's command line (``"{connection_file}"``
    stands for the connection file), for a kernel started another way (the grader's, under
    a memory cap)."""
    import ipykernel.kernelspec
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            spec = ipykernel.kernelspec.get_kernel_dict()
            spec["argv"] = [sys.executable, *spec["argv"][1:]] if argv is None else list(argv)
            return KernelSpec(resource_dir=ipykernel.kernelspec.RESOURCES, **spec)

    class ThisPythonKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("kernel_spec_manager", ThisPython())
            super().__init__(**kwargs)

    return ThisPythonKernelManager
