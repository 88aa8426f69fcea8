"""Panoptic fusion: overlaps, drops, protected stuff, ties, thresholds, category mapping and
errors on small hand-made images; the fast version equal to the loop on random cases; the output
a valid panoptic prediction for course.pq."""

import numpy as np
import pytest
import torch

from course.boxes import masks_to_boxes
from course.fusion import POLICIES, panoptic_fusion, panoptic_fusion_loop
from course.pq import pq_from_counts, pq_stats
from course.structures import Instances

NONE, SKY, GRASS = 0, 1, 2  # channels (and, by default, categories) of the semantic output
CAR, PERSON = 7, 8  # thing categories
FUSIONS = [panoptic_fusion, panoptic_fusion_loop]


def _rect(h, w, y0, y1, x0, x1):
    """[H, W] bool, True on rows y0..y1-1 and columns x0..x1-1."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _things(masks, scores, labels=None):
    masks = torch.stack(masks) if isinstance(masks, list) else masks
    labels = [CAR] * len(masks) if labels is None else labels
    return Instances(masks_to_boxes(masks).float(), torch.tensor(labels, dtype=torch.int64),
                     torch.tensor(scores, dtype=torch.float32), masks)


def _semantic(channel, num_channels=3, confidence=0.9):
    """Probabilities [C, H, W] putting ``confidence`` on the channel of each pixel."""
    channel = torch.as_tensor(channel)
    rest = (1 - confidence) / (num_channels - 1)
    probs = torch.full((num_channels, *channel.shape), rest, dtype=torch.float64)
    return probs.scatter(0, channel[None], confidence)  # [C, H, W]


def _both(*args, **kwargs):
    """Run both versions, check they agree, return the result."""
    ids, segments = panoptic_fusion(*args, **kwargs)
    ids_loop, segments_loop = panoptic_fusion_loop(*args, **kwargs)
    assert torch.equal(ids, ids_loop) and segments == segments_loop
    assert ids.dtype == torch.int64
    return ids, segments


# --- things against things --------------------------------------------------------------


def test_overlapping_things_the_higher_score_takes_the_shared_pixels():
    a, b = _rect(8, 12, 0, 8, 0, 6), _rect(8, 12, 0, 8, 4, 12)  # share columns 4, 5
    ids, segments = _both(_things([b, a], [0.8, 0.9], [PERSON, CAR]), _semantic(torch.zeros(8, 12,
                          dtype=torch.int64)), min_stuff_area=0)
    assert segments == {1: (CAR, False), 2: (PERSON, False)}  # ids in score order
    assert torch.equal(ids == 1, a) and torch.equal(ids == 2, b & ~a)


def test_a_thing_that_lost_too_much_is_dropped_and_frees_its_pixels():
    h, w = 10, 16
    a = _rect(h, w, 0, h, 0, 10)
    b = _rect(h, w, 0, h, 5, 12)  # 70 pixels, 50 of them under a: loses 5/7 > 0.5
    c = _rect(h, w, 0, h, 10, 14)  # overlaps only b, which is dropped
    ids, segments = _both(_things([a, b, c], [0.9, 0.8, 0.7]), _semantic(torch.zeros(h, w,
                          dtype=torch.int64)), min_stuff_area=0)
    assert segments == {1: (CAR, False), 2: (CAR, False)}
    assert torch.equal(ids == 1, a) and torch.equal(ids == 2, c)
    # with a looser threshold b keeps what a left it, and c loses 2 of its 4 columns (half)
    ids, segments = _both(_things([a, b, c], [0.9, 0.8, 0.7]), _semantic(torch.zeros(h, w,
                          dtype=torch.int64)), overlap_threshold=0.75, min_stuff_area=0)
    assert len(segments) == 3
    assert torch.equal(ids == 2, b & ~a) and torch.equal(ids == 3, c & ~b)


def test_losing_exactly_the_threshold_keeps_the_thing():
    a, b = _rect(4, 8, 0, 4, 0, 4), _rect(4, 8, 0, 4, 2, 6)  # b loses exactly half
    instances = _things([a, b], [0.9, 0.8])
    semantic = _semantic(torch.zeros(4, 8, dtype=torch.int64))
    _, segments = _both(instances, semantic, overlap_threshold=0.5, min_stuff_area=0)
    assert len(segments) == 2
    _, segments = _both(instances, semantic, overlap_threshold=0.49, min_stuff_area=0)
    assert len(segments) == 1


def test_equal_scores_keep_the_input_order():
    a, b = _rect(6, 6, 0, 6, 0, 4), _rect(6, 6, 0, 6, 2, 6)
    semantic = _semantic(torch.zeros(6, 6, dtype=torch.int64))
    for first, second, label in ((a, b, CAR), (b, a, PERSON)):
        runs = [_both(_things([first, second], [0.7, 0.7], [label, CAR + PERSON - label]),
                      semantic, min_stuff_area=0) for _ in range(3)]
        ids, segments = runs[0]
        assert all(torch.equal(ids, r[0]) and segments == r[1] for r in runs)
        assert segments[1] == (label, False) and torch.equal(ids == 1, first)


def test_score_threshold_keeps_scores_equal_to_it():
    masks = [_rect(6, 6, 0, 3, 0, 6), _rect(6, 6, 3, 6, 0, 6)]
    semantic = _semantic(torch.full((6, 6), SKY))
    ids, segments = _both(_things(masks, [0.5, 0.25], [CAR, PERSON]), semantic,
                          score_threshold=0.5, min_stuff_area=0)
    assert segments == {1: (CAR, False), 2: (SKY, False)}
    assert torch.equal(ids == 2, masks[1])  # the low-scored person's pixels are stuff


def test_an_empty_mask_is_dropped():
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[1, 1:3, 1:3] = True
    ids, segments = _both(_things(masks, [0.9, 0.8]), _semantic(torch.zeros(5, 5,
                          dtype=torch.int64)), overlap_threshold=1.0, min_stuff_area=0)
    assert segments == {1: (CAR, False)} and torch.equal(ids == 1, masks[1])


def test_an_image_without_pixels():
    empty = _things(torch.zeros(2, 0, 5, dtype=torch.bool), [0.9, 0.8])
    for policy in POLICIES:
        ids, segments = _both(empty, torch.ones(1, 0, 5), policy)
        assert ids.shape == (0, 5) and segments == {}


# --- stuff ---------------------------------------------------------------------------------


def test_no_instances_gives_all_stuff():
    channel = torch.full((8, 8), GRASS)
    channel[:3] = SKY
    ids, segments = _both(Instances.empty((8, 8)), _semantic(channel), min_stuff_area=0)
    assert segments == {1: (SKY, False), 2: (GRASS, False)}
    assert torch.equal(ids, channel)


def test_an_all_stuff_image_is_one_segment():
    ids, segments = _both(Instances.empty((16, 16)), _semantic(torch.full((16, 16), GRASS)))
    assert segments == {1: (GRASS, False)} and bool((ids == 1).all())


def test_all_void():
    ids, segments = _both(Instances.empty((7, 9)), _semantic(torch.zeros(7, 9,
                          dtype=torch.int64)), min_stuff_area=0)
    assert segments == {} and torch.equal(ids, torch.zeros(7, 9, dtype=torch.int64))


def test_min_stuff_area_makes_small_stuff_void():
    channel = torch.full((10, 10), GRASS)
    channel[:6, :6] = SKY  # 36 sky pixels, 64 grass
    semantic = _semantic(channel)
    ids, segments = _both(Instances.empty((10, 10)), semantic, min_stuff_area=37)
    assert segments == {1: (GRASS, False)} and torch.equal(ids == 0, channel == SKY)
    _, segments = _both(Instances.empty((10, 10)), semantic, min_stuff_area=36)
    assert segments == {1: (SKY, False), 2: (GRASS, False)}
    # only the free pixels count: a car on 20 sky pixels leaves 16
    car = _things([_rect(10, 10, 0, 4, 0, 5)], [0.9])
    ids, segments = _both(car, semantic, min_stuff_area=17)
    assert segments == {1: (CAR, False), 2: (GRASS, False)}


def test_argmax_ties_go_to_the_lower_channel():
    semantic = torch.tensor([0.2, 0.4, 0.4], dtype=torch.float64)[:, None, None].expand(3, 4, 4)
    _, segments = _both(Instances.empty((4, 4)), semantic.contiguous(), min_stuff_area=0)
    assert segments == {1: (SKY, False)}


def test_categories_map_channels_and_stuff_ids_follow_category_order():
    channel = torch.tensor([[0, 1, 2, 3]]).expand(4, 4)  # channel c in column c
    thing = _things([_rect(4, 4, 0, 1, 0, 4)], [0.9], [1])  # category 1 is no stuff here
    ids, segments = _both(thing, _semantic(channel, 4), categories=(0, 4, 5, 6),
                          min_stuff_area=0)
    assert segments == {1: (1, False), 2: (4, False), 3: (5, False), 4: (6, False)}
    assert ids[1:].tolist() == [[0, 2, 3, 4]] * 3
    ids, segments = _both(thing, _semantic(channel, 4), categories=(6, 0, 5, 4),
                          min_stuff_area=0)
    assert segments == {1: (1, False), 2: (4, False), 3: (5, False), 4: (6, False)}
    assert ids[1:].tolist() == [[4, 0, 3, 2]] * 3  # channel 1 is now the "no stuff" one


def test_categories_without_a_no_stuff_channel_label_every_free_pixel():
    channel = torch.tensor([[0, 1]]).expand(2, 2)
    ids, segments = _both(Instances.empty((2, 2)), _semantic(channel, 2), categories=[3, 4],
                          min_stuff_area=0)
    assert segments == {1: (3, False), 2: (4, False)} and bool((ids > 0).all())


# --- policies --------------------------------------------------------------------------------


def test_a_thing_on_confident_sky_is_removed_only_when_sky_is_protected():
    semantic = _semantic(torch.full((8, 8), SKY), confidence=0.9)
    plane = _things([_rect(8, 8, 2, 5, 2, 6)], [0.9])
    ids, segments = _both(plane, semantic, "stuff_protected", min_stuff_area=0)
    assert segments == {1: (SKY, False)} and bool((ids == 1).all())
    ids, segments = _both(plane, semantic, "instance_priority", min_stuff_area=0)
    assert segments == {1: (CAR, False), 2: (SKY, False)}
    assert torch.equal(ids == 1, plane.masks[0])


def test_a_thing_half_over_sky_keeps_its_other_half_or_is_dropped():
    channel = torch.full((6, 10), GRASS)
    channel[:, :6] = SKY  # columns 0-5 sky
    car = _things([_rect(6, 10, 1, 5, 0, 10)], [0.9])  # 6 of its 10 columns on sky
    semantic = _semantic(channel)
    ids, segments = _both(car, semantic, "stuff_protected", protected=[SKY],
                          overlap_threshold=0.7, min_stuff_area=0)
    assert segments == {1: (CAR, False), 2: (SKY, False), 3: (GRASS, False)}
    assert torch.equal(ids == 1, car.masks[0] & (channel == GRASS))
    ids, segments = _both(car, semantic, "stuff_protected", protected=[SKY],
                          overlap_threshold=0.5, min_stuff_area=0)
    assert segments == {1: (SKY, False), 2: (GRASS, False)}
    assert torch.equal(ids, channel)


def test_unprotected_stuff_is_overwritten_under_both_policies():
    semantic = _semantic(torch.full((8, 8), GRASS))
    car = _things([_rect(8, 8, 2, 5, 2, 6)], [0.9])
    for policy in POLICIES:
        ids, segments = _both(car, semantic, policy, protected=(SKY,), min_stuff_area=0)
        assert segments == {1: (CAR, False), 2: (GRASS, False)}
        assert torch.equal(ids == 1, car.masks[0])


def test_protect_threshold_is_strict():
    semantic = _semantic(torch.full((4, 4), SKY), confidence=0.75)
    car = _things([_rect(4, 4, 0, 2, 0, 2)], [0.9])
    _, segments = _both(car, semantic, "stuff_protected", protect_threshold=0.75,
                        min_stuff_area=0)
    assert segments[1] == (CAR, False)  # 0.75 is not above 0.75
    _, segments = _both(car, semantic, "stuff_protected", protect_threshold=0.7,
                        min_stuff_area=0)
    assert segments == {1: (SKY, False)}


def test_protected_pixels_stay_free_for_nothing_but_stuff():
    """A thing dropped for sky does not free the sky for a lower thing either."""
    channel = torch.full((4, 8), GRASS)
    channel[:, :4] = SKY
    a, b = _rect(4, 8, 0, 4, 0, 6), _rect(4, 8, 0, 4, 3, 8)
    ids, segments = _both(_things([a, b], [0.9, 0.8]), _semantic(channel), "stuff_protected",
                          protected=[SKY], min_stuff_area=0)
    # a keeps 8 of 24 pixels: dropped; b keeps its 16 grass pixels of 20
    assert segments == {1: (CAR, False), 2: (SKY, False)}
    assert torch.equal(ids == 1, b & (channel == GRASS))


# --- the output --------------------------------------------------------------------------------


def test_inputs_are_not_modified_and_the_output_is_a_panoptic_prediction():
    masks = [_rect(8, 8, 0, 5, 0, 5), _rect(8, 8, 3, 8, 3, 8)]
    instances = _things(masks, [0.9, 0.6])
    semantic = _semantic(torch.full((8, 8), SKY)).float()
    before = (instances.masks.clone(), instances.scores.clone(), semantic.clone())
    for fusion in FUSIONS:
        ids, segments = fusion(instances, semantic, "stuff_protected", protected=(),
                               min_stuff_area=0)
        assert all(torch.equal(x, y) for x, y in zip(before, (instances.masks,
                                                              instances.scores, semantic)))
        stats = pq_stats(ids, segments, ids, segments)
        assert pq_from_counts(stats.iou_sum, stats.tp, stats.fp, stats.fn)["pq"] == 1.0


# --- errors ----------------------------------------------------------------------------------


def _good():
    instances = _things([_rect(4, 4, 0, 2, 0, 2)], [0.9])
    return instances, _semantic(torch.full((4, 4), SKY))


def _with(**fields):
    instances, _ = _good()
    return Instances(**{"boxes": instances.boxes, "labels": instances.labels,
                        "scores": instances.scores, "masks": instances.masks,
                        "image_size": (4, 4), **fields})


BAD_ARGUMENTS = [
    ({"policy": "things_first"}, ValueError, r"policy must be one of \('instance_priority'"),
    ({"score_threshold": 1.5}, ValueError, "score_threshold must be in"),
    ({"score_threshold": float("nan")}, ValueError, "score_threshold must be in"),
    ({"score_threshold": "0.5"}, TypeError, "score_threshold must be a number"),
    ({"overlap_threshold": -0.1}, ValueError, "overlap_threshold must be in"),
    ({"protect_threshold": 2}, ValueError, "protect_threshold must be in"),
    ({"min_stuff_area": -1}, ValueError, "min_stuff_area must be >= 0"),
    ({"min_stuff_area": 2.5}, TypeError, "min_stuff_area must be an int"),
    ({"min_stuff_area": True}, TypeError, "min_stuff_area must be an int"),
    ({"instances": "masks"}, TypeError, "instances must be a course.structures.Instances"),
    ({"instances": _with(scores=None)}, ValueError, "needs scores"),
    ({"instances": _with(masks=None)}, ValueError, "needs the instance masks"),
    ({"instances": _with(masks=_good()[0].masks.to(torch.uint8))}, TypeError,
     r"instances.masks must be bool \(0/1 numbers are not accepted\)"),
    ({"instances": _with(scores=torch.tensor([float("nan")]))}, ValueError,
     "scores must be finite"),
    ({"instances": _with(labels=torch.tensor([0]))}, ValueError, "labels must be thing"),
    ({"instances": _with(labels=torch.tensor([SKY]))}, ValueError,
     r"labels hold the stuff category id\(s\) \[1\]"),
    ({"semantic": torch.randn(3, 4, 4)}, ValueError, r"softmax\(dim=0\)"),
    ({"semantic": _semantic(torch.full((4, 4), SKY)) * 2}, ValueError, "summing to 1"),
    ({"semantic": _semantic(torch.full((4, 4), SKY)).index_fill(1, torch.tensor([0]),
                                                                  float("nan"))},
     ValueError, "semantic must be finite"),
    ({"semantic": _semantic(torch.full((5, 4), SKY))}, ValueError,
     r"semantic has shape \[3, 5, 4\].*instances.image_size is \(4, 4\)"),
    ({"semantic": torch.ones(4, 4)}, ValueError, r"semantic must have shape \[C, H, W\]"),
    ({"semantic": torch.ones(0, 4, 4)}, ValueError, r"C >= 1"),
    ({"semantic": torch.ones(1, 4, 4, dtype=torch.int64)}, TypeError, "float probabilities"),
    ({"semantic": np.ones((1, 4, 4))}, TypeError, "semantic must be a torch.Tensor"),
    ({"categories": (0, 1)}, ValueError, r"one id per channel of semantic \(C = 3\)"),
    ({"categories": (0, 1, 1)}, ValueError, "categories lists a category twice"),
    ({"categories": (0, -1, 2)}, ValueError, "categories must hold non-negative"),
    ({"categories": (0, 1.0, 2)}, TypeError, "categories must hold integer"),
    ({"categories": "012"}, TypeError, "categories must be a sequence"),
    ({"protected": (0,)}, ValueError, r"protected holds id\(s\) \[0\] that are not stuff"),
    ({"protected": (CAR,), "policy": "instance_priority"}, ValueError, "not stuff categories"),
]


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize(("change", "error", "match"), BAD_ARGUMENTS)
def test_bad_arguments_are_named(fusion, change, error, match):
    instances, semantic = _good()
    kwargs = {"instances": instances, "semantic": semantic, **change}
    with pytest.raises(error, match=match):
        fusion(**kwargs)


# --- the fast version against the loop ----------------------------------------------------


def _random_masks(rng, n, h, w):
    ys, xs = np.mgrid[:h, :w] + 0.5
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.5, h / 2), rng.uniform(0.5, w / 2)
        if rng.random() < 0.5:
            masks[i] = (np.abs(ys - cy) <= ry) & (np.abs(xs - cx) <= rx)
        else:
            masks[i] = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
    if n and rng.random() < 0.2:
        masks[rng.integers(n)] = False  # an empty mask
    return masks


def _random_semantic(rng, c, h, w):
    """Dirichlet-like probabilities at low resolution, upsampled into blobs; some quantised to
    make argmax ties and values equal to the thresholds."""
    small = rng.gamma(rng.choice([0.3, 1.0, 3.0]), size=(c, -(-h // 4), -(-w // 4)))
    probs = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)[:, :h, :w] + 1e-9
    if rng.random() < 0.3:
        probs = np.round(probs / probs.sum(0) * 4)
        probs[0] += probs.sum(0) == 0
    probs = probs / probs.sum(0)
    return torch.from_numpy(probs.astype(rng.choice([np.float32, np.float64])))


def _random_case(rng):
    h, w = (int(x) for x in rng.integers(1, 33, size=2))
    n, c = int(rng.integers(0, 13)), int(rng.integers(1, 6))
    categories = [int(x) for x in rng.permutation(np.arange(c) if rng.random() < 0.7
                                                  else rng.choice(20, size=c, replace=False))]
    labels = rng.choice([20, 21, 22], size=n)
    masks = torch.from_numpy(_random_masks(rng, n, h, w))
    if rng.random() < 0.2:
        masks = masks.transpose(1, 2)  # not contiguous; the image is [W, H]
    scores = rng.choice([0.2, 0.5, 0.7, 0.9], size=n) if rng.random() < 0.5 else rng.random(n)
    instances = Instances(masks_to_boxes(masks).float(), torch.from_numpy(labels),
                          torch.from_numpy(scores).float(), masks, tuple(masks.shape[1:]))
    stuff = [x for x in categories if x != 0]
    kwargs = {"categories": categories, "min_stuff_area": int(rng.integers(0, 30)),
              "protected": None if rng.random() < 0.5 else
              [x for x in stuff if rng.random() < 0.5]}
    for name in ("score_threshold", "overlap_threshold", "protect_threshold"):
        kwargs[name] = float(rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()]))
    semantic = _random_semantic(rng, c, *instances.image_size)
    return instances, semantic, str(rng.choice(POLICIES)), kwargs


def test_fast_version_equals_the_loop_on_random_cases():
    rng = np.random.default_rng(11)
    nonempty = 0
    for _ in range(300):
        instances, semantic, policy, kwargs = _random_case(rng)
        ids, segments = _both(instances, semantic, policy, **kwargs)
        assert set(torch.unique(ids).tolist()) - {0} == set(segments)
        assert list(segments) == list(range(1, len(segments) + 1))
        if segments:
            nonempty += 1
            stats = pq_stats(ids, segments, ids, segments)
            assert pq_from_counts(stats.iou_sum, stats.tp, stats.fp, stats.fn)["pq"] == 1.0
    assert nonempty > 200
