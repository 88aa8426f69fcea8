"""Each checker passes a correct answer, fails plausible wrong ones, and fails an answer that
only calls the library. The stored fixtures are what the fixture script makes today."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import course.masks
from course import checks, matching
from course.masks import mask_iou

ROOT = Path(__file__).resolve().parent.parent


# --- correct answers, written the way a learner would ------------------------------------


def area_ok(masks):
    return masks.flatten(1).sum(1)


def iou_ok(a, b):
    a, b = a.bool().flatten(1).long(), b.bool().flatten(1).long()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter.double() / union.clamp(min=1).double(), 0.0)


def dice_ok(a, b):
    a, b = a.bool().flatten(1).long(), b.bool().flatten(1).long()
    inter = a @ b.T
    total = a.sum(1)[:, None] + b.sum(1)[None, :]
    return torch.where(total > 0, 2 * inter.double() / total.clamp(min=1).double(), 0.0)


def counts_ok(iou, pred_labels, gt_labels, threshold):
    tp = 0
    for c in set(pred_labels.tolist()) & set(gt_labels.tolist()):
        sub = iou[pred_labels == c][:, gt_labels == c]
        weights = torch.where(sub >= threshold, sub, 0.0).numpy()
        rows, cols = linear_sum_assignment(weights, maximize=True)
        tp += int((sub[rows, cols] >= threshold).sum())
    return tp, len(pred_labels) - tp, len(gt_labels) - tp


def greedy_ok(iou, scores, threshold):
    taken, pairs = set(), []
    for d in sorted(range(len(scores)), key=lambda i: -scores[i]):  # sorted() is stable
        best, match = threshold, None
        for g in range(iou.shape[1]):
            if g not in taken and iou[d, g] >= best:
                best, match = iou[d, g], g
        if match is not None:
            taken.add(match)
            pairs.append((d, match))
    return pairs


# --- plausible wrong answers --------------------------------------------------------------


def area_uint8(masks):  # sums in the masks' own small integer type
    return masks.numpy().astype(np.uint8).reshape(len(masks), -1).sum(1, dtype=np.uint8)


def area_one_axis(masks):
    return masks.sum(dim=1)[:, 0] if masks.numel() else torch.zeros(len(masks))


def iou_float32(a, b):  # ratios in float32, cast up at the end
    a, b = a.bool().flatten(1).float(), b.bool().flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), 0.0).double()


def iou_nan_on_empty(a, b):
    a, b = a.bool().flatten(1).long(), b.bool().flatten(1).long()
    inter = a @ b.T
    return inter.double() / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter).double()


def iou_transposed(a, b):
    return iou_ok(b, a)


def dice_as_iou(a, b):
    return iou_ok(a, b)


def dice_float32(a, b):
    return dice_ok(a, b).float().double()


def counts_ignoring_class(iou, pred_labels, gt_labels, threshold):
    return counts_ok(iou, torch.zeros_like(pred_labels), torch.zeros_like(gt_labels), threshold)


def counts_strict(iou, pred_labels, gt_labels, threshold):
    return counts_ok(iou, pred_labels, gt_labels, threshold + 1e-12)


def counts_not_one_to_one(iou, pred_labels, gt_labels, threshold):
    same = pred_labels[:, None] == gt_labels[None, :]
    tp = int(((iou >= threshold) & same).any(1).sum())
    return tp, len(pred_labels) - tp, max(len(gt_labels) - tp, 0)


def greedy_index_order(iou, scores, threshold):
    return greedy_ok(iou, torch.zeros_like(scores), threshold)


def greedy_first_above(iou, scores, threshold):
    taken, pairs = set(), []
    for d in sorted(range(len(scores)), key=lambda i: -scores[i]):
        for g in range(iou.shape[1]):
            if g not in taken and iou[d, g] >= threshold:
                taken.add(g)
                pairs.append((d, g))
                break
    return pairs


def greedy_reuses(iou, scores, threshold):
    pairs = []
    for d in range(iou.shape[0]):
        if iou.shape[1] and iou[d].max() >= threshold:
            pairs.append((d, int(iou[d].argmax())))
    return pairs


# --- answers that only call the library ---------------------------------------------------


def iou_via_module(a, b):
    return course.masks.mask_iou(a, b)


def iou_via_import(a, b):
    return mask_iou(a, b)


def counts_via_library(iou, pred_labels, gt_labels, threshold):
    r = matching.tp_fp_fn(iou, pred_labels, gt_labels, threshold)
    return r.tp, r.fp, r.fn


def counts_via_hungarian(iou, pred_labels, gt_labels, threshold):  # hides the class loop only
    tp = 0
    for c in set(pred_labels.tolist()):
        tp += matching.hungarian_match(iou[pred_labels == c][:, gt_labels == c], threshold).tp
    return tp, len(pred_labels) - tp, len(gt_labels) - tp


def greedy_via_library(iou, scores, threshold):
    try:  # a broad except in the learner's code must not hide the call
        return matching.greedy_match(iou, scores, threshold).pairs
    except Exception:
        return []


CHECKERS = {
    "mask_area": (checks.check_mask_area, area_ok, [area_uint8, area_one_axis],
                  [lambda m: course.masks.mask_area(m)]),
    "mask_iou": (checks.check_mask_iou, iou_ok, [iou_float32, iou_nan_on_empty, iou_transposed],
                 [iou_via_module, iou_via_import]),
    "mask_dice": (checks.check_mask_dice, dice_ok, [dice_as_iou, dice_float32],
                  [lambda a, b: course.masks.mask_dice(a, b),
                   lambda a, b: 2 * iou_via_module(a, b) / (1 + iou_via_module(a, b))]),
    "tp_fp_fn": (checks.check_tp_fp_fn, counts_ok,
                 [counts_ignoring_class, counts_strict, counts_not_one_to_one],
                 [counts_via_library, counts_via_hungarian]),
    "greedy_match": (checks.check_greedy_match, greedy_ok,
                     [greedy_index_order, greedy_first_above, greedy_reuses],
                     [greedy_via_library]),
}


@pytest.mark.parametrize("name", CHECKERS)
def test_checker_passes_a_correct_answer(name, capsys):
    checker, correct, _, _ = CHECKERS[name]
    checker(correct)
    n = len(checks.load_cases(name))
    assert capsys.readouterr().out == f"{name}: {n}/{n} checks passed\n"


@pytest.mark.parametrize("name, wrong", [(name, w) for name, c in CHECKERS.items() for w in c[2]])
def test_checker_fails_a_plausible_wrong_answer(name, wrong):
    checker = CHECKERS[name][0]
    with pytest.raises(AssertionError, match=rf"^{name}: \d+/\d+ checks passed\n  - case \d+ '"):
        checker(wrong)


@pytest.mark.parametrize("name, cheat", [(name, w) for name, c in CHECKERS.items() for w in c[3]])
def test_checker_fails_an_answer_that_calls_the_library(name, cheat):
    checker = CHECKERS[name][0]
    with pytest.raises(AssertionError, match="calls the library's course"):
        checker(cheat)


def test_library_is_restored_after_a_check():
    original = course.masks.mask_iou
    with pytest.raises(AssertionError):
        checks.check_mask_iou(iou_via_module)
    assert course.masks.mask_iou is original and mask_iou is original
    assert course.masks.mask_iou(np.ones((1, 2, 2), bool), np.ones((1, 2, 2), bool)).item() == 1.0


def test_failure_message_names_case_shapes_and_hint_but_not_the_answer():
    def float32_on_thin_masks(a, b):  # wrong only on the two [1, 3, 10] ratio cases
        return iou_float32(a, b) if a.shape[1:] == (3, 10) else iou_ok(a, b)

    with pytest.raises(AssertionError) as info:
        checks.check_mask_iou(float32_on_thin_masks)
    message = str(info.value)
    assert "a ratio of exactly 7 / 10" in message
    assert "[1, 3, 10] bool" in message and "Hint: count pixels as integers" in message
    assert "precision" in message
    assert "0.7" not in message and "tensor(" not in message


def test_a_crashing_answer_is_reported_as_a_failed_case():
    def crashes(a, b):
        raise IndexError("oops")

    with pytest.raises(AssertionError, match=r"raised IndexError: oops"):
        checks.check_mask_iou(crashes)


def test_checker_wants_a_function():
    with pytest.raises(TypeError, match="expects your function"):
        checks.check_mask_iou(None)


def test_inputs_are_fresh_copies_for_each_case():
    def clobbers(a, b):
        result = iou_ok(a, b)
        a.zero_()
        b.zero_()
        return result

    checks.check_mask_iou(clobbers)  # would fail if cases shared storage with the fixtures


def test_fixtures_are_what_the_script_makes_today():
    path = ROOT / "scripts" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_fixtures", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert set(script.BUILDERS) == {p.stem for p in (ROOT / "course/fixtures").glob("*.npz")}
    for name, build in script.BUILDERS.items():
        stored, fresh = checks.load_cases(name), build()
        assert len(stored) == len(fresh), name
        for s, f in zip(stored, fresh):
            assert (s.name, s.hint) == (f.name, f.hint)
            assert len(s.args) == len(f.args) and s.expected.keys() == f.expected.keys()
            for x, y in zip(s.args + list(s.expected.values()),
                            f.args + list(f.expected.values())):
                x, y = np.asarray(x), np.asarray(y)
                assert x.dtype == y.dtype and np.array_equal(x, y), f"{name}: {s.name}"
