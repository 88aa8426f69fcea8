"""Seeing small things: strides and receptive fields, a ResNet backbone, the FPN, dilation.

A convolutional network makes its decisions on feature maps that are coarser than the image:
an output pixel of a map with stride ``s`` stands for an ``s x s`` block of input pixels, and
it sees a larger window of the input, its receptive field. This module gives

- :func:`receptive_field` and :func:`conv_output_size`, the arithmetic of strides, kernels
  and dilations, and :func:`gradient_footprint` / :func:`measured_receptive_field`, which
  measure the same thing by backpropagating one output pixel to the image;
- :class:`Backbone`, torchvision's ResNet-18 stages with a configurable width and optional
  dilation (DeepLab's "output stride"), returning the maps ``C2 .. C5``;
- :class:`FPN`, the feature pyramid of Lin et al. (2017) on that backbone, returning
  ``P2 .. P5`` (and optionally ``P6``) with their strides; the level a box pools from is
  :func:`course.boxes.fpn_level`;
- :class:`DilatedBlock` and :func:`dilation_coverage`, dilated convolutions and the gridding
  artefact that equal rates cause;
- :func:`found_objects`, which decides which objects a dense foreground prediction found.

Shapes: images are ``[B, C_in, H, W]``; a map of stride ``s`` is ``[B, C, ceil(H / s),
ceil(W / s)]`` (exactly ``H / s`` when ``H`` and ``W`` are multiples of ``s``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from course.masks import as_masks, mask_iou
from course.matching import hungarian_match

# ---------------------------------------------------------------------------------------------
# Receptive field and output size
# ---------------------------------------------------------------------------------------------


class ReceptiveField(NamedTuple):
    """What one output pixel of a stack sees: a ``size x size`` input window; neighbouring
    output pixels are ``stride`` input pixels apart."""

    size: int
    stride: int


_POINTWISE = (nn.ReLU, nn.BatchNorm2d, nn.GroupNorm, nn.Identity, nn.Dropout, nn.Sigmoid)


def _pair_value(v: int | tuple[int, ...], what: str) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise ValueError(f"only square {what}s are supported, got {v}")
        return int(v[0])
    return int(v)


def _layer_spec(layer: Any, i: int) -> list[tuple[int, int, int]]:
    """The ``(kernel, stride, dilation)`` of ``layers[i]``: none for a pointwise module,
    several for a nested ``nn.Sequential``."""
    if isinstance(layer, nn.Sequential):
        return layer_specs(layer)
    if isinstance(layer, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        dilation = getattr(layer, "dilation", 1)
        return [(_pair_value(layer.kernel_size, "kernel"), _pair_value(layer.stride, "stride"),
                 _pair_value(dilation, "dilation"))]
    if isinstance(layer, _POINTWISE):
        return []
    if isinstance(layer, nn.Module):
        raise TypeError(f"layers[{i}] is a {type(layer).__name__}: only Conv2d, MaxPool2d, "
                        "AvgPool2d and pointwise modules form a plain stack (for a residual "
                        "network pass its longest path, e.g. Backbone.main_path())")
    row = [int(v) for v in layer]
    if len(row) not in (2, 3):
        raise ValueError(f"layers[{i}] must be (kernel, stride[, dilation]), got {layer}")
    return [(row[0], row[1], row[2] if len(row) == 3 else 1)]


def layer_specs(layers: Sequence | Tensor | np.ndarray | nn.Module) -> list[tuple[int, int, int]]:
    """``(kernel, stride, dilation)`` of each layer of a plain stack, in order.

    Args:
        layers: ``(kernel, stride)`` or ``(kernel, stride, dilation)`` rows (a list, an array or
            a ``Tensor[L, 2 or 3]``), or ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.AvgPool2d``
            modules, or an ``nn.Sequential`` of them. Pointwise modules (ReLU, norms) are
            skipped. Residual blocks are refused: give their longest path (e.g.
            :meth:`Backbone.main_path`).

    Returns:
        list of ``(kernel, stride, dilation)`` int triples.
    """
    if isinstance(layers, nn.Sequential):
        layers = list(layers)
    if isinstance(layers, nn.Module):
        layers = [layers]
    if isinstance(layers, Tensor | np.ndarray):
        layers = np.asarray(layers).tolist()
    specs = []
    for i, layer in enumerate(layers):
        specs += _layer_spec(layer, i)
    for i, (k, s, d) in enumerate(specs):
        if k < 1 or s < 1 or d < 1:
            raise ValueError(f"layers[{i}]: kernel, stride and dilation must be >= 1, "
                             f"got {(k, s, d)}")
    return specs


def receptive_field(layers: Sequence | Tensor | np.ndarray | nn.Module) -> ReceptiveField:
    """Receptive field and stride of one output pixel of a plain stack of convs and pools.

    Walk the stack from the input. ``jump`` is the distance, in input pixels, between
    neighbouring positions of the current map (it starts at 1). A layer with kernel ``k`` and
    dilation ``d`` spans ``d (k - 1) + 1`` positions of its input map, so it widens the field
    by ``d (k - 1) * jump``; its stride ``s`` multiplies the jump:

        size += d (k - 1) * jump;    jump *= s.

    Args:
        layers: see :func:`layer_specs`.

    Returns:
        ReceptiveField(size, stride), both in input pixels.
    """
    size, jump = 1, 1
    for kernel, stride, dilation in layer_specs(layers):
        size += dilation * (kernel - 1) * jump
        jump *= stride
    return ReceptiveField(size, jump)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Length of a convolution's (or pool's) output along one axis.

    A dilated kernel spans ``d (k - 1) + 1`` input pixels; it fits
    ``floor((size + 2 padding - d (k - 1) - 1) / stride) + 1`` times, as in ``nn.Conv2d``.

    Raises:
        ValueError: if an argument is out of range or the kernel does not fit at all.
    """
    values = {"size": size, "kernel": kernel, "stride": stride, "padding": padding,
              "dilation": dilation}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if size < 0 or kernel < 1 or stride < 1 or padding < 0 or dilation < 1:
        raise ValueError(f"need size >= 0, kernel, stride, dilation >= 1 and padding >= 0, got "
                         f"size={size}, kernel={kernel}, stride={stride}, padding={padding}, "
                         f"dilation={dilation}")
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"the kernel spans {span} pixels but the padded input has only "
                         f"{size + 2 * padding}")
    return (size + 2 * padding - span) // stride + 1


