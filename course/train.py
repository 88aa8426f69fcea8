"""The one training loop: every script, benchmark and chapter trains the model through it.

SGD with momentum, a linear warm-up and a cosine decay over the budget, gradient clipping, a
progress bar (silent when output is not a terminal), the loss history, evaluation at set
points, and the checkpoint at the end. The budget is a number of steps or of minutes of
training (evaluation time not counted); with minutes, the schedule follows the clock.

Several processes: started with ``torchrun``, the loop finds ``torch.distributed`` initialised,
wraps the model in ``DistributedDataParallel`` and splits every global batch of
``batch_size`` images over the processes with a ``DistributedSampler``. Anchor and RoI
sampling is seeded per image and the losses are averages over images, so with a
batch-independent norm (the config's ``"group"``) ``N`` processes take the same steps as one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from os import PathLike
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from course.ap import COCOResult, coco_evaluate
from course.model import MaskRCNN
from course.pq import panoptic_quality
from course.structures import Instances


@dataclass
class TrainConfig:
    """How to train.

    Attributes:
        steps, minutes: the budget; give exactly one. ``minutes`` counts training time only.
        batch_size: images per step over all processes (divisible by their number).
        lr, momentum, weight_decay: SGD; ``lr`` is the peak, after the warm-up.
        warmup_steps: the learning rate rises linearly from 0.1% of ``lr`` over these steps.
        final_lr: the cosine decay ends at this fraction of ``lr``.
        clip: the largest gradient norm (``None``: no clipping).
        seed: seeds the order of the images and the anchor and RoI sampling.
        eval_every: evaluate every so many steps (or minutes, with a minute budget), and at
            the end; ``None``: only at the end, when an evaluation function is given.
        workers: data-loading processes.
        amp: mixed precision (bfloat16) on CUDA; ignored on the CPU.
    """

    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 8
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    final_lr: float = 0.05
    clip: float | None = 10.0
    seed: int = 0
    eval_every: float | None = None
    workers: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("give exactly one budget: steps or minutes")
        if self.steps is not None and self.steps < 1 or self.minutes is not None and not (
                self.minutes > 0):
            raise ValueError(f"the budget must be positive, got steps={self.steps}, "
                             f"minutes={self.minutes}")
        if self.batch_size < 1 or not self.lr > 0 or self.warmup_steps < 0:
            raise ValueError("batch_size and lr must be positive and warmup_steps >= 0")


@dataclass
class History:
    """What training recorded: one entry per step and one per evaluation."""

    steps: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)

    def losses(self, name: str = "total") -> list[float]:
        """The loss ``name`` at every step."""
        return [s[name] for s in self.steps]


def lr_factor(step: int, progress: float, config: TrainConfig) -> float:
    """The multiplier of ``lr`` at ``step``, with ``progress`` in [0, 1] of the budget done."""
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    warm = 0.001 + (1 - 0.001) * warm
    cosine = 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return warm * (config.final_lr + (1 - config.final_lr) * cosine)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batches(dataset: Dataset, config: TrainConfig, collate: Callable) -> Iterator[Any]:
    """Endless batches; one process's share of each global batch, in a seeded order."""
    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{world} processes")
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    loader = DataLoader(dataset, config.batch_size // world, sampler=sampler, drop_last=True,
                        collate_fn=collate, num_workers=config.workers)
    if len(loader) == 0:  # else the loop below would wait for a batch forever
        raise ValueError(f"the dataset has {len(dataset)} images, too few for one batch of "
                         f"{config.batch_size} (split over {world} processes)")
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _stop(step: int, seconds: float, config: TrainConfig, device: torch.device) -> bool:
    """Is the budget spent? With several processes, rank 0's clock decides for all."""
    if config.steps is not None:
        return step >= config.steps
    done = torch.tensor([seconds >= 60 * config.minutes], dtype=torch.float32, device=device)
    if _world()[1] > 1:
        dist.broadcast(done, src=0)
    return bool(done.item())


def _progress(step: int, seconds: float, config: TrainConfig) -> float:
    if config.steps is not None:
        return step / config.steps
    return seconds / (60 * config.minutes)


def _evaluate_now(step: int, seconds: float, last: float, config: TrainConfig) -> bool:
    if config.eval_every is None:
        return False
    now = step if config.steps is not None else seconds / 60
    return now - last >= config.eval_every


