"""The server tried as an attacker on the same machine would: no file outside the server's own uploads and results is
read, copied or served (Gradio routes, API routes, folders), images over the pixel budget are refused from their
header, the token is strict and guards the docs, and errors never name server paths."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.fixtures_images import class_colour, make_decompression_bomb, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index.writer import build_index
from visrec.web import ServeConfig, Service, create_app
from visrec.web.api import create_api

SECRET = "TOP-SECRET-0f9c"


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_labeled_tree(root, ("amber", "blue"), per_class=4, size=32)
    out = tmp_path_factory.mktemp("index") / "idx.vrx"
    build_index(load_dataset(root), out, create_encoder("fake"))
    return out


@pytest.fixture()
def secrets(tmp_path: Path) -> dict[str, Path]:
    """A private text file, a private PNG, and symlinks to them from another folder."""
    private = tmp_path / "private"
    private.mkdir()
    text = private / "secret.txt"
    text.write_text(SECRET)
    text.chmod(0o600)
    image = private / "secret.png"
    Image.fromarray(noise_image(32, seed=3)).save(image)
    links = tmp_path / "links"
    links.mkdir()
    (links / "a.txt").symlink_to(text)
    (links / "a.png").symlink_to(image)
    return {"text": text, "image": image, "text_link": links / "a.txt", "image_link": links / "a.png"}


def png_bytes(colour: int = 0, size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise_image(size, seed=7, base=class_colour(colour, 2))).save(buf, format="PNG")
    return buf.getvalue()


def huge_png(width: int, height: int, tmp: Path) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` gray pixels (it never decodes)."""
    return make_decompression_bomb(tmp / "bomb.png", width, height).read_bytes()


def holds_secret(folder: Path) -> list[Path]:
    """Files under ``folder`` whose content holds the secret text or the secret image's bytes."""
    found = []
    for f in folder.rglob("*") if folder.is_dir() else []:
        if f.is_file() and SECRET.encode() in f.read_bytes():
            found.append(f)
    return found


def file_data(path: str | Path) -> dict[str, object]:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


@pytest.fixture()
def ui(index_path: Path) -> Iterator[tuple[TestClient, Path]]:
    app = create_app(ServeConfig(index_path, writable=True))
    folder = Path(os.environ["GRADIO_TEMP_DIR"])
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, folder


def event(c: TestClient, name: str, data: list[object]) -> tuple[int, str]:
    """Call a UI event through Gradio's ``call`` API; (status of the call, the event stream's text)."""
    r = c.post(f"/gradio_api/call/{name}", json={"data": data})
    if r.status_code != 200:
        return r.status_code, r.text
    return 200, c.get(f"/gradio_api/call/{name}/{r.json()['event_id']}").text


def test_gradio_events_never_copy_a_file_from_outside(ui: tuple[TestClient, Path], secrets: dict[str, Path]) -> None:
    c, folder = ui
    gradio_default = Path("/tmp/gradio")
    before = set(holds_secret(gradio_default))
    outside = [secrets["text"], secrets["text_link"], secrets["image_link"], folder / ".." / secrets["text"].name]
    relative = os.path.relpath(secrets["text"], os.getcwd())
    for path in [*outside, relative, "http://127.0.0.1:9/x.png", "file:///etc/passwd"]:
        status, text = event(c, "search", [file_data(path), "", 5])
        assert status == 403 and SECRET not in text, path
        status, _ = event(c, "add", [[file_data(path)], "x"])
        assert status == 403, path
        join = {"data": [file_data(path), "", 5], "fn_index": 0, "session_hash": "s"}
        assert c.post("/gradio_api/queue/join", json=join).status_code == 403
    # a FileData in the folder whose url points outside, and one nested deep in the payload
    bad_url = {**file_data(folder / "x.png"), "url": f"http://127.0.0.1/gradio_api/file={secrets['text']}"}
    assert event(c, "search", [bad_url, "", 5])[0] == 403
    assert event(c, "search", [{"a": [{"b": file_data(secrets["image"])}]}, "", 5])[0] == 403
    plain = {"content-type": "text/plain"}
    assert c.post("/gradio_api/call/search", content=b"not json", headers=plain).status_code == 400
    assert holds_secret(folder) == [] and set(holds_secret(gradio_default)) == before