def gradient_footprint(net: nn.Module, size: int, in_channels: int = 1,
                       position: tuple[int, int] | None = None, key: str | None = None,
                       seed: int = 0) -> Tensor:
    """How strongly each input pixel moves one output pixel: ``|d y[:, r, c].sum() / d x|``.

    The input is a random ``[1, in_channels, size, size]`` image (from ``seed``) in the dtype of
    the net's parameters; the gradient is summed over input channels in absolute value. Its
    non-zero region is the window the output pixel really sees; for a stack without ReLUs it
    is the receptive field exactly. Networks with batch norm should be in eval mode (this
    function does not change the mode).

    Args:
        net: maps ``[1, in_channels, size, size]`` to ``[1, C, h, w]``, or to a dict of such
            maps (a :class:`Backbone` or :class:`FPN`), of which ``key`` is used (default the
            last, deepest one).
        position: the output pixel ``(r, c)``; default the centre ``(h // 2, w // 2)``.

    Returns:
        Tensor[size, size] float64.
    """
    g = torch.Generator().manual_seed(seed)
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
    x = torch.randn(1, in_channels, size, size, generator=g, dtype=torch.float64).to(dtype)
    x.requires_grad_(True)
    y = net(x)
    if isinstance(y, dict):
        y = y[key] if key is not None else list(y.values())[-1]
    r, c = position if position is not None else (y.shape[2] // 2, y.shape[3] // 2)
    (grad,) = torch.autograd.grad(y[0, :, r, c].sum(), x)  # [1, in_channels, size, size]
    return grad[0].abs().sum(0).double()  # [size, size]


def measured_receptive_field(net: nn.Module, size: int, in_channels: int = 1,
                             key: str | None = None, seed: int = 0, trials: int = 8) -> int:
    """Width of the region where :func:`gradient_footprint` is non-zero, at the centre pixel.

    The footprints of ``trials`` random images (seeds ``seed``, ``seed + 1``, ..) are united:
    for one image a ReLU can switch off the only path from an edge pixel, for another it
    does not. Make ``size`` larger than the receptive field, or the image border clips the
    measurement.
    """
    seen = torch.zeros(size, size, dtype=torch.bool)
    for trial in range(trials):
        seen |= gradient_footprint(net, size, in_channels, key=key, seed=seed + trial) > 0
    cols = seen.any(0).nonzero()
    return int(cols.max() - cols.min() + 1) if len(cols) else 0


# ---------------------------------------------------------------------------------------------
# Dilated convolution and the gridding artefact
# ---------------------------------------------------------------------------------------------


def dilation_coverage(rates: Sequence[int], kernel: int = 3) -> Tensor:
    """Number of paths from each input offset to one output pixel of a stack of dilated convs.

    Each layer is a ``kernel x kernel`` convolution with dilation ``rates[i]``. Composing them
    convolves their (dilated, all-ones) kernels, so the count at an offset is how many ways the
    layers' taps add up to it. A zero inside the window is an input pixel the output never
    sees: equal rates (2, 2, 2) only reach even offsets (the *gridding* artefact); mixed rates
    such as (1, 2, 5) leave no hole.

    Returns:
        Tensor[R, R] int64 with ``R`` = the receptive field of the stack; the centre is the
        output pixel's own position.
    """
    rates = [int(r) for r in rates]
    if kernel < 1 or any(r < 1 for r in rates):
        raise ValueError(f"kernel and rates must be >= 1, got kernel={kernel}, rates={rates}")
    counts = torch.ones(1, 1, 1, 1, dtype=torch.float64)  # [1, 1, R, R]
    ones = torch.ones(1, 1, kernel, kernel, dtype=torch.float64)
    for rate in rates:
        counts = F.conv_transpose2d(counts, ones, dilation=rate)  # R grows by rate * (k - 1)
    return counts[0, 0].round().to(torch.int64)


def dilation_coverage_loop(rates: Sequence[int], kernel: int = 3) -> Tensor:
    """:func:`dilation_coverage` tap by tap, as the definition reads (slow; for teaching)."""
    rates = [int(r) for r in rates]
    half = sum(r * (kernel - 1) for r in rates) // 2
    reach = {(0, 0): 1}  # offset -> number of paths
    for rate in rates:
        taps = [rate * (i - (kernel - 1) / 2) for i in range(kernel)]
        step: dict[tuple[int, int], int] = {}
        for (dy, dx), n in reach.items():
            for ty in taps:
                for tx in taps:
                    key = (int(dy + ty), int(dx + tx))
                    step[key] = step.get(key, 0) + n
        reach = step
    out = torch.zeros(2 * half + 1, 2 * half + 1, dtype=torch.int64)
    for (dy, dx), n in reach.items():
        out[dy + half, dx + half] = n
    return out


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)  # 8 groups where channels allow
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class DilatedBlock(nn.Module):
    """A residual stack of 3x3 convolutions with dilation rates ``rates``; H and W are kept.

    Each conv is padded by its rate, so the map keeps its size, and its receptive field grows
    by ``2 * rate`` per layer: ``1 + 2 * sum(rates)`` in all, with no downsampling. Equal rates
    leave holes in what the output sees (see :func:`dilation_coverage`); the default
    ``(1, 2, 5)``, the "hybrid dilated convolution" of Wang et al. (2018), does not.

    Shape: ``[B, channels, H, W] -> [B, channels, H, W]``.
    """

    def __init__(self, channels: int, rates: Sequence[int] = (1, 2, 5), norm: str = "batch"):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        layers: list[nn.Module] = []
        for i, rate in enumerate(self.rates):
            layers.append(nn.Conv2d(channels, channels, 3, padding=rate, dilation=rate,
                                    bias=False))
            layers.append(_norm(norm, channels))
            if i < len(self.rates) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


