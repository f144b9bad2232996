"""Boxes completed to the shape of the indexed image they resemble: a part of an object, or two touching objects
in one outline, give the object's own box (pure geometry, :mod:`visrec.segment.shapes`)."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import BadInput
from visrec.segment.masks import box_iou
from visrec.segment.shapes import box_aspects, complete_boxes


def test_a_part_cut_off_an_object_grows_back_to_the_object() -> None:
    face = np.array([[100, 50, 160, 130]], np.float32)  # 60 x 80, width / height 0.75
    hair = np.array([[100, 50, 160, 75]], np.float32)  # its top strip: the outline closed above the chin only
    chin = np.array([[100, 100, 160, 130]], np.float32)  # its bottom part
    for part in (hair, chin):
        boxes, rows = complete_boxes(part, np.array([0.75]), 480, 640)
        assert len(boxes) == 4 and rows.tolist() == [0, 0, 0, 0]
        assert box_iou(face, boxes).max() == pytest.approx(1.0, abs=1e-6)
        assert box_iou(face, part)[0, 0] < 0.5  # the part alone would not count as a find


def test_two_touching_objects_in_one_outline_give_two_boxes() -> None:
    left, right = [200, 100, 260, 180], [260, 100, 320, 180]  # side by side, same height: one rectangle outline
    union = np.array([[200, 100, 320, 180]], np.float32)
    boxes, _rows = complete_boxes(union, np.array([0.75]), 480, 640)
    iou = box_iou(np.array([left, right], np.float32), boxes)
    assert (iou.max(1) > 0.99).all()  # each object has its own box among the completions
    stacked = np.array([[200, 100, 260, 260]], np.float32)  # two 60 x 80 objects one above the other
    boxes, _rows = complete_boxes(stacked, np.array([0.75]), 480, 640)
    top, bottom = np.array([[200, 100, 260, 180], [200, 180, 260, 260]], np.float32)
    assert box_iou(np.stack([top, bottom]), boxes).max(1).min() > 0.99


def test_boxes_of_about_the_right_shape_and_the_image_border() -> None:
    boxes = np.array([[0, 0, 60, 80], [10, 10, 70, 95]], np.float32)  # aspects 0.75 and 0.71
    new, rows = complete_boxes(boxes, np.array([0.75, 0.75]), 480, 640)
    assert len(new) == 0 and len(rows) == 0  # within the ratio: nothing added
    strip = np.array([[600, 460, 640, 470]], np.float32)  # a strip near the bottom right corner
    new, _rows = complete_boxes(strip, np.array([1.0]), 480, 640)
    assert (new[:, [0, 2]] <= 640).all() and (new[:, [1, 3]] <= 480).all() and (new >= 0).all()
    assert box_aspects(np.array([[0, 0, 30, 10]]))[0] == pytest.approx(3.0)


def test_bad_arguments_name_the_fix() -> None:
    box = np.array([[0, 0, 10, 20]], np.float32)
    with pytest.raises(BadInput, match="min_ratio"):
        complete_boxes(box, np.array([1.0]), 100, 100, min_ratio=0.5)
    with pytest.raises(BadInput, match="one aspect"):
        complete_boxes(box, np.array([1.0, 2.0]), 100, 100)
