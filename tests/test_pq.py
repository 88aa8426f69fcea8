"""Panoptic Quality: equal to panopticapi's pq_compute (re-written in panoptic_reference.py) on
random PNG + json data sets with void and crowd; the loop and vectorised versions agree;
torchmetrics agrees where it should and differs where it must."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import course.pq
from course.pq import (
    PQStats,
    as_segments,
    classify_failures,
    id_to_rgb,
    overlap_counts,
    pairs_to_panoptic,
    panoptic_quality,
    panoptic_to_pairs,
    pq_from_counts,
    pq_stats,
    pq_stats_loop,
    pq_table,
    rgb_to_id,
    semantic_map,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import panoptic_reference as reference  # noqa: E402

THINGS, STUFFS = (1, 2, 3), (4, 5)
CATEGORIES = [{"id": c, "name": f"c{c}", "isthing": int(c in THINGS)} for c in THINGS + STUFFS]


# --- random panoptic images ---------------------------------------------------------------


def _blob(rng, h, w, size):
    """A random rectangle or ellipse of about ``size`` pixels across: [H, W] bool."""
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(1, size) / 2, rng.uniform(1, size) / 2
    ys, xs = np.mgrid[:h, :w] + 0.5
    if rng.random() < 0.5:
        return (np.abs(ys - cy) <= ry) & (np.abs(xs - cx) <= rx)
    return ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1


def _shift(mask, dy, dx):
    return np.roll(np.roll(mask, dy, axis=0), dx, axis=1)


def _finish(rng, labels, cats, crowd):
    """Label image (0 void, k > 0 segment k - 1) -> random ids and a shuffled segments_info."""
    present = [k for k in range(1, len(cats) + 1) if (labels == k).any()]
    ids = rng.choice(np.arange(1, 256**3), size=len(present), replace=False)
    out = np.zeros(labels.shape, np.int64)
    info = []
    for k, sid in zip(present, ids):
        out[labels == k] = sid
        info.append({"id": int(sid), "category_id": int(cats[k - 1]),
                     "iscrowd": int(crowd[k - 1]), "area": int((labels == k).sum())})
    rng.shuffle(info)
    return out, info


def random_image(rng, h=24, w=32, crowd=True, void=True, pred_void=None):
    """(gt_ids, gt_info, pred_ids, pred_info): stuff bands, things, crowd, void, and a
    prediction made of shifted, grown, relabelled, split and invented segments."""
    pred_void = void if pred_void is None else pred_void
    gt = np.zeros((h, w), np.int64)
    cats, crowds = [], []

    def paint(mask, cat, is_crowd=False):
        cats.append(cat)
        crowds.append(is_crowd)
        gt[mask] = len(cats)

    row = int(rng.integers(4, h - 4))
    top, bottom = rng.choice(STUFFS, 2, replace=False)
    paint(np.arange(h)[:, None] < row + np.zeros((1, w), int), int(top))
    if rng.random() < 0.8:
        paint(np.arange(h)[:, None] >= row + np.zeros((1, w), int), int(bottom))
    n_crowd = int(rng.integers(0, 3)) if crowd else 0
    crowd_cat = int(rng.choice(THINGS))
    for _ in range(n_crowd):  # sometimes two crowd regions of one category
        paint(_blob(rng, h, w, 14), crowd_cat if rng.random() < 0.7 else int(rng.choice(THINGS)),
              True)
    for _ in range(int(rng.integers(2, 8))):
        paint(_blob(rng, h, w, 12), int(rng.choice(THINGS)))
    if void:
        for _ in range(int(rng.integers(1, 4))):
            gt[_blob(rng, h, w, 8)] = 0
        gt[rng.random((h, w)) < 0.03] = 0

    pred = np.zeros((h, w), np.int64)
    pcats = []

    def paint_pred(mask, cat):
        pcats.append(cat)
        pred[mask] = len(pcats)

    above = np.arange(h)[:, None] < row + int(rng.integers(-2, 3)) + np.zeros((1, w), int)
    if rng.random() < 0.8:
        paint_pred(above, int(top))
        paint_pred(~above, int(bottom))
    else:  # one stuff class everywhere (one segment per stuff class, as torchmetrics reads it)
        paint_pred(np.ones((h, w), bool), int(top))
    order = rng.permutation(len(cats))
    for k in order:
        if cats[k] in STUFFS or rng.random() < 0.15:
            continue
        mask = _shift(gt == k + 1, *(int(v) for v in rng.integers(-2, 3, 2)))
        if rng.random() < 0.3:  # grow by one pixel
            mask = mask | _shift(mask, 1, 0) | _shift(mask, 0, 1)
        cat = cats[k] if rng.random() < 0.85 else int(rng.choice(THINGS))
        if rng.random() < 0.2 and mask.sum() > 3:  # over-split into two halves
            ys, xs = np.nonzero(mask)
            cut = np.median(xs)
            left = mask & (np.arange(w)[None, :] < cut)
            paint_pred(mask & ~left, cat)
            paint_pred(left, cat)
        else:
            paint_pred(mask, cat)
    for _ in range(int(rng.integers(0, 4))):  # invented segments, often on void or crowd
        paint_pred(_blob(rng, h, w, 8), int(rng.choice(THINGS)))
    if pred_void:
        for _ in range(int(rng.integers(0, 3))):
            pred[_blob(rng, h, w, 7)] = 0
    gt_ids, gt_info = _finish(rng, gt, cats, crowds)
    pred_ids, pred_info = _finish(rng, pred, pcats, [False] * len(pcats))
    for s in pred_info:
        del s["iscrowd"], s["area"]  # predictions carry neither in COCO's format
    return gt_ids, gt_info, pred_ids, pred_info


def random_set(seed, n=12, **kw):
    rng = np.random.default_rng(seed)
    return [random_image(rng, **kw) for _ in range(n)]


# --- the comparison with the reference ----------------------------------------------------


def write_coco_panoptic(folder, images):
    """PNGs and the two json files of the COCO panoptic format; returns their paths."""
    folder = Path(folder)
    (folder / "gt").mkdir(parents=True)
    (folder / "pred").mkdir()
    gt_anns, pred_anns = [], []
    for i, (gt_ids, gt_info, pred_ids, pred_info) in enumerate(images):
        name = f"{i:04d}.png"
        reference.write_png(folder / "gt" / name, gt_ids)
        reference.write_png(folder / "pred" / name, pred_ids)
        gt_anns.append({"image_id": i, "file_name": name, "segments_info": gt_info})
        pred_anns.append({"image_id": i, "file_name": name, "segments_info": pred_info})
    for kind, anns in (("gt", gt_anns), ("pred", pred_anns)):
        (folder / f"{kind}.json").write_text(json.dumps(
            {"annotations": anns, "categories": CATEGORIES}))
    return folder / "gt.json", folder / "pred.json", folder / "gt", folder / "pred"


def read_coco_panoptic(gt_json, pred_json, gt_folder, pred_folder):
    """What course.pq takes, read back from the files with rgb_to_id."""
    gt = json.loads(Path(gt_json).read_text())["annotations"]
    pred = {a["image_id"]: a for a in json.loads(Path(pred_json).read_text())["annotations"]}
    images = []
    for g in gt:
        p = pred[g["image_id"]]
        gt_ids = rgb_to_id(np.array(Image.open(Path(gt_folder) / g["file_name"])))
        pred_ids = rgb_to_id(np.array(Image.open(Path(pred_folder) / p["file_name"])))
        images.append((gt_ids, g["segments_info"], pred_ids, p["segments_info"]))
    return images


def assert_equals_reference(pq_module, folder, images):
    """Per-category counts equal, iou_sum to 1e-9, the three summaries to 1e-12."""
    files = write_coco_panoptic(folder, images)
    expected, counts = reference.pq_compute(*files)
    read = read_coco_panoptic(*files)
    stats = sum((pq_module.pq_stats(*im) for im in read), pq_module.PQStats.empty())
    got = pq_module.panoptic_quality(read, THINGS, STUFFS)
    rows = stats.as_dict()
    for cat in THINGS + STUFFS:
        ref = counts.get(cat, reference.CategoryCounts())
        iou, tp, fp, fn = rows.get(cat, [0.0, 0, 0, 0])
        assert (tp, fp, fn) == (ref.tp, ref.fp, ref.fn), f"category {cat}"
        assert abs(iou - ref.iou) <= 1e-9, f"category {cat}"
        c = got["per_class"][cat]
        assert (c["tp"], c["fp"], c["fn"]) == (ref.tp, ref.fp, ref.fn)
        for key in ("pq", "sq", "rq"):
            assert abs(c[key] - expected["per_class"][cat][key]) <= 1e-12
    for name in ("All", "Things", "Stuff"):
        assert got[name]["n"] == expected[name]["n"]
        for key in ("pq", "sq", "rq"):
            assert abs(got[name][key] - expected[name][key]) <= 1e-12, (name, key)
    return counts


@pytest.mark.parametrize("seed", range(6))
def test_equals_panopticapi_on_random_sets_with_void_and_crowd(seed, tmp_path):
    counts = assert_equals_reference(course.pq, tmp_path, random_set(seed))
    assert sum(c.tp for c in counts.values()) > 0 and sum(c.fp for c in counts.values()) > 0


def test_equals_panopticapi_without_void_or_crowd(tmp_path):
    assert_equals_reference(course.pq, tmp_path, random_set(50, crowd=False, void=False))


def test_equals_panopticapi_on_larger_images(tmp_path):
    rng = np.random.default_rng(7)
    images = [random_image(rng, h=96, w=128) for _ in range(3)]
    assert_equals_reference(course.pq, tmp_path, images)


def _ignored_only_when_summed(images):
    """How many unmatched predictions are ignored by void + crowd together, by neither alone."""
    found = 0
    for gt_ids, gt_info, pred_ids, pred_info in images:
        gt_segs = {s["id"]: s for s in gt_info}
        for s in pred_info:
            p = pred_ids == s["id"]
            area = int(p.sum())
            on_void = int((p & (gt_ids == 0)).sum())
            crowds = [g for g in gt_info if g["iscrowd"] and g["category_id"] == s["category_id"]]
            on_crowd = int((p & (gt_ids == crowds[-1]["id"])).sum()) if crowds else 0
            if 2 * (on_void + on_crowd) > area >= max(2 * on_void, 2 * on_crowd) and gt_segs:
                found += 1
    return found


def test_the_comparison_catches_void_and_crowd_compared_to_half_separately(tmp_path, load_mutant):
    mutant = load_mutant(course.pq, "2 * (o.on_void + crowd_part) > o.pred_area",
                         "(2 * o.on_void > o.pred_area) | (2 * crowd_part > o.pred_area)")
    # Built to expose it: a 10-pixel prediction, 4 pixels on void, 4 on a crowd of its class.
    gt = np.full((4, 10), 7, np.int64)
    gt[0, :4] = 0
    gt[1, :4] = 9
    gt[3, 6:] = 8  # and a thing predicted exactly, so that every group has a class to average
    pred = np.full((4, 10), 3, np.int64)
    pred[0, :5] = pred[1, :5] = 5
    pred[3, 6:] = 6
    built = [(gt, [{"id": 7, "category_id": 4, "iscrowd": 0, "area": 28},
                   {"id": 9, "category_id": 1, "iscrowd": 1, "area": 4},
                   {"id": 8, "category_id": 2, "iscrowd": 0, "area": 4}],
              pred, [{"id": 3, "category_id": 4}, {"id": 5, "category_id": 1},
                     {"id": 6, "category_id": 2}])]
    assert_equals_reference(course.pq, tmp_path / "ok", built)
    with pytest.raises(AssertionError, match="category 1"):
        assert_equals_reference(mutant, tmp_path / "built", built)
    # ... and the random sets alone catch it too
    images = random_set(0, n=24)
    assert _ignored_only_when_summed(images) > 0
    with pytest.raises(AssertionError):
        assert_equals_reference(mutant, tmp_path / "random", images)


def test_the_comparison_catches_the_void_term_left_out_of_the_union(tmp_path, load_mutant):
    mutant = load_mutant(course.pq,
                         "union = o.pred_area[p] + gt_area[g] - inter - o.on_void[p]",
                         "union = o.pred_area[p] + gt_area[g] - inter")
    with pytest.raises(AssertionError):
        assert_equals_reference(mutant, tmp_path, random_set(1))


def test_reference_raises_where_panopticapi_does(tmp_path):
    gt = np.ones((3, 3), np.int64)
    info = [{"id": 1, "category_id": 4, "iscrowd": 0, "area": 9}]
    files = write_coco_panoptic(tmp_path, [(gt, info, gt * 2, [{"id": 1, "category_id": 4}])])
    with pytest.raises(KeyError, match="PNG but not in the json"):
        reference.pq_compute(*files)
    files = write_coco_panoptic(tmp_path / "two", [(gt, info, gt, [{"id": 1, "category_id": 4}])])
    with pytest.raises(ZeroDivisionError):  # no thing category was seen: Things has n = 0
        reference.pq_compute(files[0], files[1])  # (the folders: the json paths, no .json)
    assert math.isnan(panoptic_quality([read_coco_panoptic(*files)[0]], [1], [4])["Things"]["pq"])
    pred = json.loads(files[1].read_text())
    files[1].write_text(json.dumps({**pred, "annotations": []}))
    with pytest.raises(Exception, match="no prediction for the image with id: 0"):
        reference.pq_compute(*files)


# --- the loop reference and the vectorised version ----------------------------------------


def assert_same_stats(a: PQStats, b: PQStats):
    assert torch.equal(a.categories, b.categories)
    for field in ("tp", "fp", "fn"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert torch.allclose(a.iou_sum, b.iou_sum, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["panopticapi", "torchmetrics"])
@pytest.mark.parametrize("seed", range(4))
def test_vectorised_and_loop_versions_agree(seed, rule):
    for image in random_set(100 + seed, n=6):
        assert_same_stats(pq_stats(*image, rule=rule), pq_stats_loop(*image, rule=rule))


def test_ids_too_large_to_pack_in_pairs_give_the_same_counts():
    # ids near 2**40 in both maps: a (gt id, pred id) pair no longer fits in one int64 key
    for gt_ids, gt_info, pred_ids, pred_info in random_set(70, n=3):
        big = 2**40
        moved = (np.where(gt_ids > 0, gt_ids + big, 0),
                 [{**s, "id": s["id"] + big} for s in gt_info],
                 np.where(pred_ids > 0, pred_ids + big, 0),
                 [{**s, "id": s["id"] + big} for s in pred_info])
        for rule in ("panopticapi", "torchmetrics"):
            same = pq_stats(gt_ids, gt_info, pred_ids, pred_info, rule=rule)
            assert_same_stats(pq_stats(*moved, rule=rule), same)
            assert torch.equal(pq_stats(*moved, rule=rule).iou_sum, same.iou_sum)
        _, _, small = overlap_counts(gt_ids, pred_ids)
        assert torch.equal(overlap_counts(moved[0], moved[2])[2], small)


@pytest.mark.parametrize("rule", ["panopticapi", "torchmetrics"])
def test_void_may_be_any_id(rule):
    for g, gi, p, pi in random_set(80, n=3):
        # void becomes id 7, every segment id moves up by 10 so that 7 is free
        moved = (np.where(g == 0, 7, g + 10), [{**s, "id": s["id"] + 10} for s in gi],
                 np.where(p == 0, 7, p + 10), [{**s, "id": s["id"] + 10} for s in pi])
        expected = pq_stats(g, gi, p, pi, rule=rule)
        assert_same_stats(pq_stats(*moved, void=7, rule=rule), expected)
        assert_same_stats(pq_stats_loop(*moved, void=7, rule=rule), expected)
        gt_seg, _, counts = overlap_counts(moved[0], moved[2], void=7)
        assert torch.equal(counts, overlap_counts(g, p)[2])
        assert torch.equal(gt_seg, overlap_counts(g, p)[0] + 10)


def test_a_segment_matches_at_most_one_partner():
    for gt_ids, _, pred_ids, _ in random_set(3, n=20):
        _, _, counts = overlap_counts(gt_ids, pred_ids)
        inter = counts[1:, 1:]  # [G, P]
        union = counts[1:].sum(1)[:, None] + counts[:, 1:].sum(0)[None, :] - inter - counts[0, 1:]
        above = 2 * inter > union
        assert all(int(above.sum(d).max()) <= 1 for d in (0, 1) if above.numel())


def test_matching_is_strictly_above_one_half():
    gt = torch.tensor([[1, 1, 1, 1]])
    pred = torch.tensor([[2, 2, 0, 0]])  # IoU exactly 1/2: no match
    s = pq_stats(gt, {1: (1, 0)}, pred, {2: 1})
    assert s.as_dict() == {1: [0.0, 0, 1, 1]}
    pred = torch.tensor([[2, 2, 2, 0]])  # 3/4
    assert pq_stats(gt, {1: (1, 0)}, pred, {2: 1}).as_dict() == {1: [0.75, 1, 0, 0]}


def test_pixels_on_void_leave_the_union():
    gt = torch.tensor([[1, 1, 0, 0, 0]])
    pred = torch.tensor([[2, 2, 2, 2, 2]])  # plain IoU 2/5, with void left out 2/2
    assert pq_stats(gt, {1: (1, 0)}, pred, {2: 1}).as_dict() == {1: [1.0, 1, 0, 0]}


def test_crowd_of_another_category_does_not_excuse_a_prediction():
    gt = torch.tensor([[1, 1, 1, 1]])
    pred = torch.tensor([[2, 2, 2, 2]])
    assert pq_stats(gt, {1: (1, 1)}, pred, {2: 1}).as_dict() == {1: [0.0, 0, 0, 0]}
    assert pq_stats(gt, {1: (1, 1)}, pred, {2: 2}).as_dict() == {1: [0.0, 0, 0, 0],
                                                                 2: [0.0, 0, 1, 0]}


def test_only_the_last_crowd_segment_of_a_category_counts():
    gt = torch.tensor([[1, 1, 1, 3, 3, 3]])
    pred = torch.tensor([[2, 2, 2, 0, 0, 0]])  # entirely on crowd segment 1
    first_listed = [{"id": 1, "category_id": 1, "iscrowd": 1},
                    {"id": 3, "category_id": 1, "iscrowd": 1}]
    for fn in (pq_stats, pq_stats_loop):
        assert fn(gt, first_listed, pred, {2: 1}).fp.tolist() == [1]  # segment 3 is the region
        assert fn(gt, first_listed[::-1], pred, {2: 1}).fp.tolist() == [0]


def test_the_listed_area_of_a_gt_segment_is_its_area_in_the_union():
    # as panopticapi: a 4-pixel segment listed with area 6 gives IoU 3 / (3 + 6 - 3) = 1/2
    gt = torch.tensor([[1, 1, 1, 1]])
    pred = torch.tensor([[2, 2, 2, 0]])
    listed = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 6}]
    assert pq_stats(gt, listed, pred, {2: 1}).as_dict() == {1: [0.0, 0, 1, 1]}
    assert pq_stats(gt, {1: (1, 0)}, pred, {2: 1}).as_dict() == {1: [0.75, 1, 0, 0]}
    assert pq_stats(gt, [{**listed[0], "area": 4}], pred, {2: 1}).as_dict()[1][1] == 1
    # a prediction's area is always counted in its map, and torchmetrics' rule has no json
    assert pq_stats(gt, {1: (1, 0)}, pred, [{"id": 2, "category_id": 1, "area": 99}]
                    ).as_dict() == {1: [0.75, 1, 0, 0]}
    assert pq_stats(gt, listed, pred, {2: 1}, rule="torchmetrics").as_dict()[1][1] == 1
    for gt_ids, gt_info, pred_ids, pred_info in random_set(12, n=4):
        grown = [{**s, "area": s["area"] + 3} for s in gt_info]
        assert_same_stats(pq_stats(gt_ids, grown, pred_ids, pred_info),
                          pq_stats_loop(gt_ids, grown, pred_ids, pred_info))


def test_a_listed_gt_segment_with_no_pixels_is_a_false_negative():
    gt = torch.tensor([[1, 1]])
    s = pq_stats(gt, {1: (1, 0), 5: (2, 0)}, gt, {1: 1})
    assert s.as_dict() == {1: [1.0, 1, 0, 0], 2: [0.0, 0, 0, 1]}


def test_empty_inputs():
    empty = torch.zeros(0, 0, dtype=torch.int64)
    s = pq_stats(empty, {}, empty, {})
    assert len(s.categories) == 0
    s = pq_stats(empty, {}, empty, {}, categories=[1, 2])
    assert s.as_dict() == {1: [0.0, 0, 0, 0], 2: [0.0, 0, 0, 0]}
    void = torch.zeros(3, 3, dtype=torch.int64)
    assert pq_stats(void, {}, void, {}).as_dict() == {}
    result = panoptic_quality([], [1], [2])
    assert result["All"]["n"] == 0 and math.isnan(result["All"]["pq"])
    assert result["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 0}
    assert pq_from_counts([], [], [], [])["n"] == 0


def test_stats_add_up_over_images():
    images = random_set(8, n=5)
    parts = [pq_stats(*im, categories=THINGS + STUFFS) for im in images]
    total = sum(parts, PQStats.empty())
    assert total.tp.tolist() == [sum(p.tp[i].item() for p in parts) for i in range(5)]
    assert panoptic_quality(parts, THINGS, STUFFS) == panoptic_quality(images, THINGS, STUFFS)
    a, b = pq_stats(*images[0]), pq_stats(*images[1])  # each over its own categories
    mixed = a + b
    assert set(mixed.categories.tolist()) == set(a.categories.tolist()) | set(b.categories.tolist())
    assert mixed.fn.sum() == a.fn.sum() + b.fn.sum() and mixed.tp.sum() == a.tp.sum() + b.tp.sum()


def test_inputs_are_not_modified():
    gt_ids, gt_info, pred_ids, pred_info = random_set(9, n=1)[0]
    copies = gt_ids.copy(), json.dumps(gt_info), pred_ids.copy(), json.dumps(pred_info)
    pq_stats(gt_ids, gt_info, pred_ids, pred_info)
    pq_stats_loop(gt_ids, gt_info, pred_ids, pred_info)
    assert np.array_equal(gt_ids, copies[0]) and np.array_equal(pred_ids, copies[2])
    assert json.dumps(gt_info) == copies[1] and json.dumps(pred_info) == copies[3]


# --- PQ = SQ x RQ per class, but not on average --------------------------------------------


def test_pq_is_sq_times_rq_per_class_but_not_on_average():
    result = panoptic_quality(random_set(11, n=20), THINGS, STUFFS)
    for c in result["per_class"].values():
        assert abs(c["pq"] - c["sq"] * c["rq"]) < 1e-12
    a = result["All"]
    assert abs(a["pq"] - a["sq"] * a["rq"]) > 1e-3
    # the smallest case: a well-drawn class found half the time, a badly drawn one always found
    two = pq_from_counts(iou_sum=[1.0, 0.6], tp=[1, 1], fp=[1, 0], fn=[1, 0])
    assert two["n"] == 2 and two["pq"] == pytest.approx(0.55) and two["sq"] == pytest.approx(0.8)
    assert two["rq"] == pytest.approx(0.75) and two["sq"] * two["rq"] == pytest.approx(0.6)


def test_pq_from_counts_leaves_out_empty_classes_and_sets_sq_to_zero_without_tp():
    r = pq_from_counts(torch.tensor([0.0, 0.0, 0.9]), torch.tensor([0, 0, 1]),
                       torch.tensor([0, 2, 0]), torch.tensor([0, 1, 0]))
    assert r["n"] == 2 and r["sq"] == pytest.approx(0.45) and r["pq"] == pytest.approx(0.45)
    with pytest.raises(ValueError, match="one entry per category"):
        pq_from_counts([1.0], [1, 2], [0], [0])
    with pytest.raises(ValueError, match="non-negative"):
        pq_from_counts([1.0], [-1], [0], [0])


def test_table_prints_percent():
    text = pq_table(panoptic_quality(random_set(12, n=3), THINGS, STUFFS))
    assert text.splitlines()[0].split() == ["|", "PQ", "SQ", "RQ", "N"]
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["All", "Things", "Stuff"]


# --- torchmetrics ---------------------------------------------------------------------------


def without_crowd(segments):
    """The same segments, none of them crowd (torchmetrics has no crowd flag)."""
    table = as_segments(segments)
    return {i: (c, False) for i, c in zip(table.ids.tolist(), table.categories.tolist())}


def torchmetrics_counts(images, void_category=0):
    """Run torchmetrics' PanopticQuality image by image; its per-category counts."""
    detection = pytest.importorskip("torchmetrics.detection")
    metric = detection.PanopticQuality(things=set(THINGS), stuffs=set(STUFFS),
                                       allow_unknown_preds_category=True)
    for gt_ids, gt_info, pred_ids, pred_info in images:
        target = panoptic_to_pairs(gt_ids, without_crowd(gt_info), void_category=void_category)
        preds = panoptic_to_pairs(pred_ids, pred_info, void_category=void_category)
        metric.update(preds[None], target[None])
    order = sorted(THINGS) + sorted(STUFFS)  # torchmetrics' layout: things, then stuff
    rows = {c: [metric.iou_sum[i].item(), int(metric.true_positives[i]),
                int(metric.false_positives[i]), int(metric.false_negatives[i])]
            for i, c in enumerate(order)}
    return rows, metric


