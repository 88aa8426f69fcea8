"""ROIAlign and RoIPool forward and forward+backward: ours against torchvision's kernels.

    .venv/bin/python bench/roi_align_speed.py            # CPU (and CUDA too, if present)

Float32 feature maps, ``aligned=True``, boxes of random size and position. For each case the
outputs and input gradients are checked equal first; then each figure is the median of 5
runs after a warm-up, the contestants taking turns so that a busy spell hits all of them.
torchvision's CPU kernel runs on one thread whatever the setting; ours uses PyTorch's matrix
products, which use every thread PyTorch is allowed, so on the CPU ours is timed twice: with
the default number of threads and with one. ``ours/tv`` is the time ratio; below 1 ours is
faster. Targets (forward+backward, what training pays): at most 0.5 on the compact model's
sizes, at most 1 on the large case.

Then RoIPool (``roi_pool`` against ``torchvision.ops.roi_pool``, outputs and gradients
checked equal to the bit first on the CPU): on the model's P2 map (8 x 64 x 32 x 32, stride 4,
boxes of 8-96 pixels) with 512 and 1024 boxes, 7x7 and 14x14; the model's call,
``multiscale_roi_align(..., pool="pool")`` over P2-P5 against torchvision's ``roi_pool``
level by level with the same routing; and a large case, 2 x 256 x 50 x 68 (stride 16 of
800 x 1088 images) with 1000 boxes of 16-600 pixels. Target: at most 1 forward+backward.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torchvision.ops import roi_align as tv_roi_align
from torchvision.ops import roi_pool as tv_roi_pool

from course.boxes import fpn_level
from course.roi_align import multiscale_roi_align, roi_align, roi_pool

LARGE = dict(images=8, channels=256, size=64, image=256, sides=(16, 160))
COMPACT = dict(images=8, channels=64, size=32, image=128, sides=(8, 96))
CASES = [(name, spec, output, ratio)
         for name, spec in (("8x256x64^2", LARGE), ("8x64x32^2 (model)", COMPACT))
         for output in (7, 14) for ratio in (2, -1)]
NUM_ROIS, SCALE = 512, 0.25


def make_inputs(spec: dict, generator: torch.Generator,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps ``[N, C, S, S]`` and ``[K, 5]`` boxes with sides in ``spec["sides"]``."""
    low, high = spec["sides"]
    x = torch.randn(spec["images"], spec["channels"], spec["size"], spec["size"],
                    generator=generator)
    side = low + (high - low) * torch.rand(NUM_ROIS, 2, generator=generator)
    corner = torch.rand(NUM_ROIS, 2, generator=generator) * (spec["image"] - side)
    image = torch.randint(0, spec["images"], (NUM_ROIS, 1), generator=generator).float()
    return x.to(device), torch.cat([image, corner, corner + side], dim=1).to(device)


def median_times(fns: list[Callable[[], object]], device: torch.device, threads: list[int],
                 repeats: int = 5) -> list[float]:
    """Median time of each function (run with its number of threads), taking turns."""
    default = torch.get_num_threads()
    times: list[list[float]] = [[] for _ in fns]
    for repeat in range(repeats + 1):  # the first round is a warm-up
        for fn, n, out in zip(fns, threads, times, strict=True):
            torch.set_num_threads(n)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if repeat:
                out.append(time.perf_counter() - start)
    torch.set_num_threads(default)
    return [statistics.median(t) for t in times]


def forward(op: Callable, x: torch.Tensor, rois: torch.Tensor, output: int,
            ratio: int) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return op(x, rois, output, SCALE, ratio, True)
    return run


def forward_backward(op: Callable, x: torch.Tensor, rois: torch.Tensor, output: int,
                     ratio: int) -> Callable[[], object]:
    leaf = x.clone().requires_grad_()
    weights = torch.randn(NUM_ROIS, x.shape[1], output, output,
                          generator=torch.Generator().manual_seed(0)).to(x.device)

    def run() -> object:
        leaf.grad = None
        (op(leaf, rois, output, SCALE, ratio, True) * weights).sum().backward()
        return leaf.grad
    return run


def check_equal(x: torch.Tensor, rois: torch.Tensor, output: int, ratio: int) -> None:
    """Forward and gradient of ours and torchvision's agree to float32 rounding."""
    ours, theirs = (forward_backward(op, x, rois, output, ratio)() for op in
                    (roi_align, tv_roi_align))
    scale = max(1.0, theirs.abs().max().item())
    assert (ours - theirs).abs().max().item() <= 1e-5 * scale, "gradients differ"
    ours, theirs = (forward(op, x, rois, output, ratio)() for op in (roi_align, tv_roi_align))
    assert (ours - theirs).abs().max().item() <= 1e-5, "outputs differ"


POOL_MODEL = dict(images=8, channels=64, height=32, width=32, stride=4, sides=(8, 96))
POOL_LARGE = dict(images=2, channels=256, height=50, width=68, stride=16, sides=(16, 600))
POOL_CASES = [("8x64x32^2 P2 (model)", POOL_MODEL, 512, 7),
              ("8x64x32^2 P2 (model)", POOL_MODEL, 1024, 7),
              ("8x64x32^2 P2 (model)", POOL_MODEL, 512, 14),
              ("8x64 P2-P5 (model call)", POOL_MODEL, 512, 7),
              ("8x64 P2-P5 (model call)", POOL_MODEL, 128, 14),
              ("2x256x50x68", POOL_LARGE, 1000, 7)]


