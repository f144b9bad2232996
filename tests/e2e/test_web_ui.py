"""`visrec serve` driven in headless Chromium: upload images on the Search, Classify, Scene and Faces tabs, cluster
a server folder on the Cluster tab, check the results shown, check that the API docs render their operations with
every request outside the server refused (offline), and take a screenshot of each tab (set
VISREC_SCREENSHOT_DIR=docs to refresh the README's pictures). Faces use ../shared/data/deepface_celebs and dlib
when both are here (the photos are read in place, never copied)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from tests.shared_data import SHARED_DATA

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
    pytest.mark.slow,
]
CLASSES = ("red", "green", "blue")  # named after their class_colour hue, so the screenshots read naturally
FACES = SHARED_DATA / "deepface_celebs" / "images"
HAVE_FACES = FACES.is_dir() and all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scene(path: Path) -> Path:
    """A light 360x240 scene with a green-class patch top left and a blue-class patch bottom right."""
    img = np.full((240, 360, 3), 235, np.uint8)
    img[30:130, 30:130] = noise_image(100, seed=5, base=class_colour(1, 3))
    img[110:230, 210:330] = noise_image(120, seed=6, base=class_colour(2, 3))
    Image.fromarray(img).save(path)
    return path


def _face_index(out: Path) -> list[str]:
    """A small face index of three people from deepface_celebs; the arguments that serve it."""
    if not HAVE_FACES:
        return []
    from visrec.faces import build_gallery, create_face_pipeline

    people = {"Jeff": ["img20.jpg"], "Sundar": ["img25.jpg"], "Marissa": ["img22.jpg", "img23.jpg"]}
    build_gallery([(FACES / p / n, p) for p, ns in people.items() for n in ns], create_face_pipeline()).save(out)
    return ["--faces", str(out)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.writer import build_index

    root = tmp_path_factory.mktemp("data")
    make_labeled_tree(root / "images", CLASSES, per_class=8, size=96)
    out = root / "idx.vrx"
    build_index(load_dataset(root / "images"), out, create_encoder("fake"))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "visrec.cli", "serve", str(out), "--port", str(port), "--writable"]
    cmd += ["--allow-root", str(root / "images")]
    cmd += _face_index(root / "faces")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/api/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server died"
                assert time.time() < deadline, "server did not start"
                time.sleep(0.5)
        query = root / "query.png"
        Image.fromarray(noise_image(96, seed=31337, base=class_colour(1, 3))).save(query)
        _scene(root / "scene.png")
        yield url, query
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server: tuple[str, Path]) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.goto(server[0] + "/", wait_until="networkidle")
        yield pg
        browser.close()


def _upload(page: object, component: str, path: str | Path) -> None:
    """Choose a file in an image component and wait until its preview shows (the upload has reached the server)."""
    page.locator(f"{component} input[type=file]").set_input_files(str(path))  # type: ignore[attr-defined]
    page.locator(f"{component} img").first.wait_for(timeout=60_000)  # type: ignore[attr-defined]


def _shot(page: object, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("VISREC_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def test_search_tab_shows_hits_of_the_right_label(page: object, server: tuple[str, Path], tmp_path: Path) -> None:
    pg = page
    _upload(pg, "#search-image", str(server[1]))
    pg.locator("#search-button").click()  # type: ignore[attr-defined]
    pg.locator("#search-results img").first.wait_for(timeout=60_000)  # type: ignore[attr-defined]
    captions = pg.locator("#search-results").inner_text()  # type: ignore[attr-defined]
    labels = [line.split()[0] for line in captions.splitlines() if line.split() and line != "results"]
    assert labels[:8] == ["green"] * 8  # the 8 indexed green images come first, best first
    _shot(pg, "search", tmp_path)


def test_classify_tab_shows_the_label(page: object, server: tuple[str, Path], tmp_path: Path) -> None:
    pg = page
    pg.get_by_role("tab", name="Classify").click()  # type: ignore[attr-defined]
    _upload(pg, "#classify-image", str(server[1]))
    pg.locator("#classify-button").click()  # type: ignore[attr-defined]
    answer = pg.locator("#classify-answer textarea, #classify-answer input").first  # type: ignore[attr-defined]
    pg.wait_for_function(  # type: ignore[attr-defined]
        "() => { const e = document.querySelector('#classify-answer textarea, #classify-answer input');"
        " return e && e.value.length > 0; }",
        timeout=60_000,
    )
    assert answer.input_value() == "green"
    assert "confidence" in pg.locator("#classify-confidence").inner_text()  # type: ignore[attr-defined]
    _shot(pg, "classify", tmp_path)


def test_compare_tab_explains_how_to_get_a_report(page: object, tmp_path: Path) -> None:
    pg = page
    pg.get_by_role("tab", name="Compare").click()  # type: ignore[attr-defined]
    assert "visrec compare" in pg.locator("body").inner_text()  # type: ignore[attr-defined]


def test_index_tab_lists_counts(page: object, tmp_path: Path) -> None:
    pg = page
    pg.get_by_role("tab", name="Index").click()  # type: ignore[attr-defined]
    table = pg.locator("#index-counts")  # type: ignore[attr-defined]
    table.wait_for()
    text = table.inner_text()
    assert all(c in text for c in CLASSES)
    _shot(pg, "index", tmp_path)


def _wait_text(page: object, selector: str, text: str, timeout: int = 90_000) -> str:
    """Wait until the element's text contains ``text``; returns the text."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "([sel, t]) => { const e = document.querySelector(sel); return e && e.innerText.includes(t); }",
        arg=[selector, text],
        timeout=timeout,
    )
    return str(page.locator(selector).inner_text())  # type: ignore[attr-defined]