def ours(images, rule):
    stats = sum((pq_stats(*im, categories=THINGS + STUFFS, rule=rule) for im in images),
                PQStats.empty())
    return stats.as_dict()


def test_torchmetrics_agrees_exactly_without_crowd_and_void():
    images = random_set(20, n=15, crowd=False, void=False)
    theirs, metric = torchmetrics_counts(images)
    mine = ours(images, "panopticapi")
    assert {c: v[1:] for c, v in theirs.items()} == {c: v[1:] for c, v in mine.items()}
    assert sum(v[1] for v in mine.values()) > 10
    # its IoUs are float32 (an int64 tensor divided by an int64 tensor): close, not equal
    for c in theirs:
        assert abs(theirs[c][0] - mine[c][0]) <= 1e-6 * max(1, mine[c][1])
    ref = panoptic_quality(images, THINGS, STUFFS)["All"]["pq"]
    assert abs(metric.compute().item() - ref) < 1e-6


def test_torchmetrics_rule_reproduces_torchmetrics_with_crowd_and_void():
    images = random_set(21, n=15)
    theirs, _ = torchmetrics_counts(images)
    plain = [(g, without_crowd(gi), p, pi) for g, gi, p, pi in images]
    mine = ours(plain, "torchmetrics")
    assert {c: v[1:] for c, v in theirs.items()} == {c: v[1:] for c, v in mine.items()}
    assert ours(images, "panopticapi") != mine  # and the two rules do differ on these sets


