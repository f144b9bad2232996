"""Adapters on disk: exact round trip, refusal of the wrong encoder, re-projected indexes that answer queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput, ManifestMismatch
from visrec.index import Index
from visrec.index.fitted import FITTED_IDS, held_out_ids
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.train import (
    FinetuneConfig,
    LoopConfig,
    finetune,
    load_adapter,
    reproject_index,
    save_adapter,
)

CLASSES = ("amber", "blue", "crimson")
QUICK = FinetuneConfig("triplet", 8, loop=LoopConfig(epochs=3, batch_size=16, lr=0.02))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_labeled_tree(root, CLASSES, per_class=12, size=40)
    out = tmp_path_factory.mktemp("index") / "idx.vrx"
    build_index(load_dataset(root), out, create_encoder("fake", dim=16), IndexConfig(store="exact", calibrate=False))
    return out


@pytest.fixture(scope="module")
def trained(index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    res = finetune(index, QUICK)
    return save_adapter(res.adapter, tmp_path_factory.mktemp("adapter"))


def test_round_trip_reproduces_the_embeddings_exactly(index: Path, trained: Path) -> None:
    vecs = Index(index).store.get(_some_ids(index))[0]
    again = load_adapter(trained)
    cfg = json.loads((trained / "adapter.json").read_text())
    assert cfg["base_encoder"]["fingerprint"] == create_encoder("fake", dim=16).fingerprint
    assert cfg["method"] == "triplet" and cfg["info"]["before"] and cfg["info"]["after"]
    first = load_adapter(trained).project(vecs)
    assert np.array_equal(again.project(vecs), first)
    assert first.shape == (len(vecs), 8) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def _some_ids(index: Path) -> list[str]:
    ids, _, _ = next(Index(index).store.export())
    return list(ids[:5])


def test_an_adapter_for_another_encoder_is_refused(tmp_path: Path, trained: Path) -> None:
    root = tmp_path / "d"
    make_labeled_tree(root, CLASSES, per_class=4, size=40)
    other = tmp_path / "other.vrx"
    build_index(load_dataset(root), other, create_encoder("fake", dim=32), IndexConfig(calibrate=False))
    with pytest.raises(ManifestMismatch, match=r"trained on vectors of encoder 'fake'.*fingerprint"):
        reproject_index(other, load_adapter(trained), tmp_path / "out.vrx")
    assert not (tmp_path / "out.vrx").exists()


def test_tampered_weights_are_refused(tmp_path: Path, trained: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    cfg = json.loads((trained / "adapter.json").read_text())
    cfg["weights_sha256"] = "0" * 64
    (copy / "adapter.json").write_text(json.dumps(cfg))
    (copy / "adapter.safetensors").write_bytes((trained / "adapter.safetensors").read_bytes())
    with pytest.raises(BadInput, match="does not match the hash"):
        load_adapter(copy)
    with pytest.raises(BadInput, match="not an adapter folder"):
        load_adapter(tmp_path)


def test_reprojected_index_keeps_labels_and_answers_queries(index: Path, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapted.vrx"
    done = reproject_index(index, load_adapter(trained), out)
    src, new = Index(index), Index(out)
    assert done["count"] == src.store.count() == new.store.count()
    assert new.labels() == src.labels() and new.folder.manifest.dim == 8
    assert new.metadata() == src.metadata()
    assert new.encoder_info["name"] == "adapted"
    image = src.file_of(src.search_vectors(src.prototypes()[0][:1], 1)[0][0])
    assert image is not None
    pred = new.classify([image], calibrated=False)[0]
    assert pred.label == Path(image).parent.name
    # recalibrated in the new space: the novelty model has the adapter's width and the decision answers
    cal = new.calibration("knn")
    assert cal is not None and cal.decision is not None
    assert new.novelty_scores(new.encode([image]).vectors, cal.decision.novelty_name).shape == (1,)
    calibrated = new.classify([image])[0]
    assert calibrated.candidate == Path(image).parent.name and calibrated.threshold is not None
    with pytest.raises(BadInput, match="already exists"):
        reproject_index(index, load_adapter(trained), out)


def test_reprojected_index_is_calibrated_on_the_items_the_adapter_never_saw(
    index: Path, trained: Path, tmp_path: Path
) -> None:
    adapter = load_adapter(trained)
    assert set(adapter.info[FITTED_IDS]) <= set(Index(index).store.ids())  # finetune records what it trained on
    ids = sorted(Index(index).store.ids())
    adapter.info[FITTED_IDS] = ids[:20]  # 36 labeled items: 16 left, enough for a calibration
    done = reproject_index(index, adapter, tmp_path / "held.vrx")
    assert done["calibration_queries"] == 16
    for mode in ("knn", "linear"):
        assert Index(tmp_path / "held.vrx").calibration(mode).n_held_out == 16
    adapter.info[FITTED_IDS] = ids[:30]  # 6 left: too few, every item is a query again (and the summary says so)
    done = reproject_index(index, adapter, tmp_path / "all.vrx")
    assert done["calibration_queries"] is None
    assert Index(tmp_path / "all.vrx").calibration("knn").n_held_out == 36


def test_held_out_ids_need_enough_labels_and_two_classes() -> None:
    ids = [f"i{n}" for n in range(30)]
    metas = [("a",) if n % 2 else ("b",) for n in range(30)]
    assert held_out_ids(ids, metas, None) is None and held_out_ids(ids, metas, []) is None
    assert held_out_ids(ids, metas, ids[:10]) == frozenset(ids[10:])
    assert held_out_ids(ids, metas, ids[:25]) is None  # 5 left
    one_class = [("a",) if n >= 10 else ("b",) for n in range(30)]
    assert held_out_ids(ids, one_class, ids[:10]) is None


def test_calibrate_on_an_adapted_index_holds_out_what_the_adapter_never_saw(
    index: Path, trained: Path, tmp_path: Path
) -> None:
    from visrec.index.fitted import recorded_fitted_ids
    from visrec.ops import calibrate

    adapter = load_adapter(trained)
    adapter.info[FITTED_IDS] = sorted(Index(index).store.ids())[:20]
    saved = save_adapter(adapter, tmp_path / "adapter")
    out = tmp_path / "adapted.vrx"
    reproject_index(index, load_adapter(saved), out, calibrate=False)
    assert len(recorded_fitted_ids(Index(out).encoder_info["describe"])) == 20
    calibrate(out, None, None, ["knn"])  # `visrec calibrate` later: the same 16 unseen items are the queries
    assert Index(out).calibration("knn").n_held_out == 16
    assert recorded_fitted_ids({"name": "fake", "options": {}}) == []
    assert recorded_fitted_ids({"name": "adapted", "options": {"adapter": str(tmp_path / "gone")}}) == []
