"""Panoptic Quality counts of one image: ours against panopticapi's algorithm, in one run.

    .venv/bin/python bench/pq_speed.py [--cpu-time]

"reference" is panopticapi's ``pq_compute_single_core`` as re-written in
``tests/panoptic_reference.py`` (``np.unique`` over packed id pairs, then Python loops over
the pairs and segments), given the decoded id maps, so no file reading is timed on either
side. torchmetrics' ``PanopticQuality.update`` is timed on the (category, instance) pairs it
takes, if it is installed, after all the others (median of 5). The counts are checked equal to
the reference first.

A call takes a fraction of a millisecond, so one call is too short to time on a shared
machine: each figure is the median of 15 rounds, a round timing a batch of calls (as many as
fill about 5 ms) of each contestant in turn, so that a busy spell hits all of them. The loop
is timed once per round (it takes milliseconds). With ``--cpu-time`` the clock is the CPU
time of the calling thread instead of the wall clock: on a machine shared with other jobs
it leaves out the time a contestant waits for a core. Ours, the reference and panopticapi's
``rgb2id`` are single-threaded NumPy, so their CPU time is their whole cost; torch's columns
are then meaningless (its other threads are not counted).

The first table times reading a 640x480 panoptic PNG's colours into segment ids (the PNG
decoding itself, the same for everyone, is left out): ``course.pq.rgb_to_id`` on the array
PIL gives, panopticapi's ``rgb2id`` (NumPy, int32), and the same arithmetic in torch.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from course.data import STUFF_IDS, THING_IDS, make_panoptic_scene, simulate_panoptic_prediction
from course.pq import id_to_rgb, panoptic_to_pairs, pq_stats, pq_stats_loop, rgb_to_id

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import panoptic_reference as reference  # noqa: E402

CATEGORIES = {c: {"id": c, "isthing": int(c in THING_IDS)} for c in THING_IDS + STUFF_IDS}


CLOCK = time.perf_counter  # --cpu-time: time.thread_time


def interleaved(tools: dict[str, Callable[[], object] | None], rounds: int = 15,
                batch_s: float = 0.005) -> dict[str, float | None]:
    """Median seconds per call of each tool; batches of calls, the tools taking turns."""
    sizes = {}
    for name, fn in tools.items():
        if fn is None:
            continue
        start = CLOCK()
        fn()
        once = CLOCK() - start
        sizes[name] = max(1, min(2000, int(batch_s / max(once, 1e-7))))
    times: dict[str, list[float]] = {name: [] for name in sizes}
    for _ in range(rounds):
        for name, k in sizes.items():
            fn = tools[name]
            start = CLOCK()
            for _ in range(k):
                fn()
            times[name].append((CLOCK() - start) / k)
    return {name: statistics.median(times[name]) if name in times else None for name in tools}


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


def coco_like_ids(ids, segments, rng):
    """The same segmentation with ids drawn like COCO's colours (random, below 256**3)."""
    new = rng.choice(np.arange(1, 256**3), size=max(segments) + 1, replace=False)
    new[0] = 0
    return torch.from_numpy(new[ids.numpy()]), {int(new[k]): v for k, v in segments.items()}


def ms(t):
    return "-" if t is None else f"{1e3 * t:.3f}ms"


