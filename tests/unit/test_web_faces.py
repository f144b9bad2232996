"""The HTTP API's faces endpoints: clear errors without the faces extra or a face index, and (when dlib and
../shared/data/deepface_celebs are here) verify, identify and face clustering on real photos."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.fixtures_images import make_labeled_tree
from tests.shared_data import SHARED_DATA
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index.writer import build_index
from visrec.web import ServeConfig, Service
from visrec.web.api import create_api

DATA = SHARED_DATA / "deepface_celebs" / "images"
HAVE_FACES = (
    DATA.is_dir()
    and importlib.util.find_spec("dlib") is not None
    and importlib.util.find_spec("face_recognition_models") is not None
)
real_faces = pytest.mark.skipif(not HAVE_FACES, reason="needs deepface_celebs and dlib-bin + face-recognition-models")
GALLERY = {"Jeff": ["img20.jpg"], "Sundar": ["img24.jpg", "img25.jpg"], "Marissa": ["img22.jpg", "img23.jpg"]}


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_labeled_tree(root / "images", ("amber", "blue"), per_class=3, size=32)
    build_index(load_dataset(root / "images"), root / "idx.vrx", create_encoder("fake"))
    return root / "idx.vrx"


@pytest.fixture(scope="module")
def face_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visrec.faces import build_gallery, create_face_pipeline

    out = tmp_path_factory.mktemp("faces") / "faces"
    items = [(DATA / person / name, person) for person, names in GALLERY.items() for name in names]
    build_gallery(items, create_face_pipeline()).save(out)
    return out


def client(index: Path, **cfg: object) -> TestClient:
    return TestClient(create_api(Service(ServeConfig(index, **cfg))), raise_server_exceptions=False)  # type: ignore[arg-type]


def photo(person: str, name: str) -> tuple[str, bytes, str]:
    return name, (DATA / person / name).read_bytes(), "image/jpeg"


def blank_png() -> tuple[str, bytes, str]:
    buf = io.BytesIO()
    Image.fromarray(np.full((120, 120, 3), 127, np.uint8)).save(buf, format="PNG")
    return "blank.png", buf.getvalue(), "image/png"


def test_without_the_faces_extra_the_answer_is_503_with_the_install_command(
    index_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now fails as if it were not installed
    c = client(index_path)
    info = c.get("/api/faces").json()
    assert info["available"] is False and "pip install 'visrec[faces]'" in info["install"]
    r = c.post("/api/faces/verify", files={"a": blank_png(), "b": blank_png()})
    assert r.status_code == 503 and "pip install 'visrec[faces]'" in r.json()["error"]
    d = index_path.parent / "some"
    d.mkdir(exist_ok=True)
    r = client(index_path, allow_roots=(d,)).post("/api/cluster", json={"folder": str(d), "what": "faces"})
    assert r.status_code == 503 and "visrec[faces]" in r.json()["error"]


def test_identify_without_a_face_index_says_how_to_build_one(index_path: Path) -> None:
    r = client(index_path).post("/api/faces/identify", files={"file": blank_png()})
    assert r.status_code == 409 and "visrec faces index" in r.json()["error"] and "--faces" in r.json()["error"]


def test_faces_malformed_requests_are_4xx(index_path: Path) -> None:
    c = client(index_path, max_upload_bytes=1000)
    assert c.post("/api/faces/verify", files={"a": blank_png()}).status_code == 422  # b missing
    assert c.post("/api/faces/identify").status_code == 422
    r = c.post("/api/faces/verify", files={"a": ("a.txt", b"hi", "text/plain"), "b": blank_png()})
    assert r.status_code == 400 and "a.txt" in r.json()["error"]
    big = ("big.png", b"\x89PNG" + b"\0" * 2000, "image/png")
    assert c.post("/api/faces/verify", files={"a": big, "b": big}).status_code == 413


def test_a_missing_face_index_folder_fails_at_start(index_path: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not a face index"):
        Service(ServeConfig(index_path, faces=tmp_path))


@real_faces
def test_verify_same_and_different_people(index_path: Path) -> None:
    c = client(index_path)
    r = c.post("/api/faces/verify", files={"a": photo("Jeff", "img20.jpg"), "b": photo("Jeff", "img21.jpg")})
    body = r.json()
    assert r.status_code == 200 and body["same"] is True and body["threshold_source"] == "default"
    assert body["distance"] < body["threshold"] and len(body["a"]["box"]) == 4
    r = c.post("/api/faces/verify", files={"a": photo("Jeff", "img21.jpg"), "b": photo("Sundar", "img25.jpg")})
    assert r.status_code == 200 and r.json()["same"] is False
    r = c.post("/api/faces/verify", files={"a": photo("Jeff", "img21.jpg"), "b": blank_png()})
    assert r.status_code == 400 and "blank.png: no face found" in r.json()["error"]


@real_faces
def test_identify_against_the_face_index(index_path: Path, face_index: Path) -> None:
    c = client(index_path, faces=face_index)
    info = c.get("/api/faces").json()
    assert info["available"] and info["people"] == 3 and info["faces"] == 5
    assert info["identification"]["strangers"] == 5  # each face searched against the index without its person
    r = c.post("/api/faces/identify", files={"file": photo("Jeff", "img21.jpg")})
    faces = r.json()["faces"]
    assert r.status_code == 200 and [f["label"] for f in faces] == ["Jeff"]
    assert r.json()["threshold_source"] == "calibrated at FPIR 0.01"
    r = c.post("/api/faces/identify", files={"file": photo("Elon", "img67.jpg")})
    assert r.status_code == 200 and [f["label"] for f in r.json()["faces"]] == [None]
    assert c.post("/api/faces/identify", files={"file": blank_png()}).json()["faces"] == []


@real_faces
def test_cluster_faces_of_a_folder(index_path: Path, tmp_path: Path) -> None:
    for person in ("Jeff", "Sundar"):
        (tmp_path / person).mkdir()
        for f in sorted((DATA / person).glob("*.jpg")):
            (tmp_path / person / f.name).symlink_to(f)  # the photos stay where they are
    c = client(index_path, allow_roots=(tmp_path, DATA))  # the links resolve into DATA, which must be allowed too
    job = c.post("/api/cluster", json={"folder": str(tmp_path), "what": "faces"}).json()["job"]
    body = c.get(f"/api/cluster/{job}", params={"wait": 60}).json()
    assert body["status"] == "done" and sorted(body["sizes"].values()) == [2, 2]
    assert body["quality_vs_folders"]["purity"] == 1.0
    sheet = c.get(f"/api/cluster/{job}/sheet/{next(iter(body['clusters']))}")
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/png"
