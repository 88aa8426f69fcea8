"""Library functions stay short enough to read in one screen: at most 40 lines of code.

A function's docstring does not count (it is what a reader wants more of); everything else
from the ``def`` line to the last line of its body does, nested functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "course"
LIMIT = 40


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.name, code_lines(node)) for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_the_measure_leaves_out_the_docstring_only():
    source = 'def f():\n    """One.\n\n    Two.\n    """\n    x = 1\n    return x\n'
    assert functions_of(source) == [("f", 3)]
    assert functions_of("def g():\n    return 1\n") == [("g", 2)]


def functions_of(source: str) -> list[tuple[str, int]]:
    return [(n.name, code_lines(n)) for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.FunctionDef)]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_library_function_is_longer_than_40_lines(path):
    long = [f"{name} ({n} lines)" for name, n in functions(path) if n > LIMIT]
    assert not long, f"{path.name}: split {', '.join(long)} into named steps"