# ---------------------------------------------------------------------------------------------
# Backbone: ResNet-18 stages, width and dilation configurable
# ---------------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    """A ResNet with torchvision's ``BasicBlock`` stages; the defaults are ResNet-18.

    Attributes:
        width: channels of ``C2``; ``C3``, ``C4``, ``C5`` have 2, 4 and 8 times as many
            (ResNet-18: 64). A width of 8 or 16 trains in minutes on a CPU.
        blocks: residual blocks per stage ``C2 .. C5`` (ResNet-18: ``(2, 2, 2, 2)``).
        last_level: the deepest map built, 2 to 5: 4 stops at ``C4`` (stride 16).
        output_stride: ``None`` for the usual ``2 ** level``; 8 or 16 make the stages beyond
            it keep their resolution and dilate their convs instead (torchvision's
            ``replace_stride_with_dilation``: a dilated stage's first 3x3 conv keeps the
            previous dilation, every later one doubles it).
        in_channels: image channels.
        norm: ``"batch"`` (as ResNet) or ``"group"`` (8 groups; better for tiny batches).
    """

    width: int = 64
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    last_level: int = 5
    output_stride: int | None = None
    in_channels: int = 3
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.width < 1 or self.in_channels < 1:
            raise ValueError(f"width and in_channels must be >= 1, got {self.width}, "
                             f"{self.in_channels}")
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"blocks must give 4 stages of >= 1 block, got {self.blocks}")
        if not 2 <= self.last_level <= 5:
            raise ValueError(f"last_level must be 2, 3, 4 or 5, got {self.last_level}")
        if self.output_stride not in (None, 4, 8, 16, 32):
            raise ValueError(f"output_stride must be None, 4, 8, 16 or 32, "
                             f"got {self.output_stride}")
        _norm(self.norm, 8)  # validates the name


def _dilate_block(block: BasicBlock, first: int, rest: int) -> None:
    """Set the dilation (and padding) of a freshly built block's two 3x3 convs."""
    for conv, d in ((block.conv1, first), (block.conv2, rest)):
        conv.dilation, conv.padding = (d, d), (d, d)


