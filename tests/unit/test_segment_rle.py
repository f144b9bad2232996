"""COCO run-length encoding: byte-compatible with pycocotools (reference strings made with pycocotools 2.0),
round trips, and the RLE masks carried by the COCO output of a scene."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import BadInput
from visrec.segment.masks import remove_small_regions
from visrec.segment.rle import mask_to_rle, rle_to_mask, run_lengths
from visrec.segment.types import Regions, SceneResult


def _reference_mask() -> np.ndarray:
    m = np.zeros((60, 80), bool)
    m[10:50, 5:70] = True
    m[20:30, 30:40] = False
    m[55:58, 75:79] = True
    return m


def test_runs_are_column_major_and_start_with_zeros() -> None:
    m = np.array([[0, 1, 1], [1, 1, 0]], bool)  # columns: (0, 1), (1, 1), (1, 0)
    assert run_lengths(m) == [1, 4, 1]
    assert run_lengths(np.ones((2, 2), bool)) == [0, 4]
    assert mask_to_rle(m) == {"size": [2, 3], "counts": "141"}


def test_counts_match_pycocotools() -> None:
    expected = (
        "f9X1d0000000000000000000000000000000000000000000000000ROF::FF::FF::FF::FF::FF::FF::FF::FF::FF::d0000"
        "0000000000000000000000000000000000000000000000000000000i:kN\\F000005"
    )
    rle = mask_to_rle(_reference_mask())
    assert rle == {"size": [60, 80], "counts": expected}
    assert (rle_to_mask(rle) == _reference_mask()).all()


def test_random_masks_round_trip_and_bad_rle_is_refused() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = rng.random(tuple(rng.integers(1, 30, 2))) < rng.random()
        assert (rle_to_mask(mask_to_rle(m)) == m).all()
    assert (rle_to_mask({"size": [2, 3], "counts": [1, 4, 1]}) == np.array([[0, 1, 1], [1, 1, 0]], bool)).all()
    with pytest.raises(BadInput, match="cover 5 pixels"):
        rle_to_mask({"size": [2, 3], "counts": [1, 4]})
    with pytest.raises(BadInput, match="needs 'size'"):
        rle_to_mask({"counts": "141"})


def test_coco_output_carries_the_masks_as_rle() -> None:
    masks = np.zeros((2, 30, 40), bool)
    masks[0, 5:15, 5:25] = True
    masks[1, 20:28, 30:38] = True
    regs = Regions(np.array([[5, 5, 25, 15], [30, 20, 38, 28]], np.float32), np.ones(2, np.float32), masks)
    res = SceneResult(regs, ("cup", None), ("cup", "cat"), np.array([0.9, 0.2], np.float32), 40, 30, {})
    anns = res.to_coco()["annotations"]
    assert [a["area"] for a in anns] == [200, 64]
    for ann, m in zip(anns, masks, strict=True):
        assert (rle_to_mask(ann["segmentation"]) == m).all()


def test_small_holes_and_islands_are_cleaned_up() -> None:
    m = np.zeros((20, 30), bool)
    m[2:12, 2:12] = True
    m[5, 5] = False  # a one-pixel hole
    m[15:17, 20:22] = True  # a 4-pixel island
    m[0:20, 27:30] = True  # a large second island touching the border
    m[10, 28] = False  # a hole on that island's edge column: enclosed, so filled
    out = remove_small_regions(m, 6)
    assert out[5, 5] and not out[15:17, 20:22].any() and out[:, 27:30].all()
    assert (remove_small_regions(m, 0) == m).all() and m[5, 5] == False  # noqa: E712 (input untouched)
    single = np.zeros((8, 8), bool)
    single[3, 3] = True
    assert remove_small_regions(single, 100).sum() == 1  # the largest island always stays
