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
from functools import partial
from importlib import resources
from typing import Any

import numpy as np
import torch

from course import ap, boxes, data, fpn, losses, masks, matching, pq, roi_align

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


def _answer(out: Any, case: Case, what: str) -> tuple[torch.Tensor, torch.Tensor] | str:
    """``(got, want)`` as tensors, or what is wrong with the answer's shape (``what`` it holds)."""
    want = torch.from_numpy(case.expected["value"])
    got = _as_tensor(out)
    if got is None or got.shape != want.shape:
        shape = None if got is None else list(got.shape)
        return f"returned shape {shape}, expected {list(want.shape)} ({what})"
    return got, want


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


def _same_whole_number(out: Any, case: Case) -> str | None:
    """One whole number (a size in pixels, say), said to be too large or too small."""
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        out = out.item()
    whole = isinstance(out, int | np.integer) or (isinstance(out, float) and out.is_integer())
    if not whole:
        return f"returned {out!r}, expected a whole number of pixels"
    want = int(case.expected["value"])
    if int(out) != want:
        return f"returned {int(out)}: too {'large' if int(out) > want else 'small'}"
    return None


def _same_integers(out: Any, case: Case, noun: str, per: str, float_hint: str) -> str | None:
    """One whole number per input item (a count per mask, a level per box)."""
    answer = _answer(out, case, f"one {noun} per {per}")
    if isinstance(answer, str):
        return answer
    got, want = answer
    if got.is_floating_point() and not bool((got == got.round()).all()):
        return float_hint
    wrong = got.to(torch.int64) != want
    if bool(wrong.any()):
        i = int(wrong.nonzero()[0])
        return f"{int(wrong.sum())} of {len(want)} {noun}s are wrong, the first for {per} {i}"
    return None


# ---------------------------------------------------------------------------------------------
# The checkers, by chapter
# ---------------------------------------------------------------------------------------------

# Chapter 00


def check_mask_area(fn: Callable[..., Any]) -> None:
    """``fn(masks [N, H, W] bool) -> Tensor[N]``: the pixel count of each mask."""
    _run_checks("mask_area", fn, [masks.mask_area, masks.intersection_counts],
                partial(_same_integers, noun="count", per="mask",
                        float_hint="pixel counts are whole numbers"))


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


# Chapter 03 (COCO Average Precision)


def _same_curves(out: Any, case: Case) -> str | None:
    """``out`` must be ``(precision, recall)``, each ``[D]``, within 1e-12 of the stored values."""
    if not isinstance(out, Sequence) or isinstance(out, str) or len(out) != 2:
        return f"returned {type(out).__name__}, expected a tuple (precision, recall)"
    for name, got, want in zip(("precision", "recall"), out,
                               (case.expected["precision"], case.expected["recall"]), strict=True):
        got = _as_tensor(got)
        if got is None:
            return f"{name} is a {type(out[0]).__name__}, expected a tensor"
        if tuple(got.shape) != want.shape:
            return (f"{name} has shape {list(got.shape)}, expected {list(want.shape)} "
                    "(one value after each detection of the list)")
        if not got.is_floating_point():
            return f"{name} has dtype {got.dtype}: divide in floating point"
        wrong = (got.double() - torch.from_numpy(want)).abs() > _TOL
        if bool(wrong.any()):
            first = int(wrong.nonzero()[0])
            return (f"{name} is wrong at {int(wrong.sum())} of {len(want)} positions, the "
                    f"first after detection {first + 1} of the list")
    return None


def _same_ap(out: Any, case: Case) -> str | None:
    """``out`` must be one number within 1e-12 of the stored AP (never revealed)."""
    if isinstance(out, torch.Tensor | np.ndarray) and np.size(out) == 1:
        out = float(out.reshape(-1)[0])
    if isinstance(out, bool) or not isinstance(out, int | float | np.floating):
        return f"returned {type(out).__name__}, expected one number"
    got, want = float(out), float(case.expected["value"])
    if np.isnan(got):
        return "returned NaN (a 0 / 0 somewhere?)"
    if not 0 <= got <= 1:
        return f"returned {got:.4f}, but an AP lies in [0, 1]"
    if abs(got - want) > _TOL:
        return f"the AP is too {'high' if got > want else 'low'}"
    return None


