"""Panoptic Quality counts of one image: ours against panopticapi's algorithm, in one run.

    .venv/bin/python bench/pq_speed.py

"reference" is panopticapi's ``pq_compute_single_core`` as re-written in
``tests/panoptic_reference.py`` (``np.unique`` over packed id pairs, then Python loops over
the pairs and segments), given the decoded id maps, so no file reading is timed on either
side. torchmetrics' ``PanopticQuality.update`` is timed on the (category, instance) pairs it
takes, if it is installed. Each figure is the median of 5 runs; the counts are checked equal
to the reference first.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
from timing import median_time

from course.data import STUFF_IDS, THING_IDS, make_panoptic_scene, simulate_panoptic_prediction
from course.pq import panoptic_to_pairs, pq_stats, pq_stats_loop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import panoptic_reference as reference  # noqa: E402

CATEGORIES = {c: {"id": c, "isthing": int(c in THING_IDS)} for c in THING_IDS + STUFF_IDS}


def annotation(ids, segments):
    info = [{"id": k, "category_id": c, "iscrowd": int(crowd), "area": int((ids == k).sum())}
            for k, (c, crowd) in segments.items()]
    return {"image_id": 0, "segments_info": info}


def torchmetrics_update():
    try:
        from torchmetrics.detection import PanopticQuality
    except ImportError:
        return None
    metric = PanopticQuality(things=set(THING_IDS), stuffs=set(STUFF_IDS),
                             allow_unknown_preds_category=True)
    return metric.update


def main() -> None:
    update = torchmetrics_update()
    print(f"{'case':<32} {'ours':>8} {'reference':>10} {'loop':>9} {'torchmetrics':>13} "
          f"{'ratio':>6}")
    for size, objects in ((128, 6), (256, 30), (512, 80)):
        scene = make_panoptic_scene(size, size, num_objects=(objects, objects), seed=size)
        pred_ids, pred_segments = simulate_panoptic_prediction(scene, seed=size + 1)
        gt_map, pred_map = scene.ids.numpy().astype(np.uint32), pred_ids.numpy().astype(np.uint32)
        gt_ann = annotation(scene.ids, scene.segments)
        pred_ann = annotation(pred_ids, pred_segments)
        ref = reference.one_image_maps(gt_map, gt_ann, pred_map, pred_ann, CATEGORIES)
        ours = pq_stats(scene.ids, scene.segments, pred_ids, pred_segments).as_dict()
        for cat, c in ref.items():
            assert ours[cat][1:] == [c.tp, c.fp, c.fn] and abs(ours[cat][0] - c.iou) < 1e-9
        args = (scene.ids, scene.segments, pred_ids, pred_segments)
        t_ours = median_time(partial(pq_stats, *args))
        t_ref = median_time(partial(reference.one_image_maps, gt_map, gt_ann, pred_map, pred_ann,
                                    CATEGORIES))
        t_loop = median_time(partial(pq_stats_loop, *args), repeats=1) if size <= 256 else None
        t_tm = None
        if update is not None:
            plain = {k: (c, False) for k, (c, _) in scene.segments.items()}
            preds = panoptic_to_pairs(pred_ids, pred_segments, void_category=0)[None]
            target = panoptic_to_pairs(scene.ids, plain, void_category=0)[None]
            t_tm = median_time(partial(update, preds, target))
        name = f"{size}x{size}, {len(scene.segments)} + {len(pred_segments)} segments"

        def ms(t):
            return "-" if t is None else f"{1e3 * t:.2f}ms"

        print(f"{name:<32} {ms(t_ours):>8} {ms(t_ref):>10} {ms(t_loop):>9} {ms(t_tm):>13} "
              f"{t_ref / t_ours:5.1f}x")
    print("ratio = reference / ours; above 1: ours is faster")


if __name__ == "__main__":
    main()
