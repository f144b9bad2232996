"""The whitened kNN metric an index opts into: off for a new index (cosine), then fitted on every commit, stored as
plain arrays, searched by kNN, and refused when missing or made for other items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from visrec import ops
from visrec.classify import KnnClassifier
from visrec.classify.whitening import fit_within_class_whitening
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import BadInput, IndexCorrupt, NotCalibrated
from visrec.index import Index
from visrec.index.derived import _export_labeled
from visrec.index.metric import WHITENING_ARRAYS, WHITENING_JSON
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index
from visrec.npyio import load_npz
from visrec.types import Embeddings


def _build(root: Path, out: Path, **cfg: object) -> None:
    build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(**cfg))  # type: ignore[arg-type]


@pytest.fixture()
def index(tmp_path: Path) -> Path:
    make_labeled_tree(tmp_path / "data", ("amber", "blue", "coral"), per_class=6, size=32)
    _build(tmp_path / "data", tmp_path / "idx.vrx")
    ops.calibrate(tmp_path / "idx.vrx", None, None, ["knn"], metric="whitened")  # opt in
    return tmp_path / "idx.vrx"


def test_a_new_index_calibrates_cosine_knn_and_stores_no_whitening(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "data", ("amber", "blue", "coral"), per_class=6, size=32)
    _build(tmp_path / "data", tmp_path / "idx.vrx")
    idx = Index(tmp_path / "idx.vrx")
    assert idx.calibration("knn").params["metric"] == "cosine" and not (idx.gen / WHITENING_JSON).exists()
    ops.calibrate(tmp_path / "idx.vrx", None, None, ["knn"])  # no metric named: the index's own stays
    assert Index(tmp_path / "idx.vrx").calibration("knn").params["metric"] == "cosine"


def _queries(idx: Index) -> np.ndarray:
    near = idx.store.get(idx.store.ids()[:5])[0]
    q = near + 0.05 * np.random.default_rng(0).normal(size=near.shape)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_the_stored_whitening_round_trips_and_knn_searches_with_it(index: Path) -> None:
    idx = Index(index)
    info = json.loads((idx.gen / WHITENING_JSON).read_text())
    assert info["fitted"] and info["fitted_items"] == 18 and info["schema"] == 1
    _, vecs, labels, _ = _export_labeled(idx.store)
    fresh = fit_within_class_whitening(vecs, [t[0] for t in labels])
    stored = load_npz(idx.gen / WHITENING_ARRAYS)
    assert stored["basis"].dtype == np.float32 and stored["basis"].shape == fresh.basis.shape
    np.testing.assert_allclose(fresh.transform(vecs), idx.snapshot().whitened_gallery().vectors, atol=1e-4)
    assert idx.calibration("knn").params["metric"] == "whitened"
    assert idx.info()["knn_metric"] == {"metric": "whitened", "fitted": True, "fitted_items": 18, "rank": info["rank"]}
    # an uncalibrated kNN answer is the vote over the nearest items in the whitened space
    q = _queries(idx)
    got = idx.classify(Embeddings(q, tuple(f"q{i}" for i in range(5)), idx.encoder_info["fingerprint"]), "knn",
                       calibrated=False)  # fmt: skip
    sims = fresh.transform(q) @ fresh.transform(vecs).T
    top = np.argsort(-sims, axis=1)[:, :10]
    want = KnnClassifier().predict_from_neighbors(
        [[labels[j] for j in r] for r in top], np.take_along_axis(sims, top, 1)
    )
    assert [p.candidate for p in got] == [p.candidate for p in want]
    np.testing.assert_allclose([p.score for p in got], [p.score for p in want], atol=1e-4)


def test_every_commit_refits_and_a_fit_made_for_other_items_is_refused(index: Path, tmp_path: Path) -> None:
    old = Index(index).gen
    saved = {n: (old / n).read_bytes() for n in (WHITENING_JSON, WHITENING_ARRAYS)}
    make_labeled_tree(tmp_path / "data", ("amber", "blue", "coral", "dune"), per_class=6, size=32)
    _build(tmp_path / "data", index)
    idx = Index(index)
    assert json.loads((idx.gen / WHITENING_JSON).read_text())["fitted_items"] == 24
    assert idx.classify(_embeddings(idx), "knn")[0].mode == "knn"
    for name, blob in saved.items():  # the previous generation's fit in the new one's place
        (idx.gen / name).write_bytes(blob)
    with pytest.raises(IndexCorrupt, match=r"fitted on other items.*visrec calibrate"):
        Index(index).classify(_embeddings(idx), "knn")


def test_a_missing_fit_names_the_fix_and_calibrate_restores_it(index: Path) -> None:
    gen = Index(index).gen
    (gen / WHITENING_JSON).unlink()
    with pytest.raises(NotCalibrated, match="visrec calibrate"):
        Index(index).classify(_embeddings(Index(index)), "knn")
    ops.calibrate(index, None, None, ["knn"])
    idx = Index(index)
    assert (idx.gen / WHITENING_JSON).is_file() and idx.calibration("knn").params["metric"] == "whitened"
    assert idx.classify(_embeddings(idx), "knn")[0].mode == "knn"


def test_a_calibration_from_before_the_metric_keeps_cosines_and_cosine_can_be_chosen(index: Path) -> None:
    gen = Index(index).gen
    cal = json.loads((gen / "calibration.json").read_text())
    del cal["knn"]["params"]["metric"]
    (gen / "calibration.json").write_text(json.dumps(cal))
    assert Index(index).classifier("knn").config.metric == "cosine"
    ops.calibrate(index, None, None, ["knn"], metric="cosine")
    assert Index(index).calibration("knn").params["metric"] == "cosine"


def test_labels_without_within_class_variation_skip_the_fit_with_the_reason(tmp_path: Path) -> None:
    from visrec.index.metric import whitening_files

    make_labeled_tree(tmp_path / "data", ("amber", "blue", "coral"), per_class=1, size=32)
    _build(tmp_path / "data", tmp_path / "idx.vrx", calibrate=False)
    idx = Index(tmp_path / "idx.vrx")
    files = whitening_files(*_export_labeled(idx.store)[:3])
    info = json.loads(files[WHITENING_JSON])
    assert info["fitted"] is False and "two single-label items" in info["reason"]
    assert WHITENING_ARRAYS not in files
    assert idx.classifier("knn").config.metric == "cosine"
    assert idx.classify(_embeddings(idx), "knn", calibrated=False)[0].candidate in {"amber", "blue", "coral"}


def _embeddings(idx: Index) -> Embeddings:
    q = _queries(idx)
    return Embeddings(q, tuple(f"q{i}" for i in range(len(q))), idx.encoder_info["fingerprint"])


def test_a_commit_that_changes_no_labeled_item_keeps_the_fit_and_one_that_does_refits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import visrec.index.derived as derived

    fits: list[int] = []
    real = derived.whitening_files
    monkeypatch.setattr(derived, "whitening_files", lambda *a: fits.append(1) or real(*a))
    paths = make_labeled_tree(tmp_path / "data", ("amber", "blue", "coral", "dune"), per_class=6, size=32)
    rows = [(str(p.relative_to(tmp_path / "data")), c) for c, ps in paths.items() for p in ps]
    manifest = tmp_path / "data" / "m.csv"

    def commit(chosen: list[tuple[str, str]]) -> Path:
        manifest.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in chosen))
        build_index(load_dataset(manifest), tmp_path / "idx.vrx", create_encoder("fake"), IndexConfig())
        return Index(tmp_path / "idx.vrx").gen

    commit(rows[:18])
    assert not fits  # cosine until the index opts in
    ops.calibrate(tmp_path / "idx.vrx", None, None, ["knn"], metric="whitened")
    first = Index(tmp_path / "idx.vrx").gen
    before = {n: (first / n).read_bytes() for n in (WHITENING_JSON, WHITENING_ARRAYS)}
    unlabeled = commit([*rows[:18], (rows[18][0], "")])  # one more item, without a label: no refit
    assert unlabeled != first and {n: (unlabeled / n).read_bytes() for n in before} == before and not fits
    assert Index(tmp_path / "idx.vrx").classify(_embeddings(Index(tmp_path / "idx.vrx")), "knn")[0].mode == "knn"
    labeled = commit([*rows[:18], (rows[18][0], ""), rows[19]])  # and one labeled item
    assert json.loads((labeled / WHITENING_JSON).read_text())["fitted_items"] == 19 and len(fits) == 1
    assert Index(tmp_path / "idx.vrx").calibration("knn").params["metric"] == "whitened"  # updates keep it


def test_the_index_option_chooses_the_metric_at_build_and_a_change_recalibrates(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "data", ("amber", "blue", "coral"), per_class=6, size=32)
    out = tmp_path / "idx.vrx"
    _build(tmp_path / "data", out, knn_metric="whitened")
    idx = Index(out)
    assert idx.calibration("knn").params["metric"] == "whitened" and (idx.gen / WHITENING_ARRAYS).is_file()
    _build(tmp_path / "data", out, knn_metric="cosine")  # nothing changed but the metric: it is recalibrated
    assert Index(out).calibration("knn").params["metric"] == "cosine"
    with pytest.raises(BadInput, match="whitened"):
        IndexConfig(knn_metric="euclid")


def test_an_uncalibrated_index_opted_in_votes_whitened_and_its_updates_keep_the_fit(tmp_path: Path) -> None:
    make_labeled_tree(tmp_path / "data", ("amber", "blue", "coral"), per_class=6, size=32)
    out = tmp_path / "idx.vrx"
    _build(tmp_path / "data", out, knn_metric="whitened", calibrate=False)
    idx = Index(out)
    assert idx.calibration("knn") is None and idx.classifier("knn").config.metric == "whitened"
    first = idx.gen
    make_labeled_tree(tmp_path / "data", ("dune",), per_class=6, size=32)  # an update that does not name the metric
    _build(tmp_path / "data", out, calibrate=False)
    after = Index(out)
    assert after.gen != first and json.loads((after.gen / WHITENING_JSON).read_text())["fitted_items"] == 24
    assert after.classifier("knn").config.metric == "whitened"
