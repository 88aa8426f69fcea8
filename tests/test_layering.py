"""The package's imports flow one way, down the chapters (read from the source, not run).

metrics (masks, boxes, matching, ap, coco, cocoeval, pq and its helpers) <- ops (losses, fpn,
roi_kernels <- roi_align) <- model <- data / viz / checks / teaching / grading / CLI. An engine
(roi_kernels) sits below the chapter module that calls it. Every import counts, also one inside
a function; only imports under ``if TYPE_CHECKING:`` (never run) are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course"

METRICS = {"course.masks", "course.boxes", "course.matching", "course.ap", "course.coco",
           "course.pq"}
OPS = {"course.losses", "course.fpn", "course.roi_align", "course.roi_kernels"}
ENGINES = {"course.roi_kernels": "course.roi_align"}  # an engine and the chapter module above it
TOP = ("course.checks", "course.teaching", "course.grading", "course.cli")  # and below them


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_in(source: str, module: str, is_package: bool = False,
               top_level_only: bool = False) -> set[str]:
    """Every module the source of ``module`` imports (``from course import x`` gives
    ``course.x`` too); with ``top_level_only``, those run when it is imported."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if is_type_checking(node):
            return
        if top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef |
                                         ast.Lambda):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package that holds this module
                parts = module.split(".")
                package = parts[:len(parts) - node.level + is_package]
                base = ".".join(package + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py",
                      top_level_only)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
COURSE_IMPORTS = {name: {m for m in imports_of(path) if m in MODULES and m != "course"}
                  for name, path in MODULES.items()}


def under(name: str, roots: set[str] | tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") or (r.endswith(("grading", "cli"))
               and name.startswith(r)) for r in roots)


def metrics_modules() -> set[str]:
    """The metric modules: the named ones, ``course.cocoeval.*``, and whatever ``course.pq``
    imports from the package (its helper modules), followed through."""
    found = set(METRICS) | {m for m in MODULES if m.startswith("course.cocoeval")}
    todo = ["course.pq"]
    while todo:
        for dep in COURSE_IMPORTS.get(todo.pop(), ()):
            if dep not in found:
                found.add(dep)
                todo.append(dep)
    return found


def test_the_parser_sees_function_level_relative_and_type_checking_imports():
    source = ("from typing import TYPE_CHECKING\nimport numpy\nif TYPE_CHECKING:\n"
              "    from course.ap import COCOParams\n"
              "from .common import to_numpy\n"
              "def f():\n    from course.model import config\n")
    found = imports_in(source, "course.cocoeval.probe")
    assert {"course.model", "course.model.config", "numpy"} <= found
    assert "course.cocoeval.common" in found and "course.ap" not in found
    top = imports_in(source, "course.cocoeval.probe", top_level_only=True)
    assert "course.model" not in top and "numpy" in top
    # and the layers are told apart by name
    assert under("course.model.rpn", {"course.model"}) and under("course.fpn", OPS)
    assert under("course.grading_worker", TOP) and under("course.cli_model_run", TOP)
    assert not under("course.checksum", TOP) and not under("course.modeling", {"course.model"})
    assert "course.panoptic_format" in metrics_modules() or \
        "course.panoptic_format" not in COURSE_IMPORTS["course.pq"]


@pytest.mark.parametrize("module", sorted(metrics_modules()))
def test_metrics_import_no_ops_and_no_model(module):
    bad = {m for m in COURSE_IMPORTS[module] if under(m, OPS | {"course.model"})}
    assert not bad, f"{module} is a metric but imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(OPS))
def test_ops_import_no_model(module):
    bad = {m for m in COURSE_IMPORTS[module] if under(m, {"course.model"})}
    assert not bad, f"{module} is an op but imports {sorted(bad)}"


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_an_engine_never_imports_the_chapter_module_that_calls_it(engine):
    chapter = ENGINES[engine]
    assert engine in MODULES and engine in COURSE_IMPORTS[chapter], f"{chapter} calls {engine}"
    assert chapter not in COURSE_IMPORTS[engine], f"{engine} imports {chapter}"


def allowed_to_import_top(module: str) -> set[str]:
    """What of checks / teaching / grading / CLI a module may import."""
    if module == "course.__main__" or module.startswith("course.cli"):
        return set(TOP)
    if module.startswith("course.grading"):
        return {"course.checks", "course.teaching", "course.grading"}
    return set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_library_never_imports_checks_teaching_grading_or_the_cli(module):
    allowed = allowed_to_import_top(module)
    bad = {m for m in COURSE_IMPORTS[module]
           if under(m, TOP) and not under(m, tuple(allowed)) and m != module}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("course.cocoeval")))
def test_cocoeval_imports_no_torch_when_imported(module):
    top = imports_of(MODULES[module], top_level_only=True)
    assert not {m for m in top if m == "torch" or m.startswith("torch.")}, \
        f"{module} imports torch at import time"
    outside = {m for m in top if m.startswith("course") and m in MODULES
               and not m.startswith("course.cocoeval")}
    assert not outside, f"{module} imports {sorted(outside)} at import time (they bring torch)"


NO_TORCH = """
import sys, types
package = types.ModuleType("course")  # the package without its __init__, which needs torch
package.__path__ = [sys.argv[1]]
sys.modules["course"] = package
import course.coco, course.cocoeval.engine, course.cocoeval.dataset
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_reading_and_evaluating_coco_json_loads_no_torch():
    out = subprocess.run([sys.executable, "-c", NO_TORCH, str(PACKAGE)], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def private_uses(source: str) -> list[str]:
    """``_name`` taken from another course module: ``from course.x import _name``, or
    ``x._name`` where ``x`` was imported from ``course`` (dunders are not private)."""
    tree, modules, found = ast.parse(source), set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name.startswith("course") and a.asname}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_private_name_finder_sees_both_forms():
    source = ("from course.teaching import _grading, chapters\nfrom course import checks\n"
              "import course.coco as coco\nx = checks._blocker\ny = coco._read\n"
              "z = checks.__doc__\n")
    assert private_uses(source) == ["from course.teaching import _grading", "checks._blocker",
                                    "coco._read"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_is_used_across_modules(module):
    path = MODULES[module]
    own = module.rsplit(".", 1)[-1]
    found = [use for use in private_uses(path.read_text(encoding="utf-8"))
             if not use.startswith(f"{own}.")]  # a module may name its own privates
    assert not found, f"{module} uses private names of other modules: {found}"
