"""The chapter notebooks follow the course's conventions (nbval itself runs them)."""

import ast
import json
import re
from pathlib import Path

import pytest

import course
from course import checks

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
LIBRARY_FUNCTIONS = {
    node.name
    for path in Path(course.__file__).parent.rglob("*.py")
    for node in ast.parse(path.read_text()).body
    if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
}


def cells(path, kind="code"):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def source(cell):
    return "".join(cell["source"])


def grading(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def compared(cell):
    return ("nbval-check-output" in cell.get("metadata", {}).get("tags", [])
            or "NBVAL_CHECK_OUTPUT" in source(cell))


def test_there_are_chapters():
    assert [p.name[:3] for p in NOTEBOOKS[:3]] == ["00_", "01_", "02_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_name_and_version_check(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    first = source(cells(path)[0])
    assert f'assert course.__version__ == "{course.__version__}"' in first
    assert "seed_everything(" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_and_no_errors(path):
    code = [c for c in cells(path) if source(c).strip()]
    assert all(c["execution_count"] is not None for c in code), "re-execute the notebook"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    counts = [c["execution_count"] for c in code]
    assert counts == sorted(counts), "outputs must come from one top-to-bottom run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_compared_cells_print_stable_text_only(path):
    for cell in filter(compared, cells(path)):
        for out in cell["outputs"]:
            assert out["output_type"] == "stream" and out["name"] == "stdout", source(cell)[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_are_followed_by_their_check(path):
    code = cells(path)
    for i, cell in enumerate(code):
        meta = grading(cell)
        if not meta.get("solution"):
            assert "BEGIN SOLUTION" not in source(cell)
            continue
        text = source(cell)
        assert meta["grade"] is False and meta["locked"] is False
        assert text.count("### BEGIN SOLUTION") == 1 and text.count("### END SOLUTION") == 1
        names = [n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)]
        assert len(names) == 1, f"{meta['grade_id']}: one function per exercise"
        check = code[i + 1]
        check_meta = grading(check)
        assert check_meta.get("grade") is True and check_meta.get("locked") is True
        assert check_meta.get("points", 0) > 0 and compared(check)
        assert check_meta["grade_id"] == f"{meta['grade_id']}-check"
        assert f"check_{names[0]}({names[0]})" in source(check)
        assert hasattr(checks, f"check_{names[0]}")


def test_grade_ids_are_unique_and_every_checker_is_used():
    ids = [grading(c)["grade_id"] for p in NOTEBOOKS for c in cells(p) if grading(c)]
    assert len(ids) == len(set(ids))
    used = {m for p in NOTEBOOKS for c in cells(p) for m in re.findall(r"(check_\w+)\(", source(c))}
    defined = {name for name in vars(checks) if name.startswith("check_")}
    assert defined <= used


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_library_functions_are_imported_not_redefined(path):
    for cell in cells(path):
        if grading(cell).get("solution"):
            continue
        for node in ast.parse(source(cell)).body:
            if isinstance(node, ast.FunctionDef):
                assert node.name not in LIBRARY_FUNCTIONS, f"{path.name} redefines {node.name}"
