"""The default scene rule follows each index's own score scale.

An index of busy images (random blocks with a faint class tint) gives its own held-out images raw kNN scores of
about 0.6-0.85 (0.65-0.8 with cosines before the whitened kNN metric), so a raw floor of 0.8 (the former
default) names almost none of the objects of a scene; the default rule (the index's open-set confidence, plus a
raw minimum taken from its own held-out scores) names them. And on a
small, clean index, whose held-out known and novel images lie far apart, the default still names plainly visible
known patches, and leaves the empty background alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index import Index
from visrec.index.writer import build_index
from visrec.segment.box_eval import CocoScene, score_results
from visrec.segment.scene import SceneAnalyzer, SceneConfig, known_floor

CLASSES = ("amber", "blue", "crimson")


def busy(cls: int, seed: int, side: int) -> np.ndarray:
    """A ``(side, side, 3)`` uint8 image: a 4 x 4 grid of random colours, half tinted with the class colour."""
    rng = np.random.default_rng(seed)
    blocks = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    grid = np.asarray(blocks.resize((side, side), Image.Resampling.NEAREST), np.float64)
    img = 0.5 * grid + 0.5 * np.asarray(class_colour(cls, len(CLASSES)), np.float64)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def low_scale(tmp_path_factory: pytest.TempPathFactory) -> tuple[Index, CocoScene, np.ndarray]:
    tmp: Path = tmp_path_factory.mktemp("low")
    for c, name in enumerate(CLASSES):
        (tmp / "data" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(busy(c, 100 * c + i, 48)).save(tmp / "data" / name / f"{i}.png")
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"))
    image = np.full((240, 360, 3), 235, np.uint8)
    boxes, labels = [], []
    for j, (x, y) in enumerate([(20, 20), (150, 30), (270, 40), (40, 150), (170, 160), (280, 150)]):
        image[y : y + 60, x : x + 60] = busy(j % 3, 5000 + j, 60)  # images the index has never seen
        boxes.append((x, y, x + 60, y + 60))
        labels.append(CLASSES[j % 3])
    return Index(tmp / "idx.vrx"), CocoScene(tmp / "s.png", np.asarray(boxes, np.float32), labels), image


def test_default_names_objects_of_an_index_whose_scores_run_low(low_scale) -> None:
    index, scene, image = low_scale
    known = index.calibration("knn").decision.known
    assert np.quantile(known.score[known.correct], 0.95) < 0.9  # the index's own images score low
    classes = sorted(index.labels())
    old = SceneAnalyzer(index, config=SceneConfig(accept="absolute", floor=0.8)).analyze(image)
    assert score_results([scene], [old], classes).metrics["correct_recall"] <= 0.2  # the former default: 1 of 6
    new = score_results([scene], [SceneAnalyzer(index).analyze(image)], classes).metrics
    # measured: 5 of the 6 objects boxed at IoU >= 0.5 with their own name, 7 regions named (6 with pieces at 1/4)
    assert new["correct_recall"] >= 0.8 and new["correct_precision"] >= 0.7, new


def test_default_rule_names_known_patches_of_a_small_clean_index(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "images", ("red", "green", "blue"), per_class=8, size=96)
    build_index(load_dataset(tmp_path / "images"), tmp_path / "idx.vrx", create_encoder("fake"))
    index = Index(tmp_path / "idx.vrx")
    image = np.full((240, 360, 3), 235, np.uint8)
    image[30:130, 30:130] = noise_image(100, seed=5, base=class_colour(1, 3))
    image[110:230, 210:330] = noise_image(120, seed=6, base=class_colour(2, 3))
    truth = CocoScene(tmp_path / "s.png", np.array([[30, 30, 130, 130], [210, 110, 330, 230]], np.float32),
                      ["green", "blue"])  # fmt: skip
    result = SceneAnalyzer(index).analyze(image)
    assert set(result.labels) == {"green", "blue"}  # both patches, nothing named on the empty background
    metrics = score_results([truth], [result], sorted(index.labels())).metrics
    assert metrics["correct_recall"] == 1.0 and metrics["correct_precision"] == 1.0, metrics
    assert all(0.6 <= s <= 1.0 for s in result.scores)  # scores are the open-set confidences that named them


def test_known_quantile_is_checked() -> None:
    with pytest.raises(BadInput, match="known_quantile"):
        SceneConfig(known_quantile=1.5)


def test_known_floor_moves_into_the_gap_only_when_there_is_one() -> None:
    known = np.linspace(0.9, 1.0, 101)
    overlapping = np.linspace(0.5, 0.95, 101)  # novel items scoring like known ones: the quantile alone
    assert known_floor(known, overlapping, 0.05) == pytest.approx(0.905)
    apart = np.linspace(0.0, 0.1, 101)  # a gap from 0.095 to 0.905: a quarter of it down from the known side
    assert known_floor(known, apart, 0.05) == pytest.approx(0.905 - 0.25 * 0.81)
    assert known_floor(known, np.array([]), 0.05) == pytest.approx(0.905)
    assert known_floor(np.array([]), apart, 0.05) == float("-inf")
