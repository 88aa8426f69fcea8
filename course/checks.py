"""Checkers for the notebook exercises.

Each exercise in a chapter notebook asks the learner to write one function; the cell after it
calls a checker from here, e.g. ``check_mask_iou(mask_iou)``. A checker runs that function on
stored cases (``course/fixtures/<exercise>.npz``, made by ``scripts/make_fixtures.py`` from the
library's reference implementations), edge cases included. While it runs, the library's own
versions of the function are disabled, so an answer that only calls the library fails.

A checker prints one stable line, ``mask_iou: 14/14 checks passed``, or raises an
``AssertionError`` that names the failing case, the shapes involved and the property that does
not hold, without printing the expected answer.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch

from course import masks, matching

_TOL = 1e-12  # what float64 arithmetic from integer counts reaches


# ---------------------------------------------------------------------------------------------
# Stored cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One stored check: positional ``args`` for the learner's function and what it must return.

    ``name`` says what the case is about and ``hint`` which property it tests; both are shown
    when the case fails. ``expected`` maps output names to arrays.
    """

    name: str
    hint: str
    args: list[np.ndarray]
    expected: dict[str, np.ndarray]


def save_cases(path: str, cases: Sequence[Case]) -> None:
    """Write cases to one ``.npz`` (no pickles: strings are stored as unicode arrays)."""
    arrays: dict[str, np.ndarray] = {"count": np.array(len(cases))}
    for i, case in enumerate(cases):
        arrays[f"{i}/name"] = np.array(case.name)
        arrays[f"{i}/hint"] = np.array(case.hint)
        arrays[f"{i}/nargs"] = np.array(len(case.args))
        for k, arg in enumerate(case.args):
            arrays[f"{i}/arg{k}"] = np.asarray(arg)
        for key, value in case.expected.items():
            arrays[f"{i}/out/{key}"] = np.asarray(value)
    np.savez_compressed(path, **arrays)


def load_cases(exercise: str) -> list[Case]:
    """The stored cases of one exercise, from the package's fixtures."""
    ref = resources.files("course") / "fixtures" / f"{exercise}.npz"
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        cases = []
        for i in range(int(z["count"])):
            expected = {k.split("/", 2)[2]: z[k] for k in z.files if k.startswith(f"{i}/out/")}
            args = [z[f"{i}/arg{k}"] for k in range(int(z[f"{i}/nargs"]))]
            cases.append(Case(str(z[f"{i}/name"]), str(z[f"{i}/hint"]), args, expected))
    return cases


def _to_python(arg: np.ndarray) -> Any:
    """Stored arrays become what the learner's function is documented to take."""
    if arg.ndim == 0:
        return arg.item()  # thresholds and other scalars as plain Python numbers
    return torch.from_numpy(arg.copy())  # a fresh copy, so an in-place edit changes nothing


def _describe(args: Sequence[Any]) -> str:
    parts = []
    for a in args:
        if isinstance(a, torch.Tensor):
            parts.append(f"{list(a.shape)} {str(a.dtype).replace('torch.', '')}")
        else:
            parts.append(repr(a))
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Running a learner's function with the library switched off
# ---------------------------------------------------------------------------------------------


class LibraryCalled(BaseException):
    """Raised inside a check when the learner's function calls the library it should replace.

    A BaseException, so that a broad ``except Exception`` in the learner's code does not hide it.
    """


def _blocker(qualname: str) -> Callable[..., Any]:
    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise LibraryCalled(qualname)

    return blocked


