"""Instance and panoptic segmentation, built piece by piece.

The modules follow the chapters: ``masks`` and ``boxes`` (IoU, Dice), ``matching``
(TP / FP / FN), then the later chapters' metrics, losses, ops and model. ``data`` makes
synthetic scenes, ``viz`` draws them, and ``checks`` grades the notebook exercises.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__version__ = "0.1.0"

__all__ = ["__version__", "device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Library functions take ``generator=`` or ``seed=`` explicitly; this is for notebooks and
    scripts, so that a re-run prints the same numbers.
    """
    import numpy as np
    import torch

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global generator is what we seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def device() -> torch.device:
    """The device to compute on: the first CUDA GPU when one is present, else the CPU."""
    import torch  # imported here, so that `import course` (and the CLI's start) stays light

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
