import random

import numpy as np
import pytest
import torch

import course


def test_version_is_a_release_string():
    major, minor, patch = course.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


def test_seed_everything_makes_all_three_generators_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()  # noqa: NPY002

    course.seed_everything(7)
    first = draw()
    course.seed_everything(7)
    assert draw() == first
    course.seed_everything(8)
    assert draw() != first


def test_seed_everything_rejects_non_integers():
    with pytest.raises(TypeError, match="seed"):
        course.seed_everything(1.5)


def test_device_is_cuda_exactly_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert course.device().type == expected
