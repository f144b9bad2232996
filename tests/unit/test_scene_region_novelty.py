"""Scene regions are judged novel on the scale of their size, not on that of whole images.

An encoder that enlarges a small crop sees it blurred: its embedding drifts toward that of a flat grey image
(:class:`BlurringEncoder`, a stand-in for what a CNN does with a 14 px object enlarged to its input). The index's
whole-image novelty map then calls small known objects novel; the shift measured on the index's own images
rendered small moves their novelty back, so they are named, while a small patch of a colour the index does not
hold, and the plain background, stay unnamed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_images import class_colour, noise_image
from visrec.data import load_dataset
from visrec.data.images import to_rgb_array
from visrec.encoders.fake import FakeEncoder
from visrec.index import Index
from visrec.index.writer import build_index
from visrec.segment.region_novelty import RegionNovelty, band_edges, region_novelty
from visrec.segment.scene import SceneAnalyzer, SceneConfig
from visrec.segment.types import Regions
from visrec.types import Embeddings

CLASSES = ("amber", "blue", "crimson", "green")
HUES = 12  # neighbouring hues: held-out classes lie close to the known ones, as other characters do
SIDE = 14  # pasted object size in the scene (pixels)


class BlurringEncoder(FakeEncoder):
    """The fake encoder, whose embedding of an image smaller than its input side drifts toward a grey image's."""

    def encode_images(self, images: Any, ids: Any = None, batch_size: Any = None, progress: bool = False) -> Any:
        emb = super().encode_images(images, ids, batch_size, progress)
        grey = super().encode_images([np.full((8, 8, 3), 128, np.uint8)]).vectors[0]
        small = [max(0.0, 1.0 - min(to_rgb_array(i).shape[:2]) / self.input_size) for i in images]
        v = emb.vectors + 0.7 * np.asarray(small, np.float32)[:, None] * grey
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return Embeddings(v.astype(np.float32), emb.ids, emb.encoder_id, v.astype(np.float32))


class FixedBoxes:
    """A segmenter returning the same boxes for every image."""

    name = "fixed"

    def __init__(self, boxes: list[tuple[int, int, int, int]]) -> None:
        self.boxes = np.asarray(boxes, np.float32)

    def set_image(self, image: np.ndarray) -> None:
        pass

    def regions(self) -> Regions:
        return Regions(self.boxes, np.ones(len(self.boxes), np.float32), None)


def picture(hue: int, seed: int) -> np.ndarray:
    """A 96 px class picture: 40 % a hue of the wheel, 60 % smooth random blobs."""
    blobs = noise_image(96, seed=seed).astype(np.float64)
    return np.clip(0.4 * np.asarray(class_colour(hue, HUES), np.float64) + 0.6 * blobs, 0, 255).astype(np.uint8)


