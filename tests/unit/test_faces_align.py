"""Alignment: the similarity transform from 5 landmarks to the canonical template, and the warped crop."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import BadInput
from visrec.faces import TEMPLATE_112, align_face, apply_transform, umeyama


def _similarity(scale: float, angle_deg: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.c_[rot, shift]


def test_umeyama_recovers_a_known_similarity() -> None:
    truth = _similarity(2.5, 30.0, (40.0, -12.0))
    dst = apply_transform(truth, TEMPLATE_112)
    np.testing.assert_allclose(umeyama(TEMPLATE_112, dst), truth, atol=1e-9)


def test_umeyama_is_least_squares_under_noise_and_never_reflects() -> None:
    rng = np.random.default_rng(0)
    truth = _similarity(0.5, -70.0, (3.0, 8.0))
    dst = apply_transform(truth, TEMPLATE_112) + rng.normal(0, 0.2, (5, 2))
    est = umeyama(TEMPLATE_112, dst)
    assert np.linalg.det(est[:, :2]) > 0
    np.testing.assert_allclose(est[:, :2], truth[:, :2], atol=0.01)
    np.testing.assert_allclose(est[:, 2], truth[:, 2], atol=0.5)


def test_tilted_face_lands_on_the_template() -> None:
    # A face rotated 25 degrees, scaled x3 and moved: after alignment its landmarks sit on the template.
    forward = _similarity(3.0, 25.0, (150.0, 90.0))
    landmarks = apply_transform(forward, TEMPLATE_112)
    image = np.zeros((600, 600, 3), np.uint8)
    for x, y in landmarks.round().astype(int):
        image[y - 4 : y + 5, x - 4 : x + 5] = 255
    crop = align_face(image, landmarks, size=112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in TEMPLATE_112.round().astype(int):
        assert crop[y, x].mean() > 200, f"no bright dot at template point {(x, y)}"
    assert crop[5, 5].mean() == 0


def test_bad_landmarks_are_refused_with_the_expected_shape() -> None:
    with pytest.raises(BadInput, match=r"\(5, 2\)"):
        align_face(np.zeros((10, 10, 3), np.uint8), np.zeros((4, 2)))
    with pytest.raises(BadInput, match="all the same"):
        umeyama(np.ones((5, 2)), TEMPLATE_112)
