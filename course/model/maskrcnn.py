"""Mask R-CNN, assembled: backbone and pyramid, proposals, the box head, the mask head.

``forward`` reads like the paper's figure: features from the pyramid (:class:`course.fpn.FPN`),
proposals from the RPN (:mod:`course.model.rpn`), then a box head and a mask head on RoIs
pooled from the pyramid with ROIAlign (:func:`course.roi_align.multiscale_roi_align`). In
training it returns the five losses; in evaluation one :class:`course.structures.Instances` per
image, with full-image masks. With ``config.stuff_classes`` it is a panoptic model (chapter
11): a semantic head (:mod:`course.model.semantic_head`) on the same pyramid adds a sixth loss,
and each ``Instances`` carries the per-pixel class probabilities in ``semantic``.

Images go in as they are: ``[B, 3, H, W]`` floats in [0, 1], or a list of ``[3, H, W]`` of
different sizes, which are padded (never resized) at the bottom and right to a common size
divisible by the coarsest stride. In evaluation only images of the same padded size share a
batch, so an image's detections do not depend on the other images given with it. Boxes and
masks come back in the input's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from os import PathLike

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course.boxes import masks_to_boxes
from course.fpn import FPN, FPNConfig
from course.model.box_coding import clip_boxes
from course.model.box_head import BoxHead, RoISample, box_loss, sample_proposals
from course.model.config import MaskRCNNConfig
from course.model.mask_head import MaskHead, mask_loss
from course.model.postprocess import detect, paste_detections
from course.model.rpn import RegionProposalNetwork
from course.model.semantic_head import SemanticHead, semantic_logits, semantic_loss
from course.roi_align import multiscale_roi_align
from course.structures import Instances, describe

ImagesLike = Tensor | Sequence[Tensor]
RANGE_SLACK = 1e-3
"""How far outside [0, 1] an input pixel may be (rounding) before it is an error."""
BOX_SLACK = 1.0
"""How far (pixels) a target's mask may reach outside its box: one pixel, so that boxes in
torchvision's ``(c0, r0, c1, r1)`` pixel-index convention pass."""