class Backbone(nn.Module):
    """ResNet stem and stages; ``forward`` returns the maps ``C2 .. C{last_level}``.

    With the default config the modules, names and shapes are those of
    ``torchvision.models.resnet18(weights=None)`` without its classifier, so its state dict
    loads (the tests check that the outputs then agree). Nothing is downloaded.

    Attributes:
        strides (dict[str, int]): input pixels per map pixel, ``{"C2": 4, ..}``.
        channels (dict[str, int]): channels of each map.

    Shape: ``[B, in_channels, H, W] -> {"C2": [B, width, H/4, W/4], "C3": [B, 2 width, H/8,
    W/8], "C4": [B, 4 width, H/16, W/16], "C5": [B, 8 width, H/32, W/32]}`` (divisions rounded
    up; with ``output_stride`` the deeper maps stop shrinking).
    """

    def __init__(self, config: BackboneConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else BackboneConfig()
        w = config.width
        self.conv1 = nn.Conv2d(config.in_channels, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = _norm(config.norm, w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.strides: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        inplanes, stride, dilation = w, 4, 1
        for level in range(2, config.last_level + 1):
            planes = w * 2 ** (level - 2)
            step = 1 if level == 2 else 2
            previous = dilation
            if config.output_stride is not None and stride * step > config.output_stride:
                dilation, step = dilation * step, 1
            stride *= step
            setattr(self, f"layer{level - 1}",
                    self._stage(inplanes, planes, config.blocks[level - 2], step, previous,
                                dilation))
            self.strides[f"C{level}"], self.channels[f"C{level}"] = stride, planes
            inplanes = planes
        self._init_weights()

    def _stage(self, inplanes: int, planes: int, blocks: int, stride: int, previous: int,
               dilation: int) -> nn.Sequential:
        norm = self.config.norm
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                       _norm(norm, planes))
        layers = []
        for i in range(blocks):
            block = BasicBlock(inplanes if i == 0 else planes, planes, stride if i == 0 else 1,
                               downsample if i == 0 else None,
                               norm_layer=lambda c: _norm(norm, c))
            _dilate_block(block, previous if i == 0 else dilation, dilation)
            layers.append(block)
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:  # as torchvision's ResNet
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"images must be [B, {self.config.in_channels}, H, W], "
                             f"got {list(images.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))  # [B, w, H/4, W/4]
        out: OrderedDict[str, Tensor] = OrderedDict()
        for level in range(2, self.config.last_level + 1):
            x = getattr(self, f"layer{level - 1}")(x)
            out[f"C{level}"] = x
        return out

    def main_path(self, level: int | None = None) -> list[tuple[int, int, int]]:
        """``(kernel, stride, dilation)`` of every conv and pool on the longest path from the
        image to ``C{level}`` (default the last); give it to :func:`receptive_field`."""
        level = self.config.last_level if level is None else level
        if not 2 <= level <= self.config.last_level:
            raise ValueError(f"level must be in 2..{self.config.last_level}, got {level}")
        modules: list[nn.Module] = [self.conv1, self.maxpool]
        for k in range(2, level + 1):
            for block in getattr(self, f"layer{k - 1}"):
                modules += [block.conv1, block.conv2]
        return layer_specs(modules)


# ---------------------------------------------------------------------------------------------
# Feature pyramid network
# ---------------------------------------------------------------------------------------------


@dataclass
class FPNConfig:
    """A feature pyramid on a :class:`Backbone`.

    Attributes:
        width: the backbone's width (channels of ``C2``).
        channels: channels of every pyramid level (the FPN paper: 256).
        levels: consecutive pyramid levels, from ``2..6``; ``P6`` is ``P5`` subsampled by 2
            (as Mask R-CNN's region proposals use it). The backbone is built up to
            ``C{min(max(levels), 5)}``.
        blocks, in_channels, norm: passed to :class:`BackboneConfig`.
    """

    width: int = 64
    channels: int = 256
    levels: tuple[int, ...] = (2, 3, 4, 5)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    in_channels: int = 3
    norm: str = "batch"
    backbone: BackboneConfig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        levels = tuple(int(k) for k in self.levels)
        if (not levels or levels != tuple(range(levels[0], levels[-1] + 1)) or levels[0] < 2
                or levels[-1] > 6 or levels == (6,)):
            raise ValueError(f"levels must be consecutive integers within 2..6 that include a "
                             f"level <= 5, got {self.levels}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        self.levels = levels
        self.backbone = BackboneConfig(self.width, tuple(self.blocks), min(levels[-1], 5), None,
                                       self.in_channels, self.norm)


class FPN(nn.Module):
    """Feature pyramid network (Lin et al., 2017) over a :class:`Backbone`.

    For each level ``k`` (coarsest first): a 1x1 *lateral* conv brings ``C_k`` to ``channels``;
    the running *top-down* map is upsampled (nearest, to ``C_k``'s size) and added; a 3x3
    conv *smooths* the sum into ``P_k``. So every level has the same channels, the resolution
    of ``C_k``, and (through the top-down path) the context of the deepest map. This is the
    computation of ``torchvision.ops.FeaturePyramidNetwork`` (the tests compare the two).

    Attributes:
        backbone (Backbone), lateral and smooth (ModuleDict by level name),
        strides (dict[str, int]): ``{"P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}`` for the
            levels built.

    Shape: ``[B, in_channels, H, W] -> {"P2": [B, channels, H/4, W/4], .., "P5": [B,
    channels, H/32, W/32]}`` (rounded up), ordered from fine to coarse.
    """

    def __init__(self, config: FPNConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else FPNConfig()
        self.backbone = Backbone(config.backbone)
        built = [k for k in config.levels if k <= 5]
        self.lateral = nn.ModuleDict({
            f"P{k}": nn.Conv2d(self.backbone.channels[f"C{k}"], config.channels, 1)
            for k in built})
        self.smooth = nn.ModuleDict({
            f"P{k}": nn.Conv2d(config.channels, config.channels, 3, padding=1) for k in built})
        self.strides = {f"P{k}": 2**k for k in config.levels}
        for m in [*self.lateral.values(), *self.smooth.values()]:  # as torchvision's FPN
            nn.init.kaiming_uniform_(m.weight, a=1)
            nn.init.zeros_(m.bias)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return self.pyramid(self.backbone(images))

    def pyramid(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        """The top-down pass alone, from backbone maps ``{"C2": .., ..}`` to ``{"P2": .., ..}``."""
        built = [k for k in self.config.levels if k <= 5]
        out: dict[str, Tensor] = {}
        top = None
        for k in reversed(built):
            lateral = self.lateral[f"P{k}"](features[f"C{k}"])  # [B, channels, h_k, w_k]
            if top is not None:
                lateral = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            top = lateral
            out[f"P{k}"] = self.smooth[f"P{k}"](lateral)
        if 6 in self.config.levels:
            out["P6"] = F.max_pool2d(out["P5"], kernel_size=1, stride=2)  # [B, channels, h5/2..]
        return OrderedDict((f"P{k}", out[f"P{k}"]) for k in self.config.levels)


# ---------------------------------------------------------------------------------------------
# Which objects did a dense prediction find?
# ---------------------------------------------------------------------------------------------


def found_objects(pred: Tensor | np.ndarray, instances: Tensor | np.ndarray,
                  iou_threshold: float = 0.5) -> Tensor:
    """Which objects a foreground prediction found, one-to-one at an IoU threshold.

    The connected components of ``pred`` (8-connected) are its predicted objects; they are
    matched to ``instances`` by :func:`course.matching.hungarian_match` on their mask IoU. An
    object counts as found when it is matched with IoU >= ``iou_threshold``. This is only fair
    when the objects do not touch, as in :func:`course.data.make_shape_batch`.

    Args:
        pred (Tensor[H, W]): bool foreground prediction.
        instances (Tensor[K, H, W]): bool masks of the objects.

    Returns:
        Tensor[K] bool.
    """
    pred_t = as_masks(torch.as_tensor(pred)[None], "pred")[0]
    inst = as_masks(instances, "instances")
    if inst.shape[1:] != pred_t.shape:
        raise ValueError(f"pred is {list(pred_t.shape)} but instances are {list(inst.shape)}")
    labels, count = ndimage.label(pred_t.cpu().numpy(), structure=np.ones((3, 3)))
    components = torch.from_numpy(labels)[None] == torch.arange(1, count + 1)[:, None, None]
    found = torch.zeros(len(inst), dtype=torch.bool)  # [K]
    if count and len(inst):
        match = hungarian_match(mask_iou(components, inst.cpu()), iou_threshold)
        found[match.pairs[:, 1]] = True
    return found
