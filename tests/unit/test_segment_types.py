"""Regions and SceneResult: validation on construction and the JSON / COCO export."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import DimensionMismatch
from visrec.segment.types import Regions, SceneResult


def _regions(n: int = 2) -> Regions:
    xyxy = np.array([[0, 0, 10, 20], [5, 5, 15, 15]], np.float32)[:n]
    return Regions(xyxy, np.ones(n, np.float32))


def test_regions_validation_names_the_shapes() -> None:
    with pytest.raises(DimensionMismatch, match=r"\(n, 4\) float32"):
        Regions(np.zeros((2, 4)), np.zeros(2, np.float32))
    with pytest.raises(DimensionMismatch, match="scores"):
        Regions(np.zeros((2, 4), np.float32), np.zeros(3, np.float32))
    with pytest.raises(DimensionMismatch, match="masks"):
        Regions(np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.zeros((1, 4, 4), bool))
    with pytest.raises(DimensionMismatch, match="x1 < x0"):
        Regions(np.array([[5, 0, 1, 1]], np.float32), np.zeros(1, np.float32))
    assert len(Regions.empty(4, 5, with_masks=True)) == 0
    assert len(_regions().take([1])) == 1


def test_scene_result_exports() -> None:
    res = SceneResult(_regions(), ("red", None), ("red", "blue"), np.array([0.9, 0.2], np.float32), 40, 30, {})
    assert res.present() == {"red"} and res.present(0.95) == set()
    coco = res.to_coco("scene.png")
    assert coco["images"][0] == {"id": 1, "file_name": "scene.png", "width": 40, "height": 30}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    anns = coco["annotations"]
    assert [names[a["category_id"]] for a in anns] == ["red", "unknown"]
    assert anns[0]["bbox"] == [0.0, 0.0, 10.0, 20.0] and anns[0]["area"] == 200.0
    d = res.to_dict()
    assert d["regions"][1]["label"] is None and d["regions"][1]["candidate"] == "blue"
    with pytest.raises(DimensionMismatch):
        SceneResult(_regions(), ("red",), ("red",), np.zeros(1, np.float32), 40, 30, {})
