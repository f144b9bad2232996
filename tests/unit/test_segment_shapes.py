"""Boxes completed to the shape of the indexed image they resemble: a part of an object, or two touching objects
in one outline, give the object's own box (pure geometry, :mod:`visrec.segment.shapes`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.segment.gallery import GalleryConfig, GallerySegmenter
from visrec.segment.masks import box_iou
from visrec.segment.scene import SceneAnalyzer
from visrec.segment.shapes import box_aspects, complete_boxes

# two-colour flags: left half one colour, right half the other
FLAGS = {"sunrise": ((230, 160, 40), (40, 60, 200)), "forest": ((30, 150, 60), (220, 220, 220)),
         "rose": ((200, 40, 90), (250, 230, 80))}  # fmt: skip


def _flag(colours: tuple[tuple[int, int, int], ...], side: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((side, side, 3), np.float64)
    img[:, : side // 2], img[:, side // 2 :] = colours
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def flags(tmp_path_factory: pytest.TempPathFactory) -> tuple[Index, np.ndarray, np.ndarray, list[str]]:
    """An index of 8 flags a kind and a scene of three pairs of touching flags (32 px on 320x240)."""
    tmp: Path = tmp_path_factory.mktemp("flags")
    rng = np.random.default_rng(0)
    for name, colours in FLAGS.items():
        (tmp / "data" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(_flag(colours, 40, rng)).save(tmp / "data" / name / f"{i}.png")
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"), IndexConfig())
    scene = np.clip(128.0 + rng.normal(0, 6, (240, 320, 3)), 0, 255).astype(np.uint8)
    truth, labels = [], []
    for name, (x, y) in (("sunrise", (40, 50)), ("forest", (180, 150)), ("rose", (200, 40))):
        for k in range(2):
            scene[y : y + 32, x + 32 * k : x + 32 * (k + 1)] = _flag(FLAGS[name], 32, rng)
            truth.append([x + 32 * k, y, x + 32 * (k + 1), y + 32])
            labels.append(name)
    return Index(tmp / "idx.vrx"), scene, np.array(truth, np.float32), labels


def test_touching_objects_in_one_outline_are_named_one_by_one(flags) -> None:
    index, scene, truth, labels = flags
    # Two touching flags share their outline (the colour line between them joins it to both), so no boundary box
    # holds one flag: its inner regions are the flags' halves, half as wide as an indexed flag.
    found = {}
    for seeds in (0, 32):
        result = SceneAnalyzer(index, GallerySegmenter(index, GalleryConfig(shape_seeds=seeds))).analyze(scene)
        iou = box_iou(truth, result.regions.xyxy)
        found[seeds] = sum(iou[j].max() >= 0.5 and result.labels[int(iou[j].argmax())] == lab
                           for j, lab in enumerate(labels))  # fmt: skip
    assert found[32] == 6  # the halves completed to a flag's shape: every flag boxed and named
    assert found[0] <= 3  # measured: one flag of each pair


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


def test_the_shapes_of_indexed_images_are_read_again_when_the_index_moves_on() -> None:
    class Moving:  # an index whose item "a" is re-indexed from a tall image to a wide one
        def __init__(self) -> None:
            self.gen, self.sizes = "gen-1", {"a": {"width": 50, "height": 100}}

        def metadata_of(self, ids: list[str]) -> dict[str, dict[str, int]]:
            return {i: self.sizes[i] for i in ids if i in self.sizes}

    index = Moving()
    seg = GallerySegmenter(index=index)
    assert seg._aspects(np.array(["a"]))[0] == 0.5
    index.sizes = {"a": {"width": 100, "height": 50}}
    assert seg._aspects(np.array(["a"]))[0] == 0.5  # same generation: read once
    index.gen = "gen-2"
    assert seg._aspects(np.array(["a"]))[0] == 2.0
