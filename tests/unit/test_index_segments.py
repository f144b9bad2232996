"""An index grows by segments: an update writes one new segment and links the old ones, removals are tombstones,
prototypes follow the changes, `visrec compact` merges, folders of the earlier layout still open and convert,
and a kill -9 while a segment or a merge is written leaves the previous generation readable."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.fixtures_images import make_labeled_tree, noise_image
from tests.unit.crashing import kill_when_paused
from visrec.classify import PrototypeClassifier
from visrec.cli import app
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index import Index
from visrec.index.edit import compact_index, edit_index
from visrec.index.folder import IndexFolder
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.index.writer import build_index
from visrec.stores import create_store
from visrec.types import Embeddings

SRC = Path(__file__).resolve().parents[2] / "src"


def _build(root: Path, out: Path) -> IndexingReport:
    return build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(calibrate=False))


def _store_dir(out: Path) -> Path:
    gen = IndexFolder.open(out).generation_dir
    assert gen is not None
    return gen / "store"


def _segments(out: Path) -> list[dict[str, object]]:
    return list(json.loads((_store_dir(out) / "segments.json").read_text())["segments"])


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue", "green"), per_class=8, size=32)
    _build(root, out)
    return root, out


def test_an_update_writes_one_segment_and_links_the_old_ones(built: tuple[Path, Path]) -> None:
    root, out = built
    first = _store_dir(out) / "seg-000001" / "vectors.npy"
    inode = os.stat(first).st_ino
    Image.fromarray(noise_image(32, seed=99)).save(root / "blue" / "copied.jpg")
    (root / "green" / "green_3.jpg").unlink()
    rep = _build(root, out)
    assert (rep.added, rep.removed, rep.segments) == (1, 1, 2)
    segs = _segments(out)
    assert [(s["name"], s["rows"], s["deleted"]) for s in segs] == [("seg-000001", 24, 1), ("seg-000002", 1, 0)]
    assert os.stat(_store_dir(out) / "seg-000001" / "vectors.npy").st_ino == inode  # linked, not rewritten
    idx = Index(out)
    assert idx.store.count() == 24 and not [i for i in idx.store.ids() if "green_3" in i]
    vec, meta = idx.store.get([i for i in idx.store.ids() if i.endswith("copied.jpg")])
    assert meta[0]["labels"] == ["blue"] and idx.store.search(vec, 1).ids[0, 0].endswith("copied.jpg")
    hits = idx.search_vectors(vec, k=3)[0]
    assert hits[0].path.endswith("copied.jpg") and hits[0].labels == ("blue",)
    assert idx.snapshot()._metas is None  # hits looked up their metadata; nothing loaded every item's


def test_prototypes_follow_adds_removals_and_relabels_as_a_full_refit(built: tuple[Path, Path]) -> None:
    root, out = built
    shutil.move(root / "amber" / "amber_1.jpg", root / "blue" / "amber_1.jpg")  # relabelled: removed + added
    (root / "green" / "green_0.jpg").unlink()
    shutil.copy(root / "green" / "green_1.jpg", root / "green" / "again.jpg")
    _build(root, out)
    (root / "red").mkdir()
    shutil.copy(root / "amber" / "amber_2.jpg", root / "red" / "r.jpg")  # a new class
    _build(root, out)
    idx = Index(out)
    protos, classes = idx.prototypes()
    ids = idx.store.ids()
    vecs, metas = idx.store.get(ids)
    ref = PrototypeClassifier().fit(vecs, [tuple(m["labels"]) for m in metas])
    assert classes == list(ref.classes) == ["amber", "blue", "green", "red"]
    np.testing.assert_allclose(protos, ref.prototypes, atol=1e-5)


def test_automatic_and_explicit_compaction(built: tuple[Path, Path]) -> None:
    root, out = built
    for i in range(12):  # one new segment per update; ten small ones are merged past the tier's ten
        shutil.copy(root / "amber" / "amber_0.jpg", root / "amber" / f"more{i}.jpg")
        rep = _build(root, out)
    assert rep.count == 36 and len(_segments(out)) <= 4
    q = Index(out).store.get(["amber/amber_0.jpg"])[0]
    before = Index(out).store.search(q, 5)
    res = CliRunner().invoke(app, ["compact", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["segments"] == 1 and info["count"] == 36 and info["segments_before"] > 1
    after = Index(out)
    assert len(_segments(out)) == 1 and after.store.count() == 36
    np.testing.assert_allclose(after.store.search(q, 5).scores, before.scores, atol=1e-6)
    assert after.prototypes()[1] == ["amber", "blue", "green"]
    gen = IndexFolder.open(out).manifest.generation
    assert compact_index(out)["merged"] == 0 and IndexFolder.open(out).manifest.generation == gen  # nothing to do


def test_an_index_of_the_earlier_layout_opens_and_converts_on_its_next_update(tmp_path: Path) -> None:
    out = tmp_path / "old.vrx"
    enc = create_encoder("fake")
    info = {"describe": enc.describe(), "fingerprint": enc.fingerprint, "name": enc.name}
    folder = IndexFolder.create(out, encoder_info=info, dim=enc.dim, joint_dim=None, backend="faiss")
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((6, enc.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = create_store("faiss", enc.dim)
    store.add([f"i{j}" for j in range(6)], vecs, [{"path": f"{j}.jpg", "labels": ["a"]} for j in range(6)])

    def write(tmp: Path) -> None:
        (tmp / "store").mkdir()
        store.save(tmp / "store")

    folder.commit(write, count=6)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 1}))
    assert Index(out).store.search(vecs[2], 1).ids[0, 0] == "i2"
    legacy = os.stat(_store_dir(out) / "vectors.npy").st_ino
    add = Embeddings(vectors=vecs[:1], ids=("new",), encoder_id=enc.fingerprint)
    edit_index(out, add=add, metadata=[{"path": "new.jpg", "labels": ["b"]}], delete=["i5"])
    assert json.loads((out / "manifest.json").read_text())["schema_version"] == 2
    segs = [(s["name"], s["rows"], s["deleted"]) for s in _segments(out)]
    assert segs == [("seg-000000", 6, 1), ("seg-000001", 1, 0)]
    assert os.stat(_store_dir(out) / "seg-000000" / "vectors.npy").st_ino == legacy
    idx = Index(out)
    assert sorted(idx.store.ids()) == ["i0", "i1", "i2", "i3", "i4", "new"] and idx.prototypes()[1] == ["a", "b"]


CRASH = """
import sys, time
from pathlib import Path
import visrec.stores._common as common
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index.edit import compact_index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index

