"""Instances: validation, indexing, device moves, and use by the evaluator."""

import pytest
import torch

from course.ap import coco_evaluate
from course.structures import Instances


def make(n=3, size=(8, 10), scores=True):
    g = torch.Generator().manual_seed(n)
    xy = torch.rand(n, 2, generator=g) * 4
    boxes = torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=g)], 1)
    masks = torch.rand(n, *size, generator=g) > 0.5
    return Instances(boxes, torch.arange(1, n + 1), torch.rand(n, generator=g) if scores
                     else None, masks)


def test_image_size_comes_from_the_masks():
    inst = make()
    assert inst.image_size == (8, 10) and len(inst) == 3


@pytest.mark.parametrize("index", [1, -1, slice(0, 2), torch.tensor([True, False, True]),
                                   torch.tensor([2, 0])])
def test_indexing_selects_every_field_together(index):
    inst = make()
    picked = inst[index]
    rows = torch.arange(3)[index].reshape(-1)
    assert torch.equal(picked.boxes, inst.boxes[rows])
    assert torch.equal(picked.labels, inst.labels[rows])
    assert torch.equal(picked.scores, inst.scores[rows])
    assert torch.equal(picked.masks, inst.masks[rows])
    assert picked.image_size == inst.image_size


def test_to_moves_every_tensor_and_keeps_none():
    inst = make(scores=False).to("cpu")
    assert inst.scores is None and inst.masks.device.type == "cpu"


@pytest.mark.parametrize("change, message", [
    ({"boxes": torch.zeros(3, 5)}, "boxes must be a Tensor"),
    ({"labels": torch.zeros(2, dtype=torch.long)}, "labels must be a Tensor"),
    ({"scores": torch.zeros(4)}, "scores must be a Tensor"),
    ({"masks": torch.zeros(2, 4, 4, dtype=torch.bool)}, "masks must be a Tensor"),
    ({"image_size": (5, 5)}, "differs from the masks"),
])
def test_bad_fields_are_refused_by_name(change, message):
    inst = make()
    fields = {"boxes": inst.boxes, "labels": inst.labels, "scores": inst.scores,
              "masks": inst.masks, **change}
    with pytest.raises(ValueError, match=message):
        Instances(**fields)


def test_float_labels_and_missing_size_are_refused():
    with pytest.raises(TypeError, match="integer"):
        Instances(torch.zeros(1, 4), torch.ones(1), image_size=(4, 4))
    with pytest.raises(ValueError, match="image_size"):
        Instances(torch.zeros(1, 4), torch.ones(1, dtype=torch.long))


def test_integer_fields_are_stored_as_the_model_reads_them():
    masks = torch.zeros(2, 5, 6, dtype=torch.uint8)
    masks[0, 1:3, 2:4] = 1
    inst = Instances(torch.tensor([[2, 1, 4, 3], [0, 0, 0, 0]], dtype=torch.int32),
                     torch.tensor([1, 2], dtype=torch.int32), None, masks)
    assert inst.boxes.dtype == torch.float32 and inst.labels.dtype == torch.int64
    assert inst.masks is masks  # 0/1 masks are kept (course.fusion asks for bool itself)
    assert Instances(inst.boxes, inst.labels, None, masks.float()).masks.dtype == torch.float32


@pytest.mark.parametrize("masks, found", [(torch.full((1, 4, 4), 255, dtype=torch.uint8), "255"),
                                          (torch.full((1, 4, 4), 0.25), "0.25")])
def test_masks_other_than_0_1_are_refused(masks, found):
    with pytest.raises(ValueError, match=f"bool or hold only 0 and 1, got .* holding {found}"):
        Instances(torch.zeros(1, 4), torch.ones(1, dtype=torch.long), None, masks)


def test_missing_or_bool_labels_are_refused():
    with pytest.raises(ValueError, match="labels must be a Tensor"):
        Instances(torch.zeros(1, 4), None, image_size=(4, 4))
    with pytest.raises(TypeError, match="integer class ids"):
        Instances(torch.zeros(1, 4), torch.ones(1, dtype=torch.bool), image_size=(4, 4))


def test_bad_bool_index_is_an_index_error():
    with pytest.raises(IndexError):
        make()[torch.tensor([True, False])]


def test_empty_has_the_right_shapes():
    e = Instances.empty((6, 7))
    assert len(e) == 0 and e.masks.shape == (0, 6, 7) and e.image_size == (6, 7)


def test_coco_evaluate_reads_instances():
    gt = make(scores=False)
    gt.image_id = 4
    det = make()
    det.image_id = 4
    as_objects = coco_evaluate([gt], [det]).stats
    as_dicts = coco_evaluate([gt.as_dict()], [det.as_dict()]).stats
    assert (as_objects == as_dicts).all()
    with pytest.raises(ValueError, match="image_id"):
        make().as_dict()


def test_semantic_is_kept_whole_by_indexing_and_moved_by_to():
    inst = make()
    semantic = torch.randint(-1, 4, inst.image_size)
    with_map = Instances(inst.boxes, inst.labels, inst.scores, inst.masks, semantic=semantic)
    picked = with_map[torch.tensor([True, False, True])]
    assert len(picked) == 2 and picked.semantic is semantic
    assert with_map.to("cpu").semantic.equal(semantic)
    probs = torch.rand(4, *inst.image_size)
    assert Instances(inst.boxes, inst.labels, semantic=probs, masks=inst.masks).semantic is probs


@pytest.mark.parametrize("semantic", [torch.zeros(8, 9), torch.zeros(8), [[0]]])
def test_semantic_must_cover_the_image(semantic):
    inst = make()
    with pytest.raises(ValueError, match="semantic must be a Tensor"):
        Instances(inst.boxes, inst.labels, inst.scores, inst.masks, semantic=semantic)
