import math

import pytest
import torch

from course.data import (
    CLASSES,
    Scene,
    grow_masks,
    make_scene,
    shape_mask,
    shift_masks,
    simulate_predictions,
)
from course.masks import mask_iou


def test_scene_is_reproducible_from_its_seed():
    a, b = make_scene(seed=3), make_scene(seed=3)
    assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.image, make_scene(seed=4).image)


@pytest.mark.parametrize("seed", range(10))
def test_scene_masks_are_disjoint_and_labelled(seed):
    scene = make_scene(seed=seed, height=96, width=80)
    assert scene.image.shape == (3, 96, 80) and scene.image.dtype == torch.float32
    assert scene.masks.dtype == torch.bool and scene.masks.shape[1:] == (96, 80)
    assert int(scene.masks.sum(0).max()) <= 1  # no pixel belongs to two instances
    assert bool((scene.masks.flatten(1).sum(1) >= 12).all())
    assert set(scene.labels.tolist()) <= set(range(1, len(CLASSES) + 1))
    assert len(scene) == len(scene.masks) == len(scene.boxes)


def test_shapes_have_the_area_of_their_geometry():
    h = w = 200
    centre = (100.3, 99.7)
    circle = shape_mask("circle", centre, 80, 0.0, h, w).sum().item()
    square = shape_mask("square", centre, 80, 0.4, h, w).sum().item()
    triangle = shape_mask("triangle", centre, 80, 1.0, h, w).sum().item()
    assert circle == pytest.approx(math.pi * 40**2, rel=0.01)
    assert square == pytest.approx(80**2, rel=0.01)
    assert triangle == pytest.approx(math.sqrt(3) / 4 * 80**2, rel=0.01)
    with pytest.raises(ValueError, match="kind must be one of"):
        shape_mask("hexagon", centre, 10, 0.0, h, w)


def test_shift_and_grow():
    m = torch.zeros(1, 7, 7, dtype=torch.bool)
    m[0, 3, 3] = True
    assert shift_masks(m, 2, -1)[0, 5, 2]
    assert shift_masks(m, 9, 0).sum() == 0  # shifted out of the image
    assert grow_masks(m, 1).sum() == 9
    assert torch.equal(grow_masks(grow_masks(m, 1), -1), m)


def test_simulated_predictions_are_imperfect_copies():
    scene = make_scene(seed=1, num_objects=(6, 6))
    pred = simulate_predictions(scene, seed=2, miss_rate=0.0, false_positives=(0, 0),
                                duplicate_rate=0.0, label_flip_rate=0.0)
    assert len(pred) == len(scene)
    iou = mask_iou(pred.masks, scene.masks)
    assert bool((iou.diagonal() > 0.3).all())
    assert bool(((pred.scores > 0) & (pred.scores < 1)).all())


def test_an_empty_scene_is_allowed():
    scene = make_scene(seed=0, num_objects=(0, 0))
    assert isinstance(scene, Scene) and len(scene) == 0 and scene.masks.shape == (0, 128, 128)
    assert len(simulate_predictions(scene, false_positives=(0, 0))) == 0
