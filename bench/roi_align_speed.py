"""ROIAlign forward and forward+backward: ours against torchvision's kernel, in one run.

    .venv/bin/python bench/roi_align_speed.py            # CPU (and CUDA too, if present)

Float32 feature maps, ``aligned=True``, boxes of random size and position. For each case the
outputs and input gradients are checked equal first; then each figure is the median of 5
runs after a warm-up, the contestants taking turns so that a busy spell hits all of them.
torchvision's CPU kernel runs on one thread whatever the setting; ours uses PyTorch's matrix
products, which use every thread PyTorch is allowed, so on the CPU ours is timed twice: with
the default number of threads and with one. ``ours/tv`` is the time ratio; below 1 ours is
faster. Targets (forward+backward, what training pays): at most 0.5 on the compact model's
sizes, at most 1 on the large case.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torchvision.ops import roi_align as tv_roi_align

from course.roi_align import roi_align

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
    if torch.cuda.is_available():
        print()
        run(torch.device("cuda"))


if __name__ == "__main__":
    main()
