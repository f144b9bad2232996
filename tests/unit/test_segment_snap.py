"""Named boxes snap onto their objects' outlines: a box straddling an object and its neighbour is found at IoU >=
0.5 only with snapping, two touching objects of one label stay two, and a box on an object without straight
borders stays where it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput, DimensionMismatch
from visrec.index import Index
from visrec.index.writer import build_index
from visrec.segment.edges import canny
from visrec.segment.gallery import GallerySegmenter
from visrec.segment.masks import box_iou
from visrec.segment.overlaps import scene_edges
from visrec.segment.scene import SceneAnalyzer, SceneConfig
from visrec.segment.snap import SnapConfig, snap_boxes
from visrec.segment.types import Regions

# three touching 60 px pictures of one class: the first, one to its right, one below it
OBJECTS = np.array([[60, 60, 120, 120], [120, 60, 180, 120], [60, 120, 120, 180]], np.float32)
# a box straddling the first picture and its neighbours (IoU 0.49 with it), and one on the second picture
BOXES = np.array([[71, 72, 131, 132], [120, 64, 180, 124]], np.float32)


class FixedBoxes:
    """A segmenter that always proposes the same boxes (as a grid of windows would, wherever the objects lie) and
    keeps the image's edge map, as the gallery does."""

    name = "fixed"

    def __init__(self, boxes: np.ndarray) -> None:
        self.boxes = boxes

    def set_image(self, image: np.ndarray) -> None:
        self.image = image

    def regions(self) -> Regions:
        return Regions(self.boxes.copy(), np.ones(len(self.boxes), np.float32), None)

    def edge_map(self) -> np.ndarray:
        """The image's edges, as the gallery keeps them (segmenters without one do not snap)."""
        return scene_edges(self.image)


def scene() -> np.ndarray:
    """Three touching pictures of the class 'blue' on a light background, ``(200, 300, 3)`` uint8."""
    img = np.full((200, 300, 3), 235, np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(OBJECTS.astype(int)):
        img[y0:y1, x0:x1] = noise_image(60, seed=900 + k, base=class_colour(1, 3))
    return img


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    tmp: Path = tmp_path_factory.mktemp("snap")
    make_labeled_tree(tmp / "data", ("amber", "blue", "crimson"), per_class=8, size=48)
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"))
    return Index(tmp / "idx.vrx")


def test_a_straddling_box_is_found_only_with_snapping_and_touching_objects_stay_two(index: Index) -> None:
    image = scene()
    assert box_iou(BOXES[:1], OBJECTS[:1])[0, 0] < 0.5  # the window misses the first picture as placed
    plain = SceneAnalyzer(index, FixedBoxes(BOXES), SceneConfig(snap=False)).analyze(image)
    snapped = SceneAnalyzer(index, FixedBoxes(BOXES), SceneConfig()).analyze(image)
    assert plain.labels == snapped.labels == ("blue", "blue")  # both named either way
    assert (box_iou(plain.regions.xyxy, OBJECTS).max(0) >= 0.5).tolist() == [False, True, False]
    best = box_iou(snapped.regions.xyxy, OBJECTS).max(0)
    assert (best[:2] >= 0.9).all(), best  # both pictures found, each by its own box: one label, two objects
    assert "snap" in snapped.timings


def test_segmenters_without_an_edge_map_keep_their_boxes(index: Index) -> None:
    class Detector(FixedBoxes):  # a detector's boxes (faces, NanoDet): no edge map, no snapping
        edge_map = None  # type: ignore[assignment]

    image = scene()
    res = SceneAnalyzer(index, Detector(BOXES), SceneConfig()).analyze(image)
    plain = SceneAnalyzer(index, Detector(BOXES), SceneConfig(snap=False)).analyze(image)
    np.testing.assert_array_equal(res.regions.xyxy, plain.regions.xyxy)
    assert "snap" not in res.timings


def test_the_gallery_hands_its_edge_map_to_snapping(index: Index) -> None:
    seg = GallerySegmenter(index)
    seg.set_image(scene())
    edges = seg.edge_map()  # found once for the boundary boxes, reused to snap (no second Canny pass)
    assert edges is not None and np.array_equal(edges, scene_edges(scene()))


def test_sides_move_onto_straight_outlines_only() -> None:
    img = np.full((200, 200, 3), 235, np.uint8)
    img[60:120, 60:120] = (40, 90, 160)
    straddling = np.array([[71, 72, 131, 132]], np.float32)
    out = snap_boxes(canny(img, 50, 150), straddling)
    assert box_iou(out, np.array([[60, 60, 120, 120]], np.float32))[0, 0] >= 0.9
    far = np.array([[90, 90, 150, 150]], np.float32)  # the outline lies beyond the reach (0.2 of the box)
    assert np.array_equal(snap_boxes(canny(img, 50, 150), far), far)
    disc = np.full((200, 200, 3), 235, np.uint8)
    yy, xx = np.mgrid[:200, :200]
    disc[(yy - 100) ** 2 + (xx - 100) ** 2 < 40**2] = (40, 90, 160)
    loose = np.array([[66, 66, 146, 146]], np.float32)  # a round outline: its flanks are the nearest lines
    tight = snap_boxes(canny(disc, 50, 150), loose)
    truth = np.array([[60, 60, 140, 140]], np.float32)
    assert box_iou(tight, truth)[0, 0] > box_iou(loose, truth)[0, 0] >= 0.7
    assert snap_boxes(canny(img, 50, 150), np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(BadInput, match="reach"):
        SnapConfig(reach=1.5)
    with pytest.raises(BadInput, match="piece_share"):
        SceneConfig(piece_share=2.0)
    with pytest.raises(DimensionMismatch, match="edges"):
        snap_boxes(np.zeros((4, 4, 3), bool), np.zeros((1, 4), np.float32))
