"""Every registered vector store passes the same contract, checked against brute-force numpy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visrec.errors import BadInput, DimensionMismatch, IndexCorrupt
from visrec.stores import STORES, VectorStore, create_store, l2_normalize, load_store, parse_filter

DIM = 16
LABELS = ["Sakura", "Naruto", "Gara"]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return l2_normalize(rng.standard_normal((n, dim)))


def metas(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"path": f"img/{i}.jpg", "labels": [LABELS[i % 3]], "split": ["train", "test"][i % 2], "width": i,
         "height": 10, "extra": {"grouped_split": "test" if i % 5 == 0 else "train"}}
        for i in range(start, start + n)
    ]  # fmt: skip


def ids(n: int, start: int = 0) -> list[str]:
    return [f"id{i}" for i in range(start, start + n)]


def brute(vectors: np.ndarray, id_list: list[str], q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k: stable sort by descending score (ties -> insertion order)."""
    scores = q @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.array(id_list, dtype=object)[order], np.take_along_axis(scores, order, axis=1)


def assert_same_topk(got_ids: np.ndarray, got_s: np.ndarray, want_ids: np.ndarray, want_s: np.ndarray) -> None:
    """Same score lists; same ids wherever the score is not tied (as FAISS's contrib/evaluation.py)."""
    np.testing.assert_allclose(got_s, want_s, atol=1e-5)
    for gi, wi, ws in zip(got_ids, want_ids, want_s, strict=True):
        untied = [j for j in range(len(ws)) if np.sum(np.abs(ws - ws[j]) < 1e-5) == 1]
        assert [gi[j] for j in untied] == [wi[j] for j in untied]


def _params(names: list[str]) -> list[Any]:
    """Every registered store; ``milvus`` is skipped when its extra (pymilvus + milvus-lite) is absent."""
    absent = importlib.util.find_spec("pymilvus") is None or importlib.util.find_spec("milvus_lite") is None
    skip = pytest.mark.skip(reason="pip install 'visrec[milvus]' to test the milvus store")
    return [pytest.param(n, marks=skip) if n == "milvus" and absent else n for n in names]


@pytest.fixture(params=_params(STORES.names()))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def filled(name: str) -> tuple[VectorStore, np.ndarray]:
    rng = np.random.default_rng(0)
    vecs = unit(rng, 60)
    store = create_store(name, DIM)
    store.add(ids(60), vecs, metas(60))
    return store, vecs


def test_registry_lists_the_local_backends() -> None:
    assert {"exact", "faiss"} <= set(STORES.names())


def test_add_get_count_ids(filled: tuple[VectorStore, np.ndarray]) -> None:
    store, vecs = filled
    assert isinstance(store, VectorStore)
    assert store.count() == 60 and store.ids() == ids(60)
    got, ms = store.get(["id7", "id2"])
    np.testing.assert_array_equal(got, vecs[[7, 2]])
    assert ms[0]["path"] == "img/7.jpg" and ms[0]["labels"] == ["Naruto"]
    assert ms[0]["extra"] == {"grouped_split": "train"} and ms[0]["group"] is None
    with pytest.raises(BadInput, match="unknown id"):
        store.get(["nope"])


def test_search_equals_brute_force(filled: tuple[VectorStore, np.ndarray]) -> None:
    store, vecs = filled
    q = unit(np.random.default_rng(1), 7)
    nb = store.search(q, 5)
    assert nb.ids.shape == (7, 5) and nb.scores.dtype == np.float32
    assert_same_topk(nb.ids, nb.scores, *brute(vecs, ids(60), q, 5))
    one = store.search(vecs[3], 1)  # a 1-D query is one row; an item finds itself
    assert one.row(0)[0][0] == "id3" and one.scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_upsert_replaces_vector_and_metadata(filled: tuple[VectorStore, np.ndarray]) -> None:
    store, _ = filled
    new = unit(np.random.default_rng(5), 2)
    store.upsert(["id4", "fresh"], new, [{"path": "new.jpg", "labels": ["Gara"]}, {"path": "fresh.jpg"}])
    assert store.count() == 61 and store.ids()[4] == "id4" and store.ids()[-1] == "fresh"
    got, ms = store.get(["id4"])
    np.testing.assert_array_equal(got[0], new[0])
    assert ms[0]["path"] == "new.jpg" and ms[0]["split"] is None
    assert store.search(new[:1], 1).ids[0, 0] == "id4"
    assert store.count('path == "img/4.jpg"') == 0


