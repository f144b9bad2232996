"""The real dlib pipeline on deepface_celebs photos (skipped when the data or dlib is absent)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.data import load_image
from visrec.faces import create_face_pipeline, distance_matrix

DATA = SHARED_DATA / "deepface_celebs"
pytestmark = pytest.mark.skipif(
    not DATA.is_dir()
    or importlib.util.find_spec("dlib") is None
    or importlib.util.find_spec("face_recognition_models") is None,
    reason=f"needs {DATA} (../shared beside the repository, or VISREC_SHARED) and dlib-bin + face-recognition-models",
)


def test_same_person_is_closer_than_another_and_blank_has_no_face() -> None:
    pipe = create_face_pipeline("dlib-hog", max_side=640)
    vec = {}
    for rel in ("images/Jeff/" + p.name for p in sorted((DATA / "images" / "Jeff").glob("*.jpg"))[:2]):
        faces, v = pipe.find(load_image(DATA / rel, draft_size=640), largest_only=True)
        assert len(faces) == 1 and v.shape == (1, 128)
        vec[rel] = v[0]
    other = sorted((DATA / "images" / "Sundar").glob("*.jpg"))[0]
    _, o = pipe.find(load_image(other, draft_size=640), largest_only=True)
    a, b = vec.values()
    same = distance_matrix(a[None], b[None])[0, 0]
    assert same < pipe.default_threshold < distance_matrix(a[None], o)[0, 0]
    faces, v = pipe.find(np.full((200, 200, 3), 127, np.uint8))
    assert len(faces) == 0 and v.shape == (0, 128)


def test_couple_photo_has_two_faces() -> None:
    pipe = create_face_pipeline("dlib-hog")
    faces = pipe.detector.detect(load_image(DATA / "unlabeled_multiface" / "couple.jpg"))
    assert len(faces) == 2
    assert faces.landmarks.shape == (2, 5, 2)
    inside = (faces.landmarks >= faces.xyxy[:, None, :2] - 5) & (faces.landmarks <= faces.xyxy[:, None, 2:] + 5)
    assert inside.all()
