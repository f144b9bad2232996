"""The real BlazeFace detector (+ dlib landmarks) on deepface_celebs photos; skipped when data or weights are absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.data import load_image
from visrec.faces import FACE_DETECTORS, FaceGallery, build_gallery, create_face_pipeline

DATA = SHARED_DATA / "deepface_celebs"
NEEDS = ("mediapipe", "ai_edge_litert", "dlib", "face_recognition_models")
pytestmark = pytest.mark.skipif(
    not DATA.is_dir() or any(importlib.util.find_spec(m) is None for m in NEEDS),
    reason=f"needs {DATA} (../shared beside the repository, or VISREC_SHARED), "
    "ai-edge-litert, mediapipe==0.10.21 and dlib",
)

# Counted by eye: the couple; the group selfie (three faces cut by the border or half hidden); one portrait.
VISIBLE = {"couple.jpg": 2, "selfie-many-people.jpg": 7, "img11_reflection.jpg": 1}


@pytest.fixture(scope="module")
def detector() -> object:
    return FACE_DETECTORS.create("blazeface")


@pytest.mark.parametrize("name", sorted(VISIBLE))
def test_multiface_photos_give_one_box_per_visible_face(detector: object, name: str) -> None:
    image = load_image(DATA / "unlabeled_multiface" / name)
    faces = detector.detect(image)  # type: ignore[attr-defined]
    assert len(faces) == VISIBLE[name]
    assert faces.scheme == "dlib5" and faces.landmarks.shape == (len(faces), 5, 2)
    centres = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
    assert (centres >= 0).all() and (centres < [image.shape[1], image.shape[0]]).all()
    eyes = faces.landmarks[:, :4].mean(1)  # dlib5: four eye corners, then the nose
    inside = (eyes > faces.xyxy[:, :2]) & (eyes < faces.xyxy[:, 2:])
    assert inside.all(), "dlib's eye landmarks fall inside each BlazeFace box"


def test_no_face_in_a_blank_image_and_blaze6_keypoints(detector: object) -> None:
    assert len(detector.detect(np.full((240, 320, 3), 127, np.uint8))) == 0  # type: ignore[attr-defined]
    own = FACE_DETECTORS.create("blazeface", landmarks="blaze6")
    faces = own.detect(load_image(DATA / "unlabeled_multiface" / "couple.jpg"))
    assert faces.scheme == "blaze6" and faces.landmarks.shape == (2, 6, 2)


def test_an_index_records_its_detector_and_embedder(tmp_path: Path) -> None:
    items = [(p, p.parent.name) for person in ("Jeff", "Sundar") for p in sorted((DATA / "images" / person).glob("*"))]
    pipe = create_face_pipeline()
    gallery = build_gallery(items, pipe)
    gallery.save(tmp_path / "idx")
    built = FaceGallery.load(tmp_path / "idx").pipeline
    assert built["detector"]["name"] == "blazeface" and built["detector"]["weights"].endswith(".tflite")
    assert len(built["detector"]["sha256"]) == 16 and built["embedder"] == {**pipe.embedder.describe()}
    assert gallery.calibration is not None and gallery.calibration.auc == 1.0
