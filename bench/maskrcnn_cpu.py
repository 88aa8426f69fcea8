"""The compact Mask R-CNN against the tuned torchvision Mask R-CNN and a non-learned baseline,
trained from scratch for the same wall-clock budget on this machine, side by side in one run.

    python bench/maskrcnn_cpu.py                       # everything, 10 minutes per model
    python bench/maskrcnn_cpu.py --minutes 2.5 --runs ours:0 torchvision:0

Each trained run is a fresh subprocess (so its peak memory is its own), trained by the course's
one loop (:func:`course.train.train`: SGD, lr 0.02, 50-step warm-up, cosine decay, clipping at
10, batch 8) on 128 x 128 shapes and scored with :mod:`course.ap` on the 200 validation images
at a quarter, half, three quarters and all of the budget (the learning curve; training time
only, evaluation not counted). The first run is also scored with pycocotools from COCO json
files, to show the two agree. Runs:

- ``ours:SEED``: :class:`course.model.MaskRCNN` with its default config;
- ``roipool:SEED``: the same with RoIPool instead of ROIAlign in both heads;
- ``overlap:SEED``: ours on the occluding shapes (``overlap=True``);
- ``torchvision:SEED``: torchvision's Mask R-CNN, tuned (``bench/baselines.py``);
- ``torchvision-colours:SEED`` (or ``ours-colours:SEED``): the same on shapes painted in one
  colour per class (``baselines.ClassColoured``), the cue the issue's generator had;
- ``classical``: colour threshold and connected components, nothing learned.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DEFAULT_RUNS = ["ours:0", "ours:1", "torchvision:0", "torchvision:1", "roipool:0", "overlap:0",
                "classical", "classical-overlap"]
STATS = ("AP", "AP50", "AP75", "APs", "APm")


def _model(kind: str):
    from course.model import MaskRCNN, MaskRCNNConfig

    if kind == "torchvision":
        from baselines import TorchvisionMaskRCNN

        return TorchvisionMaskRCNN()
    return MaskRCNN(MaskRCNNConfig(pooler="pool" if kind == "roipool" else "align"))


def _latency_ms(model, dataset, n: int = 50) -> float:
    """Mean time of ``model.predict`` on one image at a time, after 5 warm-up images."""
    images = [dataset[i][0][None] for i in range(n + 5)]
    for image in images[:5]:
        model.predict(image)
    start = time.perf_counter()
    for image in images[5:]:
        model.predict(image)
    return 1000 * (time.perf_counter() - start) / n


def _pycocotools_stats(model, dataset) -> list[float]:
    """The same evaluation through pycocotools, from COCO json files."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from course.coco import predictions_to_coco
    from course.train import predict_dataset

    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        dataset.write_coco(gt_path)
        detections = [d.as_dict() for d in predict_dataset(model, dataset)]
        dt_path.write_text(json.dumps(predictions_to_coco(detections)))
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(str(dt_path)), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        return [float(v) for v in evaluator.stats]


def run_one(name: str, seed: int, minutes: float, with_pycocotools: bool,
            save: Path | None = None) -> dict:
    """Train one model (in this process) and measure it."""
    from course.data import ShapesDataset
    from course.train import TrainConfig, evaluate, train

    kind = name.split("-")[0]
    overlap = kind == "overlap"
    torch.manual_seed(seed)
    model = _model(kind)
    val = ShapesDataset("val", overlap=overlap)
    train_set = ShapesDataset("train", overlap=overlap, seed=seed)
    if name.endswith("-colours"):  # each class in a colour of its own
        from baselines import ClassColoured

        val, train_set = ClassColoured(val), ClassColoured(train_set)

    def score(m) -> dict[str, float]:
        return evaluate(m, val).as_dict()

    config = TrainConfig(minutes=minutes, seed=seed, eval_every=minutes / 4)
    history = train(model, train_set, config, evaluate_fn=score)
    steps = len(history.steps)
    out = {"name": name, "seed": seed, "steps": steps,
           "seconds_per_step": history.steps[-1]["seconds"] / steps,
           "curve": [(e["minutes"], e["AP"]) for e in history.evaluations],
           "final": {k: v for k, v in history.evaluations[-1].items()},
           "parameters": sum(p.numel() for p in model.parameters()),
           "latency_ms": _latency_ms(model, val)}
    final = evaluate(model, val)
    out["per_threshold"] = {area: final.ap_per_threshold(k)
                            for k, area in enumerate(("all", "small", "medium"))}
    out["final_box"] = evaluate(model, val, "bbox").as_dict()
    if with_pycocotools:
        out["pycocotools"] = _pycocotools_stats(model, val)
    out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if save is not None:  # the checkpoints chapter 10 loads (weights in float16)
        model.save(save, half=True, train_config=asdict(config), data={"overlap": overlap},
                   history=asdict(history))
    return out


