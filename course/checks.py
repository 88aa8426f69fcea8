"""Checkers for the notebook exercises.

Each exercise in a chapter notebook asks the learner to write one function; the cell after it
calls a checker from here, e.g. ``check_mask_iou(mask_iou)``. A checker runs that function on
stored cases (``course/fixtures/<exercise>.npz``, made by ``scripts/make_fixtures.py`` from the
library's reference implementations), edge cases included. While the function runs, the
library's own versions of it are switched off, and so are the other libraries that compute the
same thing (pycocotools, torchvision's ops and the like; ``nn.Conv2d`` for a convolution's
output size), so an answer that only calls one of them fails. :func:`targets_for` names what a
checker switches off, and :func:`library_disabled` switches it off, for anyone who runs a
learner's function elsewhere (in another process, say) and wants the same rules.

A checker prints one stable line, ``mask_iou: 15/15 checks passed``, or raises an
``AssertionError`` that names the failing case, the shapes involved, what was detected (a wrong
dtype, a NaN, a shape, wrong values, a known wrong convention) and a hint chosen for that fault,
without printing the expected answer.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch

from course import (
    ap,
    boxes,
    data,
    fpn,
    losses,
    masks,
    matching,
    pq,
    roi_align,
    roi_kernels,
    switch_off,
)
from course.switch_off import LibraryCalled

_TOL = 1e-12  # what float64 arithmetic from integer counts reaches


# ---------------------------------------------------------------------------------------------
# Stored cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One stored check: positional ``args`` for the learner's function and what it must return.

    ``name`` says what the case is about and ``hint`` which property it tests; the hint is shown
    when the answer's values are wrong on this case. ``expected`` maps output names to arrays;
    an entry ``fault/<name>`` holds what a known wrong convention returns on this case, so that
    the checker can name that convention.
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
# What each checker switches off
# ---------------------------------------------------------------------------------------------

_SLIDING_WINDOWS = {  # each one's output size is conv_output_size's answer
    "torch": ("conv1d", "conv2d", "conv3d", "convolution", "max_pool1d", "max_pool2d",
              "max_pool3d", "max_pool1d_with_indices", "avg_pool1d"),
    "torch.nn": ("Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d",
                 "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
                 "LPPool1d", "LPPool2d", "Unfold"),
    "torch.nn.functional": ("conv1d", "conv2d", "conv3d", "max_pool1d", "max_pool2d",
                            "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
                            "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d",
                            "lp_pool1d", "lp_pool2d", "unfold"),
    "numpy.lib.stride_tricks": ("sliding_window_view",),
}

# Other libraries' versions of one exercise, fine elsewhere (chapter 02's Hungarian matching
# uses scipy, every model uses convolutions): module -> names.
_OTHER_LIBRARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "conv_output_size": _SLIDING_WINDOWS,
    "greedy_match": {"scipy.optimize": ("linear_sum_assignment",),
                     "scipy.optimize._lsap": ("linear_sum_assignment",)},
}


def _model_functions() -> list[Callable[..., Any]]:
    from course.model import anchors, assign, box_coding

    return [anchors.cell_anchors, anchors.grid_anchors, anchors.AnchorGenerator,
            box_coding.encode_boxes, box_coding.decode_boxes, assign.match_boxes]


def _fusion_functions() -> list[Callable[..., Any]]:
    from course import fusion

    return [fusion.panoptic_fusion, fusion.panoptic_fusion_loop, fusion.paste_by_score,
            fusion.protected_pixels]


def _loss_functions() -> list[Callable[..., Any]]:
    return [losses.dice_loss, losses.dice_loss_loop, losses.jaccard_loss,
            losses.jaccard_loss_loop, losses.composite_loss, losses.dice_grad, losses.jaccard_grad]


def _roi_align_functions() -> list[Callable[..., Any]]:
    return [roi_align.roi_align, roi_align.roi_align_reference, roi_align.roi_align_bin,
            roi_align.multiscale_roi_align, roi_align.roi_align_matrices,
            roi_align.interpolation_matrix, roi_kernels.separable_roi_align,
            roi_kernels.dense_roi_align, roi_kernels.bin_maxima]


# The course's own versions of each exercise (and what would do most of its work).
_COURSE_FUNCTIONS: dict[str, Callable[[], list[Callable[..., Any]]]] = {
    "mask_area": lambda: [masks.mask_area, masks.intersection_counts],
    "mask_iou": lambda: [masks.mask_iou, masks.mask_iou_loop, masks.intersection_counts],
    "mask_dice": lambda: [masks.mask_dice, masks.mask_dice_loop, masks.mask_iou,
                          masks.mask_iou_loop, masks.intersection_counts],
    "tp_fp_fn": lambda: [matching.tp_fp_fn, matching.hungarian_match, matching.greedy_match],
    "greedy_match": lambda: [matching.greedy_match, matching.tp_fp_fn],
    "precision_recall": lambda: [ap.precision_recall, ap.average_precision,
                                 ap.ap_over_thresholds],
    "average_precision": lambda: [ap.average_precision, ap.precision_envelope,
                                  ap.ap_over_thresholds],
    "ap_over_thresholds": lambda: [ap.ap_over_thresholds, ap.average_precision,
                                   ap.precision_recall, ap.precision_envelope, ap.coco_evaluate,
                                   ap.coco_evaluate_reference],
    "pq_stats": lambda: [pq.pq_stats, pq.pq_stats_loop, pq.panoptic_quality, pq.overlap_counts],
    "pq_from_counts": lambda: [pq.pq_from_counts, pq.panoptic_quality],
    "classify_failures": lambda: [pq.classify_failures],
    "min_resolvable_size": lambda: [data.min_resolvable_size],
    "dice_loss": _loss_functions,
    "dice_grad_pixel": _loss_functions,
    "pick_weighting": lambda: [losses.pick_weighting],
    "receptive_field": lambda: [fpn.receptive_field],
    "conv_output_size": lambda: [fpn.conv_output_size],
    "fpn_level": lambda: [boxes.fpn_level],
    "bilinear_interpolate": lambda: [roi_align.bilinear_interpolate, *_roi_align_functions()],
    "roi_align_weights": lambda: [roi_align.bilinear_interpolate, *_roi_align_functions()],
    "multiscale_roi_align": lambda: [roi_align.multiscale_roi_align],
    "grid_anchors": _model_functions,
    "encode_boxes": _model_functions,
    "decode_boxes": _model_functions,
    "label_anchors": _model_functions,
    "paste_by_score": _fusion_functions,
    "protect": _fusion_functions,
}


def targets_for(check_name: str) -> list[Callable[..., Any]]:
    """What the checker ``check_name`` switches off while the learner's function runs.

    The course's own versions of the exercise, then the other libraries' versions that only
    this exercise rules out (``nn.Conv2d`` and the like for ``check_conv_output_size``, scipy's
    ``linear_sum_assignment`` for ``check_greedy_match``). The reference packages
    (:data:`course.switch_off.REFERENCE_PACKAGES`) are switched off by
    :func:`library_disabled` for every check.

    Args:
        check_name (str): ``"check_mask_iou"`` (or the exercise's name, ``"mask_iou"``).

    Returns:
        list of callables, for ``library_disabled(fn, targets_for(check_name))``.
    """
    exercise = check_name.removeprefix("check_")
    if exercise not in _COURSE_FUNCTIONS:
        raise ValueError(f"check_name: no checker named {check_name!r}; known: "
                         f"{', '.join('check_' + k for k in _COURSE_FUNCTIONS)}")
    targets = list(_COURSE_FUNCTIONS[exercise]())
    for module_name, names in _OTHER_LIBRARIES.get(exercise, {}).items():
        if importlib.util.find_spec(module_name.split(".")[0]) is None:
            continue  # not installed: nothing to switch off
        module = importlib.import_module(module_name)
        targets += [getattr(module, n) for n in names if hasattr(module, n)]
    unique = {id(t): t for t in targets}  # the same function under two names, once
    return list(unique.values())


_OTHER_HOMES = tuple(sorted({m for homes in _OTHER_LIBRARIES.values() for m in homes}))


def library_disabled(fn: Callable[..., Any], targets: Sequence[Callable[..., Any]]
                     ) -> contextlib.AbstractContextManager[list[str]]:
    """Switch off ``targets`` and the reference packages while ``fn`` runs (a ``with`` block);
    restore them after. The block gets the list of what was called, filled as it runs. The
    same rules as a check's: :func:`course.switch_off.library_disabled`, also searching the
    modules where other libraries keep their versions of an exercise."""
    return switch_off.library_disabled(fn, targets, also=_OTHER_HOMES)


def _called_message(exercise: str, called: str) -> str:
    if called == "course" or called.startswith("course."):
        return (f"{exercise}: your function calls the library's {called}, which this exercise "
                "asks you to write yourself")
    return (f"{exercise}: your function calls another library's implementation ({called}), "
            "which this exercise asks you to write yourself")


@dataclass(frozen=True)
class Fault:
    """What a comparison found wrong with an answer on one case.

    ``detected`` says what (a wrong type, shape or dtype, a NaN, a known wrong convention, wrong
    values); ``hint`` points to the idea behind that fault. ``hint=None`` means the values are
    simply wrong on this case, and the case's own hint, the property it tests, is shown.
    """

    detected: str
    hint: str | None = None


Compare = Callable[[Any, Case], "Fault | str | None"]


def _run_one(exercise: str, fn: Callable[..., Any], args: list[Any], case: Case,
             targets: Sequence[Callable[..., Any]], compare: Compare) -> Fault | None:
    """``fn(*args)`` with the library switched off, then compared (with the library back on).

    A crash is a failed case like a wrong value: both are about this case's inputs, so the
    case's hint goes with them.
    """
    error: Exception | None = None
    with library_disabled(fn, targets) as calls:
        try:
            out = fn(*args)
        except LibraryCalled as called:  # raised here, or passed on by a proxy
            calls.append(str(called))
        except Exception as err:
            error = err
    if calls:  # even where the learner's code swallowed the LibraryCalled
        raise AssertionError(_called_message(exercise, calls[0])) from None
    if error is not None:
        return Fault(f"raised {type(error).__name__}: {error}")
    verdict = compare(out, case)
    return Fault(verdict) if isinstance(verdict, str) else verdict


def _run_checks(exercise: str, fn: Callable[..., Any], compare: Compare,
                adapt: Callable[[list[Any]], list[Any]] | None = None) -> None:
    """Run ``fn`` on every stored case; print one line, or raise AssertionError naming failures.

    ``adapt`` turns the stored arguments into the ones the exercise documents (a list of maps,
    dicts of segments); ``fn`` is always called with positional arguments.
    """
    if not callable(fn):
        raise TypeError(f"check_{exercise} expects your function, got {type(fn).__name__}")
    cases = load_cases(exercise)
    targets = targets_for(exercise)
    failures = []
    for i, case in enumerate(cases, 1):
        args = [_to_python(a) for a in case.args]
        fault = _run_one(exercise, fn, adapt(args) if adapt else args, case, targets, compare)
        if fault is not None:
            hint = case.hint if fault.hint is None else fault.hint
            failures.append(f"case {i} '{case.name}' (arguments: {_describe(args)}): "
                            f"{fault.detected}. Hint: {hint}")
    passed = len(cases) - len(failures)
    if failures:
        shown = "\n  - ".join(failures[:3])
        more = f"\n  (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        raise AssertionError(f"{exercise}: {passed}/{len(cases)} checks passed\n  - {shown}{more}")
    print(f"{exercise}: {passed}/{len(cases)} checks passed")


def _known_fault(case: Case, same: Callable[[np.ndarray], bool],
                 faults: dict[str, Fault]) -> Fault | None:
    """The known wrong convention whose output, stored as ``fault/<name>``, the answer equals."""
    for name, fault in faults.items():
        alternative = case.expected.get(f"fault/{name}")
        if alternative is not None and same(alternative):
            return fault
    return None


# ---------------------------------------------------------------------------------------------
# Comparisons: each returns None when the answer is right, else the Fault it shows
# ---------------------------------------------------------------------------------------------

_NO_VALUE = "did the function reach a return statement? return the result, not print it"
_PRECISION = ("count pixels as integers and divide once, in float64: a float32 step keeps only "
              "about 7 digits")


def _as_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out.detach().cpu()
    if isinstance(out, np.ndarray | list | tuple | int | float):
        try:
            return torch.as_tensor(np.asarray(out))
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def _not_a_tensor(out: Any, what: str) -> Fault:
    hint = _NO_VALUE if out is None else f"return a torch tensor of {what}"
    return Fault(f"returned a {type(out).__name__}, expected a tensor", hint)


def _wrong_shape(got: torch.Tensor, want: torch.Tensor, what: str) -> Fault:
    return Fault(f"returned shape {list(got.shape)}, expected {list(want.shape)}",
                 f"return {what}, also when an input holds no items")


def _answer(out: Any, case: Case, what: str) -> tuple[torch.Tensor, torch.Tensor] | Fault:
    """``(got, want)`` as tensors, or the fault of the answer's type or shape (``what`` it
    holds)."""
    want = torch.from_numpy(case.expected["value"])
    got = _as_tensor(out)
    if got is None:
        return _not_a_tensor(out, what)
    if got.shape != want.shape:
        return _wrong_shape(got, want, what)
    return got, want


def _same_matrix(out: Any, case: Case) -> Fault | None:
    answer = _answer(out, case, "[N, M]: a row per mask of the first argument, a column per "
                                "mask of the second")
    if isinstance(answer, Fault):
        got, want = _as_tensor(out), torch.from_numpy(case.expected["value"])
        if got is not None and got.ndim == 2 and got.shape == want.T.shape:
            return Fault(f"returned shape {list(got.shape)}, the transpose of the expected "
                         f"{list(want.shape)}", "rows follow the first argument, columns the "
                         "second")
        return answer
    got, want = answer
    if got.dtype != torch.float64:
        return Fault(f"returned dtype {got.dtype}, expected torch.float64",
                     "divide integer counts in float64")
    if bool(torch.isnan(got).any()):
        return Fault("contains NaN", "check the case of empty masks: a 0 / 0 gives NaN")
    if got.numel() and (got.min() < 0 or got.max() > 1):
        return Fault("some values lie outside [0, 1]", "a part of a set is at most the whole "
                     "set: check what you divide by")
    error = (got - want).abs()
    wrong = error > _TOL
    if not bool(wrong.any()):
        return None
    r, c = (int(x) for x in wrong.nonzero()[0])
    detected = f"{int(wrong.sum())} of {wrong.numel()} entries are wrong, the first at [{r}, {c}]"
    if error.max() < 1e-5:
        return Fault(f"{detected}, all by less than 1e-5 (a precision problem)", _PRECISION)
    if got.shape[0] == got.shape[1] and bool(((got.T - want).abs() <= _TOL).all()):
        return Fault(f"{detected}: the matrix is transposed", "rows follow the first argument, "
                     "columns the second")
    return Fault(detected)


def _counts_of(out: Any, want: dict[str, int]) -> dict[str, int] | Fault:
    if all(hasattr(out, k) for k in want):
        got = {k: getattr(out, k) for k in want}
    elif isinstance(out, Sequence) and not isinstance(out, str) and len(out) == 3:
        got = dict(zip(want, out, strict=True))
    else:
        hint = _NO_VALUE if out is None else "return the three counts, in this order"
        return Fault(f"returned {type(out).__name__}, expected a tuple (tp, fp, fn)", hint)
    try:
        numbers = {k: float(v) for k, v in got.items()}
    except (TypeError, ValueError):
        return Fault("tp, fp and fn must be numbers", "count pairs and leftovers")
    if any(not v.is_integer() for v in numbers.values()):
        return Fault("tp, fp and fn must be whole numbers", "count pairs; do not add up IoUs")
    return {k: int(v) for k, v in numbers.items()}


_COUNT_FAULTS = {
    "strict": Fault("tp is too low: a pair with IoU exactly at the threshold was not matched",
                    "a pair whose IoU equals the threshold is a match"),
    "match_then_threshold": Fault(
        "tp is too low, as when all pairs take part in the matching and the threshold is "
        "applied afterwards", "a pair below the threshold cannot match, so it must not take "
        "part in the assignment: otherwise it can take the place of a valid pair"),
    "across_classes": Fault("tp is too high, as when predictions match objects of other "
                            "classes", "a prediction matches only objects of its own class"),
}


def _same_counts(out: Any, case: Case) -> Fault | None:
    want = {k: int(case.expected[k]) for k in ("tp", "fp", "fn")}
    got = _counts_of(out, want)
    if isinstance(got, Fault):
        return got
    n_pred, n_gt = int(case.expected["num_pred"]), int(case.expected["num_gt"])
    if got["tp"] + got["fp"] != n_pred:
        return Fault(f"tp + fp is not the number of predictions ({n_pred}), got {got}",
                     "every prediction is either a true or a false positive")
    if got["tp"] + got["fn"] != n_gt:
        return Fault(f"tp + fn is not the number of ground-truth objects ({n_gt}), got {got}",
                     "every object is either found (a true positive) or missed")
    if got["tp"] == want["tp"]:
        return None
    known = _known_fault(case, lambda tp: int(tp) == got["tp"], _COUNT_FAULTS)
    return known or Fault(f"got {got}: tp is too {'high' if got['tp'] > want['tp'] else 'low'}")


_PAIR_FAULTS = {
    "strict": Fault("a pair with IoU exactly at the threshold is missing",
                    "a pair whose IoU equals the threshold is a match"),
    "index_order": Fault("the pairs are those of visiting the predictions in row order",
                         "visit the predictions by descending score (equal scores keep their "
                         "row order)"),
    "takes_below": Fault("an object stayed taken by a prediction that did not match it",
                         "an object stays free unless a prediction matches it at or above the "
                         "threshold"),
    "first_above": Fault("a prediction took the first free object above the threshold, not the "
                         "best one", "take the free object with the highest IoU"),
}


def _pairs_of(out: Any) -> list[tuple[int, int]] | Fault:
    pairs = getattr(out, "pairs", out)
    hint = _NO_VALUE if out is None else "return a list of (prediction row, gt column) pairs"
    try:
        return [(int(p), int(g)) for p, g in _as_tensor(pairs).reshape(-1, 2).tolist()]
    except (TypeError, RuntimeError, AttributeError, ValueError):
        return Fault(f"returned {type(out).__name__}, expected a list of (prediction, gt) index "
                     "pairs", hint)


def _same_pairs(out: Any, case: Case) -> Fault | None:
    got_list = _pairs_of(out)
    if isinstance(got_list, Fault):
        return got_list
    want = {tuple(p) for p in case.expected["pairs"].tolist()}
    got = set(got_list)
    if len(got) != len(got_list):
        return Fault("the same pair appears twice", "list each match once")
    if len({p for p, _ in got}) != len(got) or len({g for _, g in got}) != len(got):
        return Fault("a prediction or a ground truth is used in more than one pair",
                     "matching is one-to-one: a matched object is no longer free")
    if got == want:
        return None
    known = _known_fault(case, lambda alt: {tuple(p) for p in alt.tolist()} == got, _PAIR_FAULTS)
    extra, missing = sorted(got - want), len(want - got)
    parts = [f"{len(extra)} pair(s) that should not be there, e.g. {extra[0]}"] if extra else []
    parts += [f"{missing} pair(s) missing"] if missing else []
    return known or Fault("; ".join(parts))


def _same_whole_number(out: Any, case: Case) -> Fault | None:
    """One whole number (a size in pixels, say), said to be too large or too small."""
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        out = out.item()
    whole = isinstance(out, int | np.integer) or (isinstance(out, float) and out.is_integer())
    if not whole:
        hint = _NO_VALUE if out is None else "sizes are whole numbers of pixels: return an int"
        return Fault(f"returned {out!r}, expected a whole number", hint)
    want = int(case.expected["value"])
    if int(out) != want:
        return Fault(f"returned {int(out)}: too {'large' if int(out) > want else 'small'}")
    return None


def _same_integers(out: Any, case: Case, noun: str, per: str, float_hint: str) -> Fault | None:
    """One whole number per input item (a count per mask, a level per box)."""
    answer = _answer(out, case, f"a tensor [N], one {noun} per {per}")
    if isinstance(answer, Fault):
        return answer
    got, want = answer
    if got.is_floating_point() and not bool((got == got.round()).all()):
        return Fault(f"some {noun}s are not whole numbers", float_hint)
    wrong = got.to(torch.int64) != want
    if not bool(wrong.any()):
        return None
    i = int(wrong.nonzero()[0])
    detected = f"{int(wrong.sum())} of {len(want)} {noun}s are wrong, the first for {per} {i}"
    for bits in (8, 16):
        if int(want.max()) >= 2**bits and bool((got.to(torch.int64) % 2**bits
                                                == want % 2**bits).all()):
            return Fault(f"{detected}: they wrapped around at {2**bits}",
                         f"an integer type of {bits} bits cannot hold them: add up in "
                         "int64")
    return Fault(detected)


# ---------------------------------------------------------------------------------------------
# The checkers, by chapter
# ---------------------------------------------------------------------------------------------

# Chapter 00


def check_mask_area(fn: Callable[..., Any]) -> None:
    """``fn(masks [N, H, W] bool) -> Tensor[N]``: the pixel count of each mask."""
    _run_checks("mask_area", fn,
                lambda out, case: _same_integers(out, case, "count", "mask",
                                                 "pixel counts are whole numbers"))


# Chapter 01


def check_mask_iou(fn: Callable[..., Any]) -> None:
    """``fn(a [N, H, W], b [M, H, W]) -> Tensor[N, M]`` float64 IoU; empty with empty is 0."""
    _run_checks("mask_iou", fn, _same_matrix)


def check_mask_dice(fn: Callable[..., Any]) -> None:
    """``fn(a [N, H, W], b [M, H, W]) -> Tensor[N, M]`` float64 Dice; empty with empty is 0."""
    _run_checks("mask_dice", fn, _same_matrix)


# Chapter 02


def check_tp_fp_fn(fn: Callable[..., Any]) -> None:
    """``fn(iou [P, G], pred_labels [P], gt_labels [G], threshold) -> (tp, fp, fn)``."""
    _run_checks("tp_fp_fn", fn, _same_counts)


def check_greedy_match(fn: Callable[..., Any]) -> None:
    """``fn(iou [P, G], scores [P], threshold) -> [(pred, gt), ...]`` by COCO's greedy rule."""
    _run_checks("greedy_match", fn, _same_pairs)


