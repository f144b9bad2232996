"""Open-set identification calibration (FPIR / FNIR), thresholds between distances, one face per labeled photo."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from visrec.faces import Calibration, Faces, calibrate, distance_matrix, pair_distances, threshold_for_far
from visrec.faces.openset import calibrate_open_set, open_set_scores
from visrec.faces.pipeline import FacePipeline, main_face


def _people(rng: np.random.Generator, n_people: int, per: int, dim: int = 16, spread: float = 0.6) -> np.ndarray:
    """``(n_people * per, dim)`` unit vectors: a random centre per person plus noise."""
    centres = rng.normal(size=(n_people, 1, dim))
    return (centres + spread * rng.normal(size=(n_people, per, dim))).reshape(-1, dim)


def test_open_set_scores_match_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    v = _people(rng, 4, 3)
    labels = [f"p{i // 3}" for i in range(12)]
    labels[-1] = "solo"  # one photo only: a stranger score but no mated search
    s = open_set_scores(v, labels)
    d = distance_matrix(v, v)
    for i in range(12):
        assert s.stranger[i] == pytest.approx(min(d[i, j] for j in range(12) if labels[j] != labels[i]))
    mated = [i for i in range(12) if labels.count(labels[i]) > 1]
    nearest = [min((j for j in range(12) if j != i), key=lambda j: d[i, j]) for i in mated]
    np.testing.assert_allclose(s.mated, [d[i, j] for i, j in zip(mated, nearest, strict=True)])
    assert s.hit.tolist() == [labels[i] == labels[j] for i, j in zip(mated, nearest, strict=True)]


def test_identification_threshold_keeps_new_strangers_at_the_stated_rate() -> None:
    rng = np.random.default_rng(3)
    index = _people(rng, 60, 5)
    labels = [f"p{i // 5}" for i in range(len(index))]
    ident = calibrate_open_set(index, labels, target_fpir=0.05)
    assert ident.fpir <= 0.05 and ident.strangers == 300 and ident.people == 60
    strangers = _people(rng, 200, 3)  # people the index never saw
    named = (distance_matrix(strangers, index).min(1) <= ident.threshold).mean()
    assert named <= 0.05 + 0.03
    # The per-pair rule at the same rate names far more strangers: a stranger meets 300 gallery faces.
    dist, same = pair_distances(index, labels)
    pair_thr, _ = threshold_for_far(dist, same, 0.05)
    assert (distance_matrix(strangers, index).min(1) <= pair_thr).mean() > 3 * named
    # Known people (a new photo of each) are still named most of the time at this rate.
    assert 0.0 < ident.fnir < 0.5


def test_too_few_strangers_name_none_and_say_so() -> None:
    rng = np.random.default_rng(1)
    v = _people(rng, 5, 4)
    ident = calibrate_open_set(v, [f"p{i // 4}" for i in range(20)], target_fpir=0.01)
    assert ident.fpir == 0.0 and ident.resolution == pytest.approx(1 / 20)
    assert ident.threshold < open_set_scores(v, [f"p{i // 4}" for i in range(20)]).stranger.min()


def test_stored_thresholds_sit_between_distances_so_a_recomputed_tie_is_decided_alike() -> None:
    # The threshold once was the exact distance of a calibration pair; recomputed 3e-16 higher it said "different".
    rng = np.random.default_rng(2)
    d = np.r_[rng.uniform(0.0, 0.3, 200), rng.uniform(0.2, 1.0, 2000)]
    same = np.r_[np.ones(200, bool), np.zeros(2000, bool)]
    cal = calibrate(d, same, target_far=1e-2)
    for thr in (cal.threshold, cal.eer_threshold):
        accepted, rejected = d[d <= thr], d[d > thr]
        assert (accepted + 3e-16 <= thr).all() and (rejected - 3e-16 > thr).all()
        assert thr not in set(d.tolist())
    assert ((d <= cal.threshold) & ~same).mean() / (~same).mean() <= 1e-2


def test_calibration_round_trip_keeps_the_identification_rule(tmp_path: Any) -> None:
    rng = np.random.default_rng(4)
    v = _people(rng, 10, 4)
    labels = [f"p{i // 4}" for i in range(40)]
    dist, same = pair_distances(v, labels)
    from dataclasses import replace

    cal = replace(calibrate(dist, same), identification=calibrate_open_set(v, labels))
    cal.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back == cal and back.identify_threshold == cal.identification.threshold  # type: ignore[union-attr]
    old = cal.to_dict()
    del old["identification"]  # an index calibrated before the open-set rule: identification uses the pair rule
    assert Calibration.from_dict(old).identify_threshold == cal.threshold


def _faces(boxes: list[list[float]], size: tuple[int, int]) -> Faces:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    lm = np.tile(((b[:, :2] + b[:, 2:]) / 2)[:, None, :], (1, 5, 1))
    return Faces(b, lm, np.ones(len(b), np.float32), size)


class _TightCropDetector:
    """Like BlazeFace on a tight crop: a face filling the frame is missed and a small false face found at the
    chin; inside a border the face is found. The true face is the bright block."""

    name = "tight"

    def detect(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        ys, xs = np.nonzero(image.max(2) > 100)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        if box[2] - box[0] > 0.8 * w:  # fills the frame: missed; a 6 px "face" on the chin instead
            return _faces([[w / 2 - 3, h - 8, w / 2 + 3, h - 2]], (h, w))
        return _faces([box, [box[0], box[1], box[0] + 6, box[1] + 6]], (h, w))  # the face, and a tiny false one

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class _BoxEmbedder:
    name, dim = "box", 4

    def embed(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        return np.asarray(faces.xyxy, np.float32)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim}


def test_tight_crop_is_padded_and_one_face_is_kept_with_the_rest_reported() -> None:
    pipe = FacePipeline(_TightCropDetector(), _BoxEmbedder())  # type: ignore[arg-type]
    crop = np.full((60, 60, 3), 200, np.uint8)  # the face is the whole photo
    found = pipe.find_labeled(crop)
    assert len(found.faces) == 1 and found.dropped == 1
    np.testing.assert_allclose(found.faces.xyxy[0], [0, 0, 60, 60])  # the real face, in the photo's pixels
    assert found.vectors.shape == (1, 4)
    everything = pipe.find_labeled(crop, all_faces=True)  # the tiny false face is still dropped
    assert len(everything.faces) == 1 and everything.dropped == 1


def test_main_face_is_the_most_central_of_the_largest() -> None:
    faces = _faces([[0, 0, 50, 50], [100, 100, 148, 148], [200, 0, 210, 10]], (250, 250))
    assert main_face(faces) == 1  # nearly as large as the first and at the centre
    assert main_face(_faces([[0, 0, 50, 50], [110, 110, 140, 140]], (250, 250))) == 0  # far smaller: not it