def run_classical(overlap: bool) -> dict:
    from baselines import classical_predict

    from course.ap import coco_evaluate
    from course.data import ShapesDataset

    val = ShapesDataset("val", overlap=overlap)
    start = time.perf_counter()
    detections = classical_predict(val)
    ms = 1000 * (time.perf_counter() - start) / len(val)
    result = coco_evaluate(val.coco_ground_truth(), [d.as_dict() for d in detections],
                           categories=[1, 2, 3])
    return {"name": "classical" + ("-overlap" if overlap else ""), "seed": None, "steps": 0,
            "final": result.as_dict(), "latency_ms": ms, "curve": []}


def _table(results: list[dict], minutes: float) -> str:
    marks = [minutes * q for q in (0.25, 0.5, 0.75, 1.0)]
    head = (["run", "steps", "s/step"] + list(STATS) + [f"AP@{m:g}min" for m in marks]
            + ["box AP", "peak GB", "ms/img"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        curve = [f"{ap:.3f}" for _, ap in r["curve"]] + [""] * (4 - len(r["curve"]))
        row = [r["name"] + (f" (seed {r['seed']})" if r["seed"] is not None else ""),
               f"{r['steps']:,}", f"{r.get('seconds_per_step', 0):.3f}"]
        row += [f"{r['final'][k]:.3f}" for k in STATS] + curve[:4]
        row += [f"{r['final_box']['AP']:.3f}" if "final_box" in r else "",
                f"{r['peak_gb']:.2f}" if "peak_gb" in r else "", f"{r['latency_ms']:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _summary(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        if "pycocotools" in r:
            ours = [r["final"][k] for k in ("AP", "AP50", "AP75")]
            lines.append(f"{r['name']} seed {r['seed']}: course.ap AP/AP50/AP75 "
                         f"{ours[0]:.4f}/{ours[1]:.4f}/{ours[2]:.4f}, pycocotools "
                         + "/".join(f"{v:.4f}" for v in r["pycocotools"][:3]))
    for r in results:
        if "per_threshold" in r:
            lines.append(f"{r['name']} seed {r['seed']}, AP per IoU threshold 0.50 .. 0.95:")
            for area, values in r["per_threshold"].items():
                lines.append(f"  {area:6s} " + " ".join(f"{v:.3f}" for v in values.values()))
    by = {}
    for r in results:
        by.setdefault(r["name"], []).append(r["final"]["AP"])
    if "ours" in by and "torchvision" in by:
        ours, tv = by["ours"], by["torchvision"]
        spread = max(max(ours) - min(ours), max(tv) - min(tv))
        gap = min(ours) - max(tv)
        lines.append(f"ours {min(ours):.3f}-{max(ours):.3f}, torchvision {min(tv):.3f}-"
                     f"{max(tv):.3f}: the worst of ours minus the best of torchvision is "
                     f"{gap:+.3f}, the larger seed-to-seed spread {spread:.3f} -> "
                     f"{'ahead by more than the spread' if gap > spread else 'NOT clearly ahead'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--save-models", type=Path, metavar="DIR",
                        help="save the first 'ours' and 'overlap' models as DIR/maskrcnn_shapes.pt"
                        " and DIR/maskrcnn_overlap.pt (how data/ got them)")
    parser.add_argument("--one", nargs=2, metavar=("NAME", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--pycocotools", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = run_one(args.one[0], int(args.one[1]), args.minutes, args.pycocotools,
                         args.save)
        print("RESULT " + json.dumps(result))
        return
    results, saved = [], set()
    for i, spec in enumerate(args.runs):
        if spec.startswith("classical"):
            results.append(run_classical(spec.endswith("overlap")))
        else:
            name, seed = spec.split(":")
            command = [sys.executable, __file__, "--one", name, seed, "--minutes",
                       str(args.minutes)] + (["--pycocotools"] if i == 0 else [])
            target = {"ours": "maskrcnn_shapes.pt", "overlap": "maskrcnn_overlap.pt"}.get(name)
            if args.save_models and target and target not in saved:
                command += ["--save", str(args.save_models / target)]
                saved.add(target)
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
            results.append(json.loads(line[len("RESULT "):]))
        print(f"done: {spec}", file=sys.stderr, flush=True)
    print(f"Trained from scratch for {args.minutes:g} minutes each, batch 8, 128 x 128, "
          f"scored on 200 validation images ({torch.get_num_threads()} threads)\n")
    print(_table(results, args.minutes))
    print("\n" + "\n".join(_summary(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