# Chapter 03 (COCO Average Precision)


def _same_curves(out: Any, case: Case) -> Fault | None:
    """``out`` must be ``(precision, recall)``, each ``[D]``, within 1e-12 of the stored values."""
    if not isinstance(out, Sequence) or isinstance(out, str) or len(out) != 2:
        hint = _NO_VALUE if out is None else "return two tensors: (precision, recall)"
        return Fault(f"returned {type(out).__name__}, expected a tuple (precision, recall)", hint)
    wants = (case.expected["precision"], case.expected["recall"])
    gots = [_as_tensor(v) for v in out]
    for name, got, raw, want in zip(("precision", "recall"), gots, out, wants, strict=True):
        if got is None:
            return Fault(f"{name} is a {type(raw).__name__}, expected a tensor",
                         "return two tensors: (precision, recall)")
        if tuple(got.shape) != want.shape:
            return Fault(f"{name} has shape {list(got.shape)}, expected {list(want.shape)}",
                         "one value after each detection of the list")
        if not got.is_floating_point():
            return Fault(f"{name} has dtype {got.dtype}", "divide in floating point")
        if not bool(torch.isfinite(got).all()):
            return Fault(f"{name} contains NaN or inf", "a 0 / 0 gives NaN: check what you "
                         "divide by, and the case without objects")
    close = [[bool(((g.double() - torch.from_numpy(w)).abs() <= _TOL).all()) for w in wants]
             for g in gots]  # close[i][j]: output i equals stored curve j
    if close[0][0] and close[1][1]:
        return None
    if close[0][1] and close[1][0] and not close[0][0]:
        return Fault("precision and recall are swapped", "return (precision, recall), in "
                     "this order")
    name, got, want = next((n, g, w) for n, g, w, ok in zip(
        ("precision", "recall"), gots, wants, (close[0][0], close[1][1]), strict=True) if not ok)
    wrong = ~((got.double() - torch.from_numpy(want)).abs() <= _TOL)  # NaN is wrong too
    first = int(wrong.nonzero()[0])
    return Fault(f"{name} is wrong at {int(wrong.sum())} of {len(want)} positions, the first "
                 f"after detection {first + 1} of the list")