def test_file_routes_serve_only_this_servers_uploads(ui: tuple[TestClient, Path], secrets: dict[str, Path]) -> None:
    c, folder = ui
    for path in (secrets["text"], secrets["text_link"], f"{folder}/../{secrets['text'].name}", "/etc/passwd"):
        for route in ("/gradio_api/file=", "/gradio_api/file/", "/file="):
            r = c.get(f"{route}{path}")
            assert r.status_code == 403 and SECRET not in r.text, (route, path)
    assert c.get("/gradio_api/proxy=http://127.0.0.1:9/x").status_code == 403
    for route in (f"//gradio_api//file={secrets['text']}", f"/api/../gradio_api/file={secrets['text']}"):
        assert c.get(route).status_code == 403
    for name in ("../../evil.png", str(secrets["text"].parent / "planted.png")):  # upload names cannot escape
        written = Path(c.post("/gradio_api/upload", files={"files": (name, png_bytes(), "image/png")}).json()[0])
        assert written.resolve().is_relative_to(folder) and not (secrets["text"].parent / "planted.png").exists()
    up = c.post("/gradio_api/upload", files={"files": ("q.png", png_bytes(), "image/png")})
    assert up.status_code == 200
    uploaded = Path(up.json()[0])
    assert uploaded.resolve().is_relative_to(folder)
    served = c.get(f"/gradio_api/file={uploaded}")
    assert served.status_code == 200 and served.content == png_bytes()
    (folder / "escape.png").symlink_to(secrets["image"])  # even a link inside the folder leads nowhere
    assert c.get(f"/gradio_api/file={folder / 'escape.png'}").status_code == 403
    assert event(c, "search", [file_data(folder / "escape.png"), "", 5])[0] == 403


def test_the_ui_still_searches_an_uploaded_image(ui: tuple[TestClient, Path]) -> None:
    c, folder = ui
    uploaded = c.post("/gradio_api/upload", files={"files": ("q.png", png_bytes(1), "image/png")}).json()[0]
    status, stream = event(c, "search", [file_data(uploaded), "", 3])
    assert status == 200 and "event: complete" in stream and "3 nearest images" in stream
    results = [Path(p) for p in os.listdir(folder)]
    assert results  # the upload and the result thumbnails were written in the server's own folder


def test_ui_uploads_over_the_pixel_budget_are_refused_from_their_header(
    ui: tuple[TestClient, Path], tmp_path: Path
) -> None:
    c, _ = ui
    big = huge_png(7000, 7000, tmp_path)
    uploaded = c.post("/gradio_api/upload", files={"files": ("big.png", big, "image/png")}).json()
    status, text = event(c, "search", [file_data(uploaded[0]), "", 3])
    assert status == 413 and "big.png" in text and "40000000" in text


def api(index: Path, **cfg: object) -> TestClient:
    return TestClient(create_api(Service(ServeConfig(index, **cfg))), raise_server_exceptions=False)  # type: ignore[arg-type]


def test_api_pixel_budget_and_errors_name_the_uploaded_file_only(index_path: Path, tmp_path: Path) -> None:
    c = api(index_path)
    r = c.post("/api/search/image", files={"file": ("holiday.png", huge_png(7000, 7000, tmp_path), "image/png")})
    assert r.status_code == 413 and "holiday.png" in r.json()["error"] and "40000000" in r.json()["error"]
    assert (
        api(index_path, max_pixels=100_000_000)
        .post("/api/search/image", files={"file": ("holiday.png", huge_png(9500, 9500, tmp_path), "image/png")})
        .status_code
        == 413
    )  # over Pillow's own bomb limit (89.5 MP): refused with the same message, no warning
    for name, data in (("cut.png", png_bytes()[:60]), ("notes.jpg", b"hello"), ("../../etc/x.png", b"")):
        body = c.post("/api/classify", files={"file": (name, data, "image/png")}).json()["error"]
        assert "/tmp" not in body and "upload" not in body.split(":")[0] and Path(name).name in body
    small = api(index_path, max_pixels=1000)
    r = small.post("/api/scene", files={"file": ("s.png", png_bytes(size=40), "image/png")})
    assert r.status_code == 413 and "1600 pixels" in r.json()["error"]