def make_pool_inputs(spec: dict, count: int, generator: torch.Generator, pyramid: bool,
                     device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The maps (one, or P2-P5 of the same image size) and ``[K, 5]`` boxes inside the image."""
    stride, image_h, image_w = spec["stride"], spec["height"], spec["width"]
    image = torch.tensor([image_w, image_h], dtype=torch.float32) * stride
    maps = [torch.randn(spec["images"], spec["channels"], image_h >> k, image_w >> k,
                        generator=generator).to(device) for k in range(4 if pyramid else 1)]
    low, high = spec["sides"]
    side = torch.minimum(low + (high - low) * torch.rand(count, 2, generator=generator), image)
    corner = torch.rand(count, 2, generator=generator) * (image - side)
    index = torch.randint(0, spec["images"], (count, 1), generator=generator).float()
    return maps, torch.cat([index, corner, corner + side], dim=1).to(device)


def tv_multiscale_pool(maps: list[torch.Tensor], rois: torch.Tensor, output: int,
                       stride: int) -> torch.Tensor:
    """torchvision's roi_pool on each level of the pyramid, boxes routed as ours are."""
    first = stride.bit_length() - 1
    level = fpn_level(rois[:, 1:], first, first + len(maps) - 1)
    out = maps[0].new_zeros(len(rois), maps[0].shape[1], output, output)
    for k, feature in enumerate(maps, start=first):
        index = (level == k).nonzero().squeeze(1)
        out = out.index_put((index,), tv_roi_pool(feature, rois[index], output, 1.0 / 2**k))
    return out


def pool_functions(maps: list[torch.Tensor], rois: torch.Tensor, output: int, stride: int,
                   backward: bool) -> list[Callable[[], torch.Tensor]]:
    """torchvision's and our pooling of ``rois``, returning the output or the gradient."""
    leaves = [m.clone().requires_grad_(backward) for m in maps]
    if len(maps) > 1:
        ops = [lambda: tv_multiscale_pool(leaves, rois, output, stride),
               lambda: multiscale_roi_align(leaves, rois, output, strides=[
                   stride << k for k in range(len(maps))], pool="pool")]
    else:
        ops = [lambda: tv_roi_pool(leaves[0], rois, output, 1.0 / stride),
               lambda: roi_pool(leaves[0], rois, output, 1.0 / stride)]
    weights = torch.randn(len(rois), maps[0].shape[1], output, output,
                          generator=torch.Generator().manual_seed(0)).to(maps[0].device)

    def run(op: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def go() -> torch.Tensor:
            if not backward:
                with torch.no_grad():
                    return op()
            for leaf in leaves:
                leaf.grad = None
            (op() * weights).sum().backward()
            return torch.cat([leaf.grad.flatten() for leaf in leaves])
        return go
    return [run(op) for op in ops]


def run_pool(device: torch.device) -> None:
    threads = torch.get_num_threads()
    one = "" if device.type == "cuda" else f" {'1 thr':>7} {'ours/tv':>7}"
    print(f"RoIPool, float32; times in ms\n{'case':<40} {'pass':<8} {'tv':>8} {'ours':>8} "
          f"{'ours/tv':>7}{one}")
    for case, spec, count, output in POOL_CASES:
        generator = torch.Generator().manual_seed(count + output)
        maps, rois = make_pool_inputs(spec, count, generator, "P2-P5" in case, device)
        for kind, backward in (("fwd", False), ("fwd+bwd", True)):
            fns = pool_functions(maps, rois, output, spec["stride"], backward)
            theirs, ours = (fn() for fn in fns)
            same = torch.equal(ours, theirs) if device.type == "cpu" else torch.allclose(
                ours, theirs, rtol=1e-5, atol=1e-5)  # CUDA's backward adds atomically
            assert same, f"{case}: {kind} differs from torchvision's"
            counts = [threads, threads] + ([1] if device.type == "cpu" else [])
            t_tv, t_ours, *t_one = median_times(fns + [fns[1]] * (len(counts) - 2), device,
                                                counts)
            line = (f"{f'{case} {count} RoIs {output}x{output}':<40} {kind:<8} "
                    f"{1e3 * t_tv:8.1f} {1e3 * t_ours:8.1f} {t_ours / t_tv:7.2f}")
            if t_one:
                line += f" {1e3 * t_one[0]:7.1f} {t_one[0] / t_tv:7.2f}"
            print(line, flush=True)


def run(device: torch.device) -> None:
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {threads} threads; 512 RoIs, spatial scale 0.25, "
          "float32, aligned=True; times in ms")
    one = "" if device.type == "cuda" else f" {'1 thr':>7} {'ours/tv':>7}"
    print(f"{'case':<28} {'pass':<8} {'tv':>8} {'ours':>8} {'ours/tv':>7}{one}")
    for case, spec, output, ratio in CASES:
        generator = torch.Generator().manual_seed(output * 10 + ratio)
        x, rois = make_inputs(spec, generator, device)
        check_equal(x, rois, output, ratio)
        label = f"{case} {output}x{output} s{ratio}"
        for kind, make in (("fwd", forward), ("fwd+bwd", forward_backward)):
            fns = [make(tv_roi_align, x, rois, output, ratio), make(roi_align, x, rois, output,
                                                                    ratio)]
            counts = [threads, threads]
            if device.type == "cpu":
                fns.append(fns[1])
                counts.append(1)
            t_tv, t_ours, *t_one = median_times(fns, device, counts)
            line = (f"{label:<28} {kind:<8} {1e3 * t_tv:8.1f} {1e3 * t_ours:8.1f} "
                    f"{t_ours / t_tv:7.2f}")
            if t_one:
                line += f" {1e3 * t_one[0]:7.1f} {t_one[0] / t_tv:7.2f}"
            print(line, flush=True)


def main() -> None:
    run(torch.device("cpu"))
    print()
    run_pool(torch.device("cpu"))
    if torch.cuda.is_available():
        print()
        run(torch.device("cuda"))
        print()
        run_pool(torch.device("cuda"))


if __name__ == "__main__":
    main()
