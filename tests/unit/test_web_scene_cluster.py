"""The HTTP API's scene analysis and background clustering over a small fake-encoder index."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index.writer import build_index
from visrec.web import ServeConfig, Service
from visrec.web.api import create_api
from visrec.web.jobs import ClusterJobs

CLASSES = ("amber", "blue", "crimson")
BLUE_BOX, CRIMSON_BOX = (30, 30, 130, 130), (210, 110, 330, 230)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    make_labeled_tree(root / "images", CLASSES, per_class=8, size=48)
    out = root / "idx.vrx"
    build_index(load_dataset(root / "images"), out, create_encoder("fake"))
    return out, root / "images"


def client(service: Service) -> TestClient:
    return TestClient(create_api(service), raise_server_exceptions=False)


def scene_png() -> bytes:
    """A light background with a 'blue'-class patch top left and a 'crimson'-class patch bottom right."""
    img = np.full((240, 360, 3), 235, np.uint8)
    for (x0, y0, x1, y1), cls, seed in ((BLUE_BOX, 1, 5), (CRIMSON_BOX, 2, 6)):
        img[y0:y1, x0:x1] = noise_image((x1 - x0, y1 - y0), seed=seed, base=class_colour(cls, 3))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_scene_finds_each_patch_with_its_label_and_box(data: tuple[Path, Path]) -> None:
    c = client(Service(ServeConfig(data[0])))
    r = c.post("/api/scene", files={"file": ("scene.png", scene_png(), "image/png")})
    body = r.json()
    assert r.status_code == 200 and (body["width"], body["height"]) == (360, 240)
    assert {reg["label"] for reg in body["regions"]} == {"blue", "crimson"}
    truth = {"blue": BLUE_BOX, "crimson": CRIMSON_BOX}
    best = {}
    for reg in body["regions"]:  # most confident first; each region lies on the patch of its label
        assert iou(reg["box"], truth[reg["label"]]) > 0
        best.setdefault(reg["label"], reg["box"])
    assert iou(best["blue"], BLUE_BOX) > 0.45 and iou(best["crimson"], CRIMSON_BOX) > 0.45
    r = c.post("/api/scene/annotated", files={"file": ("scene.png", scene_png(), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert drawn.shape == (240, 360, 3) and (drawn != np.asarray(Image.open(io.BytesIO(scene_png())))).any()
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/api/scene", "/api/faces/verify", "/api/faces/identify", "/api/cluster"} <= set(paths)


def test_scene_options_and_an_empty_scene(data: tuple[Path, Path]) -> None:
    c = client(Service(ServeConfig(data[0])))
    files = {"file": ("scene.png", scene_png(), "image/png")}
    r = c.post("/api/scene", files=files, data={"segmenter": "proposals", "unknown": "true", "mode": "prototype"})
    assert r.status_code == 200 and r.json()["regions"]
    r = c.post("/api/scene", files=files, data={"min_score": "1.0"})
    assert r.status_code == 200 and all(reg["score"] >= 1.0 for reg in r.json()["regions"])
    buf = io.BytesIO()  # a large plain JPEG: nothing to find, and the size is the file's (not a reduced decode)
    Image.fromarray(np.full((2100, 2400, 3), 235, np.uint8)).save(buf, format="JPEG")
    r = c.post("/api/scene", files={"file": ("plain.jpg", buf.getvalue(), "image/jpeg")})
    assert (
        r.status_code == 200 and r.json()["regions"] == [] and (r.json()["width"], r.json()["height"]) == (2400, 2100)
    )
    # face-first regions: coloured patches hold no face (503 naming the extra where it is not installed)
    r = c.post("/api/scene", files=files, data={"segmenter": "faces"})
    assert (r.status_code, r.json().get("regions")) == (200, []) or (r.status_code == 503 and "faces" in r.text)


def test_scene_malformed_requests_are_clear_4xx(data: tuple[Path, Path]) -> None:
    c = client(Service(ServeConfig(data[0], max_upload_bytes=50_000)))
    ok = {"file": ("scene.png", scene_png(), "image/png")}
    assert c.post("/api/scene").status_code == 422
    assert c.post("/api/scene", files=ok, data={"segmenter": "sam"}).status_code == 422
    assert c.post("/api/scene", files=ok, data={"min_score": "2"}).status_code == 422
    r = c.post("/api/scene", files={"file": ("s.exe", b"MZ..", "application/octet-stream")})
    assert r.status_code == 400 and "s.exe" in r.json()["error"]
    r = c.post("/api/scene/annotated", files={"file": ("s.jpg", b"plain text", "image/jpeg")})
    assert r.status_code == 415 and "not-an-image" in r.json()["error"]
    big = scene_png() + b"\0" * 60_000
    assert c.post("/api/scene", files={"file": ("s.png", big, "image/png")}).status_code == 413
    guarded = client(Service(ServeConfig(data[0], token="t0k")))
    assert guarded.post("/api/scene", files=ok).status_code == 401
    assert guarded.post("/api/scene", files=ok, headers={"Authorization": "Bearer t0k"}).status_code == 200


def test_cluster_needs_folder_access(data: tuple[Path, Path]) -> None:
    r = client(Service(ServeConfig(data[0], writable=True))).post("/api/cluster", json={"folder": str(data[1])})
    assert r.status_code == 403 and "--allow-root" in r.json()["error"]


def test_cluster_job_groups_the_folders_and_serves_sheets(data: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(data[1], folder)
    (folder / "amber" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    c = client(Service(ServeConfig(data[0], allow_roots=(tmp_path,))))
    r = c.post("/api/cluster", json={"folder": str(folder), "method": "kmeans", "k": 3})
    assert r.status_code == 202 and r.json()["status"] in ("running", "done")
    job = r.json()["job"]
    body = c.get(f"/api/cluster/{job}", params={"wait": 60}).json()
    assert body["status"] == "done" and body["done"] == body["total"] == 25
    assert body["skipped"][0][0].endswith("broken.jpg")
    assert sorted(body["sizes"].values()) == [8, 8, 8] and body["quality_vs_folders"]["purity"] == 1.0
    first = next(iter(body["clusters"].values()))
    assert len({item.split("/")[0] for item in first}) == 1  # one folder per cluster
    sheet = c.get(f"/api/cluster/{job}/sheet/{next(iter(body['clusters']))}")
    assert sheet.status_code == 200 and Image.open(io.BytesIO(sheet.content)).width > 96 * 7
    assert c.get(f"/api/cluster/{job}/sheet/nope").status_code == 404
    assert c.get("/api/cluster/c999").status_code == 404


def test_cluster_malformed_requests_and_failures_are_reported(data: tuple[Path, Path], tmp_path: Path) -> None:
    c = client(Service(ServeConfig(data[0], allow_roots=(tmp_path, data[1]))))
    assert c.post("/api/cluster", json={}).status_code == 422
    assert c.post("/api/cluster", json={"folder": str(data[1]), "what": "videos"}).status_code == 422
    assert c.post("/api/cluster", json={"folder": str(data[1]), "k": 0}).status_code == 422
    assert c.post("/api/cluster", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    r = c.post("/api/cluster", json={"folder": str(tmp_path / "missing")})
    assert r.status_code == 400 and "missing" in r.json()["error"]
    (tmp_path / "empty").mkdir()
    job = c.post("/api/cluster", json={"folder": str(tmp_path / "empty")}).json()["job"]
    body = c.get(f"/api/cluster/{job}", params={"wait": 60}).json()
    assert body["status"] == "failed" and "no image files" in body["error"]
    assert c.get(f"/api/cluster/{job}", params={"wait": 99}).status_code == 422


def test_a_second_cluster_job_waits_for_the_first(data: tuple[Path, Path]) -> None:
    service = Service(ServeConfig(data[0], allow_roots=(data[1],)))
    gate = threading.Event()

    def held_encoder() -> object:
        gate.wait(60)
        return service.index.encoder

    service.clusters = ClusterJobs(held_encoder, service.faces)
    c = client(service)
    first = c.post("/api/cluster", json={"folder": str(data[1]), "k": 3})
    second = c.post("/api/cluster", json={"folder": str(data[1]), "k": 3})
    assert first.status_code == 202 and second.status_code == 409 and "still running" in second.json()["error"]
    gate.set()
    assert c.get(f"/api/cluster/{first.json()['job']}", params={"wait": 60}).json()["status"] == "done"
    assert c.post("/api/cluster", json={"folder": str(data[1]), "k": 3}).status_code == 202