def _same_ap(out: Any, case: Case) -> Fault | None:
    """``out`` must be one number within 1e-12 of the stored AP (never revealed)."""
    if isinstance(out, torch.Tensor | np.ndarray) and np.size(out) == 1:
        out = float(out.reshape(-1)[0])
    if isinstance(out, bool) or not isinstance(out, int | float | np.floating):
        hint = _NO_VALUE if out is None else "return the AP as a Python float"
        return Fault(f"returned {type(out).__name__}, expected one number", hint)
    got, want = float(out), float(case.expected["value"])
    if np.isnan(got):
        return Fault("returned NaN", "check the empty list: a mean of nothing, or a 0 / 0, "
                     "gives NaN")
    if not 0 <= got <= 1:
        return Fault(f"returned {got:.4f}, outside [0, 1]", "an AP is a mean of precisions, "
                     "each in [0, 1]")
    if abs(got - want) > _TOL:
        return Fault(f"the AP is too {'high' if got > want else 'low'}")
    return None


def check_precision_recall(fn: Callable[..., Any]) -> None:
    """``fn(tp [D] bool, num_gt) -> (precision [D], recall [D])`` along a ranked list."""
    _run_checks("precision_recall", fn, _same_curves)


def check_average_precision(fn: Callable[..., Any]) -> None:
    """``fn(precision [D], recall [D]) -> float``: the envelope sampled at 101 recalls."""
    _run_checks("average_precision", fn, _same_ap)


