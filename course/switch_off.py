"""Switching functions off while a learner's function runs, and putting them back after.

The checkers (:mod:`course.checks`) and the grader's workers run a learner's answer with the
course's own version of the exercise switched off, and with the libraries the course is
compared with (:data:`REFERENCE_PACKAGES`): an answer that only calls one of them fails.
:func:`library_disabled` does it for one call, in every place a function can be reached from:
the names bound in the course's modules, in the modules that hold the targets and in the
learner's globals; the code of plain Python functions, so a reference kept in a list or a
default argument is caught too; and imports of the reference packages, refused by a finder.
Every call of a switched-off function is recorded as well as raised, so that catching the
exception does not hide it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Callable, Iterator, Sequence
from types import CodeType, FunctionType, ModuleType
from typing import Any

import torch

# The packages the course is compared with. They compute the course's metrics and ops, so no
# exercise may call them: while a check runs they cannot be imported and what they define
# cannot be called, wherever it is reached from.
REFERENCE_PACKAGES = ("pycocotools", "faster_coco_eval", "torchmetrics", "panopticapi",
                      "detectron2", "mmdet", "torchvision.ops", "torchvision.models.detection")




class LibraryCalled(BaseException):
    """Raised inside a check when the learner's function calls what it should replace.

    A BaseException, so that a broad ``except Exception`` in the learner's code does not hide
    it; and recorded as well, so that not even a bare ``except:`` does.
    """


# The call lists of the checks now running (innermost last), and one stand-in per name.
_CALLS: list[list[str]] = []
_BLOCKERS: dict[str, Callable[..., Any]] = {}
_REFERENCE_PREFIXES = tuple(p + "." for p in REFERENCE_PACKAGES)


def _blocker(qualname: str) -> Callable[..., Any]:
    """The stand-in for ``qualname``: records the call in every running check and raises."""
    if qualname not in _BLOCKERS:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            for calls in _CALLS:
                calls.append(qualname)
            raise LibraryCalled(qualname)

        _BLOCKERS[qualname] = blocked
    return _BLOCKERS[qualname]


def _is_reference(module_name: str) -> bool:
    return module_name in REFERENCE_PACKAGES or module_name.startswith(_REFERENCE_PREFIXES)


class _ReferenceImports(importlib.abc.MetaPathFinder):
    """Refuses to import the reference packages (first on ``sys.meta_path`` during a check)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if _is_reference(fullname):
            _blocker(fullname)()
        return None


def _name_of(obj: Any) -> str:
    module, name = _attribute(obj, "__module__"), _attribute(obj, "__qualname__")
    return f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else repr(obj)


