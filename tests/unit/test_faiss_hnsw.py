"""FAISS store's HNSW index: which index a store (a segment) gets by its size, recall against brute force with
deletes, replaces and tombstones, and saving and reopening (mapped), including stores saved with IVF before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visrec.errors import BadInput
from visrec.stores import l2_normalize, load_store
from visrec.stores.faiss_store import FaissStore
from visrec.stores.segmented import SegmentedStore

DIM = 32


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((50, DIM))
    return l2_normalize((centres[rng.integers(0, 50, n)] + 0.6 * rng.standard_normal((n, DIM))).astype(np.float32))


def _ids(n: int, start: int = 0) -> list[str]:
    return [f"i{j}" for j in range(start, start + n)]


def _truth(vecs: np.ndarray, ids: list[str], q: np.ndarray, k: int) -> list[list[str]]:
    order = np.argsort(-(q @ vecs.T), axis=1, kind="stable")[:, :k]
    return [[ids[j] for j in row] for row in order]


def _recall(got: np.ndarray, want: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


@pytest.mark.parametrize(
    ("n", "options", "kind"),
    [
        (900, {"ivf_threshold": 1000}, "flat"),
        (1500, {"ivf_threshold": 1000}, "hnsw"),
        (1500, {"ivf_threshold": 1000, "hnsw_max": 1400}, "ivf"),
        (1500, {"ivf_threshold": 1000, "hnsw_max": 0}, "ivf"),
    ],
)
def test_the_index_is_chosen_by_size(n: int, options: dict[str, int], kind: str) -> None:
    store = FaissStore(DIM, **options)
    store.add(_ids(n), _clustered(n, 1), [{}] * n)
    assert store.index_kind == kind


def test_bad_options_are_refused() -> None:
    with pytest.raises(BadInput, match="hnsw_max"):
        FaissStore(DIM, hnsw_max=-1)
    with pytest.raises(BadInput, match="ef_search"):
        FaissStore(DIM, ef_search=0)


def test_hnsw_recall_against_brute_force_after_deletes_and_replaces() -> None:
    vecs, ids = _clustered(3000, 2), _ids(3000)
    store = FaissStore(DIM, ivf_threshold=1000)
    store.add(ids, vecs, [{"path": f"{j}.jpg"} for j in range(3000)])
    assert store.index_kind == "hnsw"
    store.delete(ids[:300])
    moved = _clustered(50, 3)  # replaced vectors: new labels in the graph, the old ones orphaned
    store.upsert(ids[300:350], moved, [{"path": "moved.jpg"}] * 50)
    live_vecs = np.concatenate([moved, vecs[350:]])
    live_ids = ids[300:]
    q = _clustered(60, 4)
    got = store.search(q, 10)
    assert not set(got.ids.ravel()) & set(ids[:300])
    assert _recall(got.ids, _truth(live_vecs, live_ids, q, 10)) >= 0.95
    found = store.search(moved[:5], 1).ids[:, 0]
    assert list(found) == ids[300:305]  # each replaced item is found at its new place, not its old one
    near_old = store.search(vecs[300:320], 10)  # the orphaned old vectors are skipped, not returned as holes
    assert near_old.ids.shape == (20, 10) and all(i for i in near_old.ids.ravel())
    assert store.index_kind == "hnsw" and store._index.ntotal == 3050  # type: ignore[attr-defined]


def test_hnsw_is_rebuilt_once_orphans_outnumber_live_vectors() -> None:
    vecs, ids = _clustered(1200, 5), _ids(1200)
    store = FaissStore(DIM, ivf_threshold=1000)
    store.add(ids, vecs, [{}] * 1200)
    assert store.index_kind == "hnsw"
    for _ in range(2):
        store.upsert(ids, _clustered(1200, 6), [{}] * 1200)
    assert store.index_kind == "hnsw" and store._index.ntotal == 1200  # type: ignore[attr-defined]


def test_hnsw_save_reload_round_trip_is_mapped(tmp_path: Path) -> None:
    vecs, ids = _clustered(2000, 7), _ids(2000)
    store = FaissStore(DIM, ivf_threshold=1000)
    store.add(ids, vecs, [{}] * 2000)
    store.delete(ids[:10])
    store.upsert([ids[10]], vecs[11:12], [{}])
    store.save(tmp_path)
    assert json.loads((tmp_path / "faiss.json").read_text())["kind"] == "hnsw"
    loaded = load_store("faiss", tmp_path)
    assert isinstance(loaded, FaissStore) and loaded._mapped and loaded.index_kind == "hnsw"
    q = _clustered(20, 8)
    np.testing.assert_array_equal(loaded.search(q, 5).ids, store.search(q, 5).ids)
    saved = (tmp_path / "faiss.index").read_bytes()
    loaded.add(["new"], q[:1], [{}])  # FAISS would abort on changing a mapped index: copied first
    loaded.delete([ids[20]])
    assert not loaded._mapped and loaded.search(q[:1], 1).ids[0, 0] == "new"
    assert ids[20] not in set(loaded.search(vecs[20:21], 5).ids.ravel())
    assert (tmp_path / "faiss.index").read_bytes() == saved


def test_a_store_saved_with_ivf_before_hnsw_existed_opens_as_ivf(tmp_path: Path) -> None:
    vecs, ids = _clustered(1500, 9), _ids(1500)
    old = FaissStore(DIM, ivf_threshold=1000, hnsw_max=0)
    old.add(ids, vecs, [{}] * 1500)
    old.save(tmp_path)
    info = json.loads((tmp_path / "store.json").read_text())
    for key in ("hnsw_max", "ef_search"):  # the options an earlier version saved
        del info["options"][key]
    (tmp_path / "store.json").write_text(json.dumps(info))
    loaded = load_store("faiss", tmp_path)
    assert isinstance(loaded, FaissStore) and loaded.index_kind == "ivf" and loaded._mapped
    q = _clustered(20, 10)
    np.testing.assert_array_equal(loaded.search(q, 5).ids, old.search(q, 5).ids)


def test_segments_with_hnsw_and_tombstones_match_brute_force(tmp_path: Path) -> None:
    options = {"ivf_threshold": 1000, "small_filter": 100}  # live-row selections go through HNSW, not numpy
    seg = SegmentedStore("faiss", DIM, options)
    a, b = _clustered(2500, 11), _clustered(1200, 12)
    seg.add(_ids(2500), a, [{"labels": ["x"]}] * 2500)
    (tmp_path / "g1").mkdir()
    seg.save(tmp_path / "g1")
    seg = SegmentedStore.load(tmp_path / "g1", "faiss")
    seg.add(_ids(1200, 2500), b, [{"labels": ["y"]}] * 1200)
    (tmp_path / "g2").mkdir()
    seg.save(tmp_path / "g2")
    seg = SegmentedStore.load(tmp_path / "g2", "faiss")
    kinds = [s.store.index_kind for s in seg._segs]  # type: ignore[attr-defined]
    assert kinds == ["hnsw", "hnsw"]
    dead = _ids(2500)[::7]  # 358 tombstones in the first segment: searched over its live rows with a selector
    seg.delete(dead + _ids(100, 2500))  # 100 in the second: over-fetched, then filtered
    live = {i: v for i, v in zip(_ids(3700), np.concatenate([a, b]), strict=True)}
    for i in dead + _ids(100, 2500):
        del live[i]
    q = _clustered(50, 13)
    got = seg.search(q, 10)
    assert not set(got.ids.ravel()) & set(dead + _ids(100, 2500))
    assert _recall(got.ids, _truth(np.stack(list(live.values())), list(live), q, 10)) >= 0.95


@pytest.mark.parametrize("quantize", ["fp16", "sq8"])
@pytest.mark.parametrize("hnsw_max", [250_000, 0])
def test_compressed_codes_keep_recall_and_return_exact_scores(tmp_path: Path, quantize: str, hnsw_max: int) -> None:
    """``quantize``: the HNSW / IVF index keeps smaller codes, candidates are re-scored against the float32 vectors,
    so a search returns the exact cosine of what it finds; the option is saved and the file is smaller."""
    vecs, ids = _clustered(3000, 1), _ids(3000)
    q = _clustered(40, 2)
    want = _truth(vecs, ids, q, 10)
    plain = FaissStore(DIM, ivf_threshold=1000, hnsw_max=hnsw_max)
    small = FaissStore(DIM, ivf_threshold=1000, hnsw_max=hnsw_max, quantize=quantize)
    sizes = []
    for store, name in ((plain, "plain"), (small, "small")):
        store.add(ids, vecs, [{} for _ in ids])
        (tmp_path / name).mkdir()
        store.save(tmp_path / name)
        sizes.append((tmp_path / name / "faiss.index").stat().st_size)
    got = small.search(q, 10)
    assert small.index_kind == ("hnsw" if hnsw_max else "ivf")
    assert _recall(got.ids, want) >= _recall(plain.search(q, 10).ids, want) - 0.02
    rows = np.array([[int(i[1:]) for i in row] for row in got.ids])
    assert np.allclose(got.scores, np.einsum("qd,qkd->qk", q, vecs[rows]), atol=1e-5)  # exact, not the codes'
    assert sizes[1] < sizes[0]  # at 32 dimensions the graph dominates; at 1472 the codes do
    reopened = load_store("faiss", tmp_path / "small")
    assert reopened.options()["quantize"] == quantize
    assert reopened.search(q, 10).ids.tolist() == got.ids.tolist()
    with pytest.raises(BadInput, match="quantize"):
        FaissStore(DIM, quantize="int4")


def test_an_index_created_compressed_keeps_it_for_later_segments(tmp_path: Path) -> None:
    from tests.fixtures_images import make_labeled_tree
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.folder import IndexFolder
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    make_labeled_tree(tmp_path / "data", ("a", "b"), per_class=3, size=16)
    cfg = IndexConfig(calibrate=False, compress="sq8")
    build_index(load_dataset(tmp_path / "data"), tmp_path / "idx.vrx", create_encoder("fake"), cfg)
    gen = IndexFolder.open(tmp_path / "idx.vrx").generation_dir
    assert gen is not None
    assert json.loads((gen / "store" / "segments.json").read_text())["options"] == {"quantize": "sq8"}
    assert SegmentedStore.load(gen / "store", "faiss").options == {"quantize": "sq8"}
    with pytest.raises(BadInput, match="compression"):
        IndexConfig(compress="pq")