def check_precision_recall(fn: Callable[..., Any]) -> None:
    """``fn(tp [D] bool, num_gt) -> (precision [D], recall [D])`` along a ranked list."""
    _run_checks("precision_recall", fn,
                [ap.precision_recall, ap.average_precision, ap.ap_over_thresholds], _same_curves)


def check_average_precision(fn: Callable[..., Any]) -> None:
    """``fn(precision [D], recall [D]) -> float``: the envelope sampled at 101 recalls."""
    _run_checks("average_precision", fn,
                [ap.average_precision, ap.precision_envelope, ap.ap_over_thresholds], _same_ap)


def check_ap_over_thresholds(fn: Callable[..., Any]) -> None:
    """``fn(iou [D, G], scores [D]) -> float``: AP of one image and class, over 0.50:0.95."""
    _run_checks("ap_over_thresholds", fn,
                [ap.ap_over_thresholds, ap.average_precision, ap.precision_recall,
                 ap.precision_envelope, ap.coco_evaluate, ap.coco_evaluate_reference], _same_ap)


# Chapter 04 (Panoptic Quality)


class _WithDicts:
    """Calls the learner's ``fn`` with the stored ``[S, 3]`` segment rows as dicts.

    Carries ``fn``'s ``__globals__``, so that :func:`library_disabled` still reaches the
    notebook's namespace.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__globals__ = getattr(fn, "__globals__", {})

    def __call__(self, gt_ids: Any, gt_rows: Any, pred_ids: Any, pred_rows: Any) -> Any:
        return self.fn(gt_ids, _segment_dict(gt_rows), pred_ids, _segment_dict(pred_rows))


def _segment_dict(rows: torch.Tensor) -> dict[int, tuple[int, bool]]:
    """``[S, 3]`` rows (id, category_id, iscrowd) -> ``{id: (category_id, iscrowd)}``."""
    return {int(i): (int(c), bool(k)) for i, c, k in rows.reshape(-1, 3).tolist()}


def _pq_rows(out: Any) -> dict[int, list[float]] | str:
    if hasattr(out, "as_dict"):
        out = out.as_dict()
    if not isinstance(out, dict):
        return (f"returned {type(out).__name__}, expected a dict "
                "{category_id: (iou_sum, tp, fp, fn)}")
    rows = {}
    for cat, value in out.items():
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 4:
            return f"category {cat}: expected four numbers (iou_sum, tp, fp, fn)"
        if any(v != int(v) for v in numbers[1:]):
            return f"category {cat}: tp, fp and fn are whole numbers"
        rows[int(cat)] = numbers
    return rows


def _same_pq_counts(out: Any, case: Case) -> str | None:
    rows = _pq_rows(out)
    if isinstance(rows, str):
        return rows
    e = case.expected
    want = {int(c): [float(i), int(t), int(p), int(n)] for c, i, t, p, n in zip(
        e["categories"], e["iou_sum"], e["tp"], e["fp"], e["fn"], strict=True)}
    for cat in sorted(set(rows) | set(want)):
        got, ref = rows.get(cat, [0.0, 0, 0, 0]), want.get(cat, [0.0, 0, 0, 0])
        if cat not in want and any(got):
            return f"category {cat} is in neither segment list"
        for k, name in ((1, "tp"), (2, "fp"), (3, "fn")):
            if got[k] != ref[k]:
                return f"category {cat}: {name} is too {'high' if got[k] > ref[k] else 'low'}"
        if abs(got[0] - ref[0]) > 1e-9:
            return f"category {cat}: the counts are right but iou_sum is wrong"
    return None


def check_pq_stats(fn: Callable[..., Any]) -> None:
    """``fn(gt_ids [H, W], gt_segments, pred_ids [H, W], pred_segments)`` -> per-category
    ``{category_id: (iou_sum, tp, fp, fn)}``; segments are ``{id: (category_id, iscrowd)}``
    (the stored cases keep them as ``[S, 3]`` rows and pass them to you as dicts)."""
    if not callable(fn):
        raise TypeError(f"check_pq_stats expects your function, got {type(fn).__name__}")
    _run_checks("pq_stats", _WithDicts(fn),
                [pq.pq_stats, pq.pq_stats_loop, pq.panoptic_quality, pq.overlap_counts],
                _same_pq_counts)


def check_pq_from_counts(fn: Callable[..., Any]) -> None:
    """``fn(iou_sum [K], tp [K], fp [K], fn [K]) -> (pq, sq, rq)`` averaged over the classes."""

    def compare(out: Any, case: Case) -> str | None:
        if isinstance(out, dict):
            out = tuple(out.get(k) for k in ("pq", "sq", "rq"))
        try:
            got = [float(v) for v in out]
        except (TypeError, ValueError):
            return f"returned {type(out).__name__}, expected three numbers (pq, sq, rq)"
        if len(got) != 3:
            return f"returned {len(got)} numbers, expected three (pq, sq, rq)"
        wrong = [name for name, g in zip(("pq", "sq", "rq"), got, strict=True)
                 if not abs(g - float(case.expected[name])) <= _TOL]
        return f"{', '.join(wrong)} wrong" if wrong else None

    _run_checks("pq_from_counts", fn, [pq.pq_from_counts, pq.panoptic_quality], compare)


# Chapter 05 (failure modes)


def check_classify_failures(fn: Callable[..., Any]) -> None:
    """``fn(inter [G, P], gt_area [G], pred_area [P])`` -> one label per gt segment:
    ``"merge"``, ``"split"``, ``"match"`` or ``"miss"``."""

    def compare(out: Any, case: Case) -> str | None:
        want = [str(v) for v in case.expected["labels"].tolist()]
        if isinstance(out, str) or not isinstance(out, Sequence):
            return f"returned {type(out).__name__}, expected a list with one label per gt segment"
        got = [str(v) for v in out]
        if len(got) != len(want):
            return f"returned {len(got)} labels for {len(want)} ground-truth segments"
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        if bad:
            return (f"ground-truth segment {bad[0]} is labelled {got[bad[0]]!r}, which is not "
                    f"what happened to it ({len(bad)} of {len(want)} labels wrong)")
        return None

    _run_checks("classify_failures", fn, [pq.classify_failures], compare)


def check_min_resolvable_size(fn: Callable[..., Any]) -> None:
    """``fn(stride, coverage) -> int``: the smallest square side owning a cell wherever it lies."""
    _run_checks("min_resolvable_size", fn, [data.min_resolvable_size], _same_whole_number)


# Chapter 06 (losses)


def _close_values(out: Any, case: Case, what: str) -> str | None:
    """``out`` must be a float tensor of the stored shape, within 1e-10 of the stored values."""
    want = torch.from_numpy(case.expected["value"])
    got = _as_tensor(out)
    if got is None:
        return f"returned a {type(out).__name__}, expected a tensor of {what}"
    if got.shape != want.shape:
        return f"returned shape {list(got.shape)}, expected {list(want.shape)} ({what})"
    if not got.is_floating_point():
        return f"returned dtype {got.dtype}, expected floating-point {what}"
    got = got.double()
    if not bool(torch.isfinite(got).all()):
        return "contains NaN or inf (a 0 / 0 somewhere? the smoothing eps prevents it)"
    error = (got - want).abs()
    wrong = error > 1e-10 + 1e-8 * want.abs()
    close = " (all close: float32 somewhere?)" if bool((error < 1e-5).all()) else ""
    if want.ndim == 0 and bool(wrong):
        sign = " (and of the wrong sign)" if bool(got * want < 0) else ""
        return f"the value is wrong{sign}{close}"
    if bool(wrong.any()):
        first = int(wrong.flatten().nonzero()[0])
        return (f"{int(wrong.sum())} of {wrong.numel()} values are wrong, the first at index "
                f"{first}{close}")
    return None


def _loss_functions() -> list[Callable[..., Any]]:
    return [losses.dice_loss, losses.dice_loss_loop, losses.jaccard_loss,
            losses.jaccard_loss_loop, losses.composite_loss, losses.dice_grad, losses.jaccard_grad]


def check_dice_loss(fn: Callable[..., Any]) -> None:
    """``fn(logits [N, H, W], targets [N, H, W]) -> Tensor[N]``: soft Dice loss per mask, eps 1."""
    _run_checks("dice_loss", fn, _loss_functions(),
                lambda out, case: _close_values(out, case, "one loss per mask"))


def check_dice_grad_pixel(fn: Callable[..., Any]) -> None:
    """``fn(probs [P], target [P], k) -> float``: d(soft Dice loss) / d probs[k], eps 1."""

    def compare(out: Any, case: Case) -> str | None:
        got = _as_tensor(out)
        if got is not None and got.numel() == 1 and got.ndim > 0:
            got = got.reshape(())
        if got is None or got.ndim != 0:
            shape = None if got is None else list(got.shape)
            return f"returned {type(out).__name__} of shape {shape}, expected one number"
        return _close_values(got, case, "one number")

    _run_checks("dice_grad_pixel", fn, _loss_functions(), compare)


def check_pick_weighting(fn: Callable[..., Any]) -> None:
    """``fn(ratios [K], ious [K, S]) -> float or None``: the clear winner, if there is one."""

    def compare(out: Any, case: Case) -> str | None:
        want_winner = bool(case.expected["has_winner"])
        if out is None:
            return "returned None, but one weighting does clearly win here" if want_winner else None
        if not want_winner:
            return (f"returned {out!r}, but no weighting wins clearly here: give a verdict only "
                    "where the difference exceeds the spreads")
        try:
            value = float(out)
        except (TypeError, ValueError):
            return f"returned a {type(out).__name__}, expected a ratio (a number) or None"
        if value != float(case.expected["winner"]):
            return f"returned {value!r}, which is not the weighting that wins clearly"
        return None

    _run_checks("pick_weighting", fn, [losses.pick_weighting], compare)


# Chapter 07 (FPN, dilation)


def check_receptive_field(fn: Callable[..., Any]) -> None:
    """``fn(layers [L, 3] as (kernel, stride, dilation)) -> (size, stride)``."""

    def compare(out: Any, case: Case) -> str | None:
        try:
            size, stride = (int(v) for v in out)
        except (TypeError, ValueError):
            return f"returned {type(out).__name__}, expected a pair (size, stride) of integers"
        problems = []
        if stride != int(case.expected["stride"]):
            problems.append("the stride (the product of the layers' strides) is wrong")
        want = int(case.expected["size"])
        if size != want:
            problems.append(f"the receptive field is too {'large' if size > want else 'small'}")
        return "; ".join(problems) or None

    _run_checks("receptive_field", fn, [fpn.receptive_field], compare)


def check_conv_output_size(fn: Callable[..., Any]) -> None:
    """``fn(size, kernel, stride, padding, dilation) -> int``: like ``nn.Conv2d``'s output size."""
    _run_checks("conv_output_size", fn, [fpn.conv_output_size], _same_whole_number)


