"""Trains the tiny model for a few steps and saves this process's weights; run it alone or
under ``torchrun`` (gloo on the CPU). Used by tests/test_train.py."""

import os
import sys

import torch
import torch.distributed as dist

from course.data import ShapesDataset
from course.model import MaskRCNN, MaskRCNNConfig
from course.train import TrainConfig, train

TINY = dict(width=8, channels=16, representation=32, mask_convs=1, rpn_batch_per_image=32,
            roi_batch_per_image=16, rpn_pre_nms_top_n=(100, 50), rpn_post_nms_top_n=(30, 20))


def main(out: str, steps: int, batch_size: int) -> None:
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights in every process
    model = MaskRCNN(MaskRCNNConfig(**TINY))
    history = train(model, ShapesDataset("train", image_size=64),
                    TrainConfig(steps=steps, batch_size=batch_size, warmup_steps=1), progress=False)
    torch.save({"model": model.state_dict(), "losses": history.losses()},
               os.path.join(out, f"rank{rank}.pt"))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
