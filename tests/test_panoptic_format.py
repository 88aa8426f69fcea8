"""The panoptic encodings: id maps, segment lists, PNG colours (more in test_pq.py, which
checks them against panopticapi's files)."""

import numpy as np
import pytest
import torch

import course.pq
from course.panoptic_format import (
    as_id_map,
    as_segments,
    id_array,
    id_to_rgb,
    rgb_to_id,
    segment_rows,
)


def test_pq_reexports_the_encodings():
    for name in ("rgb_to_id", "id_to_rgb", "pairs_to_panoptic", "panoptic_to_pairs",
                 "semantic_map", "as_id_map", "as_segments", "SegmentTable"):
        assert getattr(course.pq, name) is getattr(course.panoptic_format, name)


def test_rgb_to_id_takes_arrays_and_tensors_and_gives_int64_tensors():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256**3, (6, 9))
    rgb = id_to_rgb(ids)
    assert rgb.dtype == torch.uint8 and rgb.shape == (6, 9, 3)
    expected = rgb.numpy().astype(np.int64) @ np.array([1, 256, 256**2])  # the definition
    for colours in (rgb, rgb.numpy(), rgb.numpy()[:, ::-1][:, ::-1]):  # also a strided array
        out = rgb_to_id(colours)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.int64
        assert np.array_equal(out.numpy(), expected) and np.array_equal(out.numpy(), ids)
    assert torch.equal(id_to_rgb(torch.from_numpy(ids.T).T), rgb)  # a transposed view


def test_id_maps_are_checked_in_one_pass():
    assert id_array(np.array([[0, 3]], np.uint8)).dtype == np.int64
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert id_array(ids) is ids  # no copy when already int64
    with pytest.raises(ValueError, match="negative id -5"):
        id_array(np.array([[1, -5, 2]], np.int32))
    with pytest.raises(ValueError, match="beyond int64"):
        id_array(np.array([[2**63]], np.uint64))
    with pytest.raises(TypeError, match="integer"):
        as_id_map(torch.zeros(2, 2))
    assert torch.equal(as_id_map(torch.tensor([[1, 2]], dtype=torch.int32)),
                       torch.tensor([[1, 2]]))


def test_segments_are_sorted_by_id_and_keep_their_listed_position():
    table = as_segments([{"id": 9, "category_id": 1, "iscrowd": 1},
                         {"id": 4, "category_id": 2},
                         {"id": 7, "category_id": 3, "iscrowd": 0}])
    assert table.ids.tolist() == [4, 7, 9]
    assert table.categories.tolist() == [2, 3, 1]
    assert table.crowd.tolist() == [False, False, True]
    assert table.listed.tolist() == [1, 2, 0]
    ascending = as_segments({1: (5, True), 2: 6, 3: (7, 0)})
    assert ascending.listed.tolist() == [0, 1, 2] and ascending.crowd.tolist() == [True, False,
                                                                                  False]
    with pytest.raises(ValueError, match="twice"):
        as_segments([{"id": 3, "category_id": 1}, {"id": 3, "category_id": 2}])
    with pytest.raises(TypeError, match="integers"):
        as_segments({1.0: 2})
    with pytest.raises(ValueError, match="iscrowd"):
        as_segments({1: (2, 3)})
    with pytest.raises(TypeError, match=r"segments\[1\]"):
        as_segments([{"id": 1, "category_id": 1}, {"category_id": 2}])


def test_segment_rows_name_unknown_ids():
    table = as_segments({5: 1, 9: 2})
    ids = np.array([[0, 5, 9, 9]])
    assert segment_rows(ids, table, 0, "ids").tolist() == [[0, 1, 2, 2]]
    with pytest.raises(ValueError, match=r"\[7\] that are not in segments"):
        segment_rows(np.array([[7, 5]]), table, 0, "ids")


def test_segments_info_areas_are_read_for_the_ground_truth_only():
    info = [{"id": 3, "category_id": 1, "iscrowd": 1, "area": 12},
            {"id": 2, "category_id": 2, "area": 7.0}, {"id": 5, "category_id": 2}]
    table = as_segments(info)
    assert table.ids.tolist() == [2, 3, 5] and table.area.tolist() == [7, 12, -1]
    assert table.area.dtype == np.int64
    assert as_segments({1: (2, 0)}).area.tolist() == [-1]
    # a prediction's iscrowd and area are not read, whatever they hold (panopticapi's too)
    odd = [{"id": 3, "category_id": 1, "iscrowd": 5, "area": -2.5}]
    pred = as_segments(odd, prediction=True)
    assert pred.crowd.tolist() == [False] and pred.area.tolist() == [-1]
    assert as_segments({1: (2, 1)}, prediction=True).crowd.tolist() == [False]
    for bad in (-2, 2.5, "9", True):
        with pytest.raises(ValueError, match="area of segment 3 must be a whole number"):
            as_segments([{"id": 3, "category_id": 1, "area": bad}])


def test_a_repeated_segment_id_is_named():
    with pytest.raises(ValueError, match="segment id 8 is listed twice"):
        as_segments([{"id": 9, "category_id": 1}, {"id": 8, "category_id": 1},
                     {"id": 8, "category_id": 2}])