def one_case(name, gt_ids, gt_segments, pred_ids, pred_segments, update, loop):
    gt_map, pred_map = gt_ids.numpy().astype(np.uint32), pred_ids.numpy().astype(np.uint32)
    gt_ann, pred_ann = annotation(gt_ids, gt_segments), annotation(pred_ids, pred_segments)
    ref = reference.one_image_maps(gt_map, gt_ann, pred_map, pred_ann, CATEGORIES)
    args = (gt_ids, gt_segments, pred_ids, pred_segments)
    ours = pq_stats(*args).as_dict()
    for cat, c in ref.items():
        assert ours[cat][1:] == [c.tp, c.fp, c.fn] and abs(ours[cat][0] - c.iou) < 1e-9
    tm = None
    if update is not None:
        plain = {k: (c, False) for k, (c, _) in gt_segments.items()}
        preds = panoptic_to_pairs(pred_ids, pred_segments, void_category=0)[None]
        target = panoptic_to_pairs(gt_ids, plain, void_category=0)[None]
        tm = partial(update, preds, target)
    t = interleaved({"ours": partial(pq_stats, *args),
                     "reference": partial(reference.one_image_maps, gt_map, gt_ann, pred_map,
                                          pred_ann, CATEGORIES),
                     "loop": partial(pq_stats_loop, *args) if loop else None})
    return f"{name}, {len(gt_segments)} + {len(pred_segments)} segments", t, tm


def read_png_case() -> None:
    rng = np.random.default_rng(0)
    ids = rng.choice(np.arange(1, 256**3), 60)[rng.integers(0, 60, (480, 640))]  # [H, W]
    rgb = id_to_rgb(ids).numpy()  # what np.array(PIL.Image.open(png)) gives

    def rgb2id(color):  # panopticapi.utils.rgb2id
        color = color.astype(np.int32)
        return color[:, :, 0] + 256 * color[:, :, 1] + 256 * 256 * color[:, :, 2]

    def in_torch(color):
        c = torch.as_tensor(color).to(torch.int64)
        return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]

    assert np.array_equal(rgb_to_id(rgb).numpy(), ids) and np.array_equal(rgb2id(rgb), ids)
    t = interleaved({"ours": partial(rgb_to_id, rgb), "panopticapi": partial(rgb2id, rgb)})
    t["torch"] = interleaved({"torch": partial(in_torch, rgb)}, rounds=5)["torch"]  # apart
    print(f"{'colours to ids':<30} {'ours':>9} {'panopticapi':>12} {'torch':>10} {'ratio':>6}")
    print(f"{'640x480 PNG array, 60 ids':<30} {ms(t['ours']):>9} {ms(t['panopticapi']):>12} "
          f"{ms(t['torch']):>10} {t['panopticapi'] / t['ours']:5.1f}x")
    print(f"ratio = panopticapi / ours; torch with {torch.get_num_threads()} threads")


def main() -> None:
    global CLOCK
    if "--cpu-time" in sys.argv[1:]:
        CLOCK = time.thread_time
        print("CPU time of the calling thread (torch's columns leave out its other threads)")
    update = torchmetrics_update()
    read_png_case()
    print(f"\n{'case':<44} {'ours':>9} {'reference':>10} {'loop':>10} {'torchmetrics':>13} "
          f"{'ratio':>6}")
    rows = []
    for size, objects in ((128, 6), (256, 30), (512, 80)):
        scene = make_panoptic_scene(size, size, num_objects=(objects, objects), seed=size)
        pred_ids, pred_segments = simulate_panoptic_prediction(scene, seed=size + 1)
        rows.append(one_case(f"{size}x{size}", scene.ids, scene.segments, pred_ids,
                             pred_segments, update, loop=size <= 256))
        if size == 512:
            rng = np.random.default_rng(size)
            rows.append(one_case(f"{size}x{size}, COCO-like ids",
                                 *coco_like_ids(scene.ids, scene.segments, rng),
                                 *coco_like_ids(pred_ids, pred_segments, rng), None, loop=False))
    # torchmetrics last: after torch's multi-threaded work its idle threads spin a while and
    # slow down whatever runs next on a busy machine (bench/README.md, fusion_speed)
    for name, t, tm in rows:
        t["torchmetrics"] = interleaved({"tm": tm}, rounds=5)["tm"]
        print(f"{name:<44} {ms(t['ours']):>9} {ms(t['reference']):>10} {ms(t['loop']):>10} "
              f"{ms(t['torchmetrics']):>13} {t['reference'] / t['ours']:5.1f}x")
    print("ratio = reference / ours; above 1: ours is faster")


if __name__ == "__main__":
    main()