def check_fpn_level(fn: Callable[..., Any]) -> None:
    """``fn(boxes [N, 4], k_min, k_max, canonical_size, canonical_level) -> Tensor[N]`` levels."""
    _run_checks("fpn_level", fn, [boxes.fpn_level],
                partial(_same_integers, noun="level", per="box",
                        float_hint="levels are whole numbers (floor the formula)"))


# Chapter 08 (ROIAlign)


def _pooled_values(out: Any, case: Case, what: str) -> str | None:
    """Values of ROIAlign: the stored shape, no NaN, within 1e-10 of the stored values."""
    got = _as_tensor(out)
    if got is not None and got.is_floating_point() and bool(torch.isnan(got).any()):
        return "contains NaN (a bin with no samples must give 0: divide by max(count, 1))"
    return _close_values(out, case, what)


def _roi_align_functions() -> list[Callable[..., Any]]:
    return [roi_align.roi_align, roi_align.roi_align_reference, roi_align.roi_align_bin,
            roi_align.multiscale_roi_align, roi_align.roi_align_matrices,
            roi_align.interpolation_matrix]


def check_bilinear_interpolate(fn: Callable[..., Any]) -> None:
    """``fn(feature [..., H, W], y, x) -> Tensor[...]``: the map at (y, x), ROIAlign's borders."""
    _run_checks("bilinear_interpolate", fn,
                [roi_align.bilinear_interpolate, *_roi_align_functions()],
                lambda out, case: _pooled_values(out, case, "one value per leading index"))


