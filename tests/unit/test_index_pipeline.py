"""Index building through the library: incremental updates, resume after a kill, bad input, encoder mismatch,
search, and the calibrated unknown — all with the fake encoder on synthetic images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_images import class_colour, make_bad_images, make_labeled_tree, noise_image
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import ManifestMismatch
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index

CLASSES = ("amber", "blue", "crimson", "green")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_labeled_tree(root, CLASSES, per_class=12, size=48)
    return root


def _build(root: Path, out: Path, **cfg: object) -> object:
    return build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(**cfg))  # type: ignore[arg-type]


def test_build_search_and_classify(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    rep = _build(tree, out)
    assert rep.count == 48 and rep.added == 48  # type: ignore[attr-defined]
    idx = Index(out)
    assert idx.labels() == {c: 12 for c in CLASSES}
    q = tree / "blue" / "blue_3.jpg"
    hits = idx.search_images([q], k=5)[0]
    assert hits[0].path == "blue/blue_3.jpg" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert all(h.label == "blue" for h in hits)
    # a fresh image of a known colour is recognised; calibrated confidence is a probability
    fresh = tmp_path / "fresh.png"
    Image.fromarray(noise_image(48, seed=777, base=class_colour(2, 4))).save(fresh)
    pred = idx.classify([fresh])[0]
    assert pred.label == "crimson" and 0.0 <= pred.calibrated <= 1.0


def test_unknown_for_a_class_never_indexed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_labeled_tree(root, (*CLASSES, "violet"), per_class=12, size=48)
    novel = sorted((root / "violet").iterdir())
    for p in novel:
        p.rename(tmp_path / p.name)
    (root / "violet").rmdir()
    out = tmp_path / "idx.vrx"
    _build(root, out)
    idx = Index(out)
    preds = idx.classify([tmp_path / p.name for p in novel])
    unknown = sum(p.is_unknown for p in preds)
    assert unknown >= 9, [(p.candidate, p.score, p.threshold) for p in preds]


def test_incremental_reindex_embeds_only_changes(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    _build(tree, out)
    again = _build(tree, out)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 48)  # type: ignore[attr-defined]
    (tree / "blue" / "blue_0.jpg").unlink()
    Image.fromarray(noise_image(48, seed=5, base=class_colour(0, 4))).save(tree / "amber" / "amber_new.jpg")
    Image.fromarray(noise_image(48, seed=6, base=class_colour(3, 4))).save(tree / "green" / "green_1.jpg")
    rep = _build(tree, out)
    assert (rep.added, rep.updated, rep.removed, rep.unchanged) == (1, 1, 1, 46)  # type: ignore[attr-defined]
    idx = Index(out)
    assert idx.store.count() == 48
    assert "blue/blue_0.jpg" not in idx.store.ids()


def test_bad_images_are_counted_and_never_lose_stored_items(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    _build(tree, out)
    bad = make_bad_images(tree / "amber")
    # an already indexed file becomes corrupt: its previous entry is kept
    (tree / "blue" / "blue_2.jpg").write_bytes(b"\xff\xd8\xff garbage")
    rep = _build(tree, out)
    assert set(rep.skipped) >= set(bad) | {"not-an-image"}  # type: ignore[attr-defined]
    idx = Index(out)
    assert "blue/blue_2.jpg" in idx.store.ids()
    assert idx.store.count() == 48


def test_encoder_mismatch_is_refused(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    _build(tree, out)
    other = create_encoder("fake", dim=32)
    with pytest.raises(ManifestMismatch, match="fake"):
        build_index(load_dataset(tree), out, other)
    with pytest.raises(ManifestMismatch):
        Index(out, encoder=other)


def test_second_writer_is_refused(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    _build(tree, out)
    from visrec.index.folder import IndexFolder

    holder = IndexFolder.open(out)
    code = f"from visrec.index.folder import IndexFolder; IndexFolder.open({str(out)!r}).writer().__enter__()"
    with holder.writer():
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert "IndexBusy" in res.stderr
    # once released, the same command succeeds
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


_SLOW_BUILD = textwrap.dedent(
    """
    import sys, time
    from visrec.index.writer import build_index
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.pipeline import IndexConfig

    enc = create_encoder("fake")
    real = enc.encode_images
    def slow(*a, **k):
        time.sleep(0.4)
        return real(*a, **k)
    enc.encode_images = slow
    build_index(load_dataset(sys.argv[1]), sys.argv[2], enc, IndexConfig(shard_size=4, batch_size=4))
    """
)


def test_kill_during_indexing_keeps_old_index_and_resumes(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    small = tmp_path / "small"
    make_labeled_tree(small, CLASSES[:2], per_class=6, size=48)
    _build(small, out)
    before = Index(out).store.count()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(tree), str(out)], env=env)
    try:
        deadline = time.time() + 120
        while len(list((out / "work").glob("shard-*.json"))) < 2:
            assert proc.poll() is None and time.time() < deadline, "indexing ended before it could be killed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert Index(out).store.count() == before  # the previous generation is intact and readable
    rep = _build(tree, out)
    assert rep.resumed >= 8  # type: ignore[attr-defined]
    assert Index(out).store.count() == 48
    assert not list((out / "work").glob("shard-*"))


def test_text_search_resolves_label_names(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    _build(tree, out)
    idx = Index(out)
    res = idx.search_text("Crimson", k=5)
    assert res.route == "labels" and res.matched[0][0] == "crimson"
    assert [h.label for h in res.hits] == ["crimson"] * 5


def test_manifest_records_encoder_and_is_json(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.vrx"
    _build(tree, out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["encoder"]["name"] == "fake" and m["dim"] == create_encoder("fake").dim
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.pickle"))
    assert np.load(next(out.rglob("prototypes.npy")), allow_pickle=False).shape == (4, m["dim"])


def test_shards_encode_two_at_once_and_are_written_in_order(tree: Path, tmp_path: Path) -> None:
    """The first shard encodes slowest: the next one starts meanwhile, yet shards land in the order of the images,
    so the stored order and a resumed run are as with one shard at a time."""
    import threading

    from visrec.index.pipeline import IndexingReport, ShardWriter, _Item, embed_items, record_metadata

    enc = create_encoder("fake")
    real, lock, state = enc.encode_images, threading.Lock(), {"running": 0, "most": 0, "calls": 0}

    def slow_first(*args: object, **kwargs: object) -> object:
        with lock:
            state["calls"] += 1
            first = state["calls"] == 1
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        time.sleep(0.3 if first else 0.01)
        with lock:
            state["running"] -= 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    enc.encode_images = slow_first  # type: ignore[method-assign]
    ds = load_dataset(tree)
    items = [_Item(r, ds.abspath(r), record_metadata(r)) for r in ds.records]
    shards = ShardWriter(tmp_path / "work", "fp")
    embed_items(items, enc, shards, IndexConfig(shard_size=8, batch_size=4), IndexingReport(path="x"))
    written = [info["ids"] for info, _, _ in shards.completed()]
    assert state["most"] == 2, "the next shard waited for the slow one instead of encoding beside it"
    assert [i for ids in written for i in ids] == [r.id for r in ds.records]
    assert [len(ids) for ids in written][:-1] == [8] * (len(written) - 1)
