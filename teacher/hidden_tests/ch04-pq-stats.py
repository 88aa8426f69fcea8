"""Hidden tests of ch04-pq-stats: fn(gt_ids [H, W], gt_segments, pred_ids [H, W],
pred_segments) -> {category_id: (iou_sum, tp, fp, fn)}; segments are {id: (category, iscrowd)}."""

from course import data, pq


def _rows(out):
    if hasattr(out, "as_dict"):
        out = out.as_dict()
    assert isinstance(out, dict), "return a dict {category_id: (iou_sum, tp, fp, fn)}"
    return {int(c): [float(v) for v in row] for c, row in out.items()}


def _check(fn, gt_ids, gt_segments, pred_ids, pred_segments):
    want = pq.pq_stats_loop(gt_ids, gt_segments, pred_ids, pred_segments)
    ref = {int(c): [float(i), int(t), int(p), int(n)] for c, i, t, p, n in zip(
        want.categories, want.iou_sum, want.tp, want.fp, want.fn, strict=True)}
    got = _rows(fn(gt_ids, gt_segments, pred_ids, pred_segments))
    for cat in sorted(set(got) | set(ref)):
        g, r = got.get(cat, [0.0, 0, 0, 0]), ref.get(cat, [0.0, 0, 0, 0])
        for k, name in ((1, "tp"), (2, "fp"), (3, "fn")):
            assert g[k] == r[k], f"category {cat}: {name} is wrong on a synthetic scene"
        assert abs(g[0] - r[0]) <= 1e-9, f"category {cat}: iou_sum is wrong on a synthetic scene"


def test_synthetic_scenes(fn):
    for seed in (4101, 4102):
        scene = data.make_panoptic_scene(40, 56, num_objects=(3, 6), crowd_rate=0.6, seed=seed)
        ids, segments = data.simulate_panoptic_prediction(scene, seed=seed + 7)
        _check(fn, scene.ids, scene.segments, ids, segments)


def test_scene_without_void(fn):
    scene = data.make_panoptic_scene(32, 32, num_objects=(2, 4), void=False, seed=4103)
    ids, segments = data.simulate_panoptic_prediction(scene, seed=4104)
    _check(fn, scene.ids, scene.segments, ids, segments)
