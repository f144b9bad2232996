"""File and folder names that are not valid UTF-8 (Python gives their bytes as surrogate escapes): they index,
search, classify, re-index and come back through the HTTP API losslessly, with the fake encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fixtures_images import make_labeled_tree
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput
from visrec.index import Index
from visrec.index.writer import build_index
from visrec.stores.metadata import MetadataTable
from visrec.web import ServeConfig, Service
from visrec.web.api import create_api

FILE = os.fsdecode(b"img_\xff.jpg")  # "img_\udcff.jpg"
LABEL = os.fsdecode(b"gr\xe9en")  # Latin-1 bytes, not UTF-8


def undecodable_tree(root: Path) -> Path:
    """A 3-class tree whose ``blue`` holds ``img_\\xff.jpg`` and whose third class folder is ``gr\\xe9en``."""
    make_labeled_tree(root, ("amber", "blue", "green"), per_class=6, size=48)
    (root / "blue" / "blue_3.jpg").rename(root / "blue" / FILE)
    (root / "green").rename(root / LABEL)
    return root


def test_metadata_table_round_trips_undecodable_text(tmp_path: Path) -> None:
    table = MetadataTable(tmp_path / "m.sqlite")
    meta = {"path": f"{LABEL}/{FILE}", "labels": [LABEL], "split": None, "sha256": "", "width": 1, "height": 1,
            "group": FILE, "extra": {"original": FILE}}  # fmt: skip
    plain = {**meta, "path": "a.jpg", "labels": ["amber"], "group": None, "extra": {}}
    table.insert([f"{LABEL}/{FILE}", "a.jpg"], [0, 1], [meta, plain])
    table.replace([f"{LABEL}/{FILE}"], [0], [meta])
    table.save(tmp_path / "saved.sqlite")
    for t in (table, MetadataTable(tmp_path / "saved.sqlite", readonly=True)):
        assert t.ids_by_row() == [f"{LABEL}/{FILE}", "a.jpg"]
        assert t.get_rows([0]) == [meta] and dict(t.iter_all())[f"{LABEL}/{FILE}"] == meta
        assert t.rows_of(["a.jpg", f"{LABEL}/{FILE}", "nothing"]) == [1, 0, None]
        assert t.count("label == 'amber'") == 1
    # a lone surrogate that no file name produces is refused, naming the item, and stores nothing
    with pytest.raises(BadInput, match=r"lone surrogate.*rename"):
        table.insert(["\ud800.jpg"], [2], [plain])
    with pytest.raises(BadInput, match=r"undecodable file-name byte.*valid text"):
        table.count(f"path == '{FILE}'")
    assert len(table) == 2


def test_index_search_classify_and_reindex_undecodable_names(tmp_path: Path) -> None:
    root = undecodable_tree(tmp_path / "data")
    out = tmp_path / "idx.vrx"
    rep = build_index(load_dataset(root), out, create_encoder("fake"))
    assert rep.count == 18 and not rep.skipped
    idx = Index(out)
    assert idx.labels() == {"amber": 6, "blue": 6, LABEL: 6}
    hit = idx.search_images([root / "blue" / FILE], k=3)[0][0]
    assert hit.path == f"blue/{FILE}" and os.fsencode(hit.path) == b"blue/img_\xff.jpg"
    assert hit.score == pytest.approx(1.0, abs=1e-4)
    assert idx.classify([root / LABEL / "green_1.jpg"])[0].candidate == LABEL
    again = build_index(load_dataset(root), out, create_encoder("fake"))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 18)
    (root / "blue" / FILE).unlink()
    gone = build_index(load_dataset(root), out, create_encoder("fake"))
    assert (gone.removed, gone.count) == (1, 17) and f"blue/{FILE}" not in Index(out).store.ids()


def test_http_api_returns_undecodable_names_as_json_escapes(tmp_path: Path) -> None:
    root = undecodable_tree(tmp_path / "data")
    out = tmp_path / "idx.vrx"
    build_index(load_dataset(root), out, create_encoder("fake"))
    c = TestClient(create_api(Service(ServeConfig(out))), raise_server_exceptions=False)
    assert c.get("/api/index").json()["labels"][LABEL] == 6
    query = (root / "blue" / FILE).read_bytes()
    r = c.post("/api/search/image?k=1", files={"file": ("q.jpg", query, "image/jpeg")})
    assert r.status_code == 200 and r.json()["hits"][0]["path"] == f"blue/{FILE}"
    assert b"img_\\udcff.jpg" in r.content  # the JSON escape; the body stays ASCII


def test_parquet_export_refuses_undecodable_names_naming_the_item(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pip install 'visrec[milvus]' for Parquet export / import")
    from visrec.distributed.transfer import export_index

    root = undecodable_tree(tmp_path / "data")
    out = tmp_path / "idx.vrx"
    build_index(load_dataset(root), out, create_encoder("fake"))
    with pytest.raises(BadInput, match=r"item 'blue/img_\\udcff.jpg' .* not valid UTF-8.*rename"):
        export_index(out, tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_grouped_split_plots_and_scene_colours_take_undecodable_class_names(tmp_path: Path) -> None:
    from visrec.data import grouped_split
    from visrec.eval.plots import confusion_figure, figure_png, per_class_figure
    from visrec.segment.draw import label_colour

    assert label_colour(LABEL) == label_colour(LABEL) != label_colour("green")

    ds = load_dataset(undecodable_tree(tmp_path / "data"))
    side = grouped_split(ds, {r.id: r.id for r in ds.records})
    assert len(side) == 18 and set(side.values()) == {"train", "test"}
    figures = {"precision": 1.0, "recall": 0.5, "f1": 0.67}
    result = {"classes": ["amber", LABEL], "confusion": [[2, 0, 0], [0, 1, 1]],
              "per_class": {"amber": figures, LABEL: figures}}  # fmt: skip
    confusion, per_class = confusion_figure(result), per_class_figure(result)
    assert [t.get_text() for t in confusion.axes[0].get_yticklabels()] == ["amber", "gr\ufffden"]
    assert [t.get_text() for t in per_class.axes[0].get_xticklabels()] == ["amber", "gr\ufffden"]
    assert figure_png(confusion).startswith(b"\x89PNG") and figure_png(per_class).startswith(b"\x89PNG")


def test_web_ui_outputs_show_undecodable_bytes_as_replacement_characters() -> None:
    orjson = pytest.importorskip("orjson")  # Gradio's encoder, which refuses surrogate escapes
    from visrec.data import printable
    from visrec.web.ui import _shown

    image = object()
    out = _shown([(image, f"blue/{FILE}"), ([[LABEL, 6]], {"choices": [LABEL]}, 0.5)])
    assert out == [(image, "blue/img_\ufffd.jpg"), ([["gr\ufffden", 6]], {"choices": ["gr\ufffden"]}, 0.5)]
    assert orjson.loads(orjson.dumps(out[1])) == [[["gr\ufffden", 6]], {"choices": ["gr\ufffden"]}, 0.5]
    assert printable("caf\u00e9") == "caf\u00e9" and printable("\ud800.jpg") == "?.jpg"


def test_a_milvus_index_skips_undecodable_names_with_the_fix_and_indexes_the_rest(tmp_path: Path) -> None:
    pytest.importorskip("pymilvus", reason="pip install 'visrec[milvus]' to test the milvus store")
    pytest.importorskip("milvus_lite", reason="pip install 'visrec[milvus]' to test the milvus store")
    from visrec.index.pipeline import IndexConfig

    root = undecodable_tree(tmp_path / "data")
    out = tmp_path / "idx.vrx"
    cfg = IndexConfig(store=f"milvus-lite://{tmp_path}/db/m.db#things", calibrate=False)
    rep = build_index(load_dataset(root), out, create_encoder("fake"), cfg)
    assert rep.count == 11 and len(rep.skipped["name-not-utf8"]) == 7  # blue/img_\xff.jpg and gr\xe9en's six
    assert f"blue/{FILE}" in rep.skipped["name-not-utf8"]
    again = build_index(load_dataset(root), out, create_encoder("fake"))
    assert (again.count, again.unchanged, again.removed) == (11, 11, 0)
    from visrec.stores._milvus_io import check_id_lengths

    with pytest.raises(BadInput, match=r"not UTF-8, which Milvus cannot store; rename"):  # e.g. an API upload
        check_id_lengths(["a.jpg", f"blue/{FILE}"])