def test_scene_tab_draws_and_lists_the_regions(page: object, server: tuple[str, Path], tmp_path: Path) -> None:
    pg = page
    pg.get_by_role("tab", name="Scene").click()  # type: ignore[attr-defined]
    scene = server[1].parent / "scene.png"
    _upload(pg, "#scene-image", str(scene))
    pg.locator("#scene-button").click()  # type: ignore[attr-defined]
    table = _wait_text(pg, "#scene-regions", "green")
    assert "blue" in table and "red" not in table  # each patch found with its label, nothing else
    assert "region(s) in 360x240 px" in pg.locator("#scene-info").inner_text()  # type: ignore[attr-defined]
    pg.locator("#scene-annotated img").first.wait_for(timeout=30_000)  # type: ignore[attr-defined]
    _shot(pg, "scene", tmp_path)


def test_faces_tab_verifies_and_identifies(page: object, tmp_path: Path) -> None:
    pg = page
    pg.get_by_role("tab", name="Faces").click()  # type: ignore[attr-defined]
    if not HAVE_FACES:
        if importlib.util.find_spec("dlib") is None:
            assert "pip install" in pg.locator("#faces-missing").inner_text()  # type: ignore[attr-defined]
        pytest.skip(f"needs {FACES.parent} (../shared or VISREC_SHARED) and dlib-bin + face-recognition-models")
    _upload(pg, "#faces-a", str(FACES / "Jeff" / "img20.jpg"))
    _upload(pg, "#faces-b", str(FACES / "Jeff" / "img21.jpg"))
    pg.locator("#faces-verify-button").click()  # type: ignore[attr-defined]
    assert "same person" in _wait_text(pg, "#faces-verdict", "threshold")
    pg.locator("#faces-b-out img").first.wait_for(timeout=30_000)  # type: ignore[attr-defined]
    photo = FACES / "Sundar" / "img24.jpg"
    _upload(pg, "#faces-identify-image", str(photo))
    pg.locator("#faces-identify-button").click()  # type: ignore[attr-defined]
    _wait_text(pg, "#faces-identify-table", "Sundar")
    pg.locator("#faces-identified img").first.wait_for(timeout=30_000)  # type: ignore[attr-defined]
    # The photos belong to third parties and stay out of the repository: blur them in the picture (only there).
    photos = ", ".join(f"#faces-{c} img" for c in ("a", "b", "a-out", "b-out", "identify-image", "identified"))
    pg.add_style_tag(content=photos + " { filter: blur(16px); }")  # type: ignore[attr-defined]
    _shot(pg, "faces", tmp_path)


def test_cluster_tab_groups_a_server_folder(page: object, server: tuple[str, Path], tmp_path: Path) -> None:
    pg = page
    pg.get_by_role("tab", name="Cluster").click()  # type: ignore[attr-defined]
    pg.locator("#cluster-folder textarea, #cluster-folder input").first.fill(  # type: ignore[attr-defined]
        str(server[1].parent / "images")
    )
    pg.locator("#cluster-button").click()  # type: ignore[attr-defined]
    status = _wait_text(pg, "#cluster-status", "clusters in")
    assert "3 clusters" in status and "purity 1.00" in status
    pg.locator("#cluster-items img").nth(7).wait_for(timeout=30_000)  # type: ignore[attr-defined]
    captions = pg.locator("#cluster-items").inner_text()  # type: ignore[attr-defined]
    folders = {line.split("/")[0] for line in captions.splitlines() if "/" in line}
    assert len(folders) == 1  # the cluster shown holds one colour folder
    pg.locator("#cluster-pick input").click()  # type: ignore[attr-defined]
    pg.get_by_role("option", name="c1").click()  # type: ignore[attr-defined]
    # wait until the gallery shows 8 items of one other folder (not a half-updated gallery)
    pg.wait_for_function(  # type: ignore[attr-defined]
        "f => { const lines = document.querySelector('#cluster-items').innerText.split('\\n')"
        ".filter(l => l.includes('/')); const dirs = new Set(lines.map(l => l.split('/')[0]));"
        " return lines.length >= 8 && dirs.size === 1 && !dirs.has(f); }",
        arg=folders.pop(),
        timeout=30_000,
    )
    _shot(pg, "cluster", tmp_path)


def test_api_docs_render_their_operations_offline(page: object, server: tuple[str, Path]) -> None:
    url = server[0]
    docs = page.context.browser.new_page()  # type: ignore[attr-defined]
    outside: list[str] = []

    def only_this_server(route: object) -> None:
        request_url = route.request.url  # type: ignore[attr-defined]
        if request_url.startswith(url):
            route.continue_()  # type: ignore[attr-defined]
        else:
            outside.append(request_url)
            route.abort()  # type: ignore[attr-defined]

    docs.route("**/*", only_this_server)
    docs.goto(url + "/docs")
    docs.locator(".opblock").first.wait_for(timeout=30_000)
    paths = docs.locator(".opblock-summary-path").all_inner_texts()
    assert {"/api/search/image", "/api/classify", "/api/scene", "/api/cluster"} <= {p.strip() for p in paths}
    assert outside == []  # nothing fetched from a CDN
    docs.close()