def test_delete_compacts_and_search_stays_right(filled: tuple[VectorStore, np.ndarray]) -> None:
    store, vecs = filled
    assert store.delete(["id0", "id10", "id59", "not-there", "id10"]) == 3
    assert store.delete(["id0"]) == 0
    keep = [i for i in range(60) if i not in (0, 10, 59)]
    assert store.count() == 57 and store.ids() == [f"id{i}" for i in keep]
    q = unit(np.random.default_rng(2), 4)
    nb = store.search(q, 6)
    assert_same_topk(nb.ids, nb.scores, *brute(vecs[keep], [f"id{i}" for i in keep], q, 6))
    assert store.count('label == "Sakura"') == sum(1 for i in keep if i % 3 == 0)
    store.add(["id0"], vecs[:1], metas(1))  # a deleted id can come back
    assert store.ids()[-1] == "id0" and store.search(vecs[:1], 1).ids[0, 0] == "id0"


def test_filtered_search_ids_and_count(filled: tuple[VectorStore, np.ndarray]) -> None:
    store, vecs = filled
    where = 'label == "Sakura" and split == "train" or grouped_split == "test"'
    flt = parse_filter(where)
    keep = [i for i, m in enumerate(metas(60)) if flt.matches(m)]
    assert store.count(where) == len(keep) and store.ids(where) == [f"id{i}" for i in keep]
    q = unit(np.random.default_rng(3), 5)
    nb = store.search(q, 4, where=where)
    assert_same_topk(nb.ids, nb.scores, *brute(vecs[keep], [f"id{i}" for i in keep], q, 4))
    empty = store.search(q, 3, where='label == "Nobody"')
    assert (empty.ids == "").all() and np.isneginf(empty.scores).all()


def test_k_larger_than_the_store_is_padded(filled: tuple[VectorStore, np.ndarray]) -> None:
    store, _ = filled
    nb = store.search(unit(np.random.default_rng(4), 2), 70)
    assert nb.ids.shape == (2, 70)
    assert (nb.ids[:, 60:] == "").all() and np.isneginf(nb.scores[:, 60:]).all()
    assert (nb.ids[:, :60] != "").all() and len(set(nb.ids[0])) == 61
    assert np.all(np.diff(nb.scores[:, :60], axis=1) <= 0)
    few = store.search(unit(np.random.default_rng(4), 1), 10, where="width < 4")
    assert [h[0] for h in few.row(0)] and len(few.row(0)) == 4


def test_empty_store_search_is_all_padding(name: str) -> None:
    nb = create_store(name, DIM).search(np.ones((3, DIM), np.float32) / 4, 2)
    assert nb.ids.shape == (3, 2) and (nb.ids == "").all()


def test_save_load_round_trip(filled: tuple[VectorStore, np.ndarray], tmp_path: Path, name: str) -> None:
    store, _ = filled
    store.delete(["id1"])
    q = unit(np.random.default_rng(6), 3)
    before = store.search(q, 5, where='split == "test"')
    store.save(tmp_path)
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for mmap in (True, False):
        loaded = load_store(name, tmp_path, mmap=mmap)
        assert loaded.ids() == store.ids()
        assert loaded.count('label == "Gara"') == store.count('label == "Gara"')
        after = loaded.search(q, 5, where='split == "test"')
        np.testing.assert_array_equal(after.ids, before.ids)
        assert loaded.get(["id2"])[1] == store.get(["id2"])[1]
    loaded.add(["extra1"], unit(np.random.default_rng(7), 1), [{}])  # changes a copy, never the saved files
    loaded.delete(["id2"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot


def test_every_backend_reads_every_other(filled: tuple[VectorStore, np.ndarray], tmp_path: Path) -> None:
    store, _ = filled
    store.save(tmp_path)
    q = unit(np.random.default_rng(8), 2)
    for other in STORES.names():
        if other == "milvus" and importlib.util.find_spec("pymilvus") is None:
            continue
        np.testing.assert_array_equal(load_store(other, tmp_path).search(q, 3).ids, store.search(q, 3).ids)


def test_export_batches_cover_everything_in_order(filled: tuple[VectorStore, np.ndarray]) -> None:
    store, vecs = filled
    batches = list(store.export(batch_size=25))
    assert [len(b[0]) for b in batches] == [25, 25, 10]
    assert [i for b in batches for i in b[0]] == ids(60)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), vecs)
    assert batches[2][2][0]["path"] == "img/50.jpg"