def check_ap_over_thresholds(fn: Callable[..., Any]) -> None:
    """``fn(iou [D, G], scores [D]) -> float``: AP of one image and class, over 0.50:0.95."""
    _run_checks("ap_over_thresholds", fn, _same_ap)


# Chapter 04 (Panoptic Quality)


def _segment_dict(rows: torch.Tensor) -> dict[int, tuple[int, bool]]:
    """``[S, 3]`` rows (id, category_id, iscrowd) -> ``{id: (category_id, iscrowd)}``."""
    return {int(i): (int(c), bool(k)) for i, c, k in rows.reshape(-1, 3).tolist()}


def _with_dicts(args: list[Any]) -> list[Any]:
    """The stored ``[S, 3]`` segment rows of ``pq_stats``'s cases, as the documented dicts."""
    gt_ids, gt_rows, pred_ids, pred_rows = args
    return [gt_ids, _segment_dict(gt_rows), pred_ids, _segment_dict(pred_rows)]


def _pq_rows(out: Any) -> dict[int, list[float]] | Fault:
    if hasattr(out, "as_dict"):
        out = out.as_dict()
    shape = "a dict {category_id: (iou_sum, tp, fp, fn)}"
    if not isinstance(out, dict):
        hint = _NO_VALUE if out is None else f"return {shape}"
        return Fault(f"returned {type(out).__name__}, expected {shape}", hint)
    rows = {}
    for cat, value in out.items():
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 4:
            return Fault(f"category {cat}: expected four numbers (iou_sum, tp, fp, fn)",
                         f"return {shape}")
        if any(not v.is_integer() for v in numbers[1:]):
            return Fault(f"category {cat}: tp, fp or fn is not a whole number",
                         "tp, fp and fn count segments")
        rows[int(cat)] = numbers
    return rows


