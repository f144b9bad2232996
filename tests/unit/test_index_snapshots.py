"""Snapshot reads: an opened Index keeps answering (with its calibration) while writers commit, moves to the new
generation before the next query, and a generation's files go only when its last reader lets go."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index import Index, IndexFolder
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index

CLASSES = ("amber", "blue", "crimson", "green")
SRC = Path(__file__).resolve().parents[2] / "src"


def _gens(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.name.startswith("gen-")}


def _add_images(root: Path, n: int, start: int) -> None:
    for i in range(start, start + n):
        Image.fromarray(noise_image(48, seed=1000 + i, base=class_colour(1, 4))).save(root / "blue" / f"new_{i}.png")


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    make_labeled_tree(root, CLASSES, per_class=12, size=48)
    out = tmp_path / "idx.vrx"
    build_index(load_dataset(root), out, create_encoder("fake"))
    return root, out


def test_an_open_index_follows_commits_and_keeps_its_calibration(built: tuple[Path, Path]) -> None:
    root, out = built
    idx = Index(out)
    first = idx.snapshot()
    assert idx.store.count() == 48 and "knn" in idx.calibration_data()
    _add_images(root, 3, 0)
    build_index(load_dataset(root), out, create_encoder("fake"))
    # the generation the reader holds is still on disk, next to the new one
    assert _gens(out) == {first.gen.name, f"gen-{first.generation + 1:06d}"}
    # a query that started on the old generation can finish there: its files and calibration are intact
    assert first.store.count() == 48 and "knn" in first.calibration_data() and first.prototypes()[1]
    # the next query reads the new generation, calibrated, with the new images
    assert idx.store.count() == 51 and idx.labels()["blue"] == 15
    pred = idx.classify([root / "blue" / "new_1.png"])[0]
    assert pred.label == "blue" and not math.isnan(pred.calibrated) and pred.threshold is not None
    assert idx.search_text("blue", k=3).route == "labels"
    # once nobody reads the old generation, it is deleted (by the reader letting go, or the next writer)
    del first
    assert _gens(out) == {idx.gen.name}
    idx.close()


def test_a_reader_killed_with_sigkill_does_not_pin_its_generation_forever(built: tuple[Path, Path]) -> None:
    root, out = built
    code = f"import time; from visrec.index import Index; i = Index({str(out)!r}); print('open', flush=True)"
    code += "; time.sleep(60)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        old = _gens(out)
        _add_images(root, 1, 0)
        build_index(load_dataset(root), out, create_encoder("fake"))
        assert old < _gens(out)  # held by the live reader
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _add_images(root, 1, 1)
    build_index(load_dataset(root), out, create_encoder("fake"))
    assert _gens(out) == {f"gen-{IndexFolder.open(out).manifest.generation:06d}"}  # the dead reader's lease is stale


def test_readers_never_fail_or_degrade_while_a_writer_commits(built: tuple[Path, Path], tmp_path: Path) -> None:
    """In-process readers in a thread while another process commits five updates: every answer is complete."""
    root, out = built
    query = tmp_path / "q.png"
    Image.fromarray(noise_image(48, seed=4242, base=class_colour(2, 4))).save(query)
    idx = Index(out)
    emb = idx.encode([query])
    failures: list[str] = []
    answers: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                pred = idx.classify(emb)[0]
                hits = idx.search_text("crimson", k=3).hits
                if math.isnan(pred.calibrated) or pred.label != "crimson" or not hits:
                    failures.append(f"degraded: {pred} {hits}")
                answers.append(idx.store.count())
            except Exception as e:  # any exception is what this test counts
                failures.append(repr(e))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for step in range(5):
            _add_images(root, 1, step)
            build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(workers=1))
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert answers and idx.store.count() == 53
    assert answers == sorted(answers)  # a reader never goes back to an older generation


def test_a_running_server_serves_an_external_update_at_once(built: tuple[Path, Path]) -> None:
    from fastapi.testclient import TestClient

    from visrec.web import ServeConfig, Service
    from visrec.web.api import create_api

    root, out = built
    c = TestClient(create_api(Service(ServeConfig(out))), raise_server_exceptions=False)
    assert c.get("/api/health").json()["count"] == 48
    _add_images(root, 2, 0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "visrec.cli", "index", str(root), "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert c.get("/api/health").json()["count"] == 50
    assert c.get("/api/index").json()["labels"]["blue"] == 14
    r = c.get("/api/search/text", params={"q": "blue", "k": 2})
    assert r.status_code == 200 and r.json()["route"] == "labels"