def _autocast(device: torch.device, config: TrainConfig):
    if config.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               images: torch.Tensor | list[torch.Tensor], targets: list[Instances], seed: int,
               config: TrainConfig, device: torch.device) -> dict[str, float]:
    """One SGD step on one batch; returns the losses as floats (and the gradient norm).

    ``images``: a batch ``Tensor[B, 3, H, W]`` or a list of ``Tensor[3, H_i, W_i]`` (from
    :func:`course.data.collate_list`); the model checks the targets and moves them.
    """
    with _autocast(device, config):
        losses = model(_to_device(images, device), targets, seed=seed)
    total = sum(losses.values())
    if not torch.isfinite(total):
        values = {k: round(v.item(), 4) for k, v in losses.items()}
        raise FloatingPointError(f"the loss is not finite: {values}")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip or math.inf)
    optimizer.step()
    record = {k: v.item() for k, v in losses.items()}
    record["total"], record["grad_norm"] = total.item(), norm.item()
    return record


def _to_device(images: torch.Tensor | list[torch.Tensor], device: torch.device
               ) -> torch.Tensor | list[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        return images.to(device)
    return [image.to(device) for image in images]


def train(model: MaskRCNN, dataset: Dataset, config: TrainConfig,
          collate: Callable | None = None,
          evaluate_fn: Callable[[MaskRCNN], dict[str, float]] | None = None,
          progress: bool | None = None) -> History:
    """Train ``model`` on ``dataset`` (items ``(image, Instances)``) within the budget.

    Args:
        collate: the DataLoader's ``collate_fn`` (default :func:`course.data.collate`).
        evaluate_fn: called with the (unwrapped) model in evaluation mode at the evaluation
            points; its dict is recorded in ``History.evaluations`` with the step and minute.
        progress: show a progress bar; ``None``: only when stderr is a terminal.

    Returns:
        History. The model is left in evaluation mode, on its device.
    """
    from course.data import collate as default_collate

    device = next(model.parameters()).device
    rank, world = _world()
    net = model if world == 1 else nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    history, batches = History(), _batches(dataset, config, collate or default_collate)
    quiet = True if rank > 0 else None if progress is None else not progress  # None: if no tty
    bar = tqdm(total=config.steps or round(60 * config.minutes), unit="step" if config.steps
               else "s", disable=quiet)
    step, seconds, last_eval = 0, 0.0, 0.0
    model.train()
    while not _stop(step, seconds, config, device):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, _progress(step, seconds, config), config)
        images, targets = next(batches)
        record = train_step(net, optimizer, images, targets, config.seed * 1_000_000 + step,
                            config, device)
        elapsed = time.perf_counter() - start
        seconds += elapsed
        step += 1
        history.steps.append({"step": step, "seconds": seconds,
                              "lr": optimizer.param_groups[0]["lr"], **record})
        bar.update(1 if config.steps else round(seconds) - bar.n)
        bar.set_postfix(loss=f"{record['total']:.3f}")
        if evaluate_fn is not None and _evaluate_now(step, seconds, last_eval, config):
            last_eval = step if config.steps is not None else seconds / 60
            _record_evaluation(model, evaluate_fn, history, step, seconds)
    bar.close()
    if evaluate_fn is not None and (not history.evaluations
                                    or history.evaluations[-1]["step"] != step):
        _record_evaluation(model, evaluate_fn, history, step, seconds)
    model.eval()
    return history


def _record_evaluation(model: MaskRCNN, evaluate_fn: Callable, history: History, step: int,
                       seconds: float) -> None:
    model.eval()
    history.evaluations.append({"step": step, "minutes": seconds / 60, **evaluate_fn(model)})
    model.train()


@torch.no_grad()
def predict_dataset(model: MaskRCNN, dataset: Dataset, batch_size: int = 16,
                    progress: bool | None = None) -> list[Instances]:
    """The model's detections of every image of ``dataset``, each with its ``image_id``.

    ``dataset[i]`` is an ``(image, Instances)`` pair; images may differ in size. A target
    without an ``image_id`` stands for image ``i`` (as :func:`evaluate` reads it too).
    """
    from course.data import collate_list

    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size, collate_fn=collate_list)
    out: list[Instances] = []
    for images, targets in tqdm(loader, desc="predict", disable=None if progress is None
                                else not progress, leave=False):
        for det, target in zip(model.predict([im.to(device) for im in images]), targets,
                               strict=True):
            det.image_id = image_id(target, len(out))
            out.append(det.to("cpu"))
    return out