def _same_pq_counts(out: Any, case: Case) -> Fault | None:
    rows = _pq_rows(out)
    if isinstance(rows, Fault):
        return rows
    e = case.expected
    want = {int(c): [float(i), int(t), int(p), int(n)] for c, i, t, p, n in zip(
        e["categories"], e["iou_sum"], e["tp"], e["fp"], e["fn"], strict=True)}
    for cat in sorted(set(rows) | set(want)):
        got, ref = rows.get(cat, [0.0, 0, 0, 0]), want.get(cat, [0.0, 0, 0, 0])
        if cat not in want and any(got):
            return Fault(f"category {cat} is in neither segment list",
                         "only the categories of the segments given have a row")
        for k, name in ((1, "tp"), (2, "fp"), (3, "fn")):
            if got[k] != ref[k]:
                return Fault(f"category {cat}: {name} is too "
                             f"{'high' if got[k] > ref[k] else 'low'}")
        if not abs(got[0] - ref[0]) <= 1e-9:
            return Fault(f"category {cat}: the counts are right but iou_sum is wrong")
    return None


def check_pq_stats(fn: Callable[..., Any]) -> None:
    """``fn(gt_ids [H, W], gt_segments, pred_ids [H, W], pred_segments)`` -> per-category
    ``{category_id: (iou_sum, tp, fp, fn)}``; segments are ``{id: (category_id, iscrowd)}``
    (the stored cases keep them as ``[S, 3]`` rows and pass them to you as dicts)."""
    _run_checks("pq_stats", fn, _same_pq_counts, adapt=_with_dicts)