def test_where_torchmetrics_and_panopticapi_differ():
    pytest.importorskip("torchmetrics.detection")
    cases = {
        # a prediction inside a crowd region: ignored by panopticapi; torchmetrics has no
        # crowd, so the crowd is an object the prediction fails to match (FP) and a miss (FN)
        "crowd": (torch.tensor([[1, 1, 1, 1]]), {1: (1, 1)}, torch.tensor([[2, 2, 3, 3]]),
                  {2: 1, 3: 4}),
        # ground truth predicted void: panopticapi keeps those pixels in the union
        # (IoU 2/4, no match); torchmetrics leaves them out (IoU 2/2, a match)
        "predicted void": (torch.tensor([[1, 1, 1, 1]]), {1: (1, 0)},
                           torch.tensor([[2, 2, 0, 0]]), {2: 1}),
        # a ground-truth segment mostly predicted void: a miss for panopticapi only
        "mostly predicted void": (torch.tensor([[1, 1, 1, 3]]), {1: (1, 0), 3: (4, 0)},
                                  torch.tensor([[0, 0, 0, 3]]), {3: 4}),
    }
    expected = {  # category 1: [tp, fp, fn] for panopticapi, then torchmetrics
        "crowd": ([0, 0, 0], [0, 1, 1]),
        "predicted void": ([0, 1, 1], [1, 0, 0]),
        "mostly predicted void": ([0, 0, 1], [0, 0, 0]),
    }
    for name, image in cases.items():
        api = ours([image], "panopticapi")[1][1:]
        tm_rule = ours([image], "torchmetrics")[1][1:]
        tm = torchmetrics_counts([image])[0][1][1:]
        assert [api, tm] == list(map(list, expected[name])), name
        assert tm_rule == tm, name


