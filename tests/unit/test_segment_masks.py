"""The pure box/mask helpers against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import DimensionMismatch
from visrec.segment.masks import (
    box_area,
    box_ioa,
    box_iou,
    box_to_mask,
    crop,
    mask_iou,
    masked_crop,
    masks_to_boxes,
    nms,
    scale_boxes,
)


def test_box_iou_hand_computed() -> None:
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 4, 1]], np.float32)
    # overlap 1 / union 7; identical; disjoint; overlap 2 (0..2 x 0..1) / union 4 + 4 - 2 = 6
    np.testing.assert_allclose(box_iou(a, b)[0], [1 / 7, 1.0, 0.0, 2 / 6])
    assert box_iou(a, b).shape == (1, 4) and box_iou(b, a).shape == (4, 1)
    np.testing.assert_allclose(box_area(b), [4, 4, 1, 4])
    # a small box inside a big one: IoA is 1 although IoU is small
    np.testing.assert_allclose(box_ioa(np.array([[0, 0, 10, 10]]), np.array([[2, 2, 4, 4]])), [[1.0]])


def test_degenerate_and_bad_boxes() -> None:
    z = np.array([[3, 3, 3, 3]], np.float32)
    assert box_iou(z, z)[0, 0] == 0.0
    with pytest.raises(DimensionMismatch, match=r"\(n, 4\)"):
        box_iou(np.zeros((2, 3)), z)


def test_mask_iou_hand_computed() -> None:
    a = np.zeros((2, 4, 4), bool)
    a[0, :2, :2] = True  # 4 px
    b = np.zeros((1, 4, 4), bool)
    b[0, 1:3, 1:3] = True  # 4 px, 1 shared with a[0]
    np.testing.assert_allclose(mask_iou(a, b), [[1 / 7], [0.0]])
    with pytest.raises(DimensionMismatch):
        mask_iou(a, np.zeros((1, 3, 4), bool))


def test_nms_keeps_best_and_drops_overlaps() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.1], np.float32)
    # box 1 wins; box 0 (IoU 81/119 = 0.68) and box 3 (IoU with 1 = 72/118 = 0.61) go; box 2 is far away
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []
    with pytest.raises(DimensionMismatch):
        nms(boxes, scores[:2], 0.5)


def test_masks_to_boxes_and_back() -> None:
    m = np.zeros((2, 5, 6), bool)
    m[0, 1:3, 2:5] = True
    np.testing.assert_array_equal(masks_to_boxes(m), [[2, 1, 5, 3], [0, 0, 0, 0]])
    np.testing.assert_array_equal(box_to_mask(np.array([2, 1, 5, 3]), 5, 6), m[0])


def test_crop_and_masked_crop() -> None:
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    c = crop(img, np.array([1, 2, 4, 5.4]))
    assert c.shape == (3, 3, 3) and (c == img[2:5, 1:4]).all()
    c[:] = 0
    assert img[2, 1, 0] != 0  # a copy, not a view
    assert crop(img, np.array([2, 2, 2, 2]), min_side=2).shape == (2, 2, 3)  # never empty
    assert crop(img, np.array([-5, -5, 100, 100])).shape == img.shape  # clipped
    mask = np.zeros((5, 6), bool)
    mask[1, 1] = mask[2, 2] = True
    mc = masked_crop(img, mask)
    assert mc.shape == (2, 2, 3)
    assert (mc[0, 0] == img[1, 1]).all() and (mc[1, 1] == img[2, 2]).all()
    assert (mc[0, 1] == 255).all() and (mc[1, 0] == 255).all()  # background blanked to white


def test_scale_boxes() -> None:
    out = scale_boxes(np.array([[1, 2, 3, 4]]), 2.5)
    assert out.dtype == np.float32 and out.tolist() == [[2.5, 5.0, 7.5, 10.0]]
