"""Change detection: files whose size, mtime and inode are unchanged are not read again; ``rehash`` reads all;
a file swapped in with the same size and mtime (a new inode) is caught."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

import visrec.index.scan as scan
from tests.fixtures_images import make_labeled_tree
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index import Index
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.index.writer import build_index


def _build(root: Path, out: Path, **cfg: object) -> IndexingReport:
    return build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(**cfg))  # type: ignore[arg-type]


def test_unchanged_files_are_not_hashed_again_and_rehash_hashes_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue"), per_class=6, size=32)
    assert _build(root, out).added == 12
    hashed: list[Path] = []
    real = scan._sha256
    monkeypatch.setattr(scan, "_sha256", lambda p: hashed.append(p) or real(p))
    rep = _build(root, out)
    assert hashed == [] and rep.unchanged == 12 and rep.added == rep.updated == rep.metadata_updated == 0
    rep = _build(root, out, rehash=True)
    assert len(hashed) == 12 and rep.unchanged == 12 and rep.updated == 0


def test_a_file_swapped_in_with_the_same_size_and_mtime_is_caught(tmp_path: Path) -> None:
    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue"), per_class=6, size=32)
    _build(root, out)
    target, other = root / "amber" / "amber_0.jpg", root / "blue" / "blue_0.jpg"
    st = target.stat()
    swapped = tmp_path / "swap.jpg"
    shutil.copyfile(other, swapped)
    with swapped.open("r+b") as f:  # same size as the target, other pixels
        f.truncate(st.st_size)
    os.utime(swapped, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(swapped, target)  # a new inode, the old size and mtime
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    rep = _build(root, out)
    assert rep.updated + rep.n_skipped == 1 and rep.unchanged == 11
    # a touched file with the same bytes is hashed once, its stored facts refreshed, then skipped again
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rep = _build(root, out)
    assert rep.metadata_updated == 1 and rep.updated == 0
    assert _build(root, out).unchanged == 12 - rep.n_skipped


def test_small_updates_keep_the_calibration_and_larger_ones_refit_it(tmp_path: Path) -> None:
    from PIL import Image

    from tests.fixtures_images import class_colour, noise_image

    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue", "crimson"), per_class=10, size=32)
    first = _build(root, out).calibration
    assert first and not any(c.get("carried_over") for c in first.values())

    def add(n: int, start: int, cls: str = "blue", colour: int = 1) -> None:
        (root / cls).mkdir(exist_ok=True)
        for i in range(start, start + n):
            Image.fromarray(noise_image(32, seed=900 + i, base=class_colour(colour, 4))).save(root / cls / f"n{i}.png")

    add(2, 0)  # 2 of 30: kept
    rep = _build(root, out)
    assert rep.calibration and all(c["carried_over"] for c in rep.calibration.values())
    with Index(out) as idx:  # the carried calibration still decides (its novelty model came along)
        preds = idx.classify(idx.encode([root / "amber" / sorted(os.listdir(root / "amber"))[0]]))
        assert math.isfinite(preds[0].calibrated)
    add(2, 2)  # 4 of 30 changed since the fit: past 10 %, refitted
    rep = _build(root, out)
    assert rep.calibration and not any(c.get("carried_over") for c in rep.calibration.values())
    add(1, 0, "green", 3)  # a new class: refitted at once
    rep = _build(root, out)
    assert rep.calibration and not any(c.get("carried_over") for c in rep.calibration.values())


def test_a_milvus_collection_gets_only_the_changed_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pymilvus", reason="pip install 'visrec[milvus]' to test the milvus store")
    pytest.importorskip("milvus_lite", reason="pip install 'visrec[milvus]' to test the milvus store")
    from visrec.index import Index
    from visrec.stores.milvus_store import MilvusStore

    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue"), per_class=5, size=32)
    uri = f"milvus-lite://{tmp_path}/db/gallery.db#things"
    assert _build(root, out, store=uri).count == 10
    written: list[str] = []
    real = MilvusStore.upsert
    monkeypatch.setattr(MilvusStore, "upsert", lambda self, ids, v, m: (written.extend(ids), real(self, ids, v, m))[1])
    shutil.copyfile(root / "blue" / "blue_0.jpg", root / "blue" / "copy.jpg")
    (root / "amber" / "amber_0.jpg").unlink()
    rep = _build(root, out)
    assert (rep.added, rep.removed, rep.unchanged) == (1, 1, 9)
    assert set(written) == {"blue/copy.jpg"}
    hits = Index(out).search_images([root / "blue" / "copy.jpg"], k=2)[0]
    assert {h.path for h in hits} == {"blue/copy.jpg", "blue/blue_0.jpg"}  # the same pixels: both found


def test_a_faiss_ivf_index_is_refilled_from_the_previous_centroids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from visrec.stores import l2_normalize
    from visrec.stores.faiss_store import FaissStore

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16))
    x = l2_normalize((centres[rng.integers(0, 20, 900)] + 0.3 * rng.standard_normal((900, 16))).astype(np.float32))
    ids = [str(i) for i in range(900)]
    old = FaissStore(16, ivf_threshold=500, hnsw_max=0, nlist=10)
    old.add(ids[:800], x[:800], [{}] * 800)
    (tmp_path / "old").mkdir()
    old.save(tmp_path / "old")  # trains and saves the IVF index
    trained: list[int] = []
    real = FaissStore._build_ivf
    monkeypatch.setattr(FaissStore, "_build_ivf", lambda self: (trained.append(len(self)), real(self))[1])
    new = FaissStore(16, ivf_threshold=500, hnsw_max=0, nlist=10)
    assert new.adopt_trained(tmp_path / "old")
    new.add(ids, x, [{}] * 900)
    assert new.index_kind == "ivf" and trained == []  # refilled, not retrained
    exact = FaissStore(16, ivf_threshold=10**9)
    exact.add(ids, x, [{}] * 900)
    q = x[::30]
    got, want = new.search(q, 10).ids, exact.search(q, 10).ids
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want, strict=True)])
    assert recall >= 0.9
    assert not FaissStore(8).adopt_trained(tmp_path / "old")  # another width: not adopted
    big = FaissStore(16, ivf_threshold=500, hnsw_max=0, nlist=10)
    big.adopt_trained(tmp_path / "old")
    many = l2_normalize(rng.standard_normal((3300, 16)).astype(np.float32))
    big.add([str(i) for i in range(3300)], many, [{}] * 3300)
    assert big.index_kind == "ivf" and trained == [3300]  # past 4x the trained size: trained afresh