def check_roi_align_weights(fn: Callable[..., Any]) -> None:
    """``fn(start, bin_size, grid, bins, size) -> Tensor[bins, size]``: ROIAlign along one axis
    as a matrix, row ``p`` the mean over bin ``p``'s samples of their bilinear weights."""
    _run_checks("roi_align_weights", fn,
                [roi_align.bilinear_interpolate, *_roi_align_functions()],
                lambda out, case: _pooled_values(out, case, "one row of weights per bin"))


def check_multiscale_roi_align(fn: Callable[..., Any]) -> None:
    """``fn([p2, p3, p4, p5], boxes [K, 5], output_size) -> Tensor[K, C, P, P]``.

    The four maps are stored as separate arrays; the learner's function gets them as a list.
    """
    if not callable(fn):
        raise TypeError(f"check_multiscale_roi_align expects your function, got "
                        f"{type(fn).__name__}")

    def call(p2: Any, p3: Any, p4: Any, p5: Any, rois: Any, output_size: Any) -> Any:
        return fn([p2, p3, p4, p5], rois, output_size)

    targets = [roi_align.multiscale_roi_align]
    with library_disabled(fn, targets):  # the notebook's namespace, which `call` does not see
        _run_checks("multiscale_roi_align", call, targets,
                    lambda out, case: _pooled_values(out, case, "[K, C, P, P], boxes in order"))


