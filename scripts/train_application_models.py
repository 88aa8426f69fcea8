"""Train the three models chapter 12 loads from ``data/``, with the course's one training loop.

    .venv/bin/python scripts/train_application_models.py [--steps 1500] [--only cells]

- ``maskrcnn_cells.pt``: on :class:`course.applications.CellsDataset` (touching cells);
- ``maskrcnn_aerial_p2.pt``: on :class:`course.applications.AerialDataset` (tiny buildings),
  the pyramid ``P2..P5`` (finest stride 4);
- ``maskrcnn_aerial_p3.pt``: the same with ``P3..P6`` (finest stride 8), nothing else changed.

Each is :func:`course.applications.model_config`, seeded with ``torch.manual_seed(seed)``,
trained by :func:`course.train.train` for a number of *steps* (so a re-run on any machine
takes the same steps) with ``TrainConfig(steps=steps, seed=seed)``, and saved in float16
with its model config, training config, data set and loss history. The thread count does not
change the steps; it changes float rounding, so a re-made file is close to, not equal to, the
committed one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import torch

from course.applications import AerialDataset, CellsDataset, model_config
from course.model import MaskRCNN
from course.train import TrainConfig, train

MODELS = {  # name: (data set class, finest pyramid level)
    "cells": (CellsDataset, 2),
    "aerial_p2": (AerialDataset, 2),
    "aerial_p3": (AerialDataset, 3),
}


def train_one(name: str, steps: int, seed: int, out: Path) -> Path:
    """Train model ``name`` for ``steps`` steps and save it as ``out / maskrcnn_<name>.pt``."""
    dataset_class, finest = MODELS[name]
    dataset = dataset_class("train")
    torch.manual_seed(seed)
    model = MaskRCNN(model_config(finest))
    config = TrainConfig(steps=steps, seed=seed)
    start = time.perf_counter()
    history = train(model, dataset, config)
    minutes = (time.perf_counter() - start) / 60
    path = out / f"maskrcnn_{name}.pt"
    model.save(path, half=True, train_config=asdict(config), data={"dataset": repr(dataset)},
               history=asdict(history))
    loss = sum(history.losses()[-50:]) / min(50, steps)
    print(f"{name}: {steps} steps in {minutes:.1f} min, final loss {loss:.3f} -> {path}",
          flush=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data")
    parser.add_argument("--only", choices=sorted(MODELS), action="append",
                        help="train only this model (repeatable); default all three")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(MODELS):
        train_one(name, args.steps, args.seed, args.out)


if __name__ == "__main__":
    main()
