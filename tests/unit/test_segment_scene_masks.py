"""Scene recognition on masks (fake encoder): masked and context crops of every region encoded in one batch
and fused, same-label overlaps merged into the union of their masks, and masks in the COCO output."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.segment.base import ImageHolder
from visrec.segment.masks import masks_to_boxes
from visrec.segment.rle import rle_to_mask
from visrec.segment.scene import SceneAnalyzer, SceneConfig, context_crops, fuse_views
from visrec.segment.types import Regions
from visrec.types import Embeddings

CLASSES = ("amber", "blue", "crimson", "green")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    tmp = tmp_path_factory.mktemp("scene-masks")
    make_labeled_tree(tmp / "data", CLASSES, per_class=10, size=48)
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"), IndexConfig())
    return Index(tmp / "idx.vrx")


class FixedMasks(ImageHolder):
    """A segmenter that returns given masks (their tight boxes, score 1)."""

    name = "fixed"

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks

    def set_image(self, image: np.ndarray) -> None:
        self._image = image

    def regions(self) -> Regions:
        self._require_image()
        return Regions(masks_to_boxes(self.masks), np.ones(len(self.masks), np.float32), self.masks)


def _blue_scene() -> tuple[np.ndarray, np.ndarray]:
    img = np.full((128, 128, 3), 128, np.uint8) + (noise_image(128, seed=5) // 8)
    img[30:100, 20:110] = noise_image((90, 70), seed=3, base=class_colour(CLASSES.index("blue"), len(CLASSES)))
    halves = np.zeros((2, 128, 128), bool)
    halves[0, 30:100, 20:75] = True  # two overlapping parts of the blue rectangle
    halves[1, 30:100, 55:110] = True
    return img, halves


def test_agreeing_overlaps_merge_into_the_union_of_their_masks(index: Index) -> None:
    img, halves = _blue_scene()
    res = SceneAnalyzer(index, FixedMasks(halves), SceneConfig(floor=0.0)).analyze(img)
    assert res.labels == ("blue",)
    assert res.regions.masks is not None
    assert (res.regions.masks[0] == (halves[0] | halves[1])).all()
    assert res.regions.xyxy[0].tolist() == [20, 30, 110, 100]
    ann = res.to_coco()["annotations"][0]
    assert (rle_to_mask(ann["segmentation"]) == res.regions.masks[0]).all() and ann["area"] == 90 * 70


def test_context_crops_join_the_masked_crops_in_one_batch(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    img, halves = _blue_scene()
    calls: list[int] = []
    encode = index.encoder.encode_images

    def spy(images: list[np.ndarray], **kw: object) -> Embeddings:
        calls.append(len(images))
        return encode(images, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(index.encoder, "encode_images", spy)
    res = SceneAnalyzer(index, FixedMasks(halves), SceneConfig(floor=0.0, context=0.25)).analyze(img)
    assert calls == [4] and res.labels == ("blue",)  # 2 masked + 2 context crops, one call


def test_context_crops_grow_the_box_and_views_fuse_to_unit_vectors() -> None:
    img = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    regs = Regions(np.array([[40, 40, 60, 50]], np.float32), np.ones(1, np.float32))
    assert context_crops(img, regs, 0.5)[0].shape == (20, 40, 3)  # 10 px wider per side, 5 px taller
    v = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], np.float32)
    fused = fuse_views(Embeddings(v, ("a", "b", "a2", "b2"), "fake"), 2)
    assert fused.ids == ("a", "b") and np.allclose(np.linalg.norm(fused.vectors, axis=1), 1.0)
    assert np.allclose(fused.vectors[0], [1, 0]) and np.allclose(fused.vectors[1], [2**-0.5, 2**-0.5])


def test_negative_context_is_refused() -> None:
    from visrec.errors import BadInput

    with pytest.raises(BadInput, match="context"):
        SceneConfig(context=-0.1)
