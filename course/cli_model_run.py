"""What ``train``, ``evaluate`` and ``predict`` of ``python -m course`` do.

Kept apart from their parser (:mod:`course.cli_model`) because it imports torch and the model,
which takes seconds: ``python -m course eval`` and ``--help`` never pay for it.
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
from course.data import CLASSES, STUFF_IDS, PanopticShapesDataset, ShapesDataset
from course.model import MaskRCNN, MaskRCNNConfig
from course.pq import pq_table
from course.train import TrainConfig, evaluate, evaluate_panoptic, predict_dataset, train


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
    stuff = len(STUFF_IDS) if args.panoptic else 0
    model = MaskRCNN(MaskRCNNConfig(pooler=args.pooler, stuff_classes=stuff)).to(device)
    config = TrainConfig(steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed)
    settings = {"overlap": args.overlap, "panoptic": args.panoptic}
    history = train(model, _dataset("train", settings, args.seed), config)
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank > 0:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.pt", train_config=asdict(config), data=settings,
               history=asdict(history))
    (args.out / "history.json").write_text(json.dumps(asdict(history)))
    print(f"trained {len(history.steps)} steps in {history.steps[-1]['seconds']:.0f} s; "
          f"model in {args.out / 'model.pt'}\n")
    _report(model, settings, as_json=False)


def _dataset(split: str, settings: dict, seed: int = 0) -> ShapesDataset:
    """The data a run was trained on (its ``data`` settings), ``split`` of it."""
    if settings.get("panoptic", False):
        return PanopticShapesDataset(split, seed=seed)
    return ShapesDataset(split, overlap=bool(settings.get("overlap", False)), seed=seed)


def _report(model: MaskRCNN, settings: dict, as_json: bool) -> None:
    """COCO AP on the validation set; for a panoptic model also PQ under both policies."""
    val = _dataset("val", settings)
    detections = predict_dataset(model, val)  # once, for AP and for PQ
    result = evaluate(model, val, detections=detections)
    tables = evaluate_panoptic(model, val, detections=detections) \
        if model.semantic_head is not None else {}
    if as_json:
        print(json.dumps({**result.as_dict(), **({"panoptic": tables} if tables else {})}))
        return
    print(result.coco_summary())
    for policy, table in tables.items():
        print(f"\npanoptic quality on {len(val)} validation scenes, policy {policy}:")
        print(pq_table(table))


def _evaluate(args: argparse.Namespace) -> None:
    path = _checkpoint(args.run)
    model = MaskRCNN.load(path, _device(args.device))
    settings = torch.load(path, map_location="cpu", weights_only=True).get("data", {})
    if model.config.num_classes != len(CLASSES):
        raise ValueError(f"{path} holds a model of {model.config.num_classes} classes, but "
                         f"evaluate scores it on the course's shapes ({len(CLASSES)} classes); "
                         "evaluate it on its own data in Python with "
                         "course.train.evaluate(model, dataset)")
    _report(model, settings, args.json)


def _class_names(path: Path, num_classes: int) -> tuple[str, ...]:
    """The checkpoint's ``class_names`` (``model.save(path, class_names=[...])``); else the
    shapes' names for a model of as many classes; else the class ids."""
    names = torch.load(path, map_location="cpu", weights_only=True).get("class_names")
    if names is not None:
        if len(names) != num_classes:
            raise ValueError(f"{path} names {len(names)} classes for a model of "
                             f"{num_classes}")
        return tuple(str(n) for n in names)
    return CLASSES if num_classes == len(CLASSES) else tuple(map(str, range(1, num_classes + 1)))


def _predict(args: argparse.Namespace) -> None:
    from PIL import Image

    import course.viz as viz

    path = _checkpoint(args.run)
    model = MaskRCNN.load(path)
    with Image.open(args.image) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32) / 255  # [H, W, 3]
    image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # [3, H, W]
    det = model.predict([image])[0]
    det.image_id = 1
    results = args.results or args.out.with_suffix(".json")
    results.write_text(json.dumps(predictions_to_coco([det.as_dict()])))
    names = _class_names(path, model.config.num_classes)
    ax = viz.draw_detections(image, det, class_names=names, min_score=args.min_score)
    ax.figure.savefig(args.out, dpi=150, bbox_inches="tight")
    shown = int((det.scores >= args.min_score).sum())
    print(f"{len(det)} detections ({shown} with score >= {args.min_score}) drawn on "
          f"{args.out}; all written to {results}")