def _attribute(obj: Any, name: str) -> Any:
    """``getattr`` that tolerates proxies whose attribute lookup raises anything."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _public_names(spaces: dict[str, dict[str, Any]], wanted: dict[int, str]) -> dict[int, str]:
    """``wanted`` renamed to the shortest public path that reaches each object outside the
    course (``torch.nn.Conv2d`` rather than ``torch.nn.modules.conv.Conv2d``)."""
    named = dict(wanted)
    for module_name, ns in spaces.items():
        if module_name.startswith(("<", "course")) or "._" in f".{module_name}":
            continue
        for key, value in ns.items():
            if id(value) in wanted and not key.startswith("_"):
                name = f"{module_name}.{key}"
                if named[id(value)] == wanted[id(value)] or len(name) < len(named[id(value)]):
                    named[id(value)] = name
    return named


# The last scan of the loaded reference modules: what they define (id -> name), where each is
# bound (module, key) and the objects themselves. Redone only when the set of loaded reference
# modules changes.
_REFERENCE_SCAN: dict[frozenset[tuple[str, int]],
                      tuple[dict[int, str], list[tuple[str, str]], list[Any]]] = {}


def _reference_callables(references: dict[str, ModuleType]
                         ) -> tuple[dict[int, str], list[tuple[str, str]], list[Any]]:
    """Every function and class that the loaded reference modules define, where it is bound in
    them, and the objects."""
    key = frozenset((n, id(m)) for n, m in references.items())
    if key not in _REFERENCE_SCAN:
        found: dict[int, Any] = {}
        for module in references.values():
            for value in vars(module).values():
                home = _attribute(value, "__module__")
                if callable(value) and isinstance(home, str) and _is_reference(home):
                    found[id(value)] = value
        spaces = {n: vars(m) for n, m in references.items()}
        places = [(n, k) for n, ns in spaces.items() for k, v in ns.items()
                  if id(v) in found and not isinstance(v, ModuleType)]
        names = _public_names(spaces, {i: _name_of(v) for i, v in found.items()})
        _REFERENCE_SCAN.clear()
        _REFERENCE_SCAN[key] = names, places, list(found.values())
    return _REFERENCE_SCAN[key]


def _stand_in(*args: Any, **kwargs: Any) -> Any:
    """Its code, with a name filled in, replaces a switched-off function's own code during a
    check, so that a reference kept anywhere (a list, a closure, a default argument) is switched
    off too."""
    from course import switch_off  # the code runs with the switched-off function's globals

    switch_off._blocker("<switched off>")()


_STAND_IN_CODES: dict[str, CodeType] = {}


def _stand_in_code(name: str) -> CodeType:
    if name not in _STAND_IN_CODES:
        code = _stand_in.__code__
        consts = tuple(name if c == "<switched off>" else c for c in code.co_consts)
        _STAND_IN_CODES[name] = code.replace(co_consts=consts)
    return _STAND_IN_CODES[name]


def _swappable(obj: Any) -> bool:
    """A plain Python function whose code can be swapped (one without a closure)."""
    return isinstance(obj, FunctionType) and not obj.__code__.co_freevars


def _compiled_references() -> tuple[dict[str, dict[str, Any]], dict[int, str]]:
    """torchvision's compiled kernels (``torch.ops.torchvision.roi_align``), where loaded:
    their namespace and ``id -> name``."""
    if "torchvision" not in sys.modules:
        return {}, {}
    space, found = torch.ops.torchvision, {}
    for name in ("roi_align", "nms"):
        try:
            found[id(getattr(space, name))] = f"torch.ops.torchvision.{name}"
        except (AttributeError, RuntimeError):
            continue  # not compiled into this build
    return {"torch.ops.torchvision": vars(space)}, found


def _namespaces(fn: Callable[..., Any], targets: Sequence[Callable[..., Any]],
                also: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Where a learner's function can reach ``targets`` (and reference functions bound outside
    their packages), by name: the course's modules, the modules that hold the targets, the
    modules named in ``also`` and ``fn``'s globals (named ``"<globals>"``)."""
    names = {n for n in sys.modules if n == "course" or n.startswith("course.")}
    for t in targets:  # a module and its parents: torch.nn.modules.conv, torch.nn, torch
        parts = str(_attribute(t, "__module__") or "").split(".")
        names |= {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    names |= set(also)
    modules = {n: sys.modules.get(n) for n in sorted(names)}
    spaces = {n: vars(m) for n, m in modules.items() if isinstance(m, ModuleType)}
    inner = _attribute(fn, "func") or _attribute(fn, "__wrapped__")  # a partial, a decorated fn
    for label, f in (("<globals>", fn), ("<globals of the wrapped function>", inner)):
        if isinstance(found := _attribute(f, "__globals__"), dict):
            spaces[label] = found
    return spaces


@contextlib.contextmanager
def library_disabled(fn: Callable[..., Any], targets: Sequence[Callable[..., Any]],
                     also: Sequence[str] = ()) -> Iterator[list[str]]:
    """Switch off ``targets`` and the reference packages while ``fn`` runs; restore them after.

    Every reference to a target, or to a function or class of :data:`REFERENCE_PACKAGES`, in
    the course's modules, in the modules that hold them and in ``fn``'s globals (the notebook's
    namespace, so ``from pycocotools import mask`` done there before the check is caught too)
    is replaced by a stand-in that raises :class:`LibraryCalled`; so is the code of those that
    are plain Python functions, which reaches a reference kept anywhere else. The reference
    modules leave ``sys.modules`` for the duration and a finder refuses to import them.
    Everything is put back afterwards, even on error. ``fn`` may be any callable; one without
    ``__globals__`` (a proxy to another process) only loses the search of its globals.
    ``also`` names more modules whose bindings of the targets are switched off (where another
    library keeps its version of an exercise, e.g. ``scipy.optimize``).

    Yields:
        list[str]: the names of what was called, filled while the body runs.
    """
    calls: list[str] = []
    references = {n: m for n, m in list(sys.modules.items())
                  if _is_reference(n) and isinstance(m, ModuleType)}
    wanted, places, defined = _reference_callables(references)
    kernels, compiled = _compiled_references()
    spaces = _namespaces(fn, targets, also) | kernels
    wanted = wanted | compiled | _public_names(spaces, {id(t): _name_of(t) for t in targets})
    bound = [(vars(references[n]), k) for n, k in places]
    for ns in {id(ns): ns for ns in spaces.values()}.values():
        bound += [(ns, k) for k, v in ns.items()
                  if id(v) in wanted and not isinstance(v, ModuleType)]
    functions = {id(f): f for f in [*targets, *defined] if _swappable(f)}
    finder = _ReferenceImports()
    saved: list[tuple[dict[str, Any], str, Any]] = []
    codes: list[tuple[FunctionType, CodeType]] = []
    try:
        for f in functions.values():
            codes.append((f, f.__code__))
            f.__code__ = _stand_in_code(wanted[id(f)])
        for ns, key in bound:
            value = ns.get(key)
            if id(value) in wanted:
                saved.append((ns, key, value))
                ns[key] = _blocker(wanted[id(value)])
        for name in references:
            del sys.modules[name]
        sys.meta_path.insert(0, finder)
        _CALLS.append(calls)
        yield calls
    finally:
        _CALLS[:] = [c for c in _CALLS if c is not calls]
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        sys.modules.update(references)
        for ns, key, value in reversed(saved):
            ns[key] = value
        for f, code in codes:
            f.__code__ = code
