"""Score fusion of two similarity scorers learned on labeled pairs, its JSON file, and face crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visrec.errors import BadInput, NotCalibrated
from visrec.faces import Faces
from visrec.faces.calibrate import auc
from visrec.faces.fusion import ScoreFusion, face_crops, fit_fusion


def _pairs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two independent noisy views of the same/different truth (the second one weaker)."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    face = np.where(same, 0.7, 0.3) + rng.normal(0, 0.2, n)
    general = np.where(same, 0.6, 0.4) + rng.normal(0, 0.2, n)
    return np.c_[face, general], same


def test_fused_scores_beat_each_scorer_alone_on_held_out_pairs() -> None:
    train, same_train = _pairs(seed=0)
    test, same_test = _pairs(seed=1)
    model = fit_fusion(train, same_train, ("face", "general"))
    assert model.weights[0] > model.weights[1] > 0  # the stronger scorer counts more, both help
    fused = auc(model.distance(test), same_test)
    alone = [auc(1 - test[:, i], same_test) for i in range(2)]
    assert fused > max(alone)
    p = model.probability(test)
    assert p[same_test].mean() > 0.6 > 0.4 > p[~same_test].mean()


def test_fusion_file_round_trip_and_clear_errors(tmp_path: Path) -> None:
    scores, same = _pairs()
    model = fit_fusion(scores, same, ("face", "general"))
    model.save(tmp_path / "fusion.json")
    back = ScoreFusion.load(tmp_path / "fusion.json")
    assert back == model and np.allclose(back.logit(scores), model.logit(scores))
    with pytest.raises(BadInput, match="both same and different"):
        fit_fusion(scores, np.ones(len(scores), bool), ("face", "general"))
    with pytest.raises(BadInput, match=r"\(n, 2\)"):
        model.probability(np.zeros((3, 3)))
    with pytest.raises(NotCalibrated, match="no fusion file"):
        ScoreFusion.load(tmp_path / "missing.json")


def test_face_crops_are_square_around_the_box_and_clipped() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    faces = Faces(
        np.array([[80, 30, 120, 70], [0, 0, 20, 40]], np.float32),
        np.zeros((2, 5, 2), np.float32), np.ones(2, np.float32), (100, 200),
    )  # fmt: skip
    big, edge = face_crops(image, faces, margin=0.25)
    assert big.shape == (60, 60, 3)  # 40 px box + 25 % on each side
    assert edge.shape == (50, 40, 3)  # a 60 px square around (10, 20), clipped at the top-left corner
