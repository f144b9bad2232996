"""Milvus-only behaviour of the milvus store (the shared contract is in test_stores.py), on Milvus Lite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visrec.errors import BadInput, DimensionMismatch
from visrec.stores import create_store, l2_normalize, load_store, parse_filter
from visrec.stores.milvus_expr import to_milvus

pytest.importorskip("pymilvus", reason="pip install 'visrec[milvus]' to test the milvus store")
pytest.importorskip("milvus_lite", reason="pip install 'visrec[milvus]' to test the milvus store")

DIM = 8


def unit(n: int, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, DIM)))


def varied(n: int) -> list[dict[str, Any]]:
    """Metadata with missing / None / text / number / boolean values and quotes in text."""
    extras: list[dict[str, Any]] = [{}, {"g": "x"}, {"g": 5}, {"g": None}, {"g": 'q"u\\o'}, {"g": True}, {"g": 2.5}]
    return [
        {"path": f"p/{i}.jpg", "labels": [["A", "B", 'C"'][i % 3]] if i % 4 else [], "width": i,
         "split": None if i % 5 == 0 else ["train", "test"][i % 2], "group": None if i % 2 else f"g{i % 3}",
         "extra": extras[i % len(extras)]}
        for i in range(n)
    ]  # fmt: skip


EXPRESSIONS = [
    'label == "A"', 'label != "A"', 'label in ["A", "C\\""]', 'label not in ["B"]', "label == None",
    "label != None", 'not label == "A"', 'split == "train"', 'split != "train"', "split == None",
    "not split == None", 'not (split == "train" or width < 3)', 'g == "x"', 'g != "x"', "g == 5", "g != 5",
    "g == None", "g != None", "g < 6", "not g < 6", 'g > "a"', 'not g > "a"', 'not (g >= 3 and split == "test")',
    'g in ["x", 5, 2.5]', 'g not in ["x", 5]', 'g == "q\\"u\\\\o"', "g == True", "g == 1", "width >= 7",
    'width == "7"', 'not width == "7"', 'group == "g0"', "group != None", 'id in ["id1", "id3"]',
    'path < "p/3"', "missing == 1", "not missing == 1", "not missing < 1",
]  # fmt: skip


@pytest.fixture(scope="module")
def varied_store() -> Any:
    store = create_store("milvus", DIM)
    store.add([f"id{i}" for i in range(40)], unit(40), varied(40))
    return store


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_filters_select_what_python_selects(varied_store: Any, expr: str) -> None:
    flt = parse_filter(expr)
    want = [f"id{i}" for i, m in enumerate(varied(40)) if flt.matches({**m, "id": f"id{i}"})]
    assert varied_store.ids(expr) == want, to_milvus(expr)
    assert varied_store.count(expr) == len(want)


def test_label_ordering_is_refused_with_the_reason() -> None:
    with pytest.raises(BadInput, match="cannot compare labels"):
        to_milvus('label < "M"')


def test_lite_file_persists_and_keeps_insertion_order(tmp_path: Path) -> None:
    uri = f"milvus-lite://{tmp_path}/g.db#gallery"
    store = create_store("milvus", DIM, uri=uri)
    vecs = unit(5)
    store.add(["e", "d", "c"], vecs[:3], [{}] * 3)
    store.close()
    again = create_store("milvus", DIM, uri=uri)
    assert again.ids() == ["e", "d", "c"]
    again.add(["b"], vecs[3:4], [{"labels": ["X"]}])
    again.upsert(["d"], vecs[4:5], [{"path": "moved"}])
    assert again.ids() == ["e", "d", "c", "b"] and again.get(["d"])[1][0]["path"] == "moved"
    again.close()
    with pytest.raises(DimensionMismatch, match="width 8"):
        create_store("milvus", DIM * 2, uri=uri)


@pytest.mark.parametrize(
    "uri",
    ["http://host:19530", "milvus:///coll", "milvus-lite:///tmp/no-suffix", "milvus://h:19530/1bad-name"],
)
def test_bad_uris_say_what_to_write(uri: str) -> None:
    with pytest.raises(BadInput, match=r"(?i)milvus"):
        create_store("milvus", DIM, uri=uri)


def test_save_writes_a_pointer_and_a_lite_file_is_reattached(tmp_path: Path) -> None:
    store = create_store("milvus", DIM, uri=f"milvus-lite://{tmp_path}/db/a.db")
    store.add(["a", "b"], unit(2), [{}, {}])
    gen = tmp_path / "gen"
    gen.mkdir()
    store.save(gen)
    assert (gen / "milvus.json").is_file() and load_store("exact", gen).ids() == ["a", "b"]
    store.close()
    back = load_store("milvus", gen)
    assert back.collection == "visrec" and back.target.client_uri.endswith("a.db")
    assert back.ids() == ["a", "b"]


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact(index: str) -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((20, DIM))
    vecs = l2_normalize(centres[rng.integers(0, 20, 2000)] + 0.3 * rng.standard_normal((2000, DIM)))
    id_list = [f"v{i}" for i in range(len(vecs))]
    approx = create_store("milvus", DIM, index=index, nlist=32, nprobe=8)
    approx.add(id_list, vecs, [{}] * len(vecs))
    exact = create_store("exact", DIM)
    exact.add(id_list, vecs, [{}] * len(vecs))
    q = vecs[:50]
    got, want = approx.search(q, 10), exact.search(q, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got.ids, want.ids, strict=True)])
    assert recall >= 0.9 and list(got.ids[:, 0]) == id_list[:50]


def test_reopening_searches_with_the_collections_own_index(tmp_path: Path) -> None:
    uri = f"milvus-lite://{tmp_path}/k.db"
    create_store("milvus", DIM, uri=uri, index="hnsw").close()
    again = create_store("milvus", DIM, uri=uri)  # default options ask for flat
    assert again.index == "hnsw" and again.options()["index"] == "hnsw"


def test_a_collection_not_made_by_visrec_is_refused(tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(str(tmp_path / "f.db"))
    client.create_collection("foreign", dimension=DIM)
    client.close()
    with pytest.raises(BadInput, match="not made by visrec"):
        create_store("milvus", DIM, uri=f"milvus-lite://{tmp_path}/f.db#foreign")


def test_milvus_lite_serves_on_loopback_only(tmp_path: Path) -> None:
    from tests.listening import listening_addresses

    store = create_store("milvus", DIM, uri=f"milvus-lite://{tmp_path}/n.db")
    store.add(["a"], unit(1), [{}])
    listening = listening_addresses()
    assert listening and all(a.is_loopback for a in listening), listening  # pymilvus serves Lite over local gRPC
