"""Broken and hostile submissions, made from the solution notebooks, for the grader's tests and
its benchmark.

A submission is a notebook dict (nbformat 4 JSON) changed from a chapter's solution notebook
or its student version; :func:`save` writes it where the grader expects a class's work,
``<folder>/<student>/<chapter file>``. Every function returns a new dict and leaves its
argument alone, so one chapter can be loaded once and turned into many submissions.

The exercise cells are changed through their solution region: :func:`with_body` replaces what
stands between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (the function's signature and
docstring stay) and can put top-level code before the function, which runs when the cell runs.
"""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

from course import teaching

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def chapter_file(chapter: str, notebooks: Path = NOTEBOOKS) -> str:
    """The file name of a chapter (``"01"`` -> ``"01_iou_dice.ipynb"``)."""
    (path,) = sorted(Path(notebooks).glob(f"{chapter[:2]}_*.ipynb"))
    return path.name


def solution(chapter: str, notebooks: Path = NOTEBOOKS) -> dict:
    """The solution notebook of a chapter, with its outputs."""
    return json.loads((Path(notebooks) / chapter_file(chapter, notebooks)).read_text())


def stubs(chapter: str, notebooks: Path = NOTEBOOKS) -> dict:
    """The student version of a chapter, as released: every exercise raises
    NotImplementedError."""
    return teaching.student_notebook(solution(chapter, notebooks), chapter=chapter[:2])


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def exercise_ids(nb: dict) -> list[str]:
    """The grade_ids of the exercise cells (``solution: true``), in notebook order."""
    return [_grade_id(c) for c in nb["cells"]
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")]


def cell_index(nb: dict, grade_id: str) -> int:
    """The position of the (first) cell with this grade_id."""
    for i, cell in enumerate(nb["cells"]):
        if _grade_id(cell) == grade_id:
            return i
    raise KeyError(f"no cell with grade_id {grade_id!r}")


def code_cell(source: str) -> dict:
    """A plain code cell, as a learner adds one."""
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source.splitlines(keepends=True)}


def _region(text: str) -> tuple[str, str, str]:
    """``text`` cut around its solution region: (before, indentation, after). In a student
    version the region is the stub's ``raise NotImplementedError(...)`` line."""
    if teaching.BEGIN in text:
        head, rest = text.split(teaching.BEGIN, 1)
        tail = rest.split(teaching.END, 1)[1].partition("\n")[2]
    else:
        at = text.index("raise NotImplementedError(")
        head, tail = text[:at], text[at:].partition("\n")[2]
    indent = head[head.rfind("\n") + 1:]
    return head[: len(head) - len(indent)], indent, tail


def with_body(nb: dict, grade_id: str, body: str | None = None, before: str = "") -> dict:
    """The exercise ``grade_id`` with its solution region (or its stub) replaced by ``body``
    (dedented, then indented like the solution; None keeps it) and ``before`` (top-level code)
    put above the function."""
    out = copy.deepcopy(nb)
    cell = out["cells"][cell_index(out, grade_id)]
    text = _source(cell)
    if body is not None:
        head, indent, tail = _region(text)
        lines = textwrap.dedent(body).strip("\n").splitlines()
        text = (head + "".join(f"{indent}{line}\n" if line else "\n" for line in lines)
                + tail).rstrip("\n")
    if before:
        text = textwrap.dedent(before).strip("\n") + "\n\n\n" + text
    _set_source(cell, text)
    return out


def without_cell(nb: dict, grade_id: str) -> dict:
    """The notebook with the cell ``grade_id`` deleted (e.g. a locked check cell)."""
    out = copy.deepcopy(nb)
    del out["cells"][cell_index(out, grade_id)]
    return out


def with_cell_source(nb: dict, grade_id: str, source: str) -> dict:
    """The notebook with the source of cell ``grade_id`` replaced, its metadata kept."""
    out = copy.deepcopy(nb)
    _set_source(out["cells"][cell_index(out, grade_id)], source)
    return out


def duplicated(nb: dict, grade_id: str) -> dict:
    """The notebook with the cell ``grade_id`` present twice, one after the other."""
    out = copy.deepcopy(nb)
    i = cell_index(out, grade_id)
    out["cells"].insert(i + 1, copy.deepcopy(out["cells"][i]))
    return out


def with_top_cell(nb: dict, source: str) -> dict:
    """The notebook with a code cell added before every other cell."""
    out = copy.deepcopy(nb)
    out["cells"].insert(0, code_cell(source))
    return out


def with_kernel(nb: dict, name: str, language: str) -> dict:
    """The notebook claiming another kernel (e.g. ``julia``) in its metadata."""
    out = copy.deepcopy(nb)
    out["metadata"]["kernelspec"] = {"display_name": name.title(), "language": language,
                                     "name": name}
    out["metadata"]["language_info"] = {"name": language}
    return out


def with_outputs_of(nb: dict, other: dict) -> dict:
    """``nb`` (e.g. the stubs) wearing the outputs of ``other`` (e.g. the solution), cell by
    cell: a notebook whose printed results claim what its code does not do."""
    out = copy.deepcopy(nb)
    for cell, source in zip(out["cells"], other["cells"]):
        if cell["cell_type"] == "code" and source["cell_type"] == "code":
            cell["outputs"] = copy.deepcopy(source["outputs"])
            cell["execution_count"] = source["execution_count"]
    return out


def wrong_answers(nb: dict) -> dict:
    """Every exercise returns None straight away: each one runs and fails its checker."""
    out = nb
    for grade_id in exercise_ids(nb):
        out = with_body(out, grade_id, "return None")
    return out


def save(content: dict | str | bytes, folder: Path, student: str, chapter: str,
         notebooks: Path = NOTEBOOKS) -> Path:
    """Write a submission to ``folder/student/<chapter file>``, the layout of a collected
    class; a dict is written as notebook JSON, text and bytes as they are."""
    path = Path(folder) / student / chapter_file(chapter, notebooks)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content, indent=1) + "\n"
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path