# Chapter 09 (Mask R-CNN)


def _close_boxes(out: Any, case: Case, what: str) -> str | None:
    """Boxes in pixels, stored from float32 arithmetic: within 1e-3 px, in the stored order."""
    want = torch.from_numpy(case.expected["value"]).double()
    got = _as_tensor(out)
    if got is None:
        return f"returned a {type(out).__name__}, expected a tensor of {what}"
    if got.shape != want.shape:
        return f"returned shape {list(got.shape)}, expected {list(want.shape)} ({what})"
    if not got.is_floating_point():
        return f"returned dtype {got.dtype}, expected floating-point {what}"
    wrong = ((got.double() - want).abs() > 1e-3).any(dim=-1)  # [N]
    if bool(wrong.any()):
        first = int(wrong.nonzero()[0])
        same_set = sorted(map(tuple, got.double().round(decimals=2).tolist())) == sorted(
            map(tuple, want.round(decimals=2).tolist()))
        order = " (the right boxes in another order)" if same_set else ""
        return f"{int(wrong.sum())} of {len(want)} rows are wrong, the first is row {first}{order}"
    return None


def _model_functions() -> list[Callable[..., Any]]:
    from course.model import anchors, assign, box_coding

    return [anchors.cell_anchors, anchors.grid_anchors, anchors.AnchorGenerator,
            box_coding.encode_boxes, box_coding.decode_boxes, assign.match_boxes]


