"""Segmented store: immutable segments + tombstones behave like one store (checked against brute force after
random edits, saves, reloads and merges), saving links old segments instead of rewriting them, and the tiered
merge policy keeps the segment count and the rewriting bounded."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visrec.errors import BadInput, IndexCorrupt
from visrec.stores import create_store, l2_normalize, load_store, parse_filter
from visrec.stores.merge_policy import MergePolicy
from visrec.stores.segmented import SegmentedStore

DIM = 12
LABELS = ("a", "b", "c")


def _meta(i: int) -> dict[str, Any]:
    return {"path": f"{i}.jpg", "labels": [LABELS[i % 3]], "split": "test" if i % 4 == 0 else "train"}


class Model:
    """The reference: a dict of live items, searched by brute force."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def topk(self, q: np.ndarray, k: int, where: str | None = None) -> tuple[list[list[str]], np.ndarray]:
        flt = None if where is None else parse_filter(where)
        keep = [(i, v) for i, (v, m) in self.items.items() if flt is None or flt.matches({**m, "extra": {}})]
        ids = [i for i, _ in keep]
        scores = q @ np.stack([v for _, v in keep]).T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[ids[j] for j in row] for row in order], np.take_along_axis(scores, order, axis=1)


def _check(store: SegmentedStore, model: Model, rng: np.random.Generator) -> None:
    assert store.count() == len(model.items) and set(store.ids()) == set(model.items)
    q = l2_normalize(rng.standard_normal((4, DIM)))
    for where in (None, 'label == "b"', 'split == "test" and label != "a"'):
        want_ids, want_s = model.topk(q, 5, where)
        got = store.search(q, 5, where=where)
        np.testing.assert_allclose(got.scores[:, : want_s.shape[1]], want_s, atol=1e-5)
        assert [list(r[: len(w)]) for r, w in zip(got.ids, want_ids, strict=True)] == want_ids
        if where is not None:
            flt = parse_filter(where)
            assert store.count(where) == sum(flt.matches({**m, "extra": {}}) for _, m in model.items.values())
    some = list(model.items)[:: max(1, len(model.items) // 7)]
    vecs, metas = store.get(some)
    np.testing.assert_array_equal(vecs, np.stack([model.items[i][0] for i in some]))
    assert [m["path"] for m in metas] == [model.items[i][1]["path"] for i in some]
    exported = [i for ids, _, _ in store.export(batch_size=17) for i in ids]
    assert exported == store.ids()


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_random_edits_saves_and_merges_match_brute_force(backend: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store, model, nxt = SegmentedStore(backend, DIM), Model(), 0
    policy = MergePolicy(segments_per_tier=3, floor_rows=4)
    for step in range(12):
        n_new = int(rng.integers(1, 15))
        ids = [f"id{nxt + j}" for j in range(n_new)]
        nxt += n_new
        replaced = list(rng.choice(sorted(model.items), min(3, len(model.items)), replace=False)) if model.items else []
        vecs = l2_normalize(rng.standard_normal((n_new + len(replaced), DIM)))
        metas = [_meta(int(i[2:])) for i in ids + replaced]
        store.upsert(ids + replaced, vecs, metas)
        model.items.update({i: (v, m) for i, v, m in zip(ids + replaced, vecs, metas, strict=True)})
        gone = list(rng.choice(sorted(model.items), 2, replace=False))
        assert store.delete([*gone, "never-there"]) == 2
        for i in gone:
            del model.items[i]
        _check(store, model, rng)
        store.compact(policy)
        folder = tmp_path / f"g{step}"
        folder.mkdir()
        store.save(folder)
        store = load_store(backend, folder)  # type: ignore[assignment]
        assert isinstance(store, SegmentedStore)
        _check(store, model, rng)
    assert store.compact(full=True) >= 1 and len(store.segments()) == 1
    _check(store, model, rng)


def test_saving_links_old_segments_and_writes_only_the_new_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = SegmentedStore("exact", DIM)
    store.add([f"i{j}" for j in range(50)], l2_normalize(rng.standard_normal((50, DIM))), [_meta(j) for j in range(50)])
    (tmp_path / "g1").mkdir()
    store.save(tmp_path / "g1")
    again = SegmentedStore.load(tmp_path / "g1", "exact")
    again.upsert(["new"], l2_normalize(rng.standard_normal((1, DIM))), [_meta(1)])
    again.delete(["i3"])
    (tmp_path / "g2").mkdir()
    again.save(tmp_path / "g2")
    old = os.stat(tmp_path / "g1" / "seg-000001" / "vectors.npy")
    linked = os.stat(tmp_path / "g2" / "seg-000001" / "vectors.npy")
    assert linked.st_ino == old.st_ino  # the same file, not a copy
    assert [s["rows"] for s in again.segments()] == [50, 1] and again.segments()[0]["deleted"] == 1
    reread = load_store("exact", tmp_path / "g2")
    assert reread.count() == 50 and "i3" not in reread.ids() and reread.ids()[-1] == "new"  # type: ignore[attr-defined]
    assert reread.search(again.get(["new"])[0], 1).ids[0, 0] == "new"


def test_a_single_store_of_the_earlier_layout_opens_as_one_segment(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    single = create_store("faiss", DIM)
    vecs = l2_normalize(rng.standard_normal((20, DIM)))
    single.add([f"i{j}" for j in range(20)], vecs, [_meta(j) for j in range(20)])
    single.save(tmp_path)
    seg = SegmentedStore.load(tmp_path, "faiss")
    assert seg.count() == 20 and seg.ids() == single.ids() and len(seg.segments()) == 1
    q = l2_normalize(rng.standard_normal((3, DIM)))
    np.testing.assert_array_equal(seg.search(q, 4).ids, single.search(q, 4).ids)


def test_add_refuses_a_stored_id_and_damaged_segment_lists_are_named(tmp_path: Path) -> None:
    store = SegmentedStore("exact", DIM)
    v = l2_normalize(np.ones((1, DIM)))
    store.add(["x"], v, [{}])
    (tmp_path / "g").mkdir()
    store.save(tmp_path / "g")
    loaded = SegmentedStore.load(tmp_path / "g", "exact")
    with pytest.raises(BadInput, match="already stored"):
        loaded.add(["x"], v, [{}])
    (tmp_path / "g" / "segments.json").write_text('{"format": 1, "dim": 12, "segments": [{"name": "../x"}]}')
    with pytest.raises(IndexCorrupt, match=r"segments\.json"):
        SegmentedStore.load(tmp_path / "g", "exact")


def test_the_policy_merges_a_full_tier_and_rewrites_mostly_deleted_segments() -> None:
    policy = MergePolicy()  # 10 per tier, floor 10
    assert policy.plan([1] * 10, [0] * 10) == []
    assert policy.plan([1] * 11, [0] * 11) == [list(range(10))]
    assert policy.plan([50_000] + [5] * 11, [0] * 12) == [list(range(1, 11))]  # the big one is in another tier
    assert policy.plan([60] + [1] * 10, [0] * 11) == [list(range(1, 11))]  # equals merged, not the 60 with nine 1s
    assert policy.plan([900, 10], [300, 0]) == [[0]]  # a third deleted: rewritten without its tombstones
    assert policy.plan([900, 10], [200, 0]) == []


def test_single_row_updates_keep_segments_and_rewriting_bounded() -> None:
    """Simulate 5,000 one-row commits: the count of segments stays bounded and each row is written a few times
    per tier it climbs (tiers: log10 of the size in floors), as the policy's docstring says."""
    policy = MergePolicy()
    sizes: list[int] = []
    written = 0
    most = 0
    for _ in range(5_000):
        sizes.append(1)
        written += 1
        groups = policy.plan(sizes, [0] * len(sizes))
        merged = [sum(sizes[i] for i in g) for g in groups]
        written += sum(merged)
        sizes = [s for i, s in enumerate(sizes) if not any(i in g for g in groups)] + merged
        most = max(most, len(sizes))
    tiers = 1 + math.log10(5_000 / policy.floor_rows)
    assert sum(sizes) == 5_000 and most <= (policy.segments_per_tier + 1) * (tiers + 1)
    assert written / 5_000 <= 2 * tiers


def test_a_saved_ivf_index_is_mapped_at_open_and_copied_before_a_change(tmp_path: Path) -> None:
    from visrec.stores.faiss_store import FaissStore

    rng = np.random.default_rng(3)
    vecs = l2_normalize(rng.standard_normal((800, DIM)))
    store = FaissStore(DIM, ivf_threshold=400, hnsw_max=0, nprobe=20)
    store.add([f"i{j}" for j in range(800)], vecs, [_meta(j) for j in range(800)])
    store.save(tmp_path)
    saved = (tmp_path / "faiss.index").read_bytes()
    loaded = load_store("faiss", tmp_path)
    assert isinstance(loaded, FaissStore) and loaded._mapped and loaded.index_kind == "ivf"
    np.testing.assert_array_equal(loaded.search(vecs[:5], 3).ids, store.search(vecs[:5], 3).ids)
    loaded.add(["new"], l2_normalize(rng.standard_normal((1, DIM))), [{}])  # FAISS would abort on a mapped index
    loaded.delete(["i0"])
    assert not loaded._mapped and loaded.count() == 800 and loaded.search(vecs[1], 1).ids[0, 0] == "i1"
    assert (tmp_path / "faiss.index").read_bytes() == saved


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_ids_are_read_from_their_file_and_from_the_metadata_without_it(backend: str, tmp_path: Path) -> None:
    """A saved store keeps its ids in ``ids.txt`` (one read at open); a store without the file, or with one that
    does not match its rows, opens from the metadata with the same ids and search results."""
    from visrec.stores._common import IDS_FILE

    rng = np.random.default_rng(3)
    store = create_store(backend, DIM)
    ids = [f"folder/{i} é.jpg" for i in range(31)]
    store.add(ids, l2_normalize(rng.standard_normal((len(ids), DIM))), [_meta(i) for i in range(len(ids))])
    (tmp_path / "s").mkdir()
    store.save(tmp_path / "s")
    assert (tmp_path / "s" / IDS_FILE).is_file()
    q = l2_normalize(rng.standard_normal((2, DIM)))
    want = load_store(backend, tmp_path / "s").search(q, 5)
    for damage in ("missing", "short"):
        if damage == "missing":
            (tmp_path / "s" / IDS_FILE).unlink()
        else:
            (tmp_path / "s" / IDS_FILE).write_bytes("\0".join(ids[:-1]).encode())
        again = load_store(backend, tmp_path / "s")
        assert again.ids() == ids
        got = again.search(q, 5)
        assert got.ids.tolist() == want.ids.tolist()
        assert ids[-1] in again
