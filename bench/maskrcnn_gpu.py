"""The compact Mask R-CNN on a CUDA GPU: AP against training time, from scratch.

    python bench/maskrcnn_gpu.py                 # 4.5 minutes, scored 6 times
    python bench/maskrcnn_gpu.py --minutes 1.5   # the issue's 90-second budget

Trains :class:`course.model.MaskRCNN` (default config) with the course's one loop
(:func:`course.train.train`: batch 8, lr 0.02, warm-up, cosine decay over the budget, bfloat16
autocast on CUDA) on the 128 x 128 shapes, and scores it with :mod:`course.ap` on the 200
validation images at equal fractions of the budget (training time only). The CPU side runs on
one thread: the model's host work is many small operations, which more threads only slow down.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.5)
    parser.add_argument("--evals", type=int, default=6, help="scorings over the budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures the GPU path")
    torch.set_num_threads(1)
    from course.data import ShapesDataset
    from course.model import MaskRCNN, MaskRCNNConfig
    from course.train import TrainConfig, evaluate, train

    torch.manual_seed(args.seed)
    model = MaskRCNN(MaskRCNNConfig()).cuda()
    val = ShapesDataset("val")
    config = TrainConfig(minutes=args.minutes, eval_every=args.minutes / args.evals,
                         seed=args.seed)
    start = time.perf_counter()
    history = train(model, ShapesDataset("train", seed=args.seed), config,
                    evaluate_fn=lambda m: evaluate(m, val).as_dict(), progress=False)
    seconds = history.steps[-1]["seconds"]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}: {len(history.steps)} "
          f"steps in {seconds:.0f} s of training ({seconds / len(history.steps):.3f} s per "
          f"step), {time.perf_counter() - start:.0f} s with the scorings")
    for e in history.evaluations:
        print(f"  {e['minutes']:5.2f} min  step {e['step']:5d}  AP {e['AP']:.3f}  "
              f"AP50 {e['AP50']:.3f}  AP75 {e['AP75']:.3f}")


if __name__ == "__main__":
    main()
