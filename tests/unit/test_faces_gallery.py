"""Face index, verify, identify and clustering through the CLI, with weight-free fake face backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from visrec.cli.faces import register
from visrec.faces import FACE_DETECTORS, FACE_EMBEDDERS, FaceGallery, Faces, build_gallery, create_face_pipeline


class _Detector:
    """One face = the whole image, unless the image is black (no face)."""

    name = "test-fake"

    def detect(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        if image.max() < 10:
            return Faces.empty((h, w))
        lm = np.tile(np.array([[w / 2, h / 2]], np.float32), (1, 5, 1))
        return Faces(np.array([[0, 0, w, h]], np.float32), lm, np.ones(1, np.float32), (h, w))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class _Embedder:
    """The mean colour, L2-normalised, padded to 8 dims."""

    name = "test-fake"
    dim = 8

    def embed(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        mean = image.reshape(-1, 3).mean(0) + 1.0
        v = np.r_[mean / np.linalg.norm(mean), np.zeros(5)].astype(np.float32)
        return np.tile(v, (len(faces), 1))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim}


if "test-fake" not in FACE_DETECTORS:
    FACE_DETECTORS.register("test-fake", lambda: _Detector())
    FACE_EMBEDDERS.register("test-fake", lambda: _Embedder())

COLOURS = {"alice": (220, 30, 30), "bob": (30, 30, 220)}


def _save(path: Path, rgb: tuple[int, int, int], jitter: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.clip(np.array(rgb) + jitter, 0, 255).astype(np.uint8)
    Image.fromarray(np.tile(arr, (32, 32, 1))).save(path)
    return path


@pytest.fixture()
def people(tmp_path: Path) -> Path:
    root = tmp_path / "people"
    for name, rgb in COLOURS.items():
        for j in range(3):
            _save(root / name / f"{j}.png", rgb, 8 * j)
    Image.new("RGB", (32, 32)).save(root / "alice" / "black.png")
    return root


def test_gallery_skips_faceless_photos_and_calibrates(people: Path, tmp_path: Path) -> None:
    items = [(f, f.parent.name) for f in sorted(people.rglob("*.png"))]
    g = build_gallery(items, create_face_pipeline("test-fake", "test-fake"))
    assert len(g.rows) == 6 and g.skipped["no_face"] == [str(people / "alice" / "black.png")]
    assert g.calibration is not None and g.calibration.auc == 1.0
    g.save(tmp_path / "idx")
    back = FaceGallery.load(tmp_path / "idx")
    assert back.labels == g.labels and back.calibration == g.calibration
    assert back.pipeline == {"detector": {"name": "test-fake"}, "embedder": {"name": "test-fake", "dim": 8}}
    (label, cand, _, prob), (unknown, _, _, _) = back.match(
        np.array([g.vectors[0], [0.0, 1.0, 0, 0, 0, 0, 0, 0]], np.float32), back.calibration.threshold
    )
    assert label == cand == "alice" and prob is not None and prob > 0.5
    assert unknown is None


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    return app


FAKE = ["--detector", "test-fake", "--embedder", "test-fake"]


def test_cli_index_identify_verify(people: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    app, idx = _app(), tmp_path / "idx"
    res = run(app, ["faces", "index", str(people), "--out", str(idx), *FAKE])
    assert res.exit_code == 0, res.output
    built = json.loads(res.output)
    assert built["people"] == 2 and built["dropped_faces"] == 0
    ident = built["calibration"]["identification"]  # the rule `faces identify` uses, and what it bounds in words
    assert ident["strangers"] == 6 and ident["fpir"] == 0.0 and "no stranger was named" in ident["bounds"]
    from visrec.cli import app as main_app

    res = run(main_app, ["info", str(idx)])  # `visrec info` on a face index shows both rules
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["identification"]["threshold"] == ident["threshold"] and info["skipped"]["no_face"] == 1
    stranger = _save(tmp_path / "q" / "green.png", (30, 200, 30), 0)
    drawn = tmp_path / "drawn.png"
    res = run(app, ["faces", "identify", str(idx), str(stranger), "--out", str(drawn), "--detector", "test-fake"])
    assert res.exit_code == 0, res.output
    face = json.loads(res.output)["faces"][0]
    assert face["label"] is None and face["xyxy"] == [0, 0, 32, 32] and drawn.is_file()
    a, b = people / "alice" / "0.png", people / "alice" / "1.png"
    res = run(app, ["faces", "verify", str(a), str(b), "--index", str(idx), *FAKE])
    assert res.exit_code == 0 and json.loads(res.output)["same"] is True
    res = run(app, ["faces", "verify", str(a), str(people / "alice" / "black.png"), *FAKE])
    assert res.exit_code != 0 and "no face found" in res.output


def test_cli_cluster_any_encoder_and_faces(people: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    app, out = _app(), tmp_path / "clusters.json"
    res = run(app, ["cluster", str(people), "--out", str(out), "--encoder", "fake", "--k", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert sum(summary["clusters"].values()) == 7 and len(list(Path(summary["sheets"]).glob("*.png"))) == 3
    assert summary["quality_vs_folders"]["purity"] >= 6 / 7
    res = run(app, ["faces", "cluster", str(people), "--out", str(tmp_path / "f.json"), "--k", "2", *FAKE])
    assert res.exit_code == 0, res.output
    assert sorted(json.loads(res.output)["clusters"].values()) == [3, 3]


def test_cli_faces_cluster_named_from_a_face_index(people: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    app, idx = _app(), tmp_path / "idx"
    assert run(app, ["faces", "index", str(people), "--out", str(idx), *FAKE]).exit_code == 0
    new = tmp_path / "new"
    for j in range(2):
        _save(new / f"a{j}.png", COLOURS["alice"], 4 * j)
        _save(new / f"b{j}.png", COLOURS["bob"], 4 * j)
        _save(new / f"g{j}.png", (30, 200, 30), 4 * j)  # nobody in the index
    out = tmp_path / "named.json"
    res = run(app, ["faces", "cluster", str(new), "--out", str(out), "--k", "3", "--name-from", str(idx), *FAKE])
    assert res.exit_code == 0, res.output
    clusters = json.loads(res.output)["clusters"]
    assert clusters["alice"] == clusters["bob"] == 2 and len(clusters) == 3
    assert {n["source"] for n in json.loads(res.output)["names"]} == {"neighbors", "none"}
    res = run(app, ["cluster", str(new), "--out", str(out), "--encoder", "fake", "--name-from", str(idx)])
    assert res.exit_code != 0 and "visrec faces cluster --name-from" in res.output


def test_cli_faces_cluster_leaves_a_face_seen_once_unclustered(people: Path, tmp_path: Path) -> None:
    _save(people / "carol" / "0.png", (30, 200, 30), 0)  # a third person, photographed once
    run, app = CliRunner().invoke, _app()
    out = tmp_path / "not-yet" / "f.json"  # the folder is created
    res = run(app, ["faces", "cluster", str(people), "--out", str(out), *FAKE])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert out.is_file() and sorted(summary["clusters"].items()) == [("c0", 3), ("c1", 3), ("noise", 1)]
    assert summary["quality_vs_folders"]["clusters"] == 2 and summary["quality_vs_folders"]["unclustered"] == 1
    res = run(app, ["faces", "cluster", str(people), "--out", str(tmp_path / "g.json"), "--min-size", "1", *FAKE])
    assert res.exit_code == 0 and sorted(json.loads(res.output)["clusters"].values()) == [1, 3, 3]


class _TwoFaces:
    """A photo with a small face in the corner (row 0) and the large central one (row 1)."""

    def find(self, image: np.ndarray) -> tuple[Faces, np.ndarray]:
        xyxy = np.array([[0, 0, 4, 4], [8, 8, 24, 24]], np.float32)
        faces = Faces(xyxy, np.zeros((2, 5, 2), np.float32), np.ones(2, np.float32), image.shape[:2])
        return faces, np.eye(2, 8, dtype=np.float32)


def test_one_face_per_photo_keeps_the_main_face(people: Path) -> None:
    from visrec.faces.ops import embed_faces

    ids, vecs, crops, _ = embed_faces(people / "bob", _TwoFaces(), main_only=True)  # type: ignore[arg-type]
    assert ids == ["0.png#1", "1.png#1", "2.png#1"] and vecs.shape == (3, 8) and crops["0.png#1"].shape[:2] == (16, 16)
    assert len(embed_faces(people / "bob", _TwoFaces())[0]) == 6  # type: ignore[arg-type]
