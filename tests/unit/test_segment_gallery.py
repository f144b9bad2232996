"""The gallery segmenter's bounded cost and the scene-relative decision: a wide image gets a coarser grid
instead of more windows, the local search stays inside the image, and only a scene's best regions are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.segment.edges import EdgeBoxConfig
from visrec.segment.gallery import GalleryConfig, GallerySegmenter, balanced_batch
from visrec.segment.proposals import fit_stride, jitter_windows, sliding_windows
from visrec.segment.scene import SceneAnalyzer, SceneConfig, relative_labels
from visrec.types import Prediction

CLASSES = ("amber", "blue", "crimson")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    tmp: Path = tmp_path_factory.mktemp("gal")
    make_labeled_tree(tmp / "data", CLASSES, per_class=6, size=40)
    build_index(load_dataset(tmp / "data"), tmp / "idx.vrx", create_encoder("fake"), IndexConfig())
    return Index(tmp / "idx.vrx")


def _wide_scene() -> np.ndarray:
    img = np.full((180, 640, 3), 128, np.uint8) + noise_image((640, 180), seed=3) // 8
    img[40:120, 400:480] = noise_image(80, seed=9, base=class_colour(1, len(CLASSES)))
    return img


def test_wide_images_get_a_coarser_grid_not_more_windows() -> None:
    scales = (0.25, 0.4, 0.6)
    assert len(sliding_windows(576, 1024, scales, 0.6)) > 90
    stride = fit_stride(576, 1024, scales, 0.6, 90)
    boxes = sliding_windows(576, 1024, scales, stride)
    assert stride > 0.6 and len(boxes) <= 90
    assert boxes[:, 2].max() == 1024 and boxes[:, 3].max() == 576  # the whole image is still covered
    assert fit_stride(1024, 1024, scales, 0.6, 90) == 0.6  # a square image already fits


def test_local_search_windows_stay_inside_the_image() -> None:
    boxes = jitter_windows(np.array([[100, 100, 200, 200], [0, 0, 90, 90]], np.float32), 240, 320)
    assert boxes.shape == (12, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 3] <= 240).all()
    sides = boxes[:, 2:] - boxes[:, :2]
    assert np.allclose(sides[:, 0], sides[:, 1])  # squares, moved back inside rather than cut
    assert {round(float(s)) for s in sides[:6, 0]} == {100, 70, 140}


def test_batches_split_evenly_over_cores() -> None:
    assert balanced_batch(96, 2) == 48 and balanced_batch(1, 2) == 1
    b = balanced_batch(300, 2)
    assert b <= 64 and -(-300 // b) % 2 == 0  # an even number of batches: no core runs one more


def test_gallery_embeds_at_most_max_windows(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = index.encoder
    seen: list[int] = []
    original = enc.encode_images

    def counting(images: Any, **kw: Any) -> Any:
        seen.append(len(images))
        return original(images, **kw)

    monkeypatch.setattr(enc, "encode_images", counting)
    seg = GallerySegmenter(index, GalleryConfig(max_windows=40, refine_seeds=3, edges=None))
    seg.set_image(_wide_scene())
    assert len(seen) == 2 and sum(seen) <= 40 and seen[1] == 3 * 6  # coarse grid, then the local search
    emb = seg.cached_embeddings()
    assert emb is not None and len(emb.vectors) == len(seg.regions())
    seen.clear()
    edges = EdgeBoxConfig(max_boxes=5)
    both = GallerySegmenter(index, GalleryConfig(max_windows=40, refine_seeds=3, edges=edges, shape_seeds=0))
    both.set_image(_wide_scene())  # boundary boxes first (at most max_boxes), then the two rounds of windows
    assert len(seen) == 3 and seen[0] <= 5 and sum(seen[1:]) <= 40
    tiers = both.region_tiers()
    assert len(tiers) == len(both.regions()) and list(tiers) == sorted(tiers) and set(tiers) <= {0, 2}
    seen.clear()
    shaped = GallerySegmenter(index, GalleryConfig(max_windows=40, refine_seeds=3, edges=edges, shape_seeds=2))
    shaped.set_image(_wide_scene())  # then at most 4 boxes for each of the 2 boundary boxes completed to a shape
    assert len(seen) in (3, 4) and seen[0] <= 5 and sum(seen[-2:]) <= 40
    assert len(seen) == 3 or seen[1] <= 4 * 2
    assert (shaped.region_tiers() < 2).sum() <= 5 + 4 * 2  # boundary and shaped boxes before the windows (tier 2)
    with pytest.raises(BadInput, match="refine_seeds"):
        GalleryConfig(max_windows=12, refine_seeds=2)
    with pytest.raises(BadInput, match="boundary boxes"):
        GalleryConfig(max_windows=0, refine_seeds=0, edges=None)  # nothing left to embed


def _pred(label: str, score: float) -> Prediction:
    return Prediction(label, label, score, float("nan"), ((label, score),), "knn")


def test_relative_rule_names_only_the_scene_s_best_regions() -> None:
    preds = [_pred("a", 0.90), _pred("b", 0.89), _pred("c", 0.80), _pred("d", 0.95)]
    assert relative_labels(preds, margin=0.04, floor=0.5) == [None, None, None, "d"]
    assert relative_labels(preds, margin=0.07, floor=0.5) == ["a", "b", None, "d"]
    assert relative_labels(preds, margin=1.0, floor=0.85) == ["a", "b", None, "d"]  # the floor still holds
    assert relative_labels(preds, margin=0.1, floor=0.99) == [None] * 4  # nothing like the gallery: nobody
    assert relative_labels([], 0.1, 0.5) == []


def test_both_acceptance_rules_run_and_bad_ones_are_refused(index: Index) -> None:
    relative = SceneAnalyzer(index).analyze(_wide_scene())
    assert relative.present() <= set(CLASSES)
    assert all(lab is not None for lab in relative.labels)
    strict = SceneAnalyzer(index, config=SceneConfig(accept="calibrated")).analyze(_wide_scene())
    assert strict.present() <= set(CLASSES) and (strict.width, strict.height) == (640, 180)
    with pytest.raises(BadInput, match="accept"):
        SceneConfig(accept="loose")


def test_confidence_rule_follows_the_index_calibration(index: Index) -> None:
    assert index.calibration("knn") is not None
    loose = SceneAnalyzer(index, config=SceneConfig(accept="confidence", min_confidence=0.0)).analyze(_wide_scene())
    assert loose.present() and all(0.0 <= s <= 1.0 for s in loose.scores)  # scores are P(correct), named
    none = SceneAnalyzer(index, config=SceneConfig(accept="confidence", min_confidence=1.01)).analyze(_wide_scene())
    assert not none.present()
    cal = index.calibration("knn")
    for lab, cand, s in zip(loose.labels, loose.candidates, loose.scores, strict=True):
        assert lab == cand and s >= 0.0
    assert cal.confidence(1.0) >= cal.confidence(0.0)  # the map is monotone: a higher raw score is no less sure
