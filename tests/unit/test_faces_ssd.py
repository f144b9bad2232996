"""BlazeFace's model-free steps: anchors, decoding, weighted NMS, letterboxing and scanning windows."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import BadInput
from visrec.faces import ssd


def test_anchor_grids_match_the_models_outputs() -> None:
    full, short = ssd.anchors(ssd.FULL_RANGE), ssd.anchors(ssd.SHORT_RANGE)
    assert full.shape == (2304, 2) and short.shape == (896, 2)  # the models emit 2304 / 896 boxes
    assert np.allclose(full[0], [0.5 / 48, 0.5 / 48]) and np.allclose(full[1], [1.5 / 48, 0.5 / 48])
    # short range: 2 anchors per cell on the 16x16 grid, then 6 per cell on the 8x8 grid
    assert np.allclose(short[0], short[1]) and np.allclose(short[512], [0.5 / 8, 0.5 / 8])
    assert np.allclose(short[512], short[517]) and not np.allclose(short[512], short[518])


def test_decode_places_a_box_and_keypoints_around_its_anchor() -> None:
    centres = ssd.anchors(ssd.FULL_RANGE)
    reg = np.zeros((len(centres), 16), np.float32)
    logits = np.full(len(centres), -10.0, np.float32)
    i = 48 * 24 + 24  # anchor at (24.5/48, 24.5/48)
    reg[i, :4] = [9.6, -19.2, 48.0, 96.0]  # shift (+0.05, -0.1), size (0.25, 0.5) in input units (/192)
    reg[i, 4:6] = [19.2, 0.0]
    logits[i] = 3.0
    xyxy, pts, scores = ssd.decode(reg, logits[:, None], centres, 192.0, 0.5)
    cx, cy = 24.5 / 48 + 0.05, 24.5 / 48 - 0.1
    assert np.allclose(xyxy, [[cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25]], atol=1e-6)
    assert pts.shape == (1, 6, 2) and np.allclose(pts[0, 0], [24.5 / 48 + 0.1, 24.5 / 48])
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    none = ssd.decode(reg, np.full(len(centres), -50.0), centres, 192.0, 0.5)
    assert none[0].shape == (0, 4) and none[1].shape == (0, 6, 2)
    with pytest.raises(BadInput, match=r"\(2304, 4 \+ 2k\)"):
        ssd.decode(reg[:10], logits, centres, 192.0, 0.5)


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    pts = np.zeros((3, 6, 2), np.float32)
    pts[1] += 1.0
    b, p, s = ssd.weighted_nms(boxes, pts, np.array([0.9, 0.3, 0.8], np.float32), 0.3)
    assert len(b) == 2 and np.allclose(s, [0.9, 0.8])
    assert b[0, 0] == pytest.approx(0.3 / 1.2) and p[0, 0, 0] == pytest.approx(0.3 / 1.2)
    assert np.allclose(b[1], [50, 50, 60, 60])
    empty = ssd.weighted_nms(np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0, np.float32))
    assert [x.shape for x in empty] == [(0, 4), (0, 6, 2), (0,)]


def test_letterbox_round_trip_and_windows_cover_the_image() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255
    tensor, box = ssd.letterbox(image, 128)
    assert tensor.shape == (128, 128, 3) and tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert box.pad_y == 32 and box.pad_x == 0  # 200x100 -> 128x64, centred vertically
    white = np.argwhere(tensor[..., 0] > 0.9)
    corners = np.array([white.min(0)[::-1], white.max(0)[::-1] + 1], np.float32) / 128
    assert np.allclose(ssd.unletterbox(corners, box), [[90, 40], [110, 60]], atol=1.0)
    wins = ssd.tiles(300, 500, 200, 0.5)
    covered = np.zeros((300, 500), bool)
    for x0, y0, x1, y1 in wins:
        assert x1 - x0 == 200 and y1 - y0 == 200
        covered[y0:y1, x0:x1] = True
    assert covered.all() and ssd.tiles(100, 100, 200) == [(0, 0, 100, 100)]