def small(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((SIDE, SIDE), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Index, np.ndarray, list[Any], list[str | None], Path]:
    tmp: Path = tmp_path_factory.mktemp("regnov")
    for c, name in enumerate(CLASSES):
        (tmp / "data" / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(picture(c, 100 * c + i)).save(tmp / "data" / name / f"{i}.png")
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", FakeEncoder())
    image = np.full((240, 320, 3), 235, np.uint8)
    boxes: list[Any] = []
    truth: list[str | None] = []
    for j in range(8):  # pictures the index has never seen, 14 px each
        x, y = 20 + 70 * (j % 4), 30 + 100 * (j // 4)
        image[y : y + SIDE, x : x + SIDE] = small(picture(j % 4, 900 + j))
        boxes.append((x, y, x + SIDE, y + SIDE))
        truth.append(CLASSES[j % 4])
    image[90 : 90 + SIDE, 150 : 150 + SIDE] = small(picture(6, 77))  # a hue the index does not hold
    boxes += [(150, 90, 150 + SIDE, 90 + SIDE), (100, 180, 100 + SIDE, 180 + SIDE)]  # ... and plain background
    truth += [None, None]
    return Index(tmp / "idx.vrx", encoder=BlurringEncoder()), image, boxes, truth, tmp


def _confidences(index: Index, image: np.ndarray, boxes: list[Any], region: bool) -> np.ndarray:
    an = SceneAnalyzer(index, FixedBoxes(boxes), SceneConfig(region_novelty=region))
    return np.asarray([p.calibrated for p in an._predict(image, an.segmenter.regions())])


def test_small_known_objects_are_named_and_a_novel_patch_is_not(scene) -> None:
    index, image, boxes, truth, _ = scene
    known = np.array([t is not None for t in truth])
    whole = _confidences(index, image, boxes, region=False)
    sized = _confidences(index, image, boxes, region=True)
    assert (whole[known] < 0.6).sum() >= 4, whole  # the whole-image map: most small known objects look novel
    assert (sized[known] >= 0.6).all(), sized  # moved for their size: every one is known
    assert (whole[~known] < 0.6).all() and (sized[~known] < 0.6).all(), (whole, sized)  # the stranger stays novel
    # The scene rule on the same regions. Shrinking also lowers the raw kNN score of these objects below the
    # rule's raw minimum taken from whole images (0.89 here), so that minimum is taken at its lowest quantile.
    cfg = {"known_quantile": 0.0}
    new = SceneAnalyzer(index, FixedBoxes(boxes), SceneConfig(**cfg)).analyze(image)
    old = SceneAnalyzer(index, FixedBoxes(boxes), SceneConfig(region_novelty=False, **cfg)).analyze(image)
    named = {tuple(b) for b in new.regions.xyxy.astype(int).tolist()}
    expected = {tuple(b): t for b, t in zip(boxes, truth, strict=True) if t is not None}
    assert named <= set(expected) and len(named) >= 7, new.labels  # measured: 7 of 8 (one under the raw minimum)
    assert all(
        expected[tuple(b)] == lab for b, lab in zip(new.regions.xyxy.astype(int).tolist(), new.labels, strict=True)
    )
    assert len(old) <= 4, old.labels  # measured: 3


def test_the_shift_is_measured_once_per_index_generation(scene) -> None:
    index = scene[0]
    first = region_novelty(index, "knn")
    assert first is not None and first is region_novelty(index, "knn")
    assert first.edges == band_edges(64) == (9, 18, 37, 64)  # shares of the encoder's input side
    assert sum(first.renders) == 48 and first.skipped == 0  # every labeled image, each rendered once


def test_a_later_process_reads_the_measurement_from_the_cache_folder(
    scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import visrec.segment.region_novelty as rn

    monkeypatch.setenv("VISREC_CACHE_DIR", str(tmp_path / "cache"))
    index = scene[0]
    path = index.path
    first = rn.region_novelty(Index(path, encoder=BlurringEncoder()), "knn")
    assert first is not None and len(list((tmp_path / "cache" / "region-novelty").glob("*.json"))) == 1

    def measure(*_: object, **__: object) -> None:
        raise AssertionError("measured again although the cache folder holds this generation's shift")

    monkeypatch.setattr(rn, "fit_region_novelty", measure)
    again = rn.region_novelty(Index(path, encoder=BlurringEncoder()), "knn")  # a fresh reader: a later process
    assert again is not None and again.edges == first.edges and again.renders == first.renders
    for a, b in zip(again.novelty, first.novelty, strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            np.testing.assert_allclose(a[0], b[0])
            np.testing.assert_allclose(a[1], b[1])


def test_images_whose_file_is_gone_are_skipped_and_counted(
    scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISREC_CACHE_DIR", str(tmp_path / "cache"))
    src = scene[4]
    shutil.copytree(src / "data", tmp_path / "data")
    build_index(load_dataset(tmp_path / "data"), tmp_path / "idx.vrx", FakeEncoder())
    for p in sorted((tmp_path / "data" / "amber").iterdir())[:5]:
        p.unlink()
    got = region_novelty(Index(tmp_path / "idx.vrx", encoder=BlurringEncoder()), "knn")
    assert got is not None and got.skipped == 5 and sum(got.renders) == 43
    shutil.rmtree(tmp_path / "data")
    monkeypatch.setenv("VISREC_CACHE_DIR", str(tmp_path / "fresh-cache"))  # nothing measured before
    assert region_novelty(Index(tmp_path / "idx.vrx", encoder=BlurringEncoder()), "knn") is None


def test_whole_image_novelty_moves_each_band_by_its_own_match() -> None:
    levels = np.linspace(0.0, 1.0, 19)
    whole = 100.0 + 100.0 * levels  # whole images: 100-200
    shifted = (300.0 + 100.0 * levels, whole)  # band 0: the same spread, 200 higher
    rn = RegionNovelty((32, 64, 128), (shifted, None), (96, 96), 0, 0.0)
    nov = np.array([350.0, 450.0, 250.0, 350.0, 350.0, 350.0])
    sides = np.array([40.0, 40.0, 40.0, 20.0, 90.0, 300.0])  # band 0 (three), below band 0, band 1, above all
    out = rn.whole_image_novelty(nov, sides)
    # inside the match: 200 lower; beyond its ends by the end's offset; band 1 has no match and above the last
    # edge (the encoder's input side) regions keep their score
    assert out.tolist() == pytest.approx([150.0, 250.0, 50.0, 150.0, 350.0, 350.0])
