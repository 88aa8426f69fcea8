"""The model's commands of ``python -m course``: ``train``, ``evaluate`` and ``predict``.

A run folder holds ``model.pt`` (weights, model config, training config, loss history and the
data settings) and ``history.json``; ``evaluate`` and ``predict`` need nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import course
from course.coco import predictions_to_coco
from course.data import CLASSES, ShapesDataset
from course.model import MaskRCNN, MaskRCNNConfig
from course.train import TrainConfig, evaluate, train


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate`` and ``predict`` to the command parser."""
    t = commands.add_parser("train", help="train the compact Mask R-CNN on the shapes",
                            description="Train from scratch on generated shapes, then print "
                            "the COCO summary on the 200 validation images.")
    budget = t.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="training time (evaluation not counted)")
    budget.add_argument("--steps", type=int, help="number of SGD steps")
    t.add_argument("--out", type=Path, required=True, help="run folder to write")
    t.add_argument("--overlap", action="store_true", help="shapes occlude each other")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=0.02)
    t.add_argument("--pooler", choices=("align", "pool"), default="align",
                   help="ROIAlign (default) or RoIPool in the heads")
    e = commands.add_parser("evaluate", help="COCO AP of a trained model on the validation set",
                            description="The COCO summary of a run's model on the 200 "
                            "validation images of the data it was trained on.")
    e.add_argument("run", type=Path, help="run folder (or a model.pt)")
    e.add_argument("--device", default=None)
    e.add_argument("--json", action="store_true", help="print the 12 stats as JSON")
    p = commands.add_parser("predict", help="detect objects in an image",
                            description="Draw a trained model's detections on an RGB image "
                            "and write them as a COCO results json.")
    p.add_argument("run", type=Path, help="run folder (or a model.pt)")
    p.add_argument("image", type=Path, help="an image file (PNG, JPEG, ...)")
    p.add_argument("--out", type=Path, required=True, help="the picture to write (PNG)")
    p.add_argument("--results", type=Path, help="COCO results json (default: OUT with .json)")
    p.add_argument("--min-score", type=float, default=0.5, help="draw detections above this")


def run_model_command(args: argparse.Namespace) -> None:
    """Carry out ``train``, ``evaluate`` or ``predict``."""
    {"train": _train, "evaluate": _evaluate, "predict": _predict}[args.command](args)


def _device(name: str | None) -> torch.device:
    if name is None:
        return course.device()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(name)


def _checkpoint(run: Path) -> Path:
    path = run / "model.pt" if run.is_dir() else run
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path} (train one with python -m course train)")
    return path


def _start_processes(device: torch.device) -> tuple[torch.device, int]:
    """Under ``torchrun``: join the process group (NCCL on GPUs, gloo on the CPU); one GPU per
    process. Returns the device to use and this process's rank."""
    if "WORLD_SIZE" not in os.environ:
        return device, 0
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank()


def _train(args: argparse.Namespace) -> None:
    device, rank = _start_processes(_device(args.device))
    torch.manual_seed(args.seed)  # the same initial weights in every process
    model = MaskRCNN(MaskRCNNConfig(pooler=args.pooler)).to(device)
    config = TrainConfig(steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed)
    history = train(model, ShapesDataset("train", overlap=args.overlap, seed=args.seed),
                    config)
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank > 0:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.pt", train_config=asdict(config),
               data={"overlap": args.overlap}, history=asdict(history))
    (args.out / "history.json").write_text(json.dumps(asdict(history)))
    result = evaluate(model, ShapesDataset("val", overlap=args.overlap))
    print(f"trained {len(history.steps)} steps in {history.steps[-1]['seconds']:.0f} s; "
          f"model in {args.out / 'model.pt'}\n")
    print(result.coco_summary())


def _evaluate(args: argparse.Namespace) -> None:
    path = _checkpoint(args.run)
    model = MaskRCNN.load(path, _device(args.device))
    data = torch.load(path, map_location="cpu", weights_only=True).get("data", {})
    result = evaluate(model, ShapesDataset("val", overlap=bool(data.get("overlap", False))))
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(result.coco_summary())


def _predict(args: argparse.Namespace) -> None:
    from PIL import Image

    import course.viz as viz

    model = MaskRCNN.load(_checkpoint(args.run))
    with Image.open(args.image) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32) / 255  # [H, W, 3]
    image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # [3, H, W]
    det = model.predict([image])[0]
    det.image_id = 1
    results = args.results or args.out.with_suffix(".json")
    results.write_text(json.dumps(predictions_to_coco([det.as_dict()])))
    ax = viz.draw_detections(image, det, class_names=CLASSES, min_score=args.min_score)
    ax.figure.savefig(args.out, dpi=150, bbox_inches="tight")
    shown = int((det.scores >= args.min_score).sum())
    print(f"{len(det)} detections ({shown} with score >= {args.min_score}) drawn on "
          f"{args.out}; all written to {results}")
