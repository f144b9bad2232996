"""`visrec serve` driven in headless Chromium: upload an image on the Search and Classify tabs, check the results
shown, and take a screenshot of each tab (set VISREC_SCREENSHOT_DIR=docs to refresh the README's pictures)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
    pytest.mark.slow,
]
CLASSES = ("amber", "blue", "crimson")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from visrec.build import build_index
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder

    root = tmp_path_factory.mktemp("data")
    make_labeled_tree(root / "images", CLASSES, per_class=8, size=96)
    out = root / "idx.vrx"
    build_index(load_dataset(root / "images"), out, create_encoder("fake"))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "visrec.cli", "serve", str(out), "--port", str(port)]
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


def _shot(page: object, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("VISREC_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def test_search_tab_shows_hits_of_the_right_label(page: object, server: tuple[str, Path], tmp_path: Path) -> None:
    pg = page
    pg.locator("#search-image input[type=file]").set_input_files(str(server[1]))  # type: ignore[attr-defined]
    pg.locator("#search-button").click()  # type: ignore[attr-defined]
    pg.locator("#search-results img").first.wait_for(timeout=60_000)  # type: ignore[attr-defined]
    captions = pg.locator("#search-results").inner_text()  # type: ignore[attr-defined]
    labels = [line.split()[0] for line in captions.splitlines() if line.split() and line != "results"]
    assert labels[:8] == ["blue"] * 8  # the 8 indexed blue images come first, best first
    _shot(pg, "search", tmp_path)


def test_classify_tab_shows_the_label(page: object, server: tuple[str, Path], tmp_path: Path) -> None:
    pg = page
    pg.get_by_role("tab", name="Classify").click()  # type: ignore[attr-defined]
    pg.locator("#classify-image input[type=file]").set_input_files(str(server[1]))  # type: ignore[attr-defined]
    pg.locator("#classify-button").click()  # type: ignore[attr-defined]
    answer = pg.locator("#classify-answer textarea, #classify-answer input").first  # type: ignore[attr-defined]
    pg.wait_for_function(  # type: ignore[attr-defined]
        "() => { const e = document.querySelector('#classify-answer textarea, #classify-answer input');"
        " return e && e.value.length > 0; }",
        timeout=60_000,
    )
    assert answer.input_value() == "blue"
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