@contextlib.contextmanager
def library_disabled(fn: Callable[..., Any],
                     targets: Sequence[Callable[..., Any]]) -> Iterator[None]:
    """Replace every reference to ``targets`` in the ``course`` modules and in ``fn``'s globals.

    ``fn``'s globals are the notebook's namespace, so ``from course.masks import mask_iou`` done
    there before the check is caught too. Everything is put back afterwards.
    """
    wanted = {id(t): f"{t.__module__}.{t.__qualname__}" for t in targets}
    namespaces = [vars(m) for name, m in list(sys.modules.items())
                  if m is not None and (name == "course" or name.startswith("course."))]
    namespaces.append(getattr(fn, "__globals__", {}))
    saved = []
    for ns in namespaces:
        for key, value in list(ns.items()):
            if id(value) in wanted:
                saved.append((ns, key, value))
                ns[key] = _blocker(wanted[id(value)])
    try:
        yield
    finally:
        for ns, key, value in saved:
            ns[key] = value


def _run_checks(exercise: str, fn: Callable[..., Any], targets: Sequence[Callable[..., Any]],
                compare: Callable[[Any, Case], str | None]) -> None:
    """Run ``fn`` on every stored case; print one line, or raise AssertionError naming failures."""
    if not callable(fn):
        raise TypeError(f"check_{exercise} expects your function, got {type(fn).__name__}")
    cases = load_cases(exercise)
    failures = []
    with library_disabled(fn, targets):
        for i, case in enumerate(cases, 1):
            args = [_to_python(a) for a in case.args]
            where = f"case {i} '{case.name}' (arguments: {_describe(args)})"
            try:
                problem = compare(fn(*args), case)
            except LibraryCalled as called:
                raise AssertionError(
                    f"{exercise}: your function calls the library's {called}, which this "
                    "exercise asks you to write yourself"
                ) from None
            except Exception as err:  # the learner's code raised: report it as a failed case
                problem = f"raised {type(err).__name__}: {err}"
            if problem:
                failures.append(f"{where}: {problem}. Hint: {case.hint}")
    passed = len(cases) - len(failures)
    if failures:
        shown = "\n  - ".join(failures[:3])
        more = f"\n  (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        raise AssertionError(f"{exercise}: {passed}/{len(cases)} checks passed\n  - {shown}{more}")
    print(f"{exercise}: {passed}/{len(cases)} checks passed")


# ---------------------------------------------------------------------------------------------
# Comparisons (each returns None when the answer is right, else what is wrong)
# ---------------------------------------------------------------------------------------------


def _as_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out.detach().cpu()
    if isinstance(out, np.ndarray | list | tuple | int | float):
        return torch.as_tensor(np.asarray(out))
    return None


def _same_matrix(out: Any, case: Case) -> str | None:
    want = torch.from_numpy(case.expected["value"])
    got = _as_tensor(out)
    if got is None:
        return f"returned a {type(out).__name__}, expected a tensor"
    if got.shape != want.shape:
        return (f"returned shape {list(got.shape)}, expected {list(want.shape)} "
                "(rows: first argument, columns: second)")
    if got.dtype != torch.float64:
        return (f"returned dtype {got.dtype}, expected torch.float64 "
                "(divide integer counts in float64)")
    if bool(torch.isnan(got).any()):
        return "contains NaN (a 0 / 0 somewhere?)"
    if got.numel() and (got.min() < 0 or got.max() > 1):
        return "values must lie in [0, 1]"
    error = (got - want).abs()
    wrong = error > _TOL
    if bool(wrong.any()):
        r, c = (int(x) for x in wrong.nonzero()[0])
        close = ''
        if error.max() < 1e-5:
            close = " (all close, so a precision problem: float32 somewhere?)"
        return (f"{int(wrong.sum())} of {wrong.numel()} entries are wrong, the first at [{r}, {c}]"
                f"{close}")
    return None


def _same_counts(out: Any, case: Case) -> str | None:
    want = {k: int(case.expected[k]) for k in ("tp", "fp", "fn")}
    if all(hasattr(out, k) for k in want):
        got = {k: getattr(out, k) for k in want}
    elif isinstance(out, Sequence) and len(out) == 3:
        got = dict(zip(want, out, strict=True))
    else:
        return f"returned {type(out).__name__}, expected a tuple (tp, fp, fn)"
    try:
        got = {k: int(v) for k, v in got.items()}
    except (TypeError, ValueError):
        return "tp, fp and fn must be whole numbers"
    n_pred, n_gt = int(case.expected["num_pred"]), int(case.expected["num_gt"])
    if got["tp"] + got["fp"] != n_pred:
        return f"tp + fp must equal the number of predictions ({n_pred}), got {got}"
    if got["tp"] + got["fn"] != n_gt:
        return f"tp + fn must equal the number of ground-truth objects ({n_gt}), got {got}"
    if got["tp"] != want["tp"]:
        return f"got {got}: tp is too {'high' if got['tp'] > want['tp'] else 'low'}"
    return None