def _same_pq_sq_rq(out: Any, case: Case) -> Fault | None:
    if isinstance(out, dict):
        out = tuple(out.get(k) for k in ("pq", "sq", "rq"))
    try:
        got = [float(v) for v in out]
    except (TypeError, ValueError):
        hint = _NO_VALUE if out is None else "return three numbers, (pq, sq, rq)"
        return Fault(f"returned {type(out).__name__}, expected three numbers (pq, sq, rq)", hint)
    if len(got) != 3:
        return Fault(f"returned {len(got)} numbers, expected three (pq, sq, rq)",
                     "return three numbers, (pq, sq, rq)")
    names = ("pq", "sq", "rq")
    if any(np.isnan(g) for g in got):
        nan = ", ".join(n for n, g in zip(names, got, strict=True) if np.isnan(g))
        return Fault(f"{nan} is NaN", "check the classes without true positives, and those "
                     "without any segment: a 0 / 0 gives NaN")
    wrong = [name for name, g in zip(names, got, strict=True)
             if not abs(g - float(case.expected[name])) <= _TOL]
    return Fault(f"{', '.join(wrong)} wrong") if wrong else None


def check_pq_from_counts(fn: Callable[..., Any]) -> None:
    """``fn(iou_sum [K], tp [K], fp [K], fn [K]) -> (pq, sq, rq)`` averaged over the classes."""
    _run_checks("pq_from_counts", fn, _same_pq_sq_rq)


# Chapter 05 (failure modes)


def _same_failure_labels(out: Any, case: Case) -> Fault | None:
    want = [str(v) for v in case.expected["labels"].tolist()]
    if isinstance(out, str) or not isinstance(out, Sequence):
        hint = _NO_VALUE if out is None else "return a list of strings"
        return Fault(f"returned {type(out).__name__}, expected a list with one label per gt "
                     "segment", hint)
    got = [str(v) for v in out]
    if len(got) != len(want):
        return Fault(f"returned {len(got)} labels for {len(want)} ground-truth segments",
                     "one label per ground-truth segment (a row of inter), also for none")
    unknown = sorted(set(got) - {"merge", "split", "match", "miss"})
    if unknown:
        return Fault(f"unknown label {unknown[0]!r}", "the labels are 'merge', 'split', "
                     "'match' and 'miss'")
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    if bad:
        return Fault(f"ground-truth segment {bad[0]} is labelled {got[bad[0]]!r}, which is not "
                     f"what happened to it ({len(bad)} of {len(want)} labels wrong)")
    return None


def check_classify_failures(fn: Callable[..., Any]) -> None:
    """``fn(inter [G, P], gt_area [G], pred_area [P])`` -> one label per gt segment:
    ``"merge"``, ``"split"``, ``"match"`` or ``"miss"``."""
    _run_checks("classify_failures", fn, _same_failure_labels)


def check_min_resolvable_size(fn: Callable[..., Any]) -> None:
    """``fn(stride, coverage) -> int``: the smallest square side owning a cell wherever it lies."""
    _run_checks("min_resolvable_size", fn, _same_whole_number)


# Chapter 06 (losses)


def _close_values(out: Any, case: Case, what: str, nan_hint: str,
                  precision_hint: str = "compute in float64 throughout: a float32 step keeps "
                                        "only about 7 digits") -> Fault | None:
    """``out`` must be a float tensor of the stored shape, within 1e-10 of the stored values."""
    answer = _answer(out, case, what)
    if isinstance(answer, Fault):
        return answer
    got, want = answer
    if not got.is_floating_point():
        return Fault(f"returned dtype {got.dtype}, expected floating point",
                     "compute in floating point (float64)")
    got = got.double()
    if not bool(torch.isfinite(got).all()):
        return Fault("contains NaN or inf", nan_hint)
    error = (got - want).abs()
    wrong = error > 1e-10 + 1e-8 * want.abs()
    if not bool(wrong.any()):
        return None
    if want.ndim == 0:
        sign = " and of the wrong sign" if bool(got * want < 0) else ""
        detected = f"the value is wrong{sign}"
    else:
        first = int(wrong.flatten().nonzero()[0])
        detected = (f"{int(wrong.sum())} of {wrong.numel()} values are wrong, the first at "
                    f"index {first}")
    if bool((error < 1e-5).all()):
        return Fault(f"{detected}, all by less than 1e-5 (a precision problem)", precision_hint)
    return Fault(detected)