def check_grid_anchors(fn: Callable[..., Any]) -> None:
    """``fn(size, ratios, stride, height, width) -> Tensor[height * width * A, 4]``."""
    _run_checks("grid_anchors", fn, _model_functions(),
                lambda out, case: _close_boxes(out, case, "[H W A, 4] anchors"))


def check_encode_boxes(fn: Callable[..., Any]) -> None:
    """``fn(boxes [N, 4], reference [N, 4], weights) -> Tensor[N, 4]`` offsets."""
    _run_checks("encode_boxes", fn, _model_functions(),
                lambda out, case: _close_values(out, case, "(dx, dy, dw, dh) per box"))


def check_decode_boxes(fn: Callable[..., Any]) -> None:
    """``fn(deltas [N, 4], reference [N, 4], weights) -> Tensor[N, 4]`` boxes."""
    _run_checks("decode_boxes", fn, _model_functions(),
                lambda out, case: _close_values(out, case, "(x1, y1, x2, y2) per box"))


def _same_labels(out: Any, case: Case) -> str | None:
    answer = _answer(out, case, "one label per anchor")
    if isinstance(answer, str):
        return answer
    got, want = answer
    if got.is_floating_point() or not bool(torch.isin(got, torch.tensor([-1, 0, 1])).all()):
        return "labels must be the integers 1 (positive), 0 (negative) and -1 (ignored)"
    for value, name in ((1, "positive"), (0, "negative"), (-1, "ignored")):
        extra = int(((got == value) & (want != value)).sum())
        if extra:
            return f"{extra} anchor(s) labelled {name} ({value}) that should not be"
    return None


def check_label_anchors(fn: Callable[..., Any]) -> None:
    """``fn(iou [G, N], high, low) -> Tensor[N]`` of 1 / 0 / -1, each object's best anchors
    positive."""
    _run_checks("label_anchors", fn, _model_functions(), _same_labels)


def _fusion_functions() -> list[Callable[..., Any]]:
    from course import fusion

    return [fusion.panoptic_fusion, fusion.panoptic_fusion_loop, fusion.paste_by_score,
            fusion.protected_pixels]


def _same_id_map(out: Any, case: Case) -> str | None:
    answer = _answer(out, case, "one id per pixel")
    if isinstance(answer, str):
        return answer
    got, want = answer
    if got.is_floating_point():
        return "return integer ids (k + 1 for mask k, 0 for none), not floats"
    wrong = got != want
    if bool(wrong.any()):
        y, x = (int(v) for v in wrong.nonzero()[0])
        return f"{int(wrong.sum())} of {want.numel()} pixels are wrong, the first at row {y}, " \
               f"column {x}"
    return None


def check_paste_by_score(fn: Callable[..., Any]) -> None:
    """``fn(masks [N, H, W] bool, scores [N]) -> Tensor[H, W]``: ``k + 1`` where mask ``k``
    wins, 0 where none covers."""
    _run_checks("paste_by_score", fn, _fusion_functions(), _same_id_map)


def _same_masks(out: Any, case: Case) -> str | None:
    answer = _answer(out, case, "the masks, [N, H, W]")
    if isinstance(answer, str):
        return answer
    got, want = answer
    if got.dtype != torch.bool:
        return f"return bool masks, got {str(got.dtype).replace('torch.', '')}"
    kept, lost = int((got & ~want).sum()), int((~got & want).sum())
    if kept or lost:
        return f"{kept} pixel(s) kept that a protected class forbids, {lost} removed that it " \
               "does not"
    return None


def check_protect(fn: Callable[..., Any]) -> None:
    """``fn(masks [N, H, W], semantic [C, H, W], protected [K], threshold) -> masks``."""
    _run_checks("protect", fn, _fusion_functions(), _same_masks)