def image_id(target: Instances, index: int) -> int:
    """The COCO image id of item ``index`` of a data set: its target's ``image_id``, or
    ``index`` when the target has none."""
    return int(target.image_id) if target.image_id is not None else index


def ground_truth(dataset: Any, iou_type: str = "segm") -> list[dict[str, Any]]:
    """The objects of every image of ``dataset``, as :func:`course.ap.coco_evaluate` reads them.

    The dataset's own ``coco_ground_truth()`` when it has one (as
    :class:`course.data.GeneratedDataset` does); otherwise built from its items' targets,
    each image's id given by :func:`image_id`.
    """
    from course.data import collate_list

    if hasattr(dataset, "coco_ground_truth"):
        return dataset.coco_ground_truth()
    out = []
    for i in range(len(dataset)):
        target = collate_list([dataset[i]])[1][0]  # the item checked: (image, Instances)
        if iou_type == "segm" and target.masks is None:
            raise ValueError(f"the target of dataset[{i}] has no masks; mask AP needs them "
                             "(or evaluate boxes with iou_type='bbox')")
        out.append({"image_id": image_id(target, i), "labels": target.labels,
                    "boxes": target.boxes,
                    **({"masks": target.masks} if target.masks is not None else {})})
    return out


def evaluate(model: MaskRCNN, dataset: Any, iou_type: str = "segm", batch_size: int = 16,
             progress: bool | None = None,
             detections: list[Instances] | None = None) -> COCOResult:
    """COCO AP of ``model`` on ``dataset``, against :func:`ground_truth` (the dataset's
    ``coco_ground_truth()``, or its items' targets when it has none).

    ``detections``: the model's :func:`predict_dataset` of ``dataset``, when already made.
    """
    if detections is None:
        detections = predict_dataset(model, dataset, batch_size, progress)
    categories = list(range(1, model.config.num_classes + 1))
    return coco_evaluate(ground_truth(dataset, iou_type), [d.as_dict() for d in detections],
                         iou_type, categories)


def evaluate_panoptic(model: MaskRCNN, dataset: Any,
                      policies: Sequence[str] = ("instance_priority", "stuff_protected"),
                      batch_size: int = 16, progress: bool | None = None,
                      detections: list[Instances] | None = None,
                      **fusion: Any) -> dict[str, dict[str, Any]]:
    """PQ of a panoptic model on ``dataset`` under each fusion policy.

    ``dataset`` gives ``panoptic(i)`` (the ground truth's ids and segments) and names its
    categories: ``semantic_categories`` (of the semantic head's classes), ``thing_ids`` and
    ``stuff_ids``, as :class:`course.data.PanopticShapesDataset` does. ``fusion`` goes to
    :func:`course.fusion.panoptic_fusion`; ``detections`` as in :func:`evaluate`.

    Returns:
        ``{policy: result}``, ``result`` as :func:`course.pq.panoptic_quality` gives it.
    """
    from course.fusion import panoptic_fusion

    _check_panoptic(model, dataset)
    if detections is None:
        detections = predict_dataset(model, dataset, batch_size, progress)
    truth = [dataset.panoptic(i) for i in range(len(dataset))]
    out = {}
    for policy in policies:
        images = [(*gt, *panoptic_fusion(d, d.semantic, policy,
                                         categories=dataset.semantic_categories, **fusion))
                  for gt, d in zip(truth, detections, strict=True)]
        out[policy] = panoptic_quality(images, dataset.thing_ids, dataset.stuff_ids)
    return out


def _check_panoptic(model: MaskRCNN, dataset: Any) -> None:
    if model.semantic_head is None:
        raise ValueError("evaluate_panoptic needs a panoptic model (a semantic head: "
                         "MaskRCNNConfig(stuff_classes=...)); use evaluate for COCO AP")
    missing = [name for name in ("panoptic", "semantic_categories", "thing_ids", "stuff_ids")
               if not hasattr(dataset, name)]
    if missing:
        raise TypeError(f"evaluate_panoptic needs a panoptic dataset, as "
                        f"course.data.PanopticShapesDataset; {type(dataset).__name__} lacks "
                        f"{', '.join(missing)}")


def save_checkpoint(path: str | PathLike, model: MaskRCNN, config: TrainConfig,
                    history: History) -> None:
    """The model (weights and config) with the training config and history."""
    model.save(path, train_config=asdict(config), history=asdict(history))
