"""The box-quality order of a label's overlapping boxes: the object's whole box before a part of it."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import BadInput
from visrec.segment.box_quality import FEATURES, box_features, box_quality
from visrec.segment.overlaps import resolve_overlaps
from visrec.segment.scene import SceneConfig

WHOLE = (100.0, 100.0, 260.0, 260.0)
PART = (140.0, 120.0, 220.0, 200.0)  # a face inside the character's picture: a quarter of its area
ELSEWHERE = (400.0, 100.0, 500.0, 200.0)


def test_features_compare_a_box_with_the_same_label_boxes_it_overlaps() -> None:
    boxes = np.array([WHOLE, PART, ELSEWHERE, WHOLE])
    labels = ["naruto", "naruto", "naruto", "sakura"]
    f = box_features(
        boxes, labels, np.array([0.98, 1.0, 0.9, 0.7]), np.array([2, 0, 0, 0]), np.array([0.85, 0.83, 0.8, 0.6])
    )
    col = {name: j for j, name in enumerate(FEATURES)}
    assert f.shape == (4, len(FEATURES))
    assert f[0, col["window"]] == 1 and f[1, col["boundary box"]] == 1
    # the part: nested with the whole, whose raw score is 0.02 above its own; the whole: 0.02 above the part's
    assert f[1, col["nested with an overlapping box (either inside the other)"]] == 1
    assert f[1, col["raw score below the best box nested with it"]] == pytest.approx(0.02)
    assert f[0, col["raw score below the best box nested with it"]] == pytest.approx(-0.02)
    assert f[0, col["confidence below the best overlapping"]] == pytest.approx(0.02)
    # a box with no same-label box over it, and another label's box on the same place, compare with nothing
    for row in (2, 3):
        assert (
            f[row, col["log(1 + overlapping boxes)"]] == 0 and f[row, col["raw score below the best overlapping"]] == 0
        )
    assert f[1, col["log area / median same-label area"]] < 0 < f[0, col["log area / median same-label area"]]


def test_the_whole_box_of_an_object_is_kept_before_a_more_confident_part_of_it() -> None:
    # a case that lost objects of generated scenes: two boundary boxes, one on a part of the object saturated at
    # confidence 1, one on the whole (0.98, a higher raw score); by confidence the part went first
    boxes = np.array([WHOLE, PART])
    labels: list[str | None] = ["naruto", "naruto"]
    conf, tiers, raw = np.array([0.98, 1.0]), np.array([0, 0]), np.array([0.85, 0.83])
    q = box_quality(boxes, ["naruto", "naruto"], conf, tiers, raw)
    assert q[0] > q[1], q
    assert resolve_overlaps(boxes.copy(), labels, conf, SceneConfig(box_order="tier"), None, tiers, raw) == [1]
    assert resolve_overlaps(boxes.copy(), labels, conf, SceneConfig(), None, tiers, raw) == [0]


def test_two_objects_side_by_side_both_stay_whatever_the_order() -> None:
    boxes = np.array([WHOLE, (262.0, 100.0, 420.0, 260.0)])
    labels: list[str | None] = ["naruto", "naruto"]
    conf, tiers, raw = np.array([0.99, 0.97]), np.array([0, 2]), np.array([0.8, 0.82])
    assert sorted(resolve_overlaps(boxes.copy(), labels, conf, SceneConfig(), None, tiers, raw)) == [0, 1]


def test_box_order_is_checked() -> None:
    with pytest.raises(BadInput, match="box_order"):
        SceneConfig(box_order="largest")