def test_the_token_is_strict_and_guards_the_docs(index_path: Path) -> None:
    c = api(index_path, token="s3cret")
    for header in ("s3cret", "Bearer  s3cret", "Bearer s3cret ", "Token s3cret", "Bearers3cret", "Basic s3cret"):
        assert c.get("/api/index", headers={"Authorization": header}).status_code == 401, header
    for header in ("Bearer s3cret", "bearer s3cret"):
        assert c.get("/api/index", headers={"Authorization": header}).status_code == 200
    for route in ("/docs", "/redoc", "/openapi.json"):
        r = c.get(route)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert c.get(route, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        basic = "Basic " + base64.b64encode(b"anyone:s3cret").decode()
        assert c.get(route, headers={"Authorization": basic}).status_code == 200
        wrong = "Basic " + base64.b64encode(b"anyone:guess").decode()
        assert c.get(route, headers={"Authorization": wrong}).status_code == 401
    schema = c.get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert api(index_path).get("/openapi.json").status_code == 200  # no token: open, as the API is


def test_docs_are_served_from_installed_files(index_path: Path) -> None:
    c = api(index_path)
    page = c.get("/docs").text
    assert "cdn" not in page.lower() and "/docs-assets/swagger-ui-bundle.js" in page
    js = c.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 500_000 and "SwaggerUIBundle" in js.text
    assert c.get("/docs-assets/swagger-ui.css").status_code == 200
    assert "/docs-assets/redoc.standalone.js" in c.get("/redoc").text


def test_folders_only_under_the_allowed_roots(index_path: Path, tmp_path: Path, secrets: dict[str, Path]) -> None:
    root = tmp_path / "photos"
    make_labeled_tree(root, ("amber", "blue"), per_class=3, size=32)
    (root / "amber" / "stolen.png").symlink_to(secrets["image"])
    (root / "elsewhere").symlink_to(secrets["image"].parent, target_is_directory=True)
    c = api(index_path, writable=True)
    assert "--allow-root" in c.post("/api/cluster", json={"folder": str(root)}).json()["error"]
    c = api(index_path, allow_roots=(root,))
    for folder in ("../..", str(root / ".."), str(root / "elsewhere"), "/", str(tmp_path / "private")):
        r = c.post("/api/cluster", json={"folder": folder})
        assert r.status_code == 403 and "outside" in r.json()["error"], folder
    job = c.post("/api/cluster", json={"folder": str(root), "k": 2}).json()["job"]
    body = c.get(f"/api/cluster/{job}", params={"wait": 60}).json()
    assert body["status"] == "done" and body["total"] == 6
    assert [s[1] for s in body["skipped"]] == ["outside-allowed-roots"]
    assert all("stolen" not in i for items in body["clusters"].values() for i in items)
    svc = Service(ServeConfig(api_copy(index_path, tmp_path), writable=True, allow_roots=(root,)))
    rep = svc.add_folder(root)
    assert rep["added"] == 6 and [s[1] for s in rep["skipped"]] == ["outside-allowed-roots"]
    with pytest.raises(Exception, match="outside the folders"):
        svc.add_folder(tmp_path)


def api_copy(index: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(index, tmp_path / "copy.vrx"))


def _http(url: str, body: dict[str, object] | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_a_real_writable_server_reads_nothing_outside(
    index_path: Path, tmp_path: Path, secrets: dict[str, Path]
) -> None:
    """`visrec serve --writable` on 127.0.0.1 attacked over HTTP: Gradio events, file routes, folders, the token."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = tmp_path / "gradio-base"  # the server's private UI folder is made inside it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GRADIO_TEMP_DIR": str(base),
           "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    cmd = [sys.executable, "-m", "visrec.cli", "serve", str(index_path), "--port", str(port), "--writable"]
    proc = subprocess.Popen([*cmd, "--token", "t0k"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if _http(url + "/api/health")[0] == 200:
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server died"
                assert time.time() < deadline, "server did not start"
                time.sleep(0.5)
        for path in (secrets["text"], secrets["text_link"], "/etc/passwd"):
            assert _http(f"{url}/gradio_api/call/add", {"data": [[file_data(path)], "x"]})[0] == 403
            assert _http(f"{url}/gradio_api/call/search", {"data": [file_data(path), "", 5]})[0] == 403
            status, text = _http(f"{url}/gradio_api/file={path}")
            assert status == 403 and SECRET not in text
        bearer = {"Authorization": "Bearer t0k"}
        assert _http(f"{url}/api/cluster", {"folder": "../.."}, bearer)[0] == 403
        assert _http(f"{url}/api/index", headers={"Authorization": "t0k"})[0] == 401
        assert _http(f"{url}/openapi.json")[0] == 401 and _http(f"{url}/openapi.json", headers=bearer)[0] == 200
        assert holds_secret(base) == []
        assert [p for p in base.iterdir() if p.name.startswith("visrec-ui-")]  # the UI folder was made in it
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
