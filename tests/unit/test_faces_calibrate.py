"""Verification calibration on hand-made and synthetic distance distributions."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import BadInput, NotCalibrated
from visrec.faces import Calibration, auc, calibrate, eer, pair_distances, roc, threshold_for_far


def test_roc_and_auc_on_a_hand_computed_case() -> None:
    d = np.array([0.1, 0.2, 0.3, 0.4])
    same = np.array([1, 0, 1, 0])
    far, tar, thr = roc(d, same)
    np.testing.assert_allclose(far, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tar, [0, 0.5, 0.5, 1, 1])
    assert thr[1] == 0.1
    assert auc(d, same) == pytest.approx(0.75)  # 3 of the 4 (same, different) pairs are ordered right


def test_perfectly_separated_pairs() -> None:
    d = np.array([0.1, 0.15, 0.6, 0.7])
    same = np.array([1, 1, 0, 0])
    assert auc(d, same) == 1.0
    assert eer(d, same)[0] == 0.0
    thr, tar = threshold_for_far(d, same, 0.0)
    assert 0.15 <= thr < 0.6 and tar == 1.0


def _synthetic(n_same: int = 2000, n_diff: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    d = np.r_[rng.normal(0.3, 0.08, n_same), rng.normal(0.8, 0.1, n_diff)]
    return d, np.r_[np.ones(n_same, bool), np.zeros(n_diff, bool)]


def test_threshold_for_a_target_far_holds_on_the_data() -> None:
    d, same = _synthetic()
    for target in (1e-2, 1e-3):
        thr, tar = threshold_for_far(d, same, target)
        assert ((d <= thr) & ~same).sum() / (~same).sum() <= target
        assert tar == pytest.approx(((d <= thr) & same).mean() / same.mean())
    assert threshold_for_far(d, same, 1e-3)[0] < threshold_for_far(d, same, 1e-2)[0]


def test_eer_matches_the_gaussian_overlap() -> None:
    d, same = _synthetic()
    # Equal-variance-ish Gaussians 0.5 apart: the EER is near Phi(-0.25 / 0.09) ~ 0.3 %.
    rate, thr = eer(d, same)
    assert rate < 0.01 and 0.45 < thr < 0.6


def test_calibration_json_round_trip_and_probability(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d, same = _synthetic(300, 3000)
    cal = calibrate(d, same, target_far=1e-2)
    cal.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back == cal
    p = back.probability(np.array([0.1, 0.55, 1.0]))
    assert p[0] > 0.95 and p[2] < 0.05 and p[0] > p[1] > p[2]
    assert set(back.tar_at_far) == {"0.1", "0.01", "0.001"}


def test_errors_name_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match="both same and different"):
        calibrate(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(NotCalibrated, match="visrec faces index"):
        Calibration.load(tmp_path / "missing.json")


def test_pair_distances_from_identities() -> None:
    v = np.array([[1, 0], [1, 0.01], [0, 1]], np.float32)
    d, same = pair_distances(v, ["a", "a", "b"])
    assert same.tolist() == [True, False, False]
    assert d[0] == pytest.approx(1 - 1 / np.hypot(1, 0.01), abs=1e-6) and d[1] == pytest.approx(1.0)
