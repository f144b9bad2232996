"""Scale-out from the command line: Milvus stores picked by URI on `visrec index`, and `visrec export` /
`visrec import` moving an index between FAISS and Milvus Lite (fake encoder, in-process CLI runner)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.fixtures_images import make_labeled_tree
from visrec.cli import app
from visrec.index import Index

pytest.importorskip("pymilvus", reason="pip install 'visrec[milvus]' to test the milvus store")
pytest.importorskip("milvus_lite", reason="pip install 'visrec[milvus]' to test the milvus store")
pytest.importorskip("pyarrow", reason="pip install 'visrec[milvus]' for Parquet export / import")


def run(*args: str, code: int = 0) -> Any:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return json.loads(res.stdout) if code == 0 and "--json" in args else res


@pytest.fixture
def data(tmp_path: Path) -> Path:
    make_labeled_tree(tmp_path / "data", ("amber", "blue", "green"), per_class=4, size=40)
    return tmp_path / "data"


def test_index_into_a_milvus_lite_file_then_update_it(data: Path, tmp_path: Path) -> None:
    uri = f"milvus-lite://{tmp_path}/db/gallery.db#naruto"
    rep = run("index", data, "--out", tmp_path / "a.vrx", "--encoder", "fake", "--store", uri, "--json")
    assert rep["count"] == 12
    idx = Index(tmp_path / "a.vrx")
    assert idx.folder.manifest.store == "milvus" and idx.store.collection == "naruto"
    pointer = json.loads((idx.gen / "store" / "milvus.json").read_text())
    assert pointer["uri"] == f"milvus-lite://{tmp_path}/db/gallery.db"  # absolute: readable from any folder
    q = data / "blue" / "blue_1.jpg"
    hits = run("search", tmp_path / "a.vrx", "--image", q, "-k", "1", "--json")[0]["hits"]
    assert hits[0]["path"] == "blue/blue_1.jpg"

    (data / "amber" / "amber_0.jpg").unlink()  # an update keeps the collection and drops the removed image
    rep = run("index", data, "--out", tmp_path / "a.vrx", "--json")
    assert (rep["count"], rep["removed"], rep["unchanged"]) == (11, 1, 11)
    assert Index(tmp_path / "a.vrx").store.collection == "naruto" and Index(tmp_path / "a.vrx").store.count() == 11

    res = run("index", data, "--out", tmp_path / "b.vrx", "--encoder", "fake", "--store", uri, code=2)
    assert "already holds 11 items" in res.output  # another index never adopts (or wipes) this collection


def test_bad_store_and_engine_options_are_refused(data: Path, tmp_path: Path) -> None:
    res = run("index", data, "--out", tmp_path / "x.vrx", "--store", "qdrant://h:6333/c", code=2)
    assert "milvus://host:19530/collection" in res.output
    res = run("index", data, "--out", tmp_path / "x.vrx", "--ray-address", "10.0.0.5:6379", code=2)
    assert "--engine ray" in res.output
    res = run("index", data, "--out", tmp_path / "x.vrx", "--engine", "spark", code=2)
    assert "local, ray" in res.output


def test_export_from_faiss_import_into_milvus_and_back(data: Path, tmp_path: Path) -> None:
    run("index", data, "--out", tmp_path / "f.vrx", "--encoder", "fake", "--json")
    assert run("export", tmp_path / "f.vrx", "--out", tmp_path / "f.parquet", "--json")["count"] == 12
    uri = f"milvus-lite://{tmp_path}/m.db"
    rep = run("import", tmp_path / "f.parquet", "--out", tmp_path / "m.vrx", "--store", uri, "--json")
    assert rep["count"] == 12
    src, moved = Index(tmp_path / "f.vrx"), Index(tmp_path / "m.vrx")
    assert moved.folder.manifest.store == "milvus" and moved.joint is not None
    q = src.store.get(src.store.ids()[:4])[0]
    np.testing.assert_array_equal(moved.store.search(q, 5).ids, src.store.search(q, 5).ids)
    res = run("import", tmp_path / "f.parquet", "--out", tmp_path / "again.vrx", "--store", uri, code=2)
    assert "already holds 12 items" in res.output

    run("export", tmp_path / "m.vrx", "--out", tmp_path / "m.parquet")
    run("import", tmp_path / "m.parquet", "--out", tmp_path / "back.vrx", "--store", "faiss")
    back = Index(tmp_path / "back.vrx")
    assert back.folder.manifest.store == "faiss" and back.store.ids() == src.store.ids()
    np.testing.assert_array_equal(back.store.get(back.store.ids())[0], src.store.get(src.store.ids())[0])