def test_errors(filled: tuple[VectorStore, np.ndarray], tmp_path: Path, name: str) -> None:
    store, vecs = filled
    v1 = vecs[:1]
    with pytest.raises(DimensionMismatch, match=f"width 8, the store holds width {DIM}"):
        store.add(["x"], np.ones((1, 8), np.float32) / np.sqrt(8), [{}])
    with pytest.raises(DimensionMismatch, match="width 8"):
        store.search(np.ones((1, 8), np.float32), 3)
    with pytest.raises(BadInput, match="NaN or infinite"):
        store.add(["x"], np.full((1, DIM), np.nan, np.float32), [{}])
    with pytest.raises(BadInput, match="L2-normalised"):
        store.add(["x"], v1 * 3, [{}])
    with pytest.raises(BadInput, match="more than once"):
        store.add(["x", "x"], vecs[:2], [{}, {}])
    with pytest.raises(BadInput, match="already stored"):
        store.add(["id3"], v1, [{}])
    with pytest.raises(BadInput, match="metadata entries"):
        store.add(["x"], v1, [])
    for k in (0, -1, 2.5, True):
        with pytest.raises(BadInput, match="k must be a positive integer"):
            store.search(v1, k)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="not allowed"):
        store.search(v1, 3, where="__import__('os')")
    assert store.count() == 60  # nothing half-added
    with pytest.raises(IndexCorrupt, match=r"missing store\.json"):
        load_store(name, tmp_path)


def test_importing_stores_loads_neither_faiss_nor_torch() -> None:
    code = "import sys, visrec.stores; print(sorted({'faiss', 'torch', 'pymilvus'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- FAISS against the exact reference on clustered data ----------------------------------------------


def clustered(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around ``clusters`` Gaussian centres, and 200 queries drawn the same way."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))

    def draw(m: int) -> np.ndarray:
        return l2_normalize(centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, dim)))

    return draw(n), draw(200)


@pytest.fixture(scope="module")
def big() -> dict[str, Any]:
    vecs, queries = clustered(20_000, 64, 200, seed=42)
    id_list = ids(len(vecs))
    ms = [{"labels": [f"c{i % 7}"], "width": i % 100} for i in range(len(vecs))]
    exact = create_store("exact", 64)
    exact.add(id_list, vecs, ms)
    ivf = create_store("faiss", 64, ivf_threshold=5_000, hnsw_max=0, small_filter=2_000)
    ivf.add(id_list, vecs, ms)
    return {"vecs": vecs, "q": queries, "ids": id_list, "exact": exact, "ivf": ivf}


def recall_at(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def test_faiss_flat_equals_exact(big: dict[str, Any]) -> None:
    flat = create_store("faiss", 64, ivf_threshold=10**9)
    flat.add(big["ids"], big["vecs"], [{}] * len(big["ids"]))
    assert flat.index_kind == "flat"  # type: ignore[attr-defined]
    got, want = flat.search(big["q"], 10), big["exact"].search(big["q"], 10)
    assert_same_topk(got.ids, got.scores, want.ids, want.scores)


def test_faiss_ivf_recall_against_exact(big: dict[str, Any]) -> None:
    ivf, exact = big["ivf"], big["exact"]
    assert ivf.index_kind == "ivf"
    got, want = ivf.search(big["q"], 10), exact.search(big["q"], 10)
    assert recall_at(got.ids, want.ids) >= 0.95
    assert np.all(got.scores[:, 0] <= want.scores[:, 0] + 1e-5)


def test_faiss_filtered_search_equals_exact_filtered(big: dict[str, Any]) -> None:
    ivf, exact, q = big["ivf"], big["exact"], big["q"]
    selective = 'label == "c3" and width < 30'  # ~860 rows (< 2000): searched exactly with numpy
    got, want = ivf.search(q, 10, where=selective), exact.search(q, 10, where=selective)
    assert_same_topk(got.ids, got.scores, want.ids, want.scores)
    broad = 'label != "c3"'  # ~17k rows: IVF with an id selector
    got, want = ivf.search(q, 10, where=broad), exact.search(q, 10, where=broad)
    allowed = set(exact.ids(broad))
    assert all(i in allowed for i in got.ids.ravel() if i)
    assert recall_at(got.ids, want.ids) >= 0.95


def test_faiss_ivf_survives_delete_upsert_save_load(big: dict[str, Any], tmp_path: Path) -> None:
    ivf = create_store("faiss", 64, ivf_threshold=5_000, hnsw_max=0)
    vecs, id_list = big["vecs"][:8000], big["ids"][:8000]
    ivf.add(id_list, vecs, [{}] * len(id_list))
    assert ivf.index_kind == "ivf"  # type: ignore[attr-defined]
    ivf.delete(id_list[:100])
    moved = l2_normalize(-vecs[200:201])
    ivf.upsert([id_list[200]], moved, [{"path": "moved"}])
    assert not set(ivf.search(vecs[:100], 5).ids.ravel()) & set(id_list[:100])
    assert ivf.search(moved, 1).ids[0, 0] == id_list[200]
    ivf.save(tmp_path)
    assert (tmp_path / "faiss.index").is_file()
    loaded = load_store("faiss", tmp_path)
    assert loaded.index_kind == "ivf"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(loaded.search(vecs[300:320], 5).ids, ivf.search(vecs[300:320], 5).ids)
    loaded.add(["new"], moved, [{}])
    assert loaded.search(moved, 2).row(0)[1][0] == "new" or loaded.search(moved, 2).row(0)[0][0] == "new"