root, out, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
real_save = common.BaseStore.save

def save(self, folder):
    real_save(self, folder)  # a new segment (or a merged one) is half in place: its files, no segments.json
    (out / "PAUSED").write_text(point)
    time.sleep(120)

common.BaseStore.save = save
if point == "segment":
    build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(calibrate=False))
else:
    compact_index(out)
"""


@pytest.mark.parametrize("point", ["segment", "compaction"])
def test_sigkill_while_a_segment_or_a_merge_is_written_keeps_the_previous_generation(
    built: tuple[Path, Path], point: str
) -> None:
    root, out = built
    shutil.copy(root / "amber" / "amber_0.jpg", root / "amber" / "extra.jpg")
    _build(root, out)  # two segments (to merge)
    before = Index(out)
    ids, gen = sorted(before.store.ids()), IndexFolder.open(out).manifest.generation
    shutil.copy(root / "blue" / "blue_0.jpg", root / "blue" / "late.jpg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), str(SRC)])}
    kill_when_paused([sys.executable, "-c", CRASH, str(root), str(out), point], env, out, timeout=120)
    after = Index(out)
    assert IndexFolder.open(out).manifest.generation == gen and sorted(after.store.ids()) == ids
    rep = _build(root, out)  # the dead writer's lock and debris are gone
    assert rep.count == len(ids) + 1
    assert compact_index(out)["segments"] == 1 and Index(out).store.count() == len(ids) + 1
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