# --- encodings ------------------------------------------------------------------------------


def test_rgb_encoding_round_trips_and_matches_the_png(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256**3, (5, 7))
    rgb = id_to_rgb(ids)
    assert rgb.dtype == torch.uint8 and rgb.shape == (5, 7, 3)
    assert torch.equal(rgb_to_id(rgb), torch.from_numpy(ids))
    reference.write_png(tmp_path / "x.png", ids)
    assert np.array_equal(reference.decode_png(tmp_path / "x.png"), ids)
    assert torch.equal(rgb_to_id(np.array(Image.open(tmp_path / "x.png"))), torch.from_numpy(ids))
    assert rgb_to_id(np.array([[[1, 2, 3]]], np.uint8)).item() == 1 + 2 * 256 + 3 * 65536
    with pytest.raises(ValueError, match="below 256"):
        id_to_rgb(torch.tensor([[256**3]]))
    with pytest.raises(TypeError, match="uint8"):
        rgb_to_id(torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        rgb_to_id(torch.zeros(2, 2, dtype=torch.uint8))


def test_pair_encoding_round_trips():
    for gt_ids, gt_info, *_ in random_set(30, n=4):
        pairs = panoptic_to_pairs(gt_ids, gt_info, void_category=0, crowd_instance=999)
        assert pairs.shape == (*gt_ids.shape, 2)
        ids, segments = pairs_to_panoptic(pairs, THINGS, STUFFS, void_category=0,
                                          crowd_instance=999)
        by_id = {s["id"]: s for s in gt_info}
        for sid, (cat, crowd) in segments.items():
            original = np.unique(gt_ids[ids.numpy() == sid])
            assert len(original) == 1  # one segment maps to one segment
            info = by_id[int(original[0])]
            assert cat == info["category_id"]
            if not crowd:
                assert not info["iscrowd"]
        assert torch.equal(ids == 0, torch.from_numpy(gt_ids == 0))
        same = pq_stats(gt_ids, gt_info, ids, {k: v[0] for k, v in segments.items()})
        assert same.fn.sum() <= sum(s["iscrowd"] for s in gt_info)  # crowd regions may merge


def test_stuff_instances_are_one_segment_and_crowd_is_flagged():
    pairs = torch.tensor([[[4, 1], [4, 2], [1, 1], [1, 2], [1, 0], [0, 0]]])
    ids, segments = pairs_to_panoptic(pairs, [1], [4], void_category=0, crowd_instance=0)
    assert ids[0, 0] == ids[0, 1] and ids[0, 5] == 0 and len(set(ids[0, :5].tolist())) == 4
    assert sorted(segments.values()) == [(1, False), (1, False), (1, True), (4, False)]
    as_two_maps = pairs_to_panoptic((pairs[..., 0], pairs[..., 1]), [1], [4], void_category=0,
                                    crowd_instance=0)
    assert torch.equal(as_two_maps[0], ids) and as_two_maps[1] == segments
    with pytest.raises(ValueError, match="same shape"):
        pairs_to_panoptic((pairs[..., 0], pairs[0, :3, 1]), [1], [4])
    with pytest.raises(ValueError, match="unknown category"):
        pairs_to_panoptic(pairs, [1], [4])
    with pytest.raises(ValueError, match="crowd_instance"):
        panoptic_to_pairs(ids, segments, void_category=0)


# --- bad input ------------------------------------------------------------------------------


BAD = {
    "maps of different shapes": (lambda g, gs, p, ps: (g[:, :-1], gs, p, ps), ValueError,
                                 "same shape"),
    "an id in the ground truth map, not in its segments": (
        lambda g, gs, p, ps: (g + _bump(g), gs, p, ps), ValueError, "not in gt_segments"),
    "an id in the predicted map, not in its segments": (
        lambda g, gs, p, ps: (g, gs, p + _bump(p), ps), ValueError, "not in pred_segments"),
    "a negative id": (lambda g, gs, p, ps: (g - 2 * (g == 0), gs, p, ps), ValueError,
                      "negative"),
    "a listed prediction with no pixels": (
        lambda g, gs, p, ps: (g, gs, p, [*ps, {"id": 12345678, "category_id": 1}]),
        ValueError, "no pixels"),
    "float maps": (lambda g, gs, p, ps: (g.astype(float), gs, p, ps), TypeError, "integer"),
    "a 3-D map": (lambda g, gs, p, ps: (g[None], gs, p[None], ps), ValueError, r"\[H, W\]"),
    "void listed as a segment": (lambda g, gs, p, ps: (g, [*gs, {"id": 0, "category_id": 1}],
                                                       p, ps), ValueError, "void"),
    "a segment listed twice": (lambda g, gs, p, ps: (g, gs, p, [*ps, ps[0]]), ValueError,
                               "twice"),
    "segments that are not a dict or list": (lambda g, gs, p, ps: (g, "1:1", p, ps), TypeError,
                                             "segments_info"),
}


def _bump(ids):
    """Move one labelled pixel to an id nobody listed."""
    out = np.zeros_like(ids)
    y, x = np.argwhere(ids > 0)[0]
    out[y, x] = 256**3 - 1 - ids[y, x]
    return out


@pytest.mark.parametrize("name", BAD)
def test_bad_input_gives_a_clear_error(name):
    image = random_set(40, n=1)[0]
    change, error, words = BAD[name]
    bad = change(*image)
    for fn in (pq_stats, pq_stats_loop):
        with pytest.raises(error, match=words):
            fn(*bad)


def test_unknown_categories_are_refused():
    image = random_set(41, n=1)[0]
    with pytest.raises(ValueError, match="unknown category"):
        pq_stats(*image, categories=[1, 2])
    with pytest.raises(ValueError, match="unknown category"):
        panoptic_quality([image], THINGS, [4])
    with pytest.raises(ValueError, match="unknown category"):
        panoptic_quality([pq_stats(*image)], THINGS, [4])


def test_bad_arguments_of_panoptic_quality():
    image = random_set(42, n=1)[0]
    with pytest.raises(ValueError, match="share"):
        panoptic_quality([image], [1, 2, 3, 4], [4, 5])
    with pytest.raises(ValueError, match="both empty"):
        panoptic_quality([], [], [])
    with pytest.raises(TypeError, match="things"):
        panoptic_quality([image], [1.5], [4])
    with pytest.raises(TypeError, match=r"images\[0\]"):
        panoptic_quality([image[:2]], THINGS, STUFFS)
    with pytest.raises(ValueError, match="rule"):
        pq_stats(*image, rule="cityscapes")
    with pytest.raises(ValueError, match="void"):
        pq_stats(*image, void=-1)


# --- failure modes --------------------------------------------------------------------------


def test_classify_failures():
    # two equal objects (10 px each) under one 20-px blob; a third object split 6 + 4
    inter = torch.tensor([[10, 0, 0], [10, 0, 0], [0, 6, 4]])
    assert classify_failures(inter, torch.tensor([10, 10, 10]), torch.tensor([20, 6, 4])) == [
        "merge", "merge", "split"]
    # a good match, and an object with no prediction at all
    inter = torch.tensor([[9], [0]])
    assert classify_failures(inter, torch.tensor([10, 8]), torch.tensor([11])) == ["match",
                                                                                  "miss"]
    assert classify_failures(torch.zeros(0, 2), torch.zeros(0), torch.tensor([3, 4])) == []
    with pytest.raises(ValueError, match=r"\[G, P\]"):
        classify_failures(torch.zeros(2, 2), torch.zeros(3), torch.zeros(2))


def test_semantic_map_gives_each_pixel_its_category():
    gt_ids, gt_info, _, _ = random_set(60, n=1)[0]
    sem = semantic_map(gt_ids, gt_info, void_category=99)
    by_id = {s["id"]: s["category_id"] for s in gt_info}
    for sid, cat in by_id.items():
        assert bool((sem[torch.from_numpy(gt_ids == sid)] == cat).all())
    assert bool((sem[torch.from_numpy(gt_ids == 0)] == 99).all())
    with pytest.raises(ValueError, match="not in segments"):
        semantic_map(gt_ids, gt_info[1:])


def test_pq_from_counts_refuses_an_iou_sum_above_tp():
    with pytest.raises(ValueError, match="iou_sum must not exceed tp"):
        pq_from_counts([5.0], [1], [0], [0])
    assert pq_from_counts([1.0, 0.0], [1, 0], [0, 1], [0, 0])["pq"] == 0.5