_LOSS_NAN = ("check empty targets and very large logits: a 0 / 0, or a sigmoid computed as "
             "exp(z) / (1 + exp(z)), gives NaN")


def check_dice_loss(fn: Callable[..., Any]) -> None:
    """``fn(logits [N, H, W], targets [N, H, W]) -> Tensor[N]``: soft Dice loss per mask, eps 1."""
    _run_checks("dice_loss", fn,
                lambda out, case: _close_values(out, case, "a tensor [N], one loss per mask",
                                                _LOSS_NAN))


def _same_gradient(out: Any, case: Case) -> Fault | None:
    got = _as_tensor(out)
    if got is not None and got.numel() == 1 and got.ndim > 0:
        got = got.reshape(())
    if got is None or got.ndim != 0:
        shape = None if got is None else list(got.shape)
        hint = _NO_VALUE if out is None else "return one float: the derivative at pixel k"
        return Fault(f"returned {type(out).__name__} of shape {shape}, expected one number",
                     hint)
    return _close_values(got, case, "one number", "check an empty target and probabilities "
                         "of exactly 0 or 1: a 0 / 0 gives NaN")


def check_dice_grad_pixel(fn: Callable[..., Any]) -> None:
    """``fn(probs [P], target [P], k) -> float``: d(soft Dice loss) / d probs[k], eps 1."""
    _run_checks("dice_grad_pixel", fn, _same_gradient)


def _same_winner(out: Any, case: Case) -> Fault | None:
    want_winner = bool(case.expected["has_winner"])
    if out is None:
        return Fault("returned None, but one weighting does clearly win here") if want_winner \
            else None
    try:
        value = float(out)
    except (TypeError, ValueError):
        return Fault(f"returned a {type(out).__name__}, expected a ratio (a number) or None",
                     "return the winner's ratio, or None")
    if not want_winner:
        return Fault(f"returned {value!r}, but no weighting wins clearly here")
    if value != float(case.expected["winner"]):
        return Fault(f"returned {value!r}, which is not the weighting that wins clearly")
    return None


def check_pick_weighting(fn: Callable[..., Any]) -> None:
    """``fn(ratios [K], ious [K, S]) -> float or None``: the clear winner, if there is one."""
    _run_checks("pick_weighting", fn, _same_winner)


# Chapter 07 (FPN, dilation)


def _same_field(out: Any, case: Case) -> Fault | None:
    try:
        size, stride = (int(v) for v in out)
    except (TypeError, ValueError):
        hint = _NO_VALUE if out is None else "return a pair of ints, (size, stride)"
        return Fault(f"returned {type(out).__name__}, expected a pair (size, stride) of integers",
                     hint)
    problems = []
    if stride != int(case.expected["stride"]):
        problems.append("the stride is wrong")
    want = int(case.expected["size"])
    if size != want:
        problems.append(f"the receptive field is too {'large' if size > want else 'small'}")
    return Fault("; ".join(problems)) if problems else None


def check_receptive_field(fn: Callable[..., Any]) -> None:
    """``fn(layers [L, 3] as (kernel, stride, dilation)) -> (size, stride)``."""
    _run_checks("receptive_field", fn, _same_field)


def check_conv_output_size(fn: Callable[..., Any]) -> None:
    """``fn(size, kernel, stride, padding, dilation) -> int``: like ``nn.Conv2d``'s output size."""
    _run_checks("conv_output_size", fn, _same_whole_number)


def check_fpn_level(fn: Callable[..., Any]) -> None:
    """``fn(boxes [N, 4], k_min, k_max, canonical_size, canonical_level) -> Tensor[N]`` levels."""
    _run_checks("fpn_level", fn,
                lambda out, case: _same_integers(out, case, "level", "box",
                                                 "levels are whole numbers: round down"))


# Chapter 08 (ROIAlign)


def _pooled_values(out: Any, case: Case, what: str) -> Fault | None:
    """Values of ROIAlign: the stored shape, no NaN, within 1e-10 of the stored values."""
    return _close_values(out, case, what, "a bin or a row without samples gives 0, not 0 / 0",
                         "compute in float64 throughout: the maps are float64")


def check_bilinear_interpolate(fn: Callable[..., Any]) -> None:
    """``fn(feature [..., H, W], y, x) -> Tensor[...]``: the map at (y, x), ROIAlign's borders."""
    _run_checks("bilinear_interpolate", fn,
                lambda out, case: _pooled_values(out, case, "one value per leading index"))


def check_roi_align_weights(fn: Callable[..., Any]) -> None:
    """``fn(start, bin_size, grid, bins, size) -> Tensor[bins, size]``: ROIAlign along one axis
    as a matrix, row ``p`` the mean over bin ``p``'s samples of their bilinear weights."""
    _run_checks("roi_align_weights", fn,
                lambda out, case: _pooled_values(out, case, "one row of weights per bin"))


def _four_maps(args: list[Any]) -> list[Any]:
    """``multiscale_roi_align``'s stored maps, one argument each, as the documented list."""
    p2, p3, p4, p5, rois, output_size = args
    return [[p2, p3, p4, p5], rois, output_size]


