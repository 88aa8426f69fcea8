"""``Instances``: the detections (or ground-truth objects) of one image, in one small holder.

The model returns one :class:`Instances` per image, :mod:`course.viz` draws it, and
:func:`course.ap.coco_evaluate` reads it, so no chapter needs a per-image dict layout of its own.
The idea is detectron2's ``Instances``: fields of equal length, filtered together by one index.
Ours is a plain dataclass with the fields a segmentation model has.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

_PER_OBJECT = ("boxes", "labels", "scores", "masks")


@dataclass
class Instances:
    """Objects of one image: boxes, class labels, and optionally scores and masks.

    Attributes:
        boxes (Tensor[N, 4]): ``(x1, y1, x2, y2)`` in image pixels (float; integer boxes
            are converted to float32).
        labels (Tensor[N]): int64 class ids (1-based; 0 is background; other integer types
            are converted to int64).
        scores (Tensor[N] or None): confidence of each detection; None for ground truth.
        masks (Tensor[N, H, W] or None): bool full-image masks (0/1 masks of another type
            are kept as they are; other values are an error).
        image_size: ``(H, W)``; taken from ``masks`` when not given.
        image_id: the COCO image id, for evaluation; optional.
        semantic (Tensor or None): the image's per-pixel "stuff" classes, for panoptic
            models (chapter 11): in a target a ``Tensor[H, W]`` int64 class index per pixel
            (``-1`` where unlabelled), in a prediction ``Tensor[C, H, W]`` class
            probabilities. Not per object: indexing keeps it whole.

    ``inst[i]`` with an int, a slice, a bool Tensor[N] or an int64 index Tensor gives the
    selected objects as a new ``Instances`` (an int keeps a length-1 axis).
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor | None = None
    masks: Tensor | None = None
    image_size: tuple[int, int] | None = None
    image_id: int | None = None
    semantic: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.boxes, Tensor) or self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be a Tensor[N, 4] (x1, y1, x2, y2), got "
                             f"{describe(self.boxes)}")
        if not self.boxes.is_floating_point():
            self.boxes = self.boxes.float()  # pixel coordinates given as integers
        n = len(self.boxes)
        for name in ("labels", "scores"):
            value = getattr(self, name)
            if (value is not None or name == "labels") and (not isinstance(value, Tensor)
                                                            or value.shape != (n,)):
                raise ValueError(f"{name} must be a Tensor[{n}] (one per box), got "
                                 f"{describe(value)}")
        self.labels = _class_ids(self.labels)
        if self.masks is not None:
            if not isinstance(self.masks, Tensor) or self.masks.ndim != 3 or len(self.masks) != n:
                raise ValueError(f"masks must be a Tensor[{n}, H, W] (one per box), got "
                                 f"{describe(self.masks)}")
            size = tuple(self.masks.shape[1:])
            if self.image_size is not None and tuple(self.image_size) != size:
                raise ValueError(f"image_size {tuple(self.image_size)} differs from the masks' "
                                 f"size {size}")
            _check_binary(self.masks)
            self.image_size = size
        if self.image_size is None:
            raise ValueError("give image_size (H, W) when there are no masks")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.semantic is not None and (
                not isinstance(self.semantic, Tensor) or self.semantic.ndim not in (2, 3)
                or tuple(self.semantic.shape[-2:]) != self.image_size):
            raise ValueError(f"semantic must be a Tensor[H, W] or [C, H, W] with (H, W) = "
                             f"{self.image_size}, got {describe(self.semantic)}")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int | slice | Tensor) -> Instances:
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        if isinstance(index, Tensor) and index.dtype == torch.bool and index.shape != (len(self),):
            raise IndexError(f"a bool index must have shape [{len(self)}], got "
                             f"{list(index.shape)}")
        picked = {name: getattr(self, name)[index] for name in _PER_OBJECT
                  if getattr(self, name) is not None}
        return replace(self, **picked)

    def to(self, device: torch.device | str) -> Instances:
        """The same instances with every tensor on ``device``."""
        moved = {name: getattr(self, name).to(device) for name in (*_PER_OBJECT, "semantic")
                 if getattr(self, name) is not None}
        return replace(self, **moved)

    @property
    def fields(self) -> dict[str, Tensor]:
        """The per-object fields that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name in _PER_OBJECT and getattr(self, f.name) is not None}

    def as_dict(self) -> dict[str, Any]:
        """The per-image dict :func:`course.ap.coco_evaluate` reads (with ``image_id``)."""
        if self.image_id is None:
            raise ValueError("this Instances has no image_id; set it to evaluate")
        return {"image_id": self.image_id, **self.fields}

    @staticmethod
    def empty(image_size: tuple[int, int], with_masks: bool = True,
              device: torch.device | str | None = None) -> Instances:
        """No objects, on an image of ``image_size``."""
        h, w = image_size
        return Instances(torch.zeros(0, 4, device=device),
                         torch.zeros(0, dtype=torch.int64, device=device),
                         torch.zeros(0, device=device),
                         torch.zeros(0, h, w, dtype=torch.bool, device=device) if with_masks
                         else None, (h, w))


def _class_ids(labels: Tensor) -> Tensor:
    """``labels`` as int64 (any integer type is taken); floats and bools are refused."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
    return labels.long()


def _check_binary(masks: Tensor) -> None:
    """``masks`` must be bool or hold only 0 and 1.

    Anything else (0/255 images, probabilities) is refused: read as "not zero" it would
    silently change the objects, read as a number it would be a target outside [0, 1].
    """
    if masks.dtype == torch.bool:
        return
    if masks.is_complex() or bool(((masks != 0) & (masks != 1)).any()):
        found = masks[(masks != 0) & (masks != 1)][0].item()
        raise ValueError(f"masks must be bool or hold only 0 and 1, got {masks.dtype} masks "
                         f"holding {found!r} (e.g. masks > 0 for 0/255 masks, masks > 0.5 "
                         "for probabilities)")


def describe(value: Any) -> str:
    """What ``value`` is, for an error message: ``shape [2, 4]`` for a tensor, else its type."""
    if isinstance(value, Tensor):
        return f"shape {list(value.shape)}"
    return type(value).__name__
