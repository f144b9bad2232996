"""The HTTP API over a small fake-encoder index: every endpoint, upload limits, the token, malformed requests."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index import Index
from visrec.index.writer import build_index
from visrec.web import ServeConfig, Service
from visrec.web.api import create_api

CLASSES = ("amber", "blue", "crimson")


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_labeled_tree(root, CLASSES, per_class=8, size=48)
    out = tmp_path_factory.mktemp("index") / "idx.vrx"
    build_index(load_dataset(root), out, create_encoder("fake"))
    return out


def client(index: Path, **cfg: object) -> TestClient:
    return TestClient(create_api(Service(ServeConfig(index, **cfg))), raise_server_exceptions=False)  # type: ignore[arg-type]


def png(colour_index: int, seed: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise_image(48, seed=seed, base=class_colour(colour_index, 3))).save(buf, format="PNG")
    return buf.getvalue()


def test_health_info_and_search(index_path: Path) -> None:
    c = client(index_path)
    assert c.get("/api/health").json()["count"] == 24
    assert c.get("/api/index").json()["labels"] == {c_: 8 for c_ in CLASSES}
    assert c.get("/api/index").json()["precision"] == "f32"  # the fake encoder runs float32
    r = c.post("/api/search/image?k=3", files={"file": ("q.png", png(1), "image/png")})
    assert r.status_code == 200 and [h["labels"] for h in r.json()["hits"]] == [["blue"]] * 3
    reranks: list[bool] = []
    real = Index.search_images

    def spy(self: Index, images: list, k: int = 10, where: str | None = None, rerank: bool = True) -> list:
        reranks.append(rerank)
        return real(self, images, k, where, rerank)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Index, "search_images", spy)
        for query in ("k=3&rerank=false", "k=3"):
            r = c.post(f"/api/search/image?{query}", files={"file": ("q.png", png(1), "image/png")})
            assert [h["labels"] for h in r.json()["hits"]] == [["blue"]] * 3
    assert reranks == [False, True]  # plain cosine on request, re-ranked by default
    r = c.post("/api/search/image?rerank=maybe", files={"file": ("q.png", png(1), "image/png")})
    assert r.status_code in (400, 422) and "error" in r.json()
    r = c.get("/api/search/text", params={"q": "crimson", "k": 2})
    assert r.json()["route"] == "labels" and [h["labels"] for h in r.json()["hits"]] == [["crimson"]] * 2
    assert "/api/classify" in c.get("/openapi.json").json()["paths"]


def test_classify_returns_label_confidence_and_neighbours(index_path: Path) -> None:
    r = client(index_path).post("/api/classify", files={"file": ("q.png", png(2, seed=99), "image/png")})
    body = r.json()
    assert r.status_code == 200 and body["prediction"]["label"] == "crimson"
    assert 0 <= body["prediction"]["calibrated"] <= 1 and len(body["nearest"]) == 5


def test_upload_limits_and_types(index_path: Path) -> None:
    c = client(index_path, max_upload_bytes=2000)
    big = png(0) + b"\0" * 3000
    assert c.post("/api/classify", files={"file": ("q.png", big, "image/png")}).status_code == 413
    c = client(index_path)
    r = c.post("/api/classify", files={"file": ("q.exe", b"MZ....", "application/octet-stream")})
    assert r.status_code == 400 and "q.exe" in r.json()["error"]
    r = c.post("/api/classify", files={"file": ("q.jpg", b"not an image at all", "image/jpeg")})
    assert r.status_code == 415 and "not-an-image" in r.json()["error"]
    r = c.post("/api/classify", files={"file": ("q.png", b"", "image/png")})
    assert r.status_code == 415


def test_malformed_requests_are_4xx(index_path: Path) -> None:
    c = client(index_path)
    assert c.post("/api/classify").status_code == 422  # no file
    assert c.post("/api/classify?mode=x", files={"file": ("q.png", png(0), "image/png")}).status_code == 422
    assert c.get("/api/search/text").status_code == 422
    assert c.get("/api/search/text", params={"q": "blue", "where": "label =="}).status_code == 400
    assert c.get("/api/search/text", params={"q": "blue", "k": 0}).status_code == 422
    assert c.post("/api/index/delete", json={"nope": 1}).status_code == 422


def test_token_is_required_when_set(index_path: Path) -> None:
    c = client(index_path, token="s3cret")
    assert c.get("/api/health").status_code == 200
    assert c.get("/api/index").status_code == 401
    assert c.get("/api/index", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/index", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_writes_need_writable_and_persist(index_path: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "idx.vrx"
    shutil.copytree(index_path, copy)
    assert client(copy).post("/api/index/add", files=[("files", ("n.png", png(0, 7), "image/png"))]).status_code == 403
    c = client(copy, writable=True)
    r = c.post("/api/index/add", files=[("files", ("n.png", png(0, 7), "image/png"))], data={"label": "amber"})
    assert r.status_code == 200 and r.json()["added"] == 1 and r.json()["count"] == 25
    assert c.get("/api/index").json()["labels"]["amber"] == 9
    new_id = next(i for i in Service(ServeConfig(copy)).index.store.ids() if i.startswith("upload/"))
    r = c.post("/api/index/delete", json={"ids": [new_id]})
    assert r.status_code == 200 and r.json()["removed"] == 1
    assert client(copy).get("/api/health").json()["count"] == 24


def test_delete_of_an_unknown_id_is_404_naming_it_and_deletes_nothing(index_path: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "idx.vrx"
    shutil.copytree(index_path, copy)
    c = client(copy, writable=True)
    known = Service(ServeConfig(copy)).index.store.ids()[0]
    r = c.post("/api/index/delete", json={"ids": ["amber/nope.jpg"]})
    assert r.status_code == 404 and r.json()["missing"] == ["amber/nope.jpg"]
    assert "'amber/nope.jpg'" in r.json()["error"] and str(copy) in r.json()["error"]
    r = c.post("/api/index/delete", json={"ids": [known, "gone.png", "amber/nope.jpg"]})  # all or none
    assert r.status_code == 404 and r.json()["missing"] == ["gone.png", "amber/nope.jpg"]
    assert "nothing was deleted" in r.json()["error"] and known not in r.json()["error"]
    assert c.get("/api/health").json()["count"] == 24
    r = c.post("/api/index/delete", json={"ids": [known, known]})
    assert r.status_code == 200 and r.json()["removed"] == 1 and r.json()["count"] == 23
    r = c.post("/api/index/delete", json={"ids": [known]})  # already gone
    assert r.status_code == 404 and r.json()["missing"] == [known]


def test_add_folder_reports_progress_and_keeps_existing_items(index_path: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "idx.vrx"
    shutil.copytree(index_path, copy)
    more = tmp_path / "more"
    make_labeled_tree(more, ("violet",), per_class=5, size=48, seed=3)
    (more / "violet" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    svc = Service(ServeConfig(copy, writable=True, allow_roots=(tmp_path,)))
    seen: list[tuple[int, int]] = []
    rep = svc.add_folder(more, progress=lambda d, n: seen.append((d, n)), batch=2)
    assert rep["added"] == 5 and rep["count"] == 29 and rep["skipped"][0][1] in ("truncated", "corrupt", "not-an-image")
    assert seen[-1] == (6, 6) and len(seen) == 3
    assert svc.info()["labels"]["violet"] == 5 and svc.info()["labels"]["amber"] == 8
    hit = svc.index.search_images([more / "violet" / "violet_0.jpg"], k=1)[0][0]
    assert svc.index.file_of(hit) == (more / "violet" / "violet_0.jpg").resolve()
    with pytest.raises(Exception, match="read-only"):
        Service(ServeConfig(copy)).add_folder(more)


def test_the_ui_asks_for_the_token_when_one_is_set(index_path: Path) -> None:
    from visrec.web import create_app

    ui = TestClient(create_app(ServeConfig(index_path, token="s3cret")))  # type: ignore[arg-type]
    assert ui.get("/config").status_code == 401
    assert ui.post("/login", data={"username": "me", "password": "wrong"}).status_code == 400
    assert ui.post("/login", data={"username": "me", "password": "s3cret"}).status_code == 200
    assert ui.get("/config").status_code == 200
    assert TestClient(create_app(ServeConfig(index_path))).get("/config").status_code == 200  # type: ignore[arg-type]


def test_both_searches_take_k_in_the_query_and_refuse_it_in_the_form(index_path: Path) -> None:
    c = client(index_path)
    image = {"file": ("q.png", png(1), "image/png")}
    assert len(c.post("/api/search/image", params={"k": 2}, files=image).json()["hits"]) == 2
    assert len(c.get("/api/search/text", params={"q": "blue", "k": 2}).json()["hits"]) == 2
    r = c.post("/api/search/image", files=image, data={"k": "2"})  # once silently ignored
    assert r.status_code == 400 and "/api/search/image?k=2" in r.json()["error"]
    r = c.post("/api/classify", files=image, data={"mode": "prototype"})
    assert r.status_code == 400 and "query string" in r.json()["error"]


def test_every_error_has_one_shape(index_path: Path) -> None:
    c = client(index_path, token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    responses = {
        "bad token": c.get("/api/index"),
        "validation": c.get("/api/search/text", params={"q": "blue", "k": 0}, headers=auth),
        "missing file": c.post("/api/classify", headers=auth),
        "bad filter": c.get("/api/search/text", params={"q": "blue", "where": "label =="}, headers=auth),
        "no route": c.get("/api/nope", headers=auth),
        "bad json": c.post("/api/index/delete", json={"nope": 1}, headers=auth),
    }
    for what, r in responses.items():
        body = r.json()
        assert 400 <= r.status_code < 500 and list(body) == ["error"] and isinstance(body["error"], str), what
    assert "k (query)" in responses["validation"].json()["error"]
    assert "file (body)" in responses["missing file"].json()["error"]


def test_index_info_names_the_runtime_that_runs(index_path: Path) -> None:
    enc = client(index_path).get("/api/index").json()["encoder"]
    assert enc["runtime"] in ("openvino", "onnxruntime")
