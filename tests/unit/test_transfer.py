"""Parquet export / import moves an index between store backends (FAISS <-> Milvus) without loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from visrec.data import load_dataset
from visrec.distributed.transfer import export_index, export_store, import_index, import_store, parquet_info
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.stores import create_store, l2_normalize

pytest.importorskip("pyarrow", reason="pip install 'visrec[milvus]' for Parquet export / import")


@pytest.fixture(scope="module")
def faiss_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("transfer")
    make_labeled_tree(tmp / "data", ("amber", "blue", "green"), per_class=6, size=40)
    out = tmp / "src.vrx"
    build_index(load_dataset(tmp / "data"), out, create_encoder("fake"), IndexConfig(store="faiss"))
    return out


def test_store_round_trip_keeps_ids_vectors_and_metadata(tmp_path: Path) -> None:
    vecs = l2_normalize(np.random.default_rng(0).standard_normal((30, 8)))
    src = create_store("exact", 8)
    metas = [{"path": f"{i}.jpg", "labels": ["a"] if i % 2 else [], "split": None, "group": "g",
              "extra": {"n": i, "t": "x", "b": True, "f": 0.5}} for i in range(30)]  # fmt: skip
    src.add([f"i{i}" for i in range(30)], vecs, metas)
    assert export_store(src, tmp_path / "s.parquet", batch_size=7) == 30
    dst = create_store("faiss", 8)
    assert import_store(tmp_path / "s.parquet", dst, batch_size=11) == 30
    assert dst.ids() == src.ids()
    np.testing.assert_array_equal(dst.get(src.ids())[0], vecs)
    assert dst.get(["i3"])[1] == src.get(["i3"])[1]
    assert parquet_info(tmp_path / "s.parquet")["dim"] == 8


@pytest.mark.parametrize("backend", ["milvus", "exact"])
def test_index_moves_between_backends(faiss_index: Path, tmp_path: Path, backend: str) -> None:
    if backend == "milvus":
        pytest.importorskip("pymilvus")
    file = tmp_path / "idx.parquet"
    assert export_index(faiss_index, file) == 18
    options = {"uri": f"milvus-lite://{tmp_path}/m.db"} if backend == "milvus" else {}
    assert import_index(file, tmp_path / "moved.vrx", backend, **options) == 18
    before, after = Index(faiss_index), Index(tmp_path / "moved.vrx")
    assert after.folder.manifest.store == backend
    assert after.encoder_info == before.encoder_info
    assert sorted(p.name for p in after.gen.glob("*.json")) == sorted(p.name for p in before.gen.glob("*.json"))
    q = before.store.get(before.store.ids()[:3])[0]
    np.testing.assert_array_equal(after.store.search(q, 5).ids, before.store.search(q, 5).ids)


def test_foreign_parquet_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(BadInput, match="not written by visrec"):
        import_index(tmp_path / "other.parquet", tmp_path / "x.vrx")


def test_cli_export_then_import(faiss_index: Path, tmp_path: Path) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from visrec.cli.scale import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(faiss_index), "--out", str(tmp_path / "i.parquet"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["count"] == 18
    res = runner.invoke(
        app, ["import", str(tmp_path / "i.parquet"), "--out", str(tmp_path / "n.vrx"), "--store", "exact"]
    )
    assert res.exit_code == 0, res.output
    assert "imported 18 items" in res.output and Index(tmp_path / "n.vrx").store.count() == 18