def _same_pairs(out: Any, case: Case) -> str | None:
    want = {tuple(p) for p in case.expected["pairs"].tolist()}
    pairs = getattr(out, "pairs", out)
    try:
        got_list = [tuple(int(v) for v in p) for p in _as_tensor(pairs).reshape(-1, 2).tolist()]
    except (TypeError, RuntimeError, AttributeError):
        return "expected a list of (prediction, gt) index pairs"
    got = set(got_list)
    if len(got) != len(got_list):
        return "the same pair appears twice"
    if len({p for p, _ in got}) != len(got) or len({g for _, g in got}) != len(got):
        return "a prediction or a ground truth is used in more than one pair"
    if got != want:
        extra, missing = sorted(got - want), len(want - got)
        parts = [f"{len(extra)} pair(s) that should not be there, e.g. {extra[0]}"] if extra else []
        parts += [f"{missing} pair(s) missing"] if missing else []
        return "; ".join(parts)
    return None


# ---------------------------------------------------------------------------------------------
# The checkers, by chapter
# ---------------------------------------------------------------------------------------------

# Chapter 00


def check_mask_area(fn: Callable[..., Any]) -> None:
    """``fn(masks [N, H, W] bool) -> Tensor[N]``: the pixel count of each mask."""

    def compare(out: Any, case: Case) -> str | None:
        want = torch.from_numpy(case.expected["value"])
        got = _as_tensor(out)
        if got is None or got.shape != want.shape:
            shape = None if got is None else list(got.shape)
            return f"returned shape {shape}, expected {list(want.shape)} (one count per mask)"
        if got.is_floating_point() and not bool((got == got.round()).all()):
            return "pixel counts are whole numbers"
        if not torch.equal(got.to(torch.int64), want):
            return f"{int((got.to(torch.int64) != want).sum())} of {len(want)} counts are wrong"
        return None

    _run_checks("mask_area", fn, [masks.mask_area, masks.intersection_counts], compare)


# Chapter 01


def check_mask_iou(fn: Callable[..., Any]) -> None:
    """``fn(a [N, H, W], b [M, H, W]) -> Tensor[N, M]`` float64 IoU; empty with empty is 0."""
    _run_checks("mask_iou", fn,
                [masks.mask_iou, masks.mask_iou_loop, masks.intersection_counts], _same_matrix)


def check_mask_dice(fn: Callable[..., Any]) -> None:
    """``fn(a [N, H, W], b [M, H, W]) -> Tensor[N, M]`` float64 Dice; empty with empty is 0."""
    _run_checks("mask_dice", fn,
                [masks.mask_dice, masks.mask_dice_loop, masks.mask_iou, masks.mask_iou_loop,
                 masks.intersection_counts], _same_matrix)


# Chapter 02


def check_tp_fp_fn(fn: Callable[..., Any]) -> None:
    """``fn(iou [P, G], pred_labels [P], gt_labels [G], threshold) -> (tp, fp, fn)``."""
    _run_checks("tp_fp_fn", fn,
                [matching.tp_fp_fn, matching.hungarian_match, matching.greedy_match], _same_counts)


def check_greedy_match(fn: Callable[..., Any]) -> None:
    """``fn(iou [P, G], scores [P], threshold) -> [(pred, gt), ...]`` by COCO's greedy rule."""
    _run_checks("greedy_match", fn, [matching.greedy_match, matching.tp_fp_fn], _same_pairs)
