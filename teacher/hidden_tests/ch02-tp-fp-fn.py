"""Hidden tests of ch02-tp-fp-fn: fn(iou [P, G], pred_labels [P], gt_labels [G], threshold)
-> (tp, fp, fn), one-to-one matching within each class."""

import torch

from course import data, masks, matching


def _counts(out):
    if all(hasattr(out, k) for k in ("tp", "fp", "fn")):
        return tuple(int(getattr(out, k)) for k in ("tp", "fp", "fn"))
    return tuple(int(v) for v in out)


def _check(fn, iou, pred_labels, gt_labels, threshold):
    want = matching.tp_fp_fn(iou, pred_labels, gt_labels, threshold)
    got = _counts(fn(iou, pred_labels, gt_labels, threshold))
    assert got[0] + got[1] == len(pred_labels), "tp + fp must equal the number of predictions"
    assert got[0] + got[2] == len(gt_labels), "tp + fn must equal the number of objects"
    assert got[0] == want.tp, \
        f"the number of true positives is too {'high' if got[0] > want.tp else 'low'}"


def test_random_iou_three_classes(fn):
    g = torch.Generator().manual_seed(2101)
    iou = torch.rand(7, 5, generator=g, dtype=torch.float64)
    _check(fn, iou, torch.randint(1, 4, (7,), generator=g), torch.randint(1, 4, (5,), generator=g),
           0.5)


def test_synthetic_scenes(fn):
    for seed, threshold in ((2102, 0.5), (2103, 0.7)):
        scene = data.make_scene(seed=seed, num_objects=(5, 8))
        pred = data.simulate_predictions(scene, seed=seed + 1, duplicate_rate=0.3,
                                         label_flip_rate=0.2, false_positives=(1, 3))
        _check(fn, masks.mask_iou(pred.masks, scene.masks), pred.labels, scene.labels, threshold)
