"""The ``faces`` segmenter: face boxes become scene regions (grown by a margin, clipped, best first).

A fake detector stands in for BlazeFace, so these tests need neither the ``faces`` extra nor real data.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput, MissingExtra, StageOrderError
from visrec.faces.base import Faces
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.segment import SEGMENTERS, Segmenter
from visrec.segment.faces_first import FaceRegionConfig, FaceRegionSegmenter, create_detector, expand_boxes
from visrec.segment.scene import SceneAnalyzer


class BoxesDetector:
    """A face detector that reports fixed boxes and scores, and counts its calls."""

    name = "fixed"

    def __init__(self, xyxy: list[list[float]], scores: list[float]) -> None:
        self.xyxy = np.array(xyxy, np.float32).reshape(-1, 4)
        self.scores = np.array(scores, np.float32)
        self.calls = 0

    def detect(self, image: np.ndarray) -> Faces:
        self.calls += 1
        n = len(self.xyxy)
        return Faces(self.xyxy, np.zeros((n, 5, 2), np.float32), self.scores, (image.shape[0], image.shape[1]))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def test_faces_is_a_registered_segmenter() -> None:
    assert "faces" in SEGMENTERS.names() and "face" in SEGMENTERS.describe("faces")


def test_margin_grows_each_side_by_a_share_of_the_box_and_clips_to_the_image() -> None:
    boxes = np.array([[10, 20, 30, 60], [90, 0, 100, 10]], np.float32)
    out = expand_boxes(boxes, 0.1, height=50, width=100)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [8, 16, 32, 50])  # 20 x 40 box: 2 px left/right, 4 px up; bottom clipped
    np.testing.assert_allclose(out[1], [89, 0, 100, 11])


def test_regions_are_the_faces_best_first_with_the_detector_scores() -> None:
    det = BoxesDetector([[10, 10, 30, 30], [60, 20, 90, 50], [0, 0, 4, 4]], [0.6, 0.9, 0.3])
    seg = FaceRegionSegmenter(FaceRegionConfig(margin=0.0, min_score=0.5), detector_instance=det)
    assert isinstance(seg, Segmenter)
    with pytest.raises(StageOrderError, match="set_image"):
        seg.regions()
    seg.set_image(np.zeros((80, 120, 3), np.uint8))
    regs = seg.regions()
    np.testing.assert_allclose(regs.xyxy, [[60, 20, 90, 50], [10, 10, 30, 30]])  # 0.3 is under min_score
    np.testing.assert_allclose(regs.scores, [0.9, 0.6])
    assert regs.masks is None  # boxes only, like other detector backends
    assert seg.regions() is regs and det.calls == 1  # detected once per image
    assert len(seg.faces()) == 3  # the detector's raw output stays available


def test_no_face_gives_no_region_and_boxes_left_outside_are_dropped() -> None:
    seg = FaceRegionSegmenter(detector_instance=BoxesDetector([], []))
    seg.set_image(np.zeros((40, 40, 3), np.uint8))
    assert len(seg.regions()) == 0
    outside = FaceRegionSegmenter(detector_instance=BoxesDetector([[-30, -30, -10, -10]], [0.9]))
    outside.set_image(np.zeros((40, 40, 3), np.uint8))
    assert len(outside.regions()) == 0


def test_max_regions_keeps_the_most_confident_faces() -> None:
    det = BoxesDetector([[i * 10, 0, i * 10 + 8, 8] for i in range(5)], [0.5, 0.9, 0.7, 0.8, 0.6])
    seg = FaceRegionSegmenter(FaceRegionConfig(max_regions=2), detector_instance=det)
    seg.set_image(np.zeros((20, 60, 3), np.uint8))
    np.testing.assert_allclose(seg.regions().scores, [0.9, 0.8])


def test_bad_options_are_refused() -> None:
    with pytest.raises(BadInput, match="margin"):
        FaceRegionConfig(margin=-0.1)
    with pytest.raises(BadInput, match="max_regions"):
        FaceRegionConfig(max_regions=0)


def test_a_missing_runtime_names_the_faces_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # find_spec -> None, import -> ImportError
    with pytest.raises(MissingExtra, match=r"visrec\[faces\]"):
        create_detector("blazeface")


def test_scene_analysis_names_the_region_the_detector_found(tmp_path: Path) -> None:
    classes = ("amber", "blue", "crimson")
    make_labeled_tree(tmp_path / "data", classes, per_class=6, size=40)
    build_index(load_dataset(tmp_path / "data"), tmp_path / "idx.vrx", create_encoder("fake"), IndexConfig())
    img = np.full((200, 200, 3), 128, np.uint8)
    img[60:140, 100:180] = noise_image(80, seed=3, base=class_colour(classes.index("blue"), len(classes)))
    det = BoxesDetector([[105, 65, 175, 135]], [0.8])  # a "face" box a little inside the blue patch
    res = SceneAnalyzer(Index(tmp_path / "idx.vrx"), FaceRegionSegmenter(detector_instance=det)).analyze(img)
    assert res.labels == ("blue",)
    np.testing.assert_allclose(res.regions.xyxy[0], [98, 58, 182, 142])  # grown by the default margin (0.1)