class MaskRCNN(nn.Module):
    """The compact Mask R-CNN of chapters 09-10 (see the module docstring)."""

    def __init__(self, config: MaskRCNNConfig | None = None):
        super().__init__()
        self.config = c = config if config is not None else MaskRCNNConfig()
        self.fpn = FPN(FPNConfig(c.width, c.channels, c.levels, c.blocks, 3, c.norm))
        self.rpn = RegionProposalNetwork(c)
        self.box_head = BoxHead(c)
        self.mask_head = MaskHead(c)
        self.semantic_head = SemanticHead(c) if c.stuff_classes else None
        self.register_buffer("mean", torch.tensor(c.image_mean).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(c.image_std).view(1, 3, 1, 1), False)

    def forward(self, images: ImagesLike, targets: Sequence[Instances] | None = None,
                seed: int | None = None) -> dict[str, Tensor] | list[Instances]:
        """Losses (training, with ``targets``) or detections (evaluation).

        Args:
            images: ``Tensor[B, 3, H, W]`` in [0, 1] or a list of ``Tensor[3, H_i, W_i]``.
            targets: one :class:`Instances` per image with ``boxes``, ``labels`` (in
                ``1..num_classes``) and ``masks``, each mask inside its box (to a pixel).
            seed: seeds the sampling of anchors and RoIs, per image (mixed with each target's
                ``image_id``), so an image is sampled the same way in any batch or process.

        Returns:
            training: ``{"rpn_objectness", "rpn_box", "box_class", "box_regression",
            "mask"}`` (and ``"semantic"`` with a semantic head), scalars; evaluation:
            ``list[Instances]``.
        """
        items = _image_list(images)
        if not self.training:
            return self._inference(items)
        if targets is None:
            raise ValueError("a model in training mode needs targets; call model.eval() "
                             "(or model.predict) to detect")
        batch, sizes = self._pad(items)
        targets = self._check_targets(targets, sizes, batch.device)
        features = self._features(batch)
        generators = _generators(targets, seed)
        proposals, losses = self._forward_rpn(features, sizes, targets, generators)
        sample = sample_proposals(proposals, targets, self.config, generators)
        losses.update(self._forward_box(features, sample, targets))
        losses["mask"] = self._forward_mask(features, sample, targets)
        if self.semantic_head is not None:
            losses["semantic"] = self._forward_semantic(features, targets, sizes,
                                                        batch.shape[-2:])
        return losses

    def _inference(self, items: list[Tensor]) -> list[Instances]:
        """Detections of each image. Images are batched with those of the same padded size
        only, so that an image's detections never depend on the others in the list (the
        group norm's statistics would take in the extra padding)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(items):
            groups.setdefault(self._padded_size([image]), []).append(i)
        out: list[Instances | None] = [None] * len(items)
        for members in groups.values():
            batch, sizes = self._pad([items[i] for i in members])
            features = self._features(batch)
            proposals, _ = self._forward_rpn(features, sizes, None, None)
            detections = self._detect(features, proposals, sizes)
            if self.semantic_head is not None:
                detections = self._attach_semantic(features, detections, batch.shape[-2:])
            for i, det in zip(members, detections, strict=True):
                out[i] = det
        return out

    @torch.no_grad()
    def predict(self, images: ImagesLike) -> list[Instances]:
        """Detections of each image, in evaluation mode and without gradients."""
        was_training = self.training
        self.eval()
        try:
            return self(images)
        finally:
            self.train(was_training)

    def _features(self, batch: Tensor) -> list[Tensor]:
        return list(self.fpn((batch - self.mean) / self.std).values())

    def _forward_rpn(self, features: list[Tensor], sizes: list[tuple[int, int]],
                     targets: Sequence[Instances] | None,
                     generators: list[torch.Generator] | None
                     ) -> tuple[list[Tensor], dict[str, Tensor]]:
        return self.rpn(features, sizes, targets, generators)

    def _forward_box(self, features: list[Tensor], sample: RoISample,
                     targets: Sequence[Instances]) -> dict[str, Tensor]:
        logits, deltas = self.box_head(self._pool(features, sample.boxes, self.config.box_pool))
        return box_loss(logits, deltas, sample, targets, self.config.box_weights)

    def _forward_mask(self, features: list[Tensor], sample: RoISample,
                      targets: Sequence[Instances]) -> Tensor:
        positives = [b[:n] for b, n in zip(sample.boxes, sample.num_positive, strict=True)]
        logits = self.mask_head(self._pool(features, positives, self.config.mask_pool))
        return mask_loss(logits, sample, targets)

    def _forward_semantic(self, features: list[Tensor], targets: Sequence[Instances],
                          sizes: list[tuple[int, int]], padded: torch.Size) -> Tensor:
        logits = semantic_logits(self.semantic_head(features), padded)
        loss = semantic_loss(logits, [t.semantic for t in targets], sizes)
        return self.config.semantic_weight * loss

    def _attach_semantic(self, features: list[Tensor], detections: list[Instances],
                         padded: torch.Size) -> list[Instances]:
        """Each image's class probabilities ``[K, H, W]`` in its ``semantic`` field."""
        probs = semantic_logits(self.semantic_head(features), padded).softmax(dim=1)
        return [replace(d, semantic=p[:, :d.image_size[0], :d.image_size[1]])
                for d, p in zip(detections, probs, strict=True)]

    def _detect(self, features: list[Tensor], proposals: list[Tensor],
                sizes: list[tuple[int, int]]) -> list[Instances]:
        logits, deltas = self.box_head(self._pool(features, proposals, self.config.box_pool))
        detections = detect(logits, deltas, proposals, sizes, self.config)
        boxes = [d.boxes for d in detections]
        mask_logits = self.mask_head(self._pool(features, boxes, self.config.mask_pool))
        return paste_detections(detections, mask_logits, self.config.mask_threshold)

    def _pool(self, features: list[Tensor], boxes: list[Tensor], size: int) -> Tensor:
        """``[sum of boxes, C, size, size]`` from the level each box's size calls for."""
        maps = [f.float() for f in features[:4]]  # P6 (if any) is for proposals only
        strides = list(self.config.strides[:4])
        return multiscale_roi_align(maps, [b.float() for b in boxes], size, 2, True, strides,
                                    pool=self.config.pooler)

    def _padded_size(self, items: list[Tensor]) -> tuple[int, int]:
        """The batch's ``(H, W)``: the largest image's, rounded up to the coarsest stride."""
        step = self.config.strides[-1]
        height = -(-max(int(im.shape[1]) for im in items) // step) * step
        return height, -(-max(int(im.shape[2]) for im in items) // step) * step

    def _pad(self, items: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """Pad validated images into one batch; returns it and each image's size."""
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in items]
        height, width = self._padded_size(items)
        batch = torch.stack([F.pad(im.to(self.mean.device, self.mean.dtype),
                                   (0, width - im.shape[2], 0, height - im.shape[1]),
                                   value=0.5) for im in items])  # [B, 3, height, width]
        return batch, sizes

    def _check_targets(self, targets: Sequence[Instances], sizes: list[tuple[int, int]],
                       device: torch.device) -> list[Instances]:
        """Targets on the model's device, boxes clipped to the image, empty boxes dropped."""
        if isinstance(targets, Instances) or not isinstance(targets, Sequence):
            raise TypeError(f"targets must be a list of Instances (one per image), got "
                            f"{type(targets).__name__}")
        if len(targets) != len(sizes):
            raise ValueError(f"got {len(targets)} targets for {len(sizes)} images")
        out = []
        for i, (t, (h, w)) in enumerate(zip(targets, sizes, strict=True)):
            self._check_target(t, i, (h, w))
            t = Instances(clip_boxes(t.boxes.float(), h, w), t.labels, None, t.masks.bool(),
                          (h, w), t.image_id, t.semantic).to(device)
            keep = (t.boxes[:, 2] > t.boxes[:, 0]) & (t.boxes[:, 3] > t.boxes[:, 1])  # [N]
            _check_masks_in_boxes(t, keep, i)
            out.append(t[keep])
        return out

    def _check_target(self, t: Instances, i: int, size: tuple[int, int]) -> None:
        """``targets[i]`` must describe image ``i`` with valid labels and boxes."""
        if not isinstance(t, Instances) or t.masks is None:
            raise ValueError(f"targets[{i}] must be an Instances with masks (boxes, labels, "
                             f"masks [N, H, W]), got {describe(t)}")
        if t.image_size != size:
            raise ValueError(f"targets[{i}] is for an image of {t.image_size}, but image "
                             f"{i} is {size}")
        bad = (t.labels < 1) | (t.labels > self.config.num_classes)
        if bool(bad.any()):
            raise ValueError(f"targets[{i}].labels must be in 1..{self.config.num_classes}"
                             f" (0 is background), got {t.labels[bad][0].item()}")
        if not bool(torch.isfinite(t.boxes).all()) or bool(
                (t.boxes[:, 2:] < t.boxes[:, :2]).any()):
            raise ValueError(f"targets[{i}].boxes must be finite (x1, y1, x2, y2) with "
                             "x2 >= x1 and y2 >= y1")
        if self.semantic_head is not None:
            _check_semantic(t.semantic, i, self.config.stuff_classes)

    def num_parameters(self) -> int:
        """Learnable parameters."""
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | PathLike, half: bool = False, **extra: object) -> None:
        """Write the weights and the config (and ``extra`` entries) to ``path``.

        ``half=True`` stores the weights in float16, half the size; :meth:`load` brings them
        back to float32 (the model then differs from the saved one by float16 rounding).
        """
        state = {k: v.half() if half and v.is_floating_point() else v
                 for k, v in self.state_dict().items()}
        torch.save({"config": self.config.to_dict(), "model": state, **extra}, path)

    @classmethod
    def load(cls, path: str | PathLike, map_location: str | torch.device = "cpu") -> MaskRCNN:
        """A model from :meth:`save`'s file (or a training checkpoint), in evaluation mode."""
        state = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(state, dict) or "config" not in state or "model" not in state:
            raise ValueError(f"{path} is not a MaskRCNN checkpoint (no config and weights)")
        model = cls(MaskRCNNConfig.from_dict(state["config"]))
        model.load_state_dict(state["model"])
        return model.eval()


def _image_list(images: ImagesLike) -> list[Tensor]:
    """The images of a batch tensor or a list, each checked (see :func:`_check_image`)."""
    items = list(images) if isinstance(images, list | tuple) else None
    if items is None:
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise ValueError(f"images must be a Tensor[B, 3, H, W] or a list of Tensor[3, "
                             f"H, W], got {describe(images)}")
        items = list(images)
    if not items:
        raise ValueError("images is empty")
    for i, image in enumerate(items):
        _check_image(image, i)
    return items


def _check_masks_in_boxes(target: Instances, keep: Tensor, i: int) -> None:
    """Every kept object's mask must lie inside its box (to ``BOX_SLACK`` pixels): a box that
    misses its mask, or boxes in another format (``(x, y, w, h)``), would train the heads on
    the wrong pixels without a word. (Boxes left empty by clipping are dropped, not checked.)"""
    tight = masks_to_boxes(target.masks).to(target.boxes)  # [N, 4] (0, 0, 0, 0) if empty
    drawn = target.masks.flatten(1).any(dim=1)  # [N]
    outside = ((tight[:, :2] < target.boxes[:, :2] - BOX_SLACK)
               | (tight[:, 2:] > target.boxes[:, 2:] + BOX_SLACK)).any(dim=1) & drawn & keep
    if bool(outside.any()):
        j = int(torch.nonzero(outside)[0])
        box = [round(v, 1) for v in target.boxes[j].tolist()]
        raise ValueError(f"targets[{i}]: object {j}'s mask spans {tight[j].tolist()} (x1, y1, "
                         f"x2, y2) but its box is {box} (after clipping to the image); boxes "
                         f"must hold their masks, as (x1, y1, x2, y2) in pixels")


def _generators(targets: Sequence[Instances], seed: int | None) -> list[torch.Generator]:
    """One CPU generator per image, from ``seed`` and the image's id (or its batch position)."""
    out = []
    for i, t in enumerate(targets):
        g = torch.Generator()
        image = t.image_id if t.image_id is not None else i
        g.manual_seed(((seed or 0) * 1_000_003 + image * 7_919 + 1) % 2**63)
        out.append(g)
    return out


def _check_image(image: Tensor, i: int) -> None:
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image {i} must be a Tensor[3, H, W] (RGB, channels first), got "
                         f"{describe(image)}")
    if not image.is_floating_point():
        raise TypeError(f"image {i} is {image.dtype}; give floats in [0, 1] "
                        "(e.g. image.float() / 255)")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"image {i} is empty: {list(image.shape)}")
    low, high = float(image.min()), float(image.max())
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK or image.isnan().any():
        raise ValueError(f"image {i} must hold values in [0, 1], found [{low:.3g}, {high:.3g}]"
                         f"{' (looks like 0-255: divide by 255)' if high > 2 else ''}")


def _check_semantic(semantic: Tensor | None, i: int, stuff_classes: int) -> None:
    if semantic is None or semantic.ndim != 2 or semantic.is_floating_point():
        raise ValueError(f"targets[{i}].semantic must be a Tensor[H, W] of class ids for the "
                         f"semantic head, got {describe(semantic)}")
    if bool(((semantic < -1) | (semantic > stuff_classes)).any()):
        raise ValueError(f"targets[{i}].semantic must hold classes 0..{stuff_classes} (or -1 "
                         f"for unlabelled), found {int(semantic.min())}..{int(semantic.max())}")