def check_multiscale_roi_align(fn: Callable[..., Any]) -> None:
    """``fn([p2, p3, p4, p5], boxes [K, 5], output_size) -> Tensor[K, C, P, P]``.

    The four maps are stored as separate arrays; the learner's function gets them as a list.
    """
    _run_checks("multiscale_roi_align", fn,
                lambda out, case: _pooled_values(out, case, "[K, C, P, P], boxes in order"),
                adapt=_four_maps)


# Chapter 09 (Mask R-CNN)


def _close_boxes(out: Any, case: Case, what: str) -> Fault | None:
    """Boxes in pixels, stored from float32 arithmetic: within 1e-3 px, in the stored order."""
    answer = _answer(out, case, what)
    if isinstance(answer, Fault):
        return answer
    got, want = answer
    if not got.is_floating_point():
        return Fault(f"returned dtype {got.dtype}, expected floating point",
                     "box corners lie between pixels: compute in floating point")
    got, want = got.double(), want.double()
    if not bool(torch.isfinite(got).all()):
        return Fault("contains NaN or inf", "box corners are finite numbers of pixels")
    wrong = ((got - want).abs() > 1e-3).any(dim=-1)  # [N]
    if not bool(wrong.any()):
        return None
    first = int(wrong.nonzero()[0])
    detected = f"{int(wrong.sum())} of {len(want)} rows are wrong, the first is row {first}"
    same_set = sorted(map(tuple, got.round(decimals=2).tolist())) == sorted(
        map(tuple, want.round(decimals=2).tolist()))
    if same_set:
        return Fault(f"{detected}: the right boxes in another order", "order the rows position "
                     "by position (row, then column), and ratio by ratio within a position")
    return Fault(detected)


def check_grid_anchors(fn: Callable[..., Any]) -> None:
    """``fn(size, ratios, stride, height, width) -> Tensor[height * width * A, 4]``."""
    _run_checks("grid_anchors", fn,
                lambda out, case: _close_boxes(out, case, "[H W A, 4] anchors"))


_BOX_NAN = "check the widths and heights you divide by and take the log of"


def check_encode_boxes(fn: Callable[..., Any]) -> None:
    """``fn(boxes [N, 4], reference [N, 4], weights) -> Tensor[N, 4]`` offsets."""
    _run_checks("encode_boxes", fn,
                lambda out, case: _close_values(out, case, "(dx, dy, dw, dh) per box", _BOX_NAN))


def check_decode_boxes(fn: Callable[..., Any]) -> None:
    """``fn(deltas [N, 4], reference [N, 4], weights) -> Tensor[N, 4]`` boxes."""
    _run_checks("decode_boxes", fn,
                lambda out, case: _close_values(out, case, "(x1, y1, x2, y2) per box",
                                                "an exponential overflows to inf: clamp "
                                                "before it, as the exercise says"))


def _same_labels(out: Any, case: Case) -> Fault | None:
    answer = _answer(out, case, "a tensor [N], one label per anchor")
    if isinstance(answer, Fault):
        return answer
    got, want = answer
    if got.is_floating_point() or not bool(torch.isin(got, torch.tensor([-1, 0, 1])).all()):
        return Fault("some labels are not the integers 1, 0 or -1", "label with the integers 1 "
                     "(positive), 0 (negative) and -1 (ignored)")
    for value, name in ((1, "positive"), (0, "negative"), (-1, "ignored")):
        extra = int(((got == value) & (want != value)).sum())
        if extra:
            return Fault(f"{extra} anchor(s) labelled {name} ({value}) that should not be")
    return None


def check_label_anchors(fn: Callable[..., Any]) -> None:
    """``fn(iou [G, N], high, low) -> Tensor[N]`` of 1 / 0 / -1, each object's best anchors
    positive."""
    _run_checks("label_anchors", fn, _same_labels)


# Chapter 11 (panoptic fusion)


def _same_id_map(out: Any, case: Case) -> Fault | None:
    answer = _answer(out, case, "[H, W], one id per pixel")
    if isinstance(answer, Fault):
        return answer
    got, want = answer
    if got.is_floating_point():
        return Fault(f"returned dtype {got.dtype}", "return integer ids (int64)")
    wrong = got != want
    if not bool(wrong.any()):
        return None
    y, x = (int(v) for v in wrong.nonzero()[0])
    return Fault(f"{int(wrong.sum())} of {want.numel()} pixels are wrong, the first at row {y}, "
                 f"column {x}")


def check_paste_by_score(fn: Callable[..., Any]) -> None:
    """``fn(masks [N, H, W] bool, scores [N]) -> Tensor[H, W]``: ``k + 1`` where mask ``k``
    wins, 0 where none covers."""
    _run_checks("paste_by_score", fn, _same_id_map)


def _same_masks(out: Any, case: Case) -> Fault | None:
    answer = _answer(out, case, "the masks, [N, H, W]")
    if isinstance(answer, Fault):
        return answer
    got, want = answer
    if got.dtype != torch.bool:
        return Fault(f"returned dtype {str(got.dtype).replace('torch.', '')}",
                     "return bool masks")
    kept, lost = int((got & ~want).sum()), int((~got & want).sum())
    if kept or lost:
        return Fault(f"{kept} pixel(s) kept that a protected class forbids, {lost} removed that "
                     "it does not")
    return None


def check_protect(fn: Callable[..., Any]) -> None:
    """``fn(masks [N, H, W], semantic [C, H, W], protected [K], threshold) -> masks``."""
    _run_checks("protect", fn, _same_masks)
