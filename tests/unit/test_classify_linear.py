"""The linear probe: ridge fit against a plain numpy solve, margins, the penalty chosen on grouped folds, its
held-out calibration, and the head an index stores, reopens with and carries across small updates."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_images import make_labeled_tree
from visrec.classify import CalibrationOptions, LinearClassifier, calibrate_leave_one_group_out
from visrec.classify.linear import PENALTIES, group_folds, margins, ridge_fit
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.errors import EmptyDataset, NotCalibrated
from visrec.index import Index
from visrec.index.pipeline import IndexConfig
from visrec.index.writer import build_index


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _mixture(n_per: int, classes: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, list[tuple[str]]]:
    """Unit rows around ``classes`` random centres; the noise is ``spread`` times the centres' scale."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim))
    x = np.repeat(centres, n_per, axis=0) + spread * rng.standard_normal((classes * n_per, dim))
    labels = [(f"c{i}",) for i in range(classes) for _ in range(n_per)]
    return _unit(x), labels


def test_ridge_fit_matches_a_plain_numpy_solve() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 8)), np.eye(3)[rng.integers(0, 3, 60)]
    ((w, b),) = ridge_fit(x, y, [0.5])
    xc = x - x.mean(axis=0)
    ref = np.linalg.solve(xc.T @ xc + 0.5 * np.eye(8), xc.T @ (y - y.mean(axis=0)))
    np.testing.assert_allclose(w, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b, y.mean(axis=0) - x.mean(axis=0) @ ref, rtol=1e-4, atol=1e-5)


def test_ridge_fit_from_a_fold_scatter_gives_the_heads_of_summing_the_fold() -> None:
    from visrec.classify.linear import fold_outputs
    from visrec.classify.novelty import FoldScatter

    x, labels = _mixture(40, 5, 24, 1.0, seed=2)
    y = np.eye(5)[[int(lab[0][1:]) for lab in labels]]
    keep = np.random.default_rng(1).random(x.shape[0]) < 0.8
    plain = ridge_fit(x[keep], y[keep], PENALTIES)
    derived = ridge_fit(x[keep], y[keep], PENALTIES, FoldScatter(x).of(keep))
    for (w0, b0), (w1, b1) in zip(plain, derived, strict=True):
        np.testing.assert_allclose(w1, w0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b1, b0, rtol=1e-5, atol=1e-6)
    folds = group_folds(np.arange(x.shape[0]), 5)
    held = fold_outputs(x, y, folds, PENALTIES)
    for f in range(5):  # every fold's rows scored by a head fitted on the other rows alone
        ((w, b),) = ridge_fit(x[folds != f], y[folds != f], [PENALTIES[2]])
        np.testing.assert_allclose(held[2][folds == f], x[folds == f] @ w + b, rtol=1e-4, atol=1e-5)


def test_margins_give_the_best_class_its_lead_and_the_others_their_gap() -> None:
    m = margins(np.array([[0.9, 0.2, 0.5], [0.1, 0.1, 0.3]]))
    np.testing.assert_allclose(m, [[0.4, -0.7, -0.4], [-0.2, -0.2, 0.2]], atol=1e-12)


def test_group_folds_keep_each_group_in_one_fold() -> None:
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    folds = group_folds(groups, 3, seed=1)
    for g in np.unique(groups):
        assert len(set(folds[groups == g].tolist())) == 1


def test_the_probe_learns_separable_classes_and_picks_a_penalty_from_the_grid() -> None:
    x, labels = _mixture(30, 4, 16, 0.8, seed=0)
    test_x, test_labels = _mixture(20, 4, 16, 0.8, seed=0)  # same centres (same seed), fresh noise below
    test_x = _unit(test_x + 0.05 * np.random.default_rng(5).standard_normal(test_x.shape))
    clf = LinearClassifier().fit(x, labels)
    assert clf.config.penalty in PENALTIES
    preds = clf.predict(test_x)
    acc = np.mean([p.candidate == t[0] for p, t in zip(preds, test_labels, strict=True)])
    assert acc > 0.95
    assert all(p.mode == "linear" and p.score == p.top_k[0][1] and p.score >= 0 for p in preds)
    with pytest.raises(EmptyDataset):
        LinearClassifier().fit(x[:5], [("only",)] * 5)


def test_held_out_calibration_of_the_probe_hits_the_asked_precision() -> None:
    x, labels = _mixture(100, 5, 16, 1.0, seed=3)
    opts = CalibrationOptions(target_precision=0.9)
    cal = calibrate_leave_one_group_out(x, labels, None, LinearClassifier(), opts)
    assert cal.params["mode"] == "linear" and cal.params["penalty"] in PENALTIES
    # the held-out stream is answered at the asked precision, and most of it is answered
    assert abs(cal.precision - 0.9) <= 0.02 and cal.coverage > 0.5


def _build(root: Path, out: Path) -> object:
    return build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig())


def test_an_index_stores_its_linear_head_and_classifies_with_it(tmp_path: Path) -> None:
    from PIL import Image

    from tests.fixtures_images import class_colour, noise_image

    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue", "crimson"), per_class=10, size=32)
    rep = _build(root, out)
    assert "linear" in rep.calibration  # type: ignore[attr-defined]
    probe = root / "blue" / sorted(os.listdir(root / "blue"))[0]
    with Index(out) as idx:
        pred = idx.classify(idx.encode([probe]), "linear")[0]
        assert pred.mode == "linear" and pred.candidate == "blue" and math.isfinite(pred.calibrated)
    Image.fromarray(noise_image(32, seed=901, base=class_colour(1, 4))).save(root / "blue" / "extra.png")
    rep = _build(root, out)  # 1 of 30 changed: the calibration and its head are carried over
    assert rep.calibration["linear"]["carried_over"]  # type: ignore[attr-defined]
    with Index(out) as idx:
        assert idx.classify(idx.encode([probe]), "linear")[0].candidate == "blue"


def test_an_index_without_a_head_names_the_command_that_fits_it(tmp_path: Path) -> None:
    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue", "crimson"), per_class=6, size=32)
    build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(calibrate=False))
    with Index(out) as idx, pytest.raises(NotCalibrated, match="--modes linear"):
        idx.classify(idx.encode([root / "amber" / sorted(os.listdir(root / "amber"))[0]]), "linear")
    from visrec import ops

    ops.calibrate(out, None, None, ["linear"])
    with Index(out) as idx:
        pred = idx.classify(idx.encode([root / "amber" / sorted(os.listdir(root / "amber"))[0]]), "linear")[0]
        assert pred.candidate == "amber" and math.isfinite(pred.calibrated)


def test_a_large_index_cross_validates_on_a_sample_that_holds_every_calibrated_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import visrec.classify.linear as linear

    x, labels = _mixture(60, 4, 16, 1.0, seed=4)
    monkeypatch.setattr(linear, "MAX_FOLD_ROWS", 100)
    rows = np.arange(0, 240, 3)  # 80 queries, all must come back predicted
    sample = linear._fold_rows(list(range(240)), rows, seed=0)
    assert len(sample) == 100 and set(rows.tolist()) <= set(sample)
    known, unknown, fitted = linear.left_out_predictions(LinearClassifier(), x, labels, np.arange(240), rows)
    assert len(known) == len(unknown) == rows.size and fitted.config.penalty in PENALTIES
    acc = np.mean([p.candidate == labels[r][0] for p, r in zip(known, rows, strict=True)])
    assert acc > 0.8 and all(p.candidate != labels[r][0] for p, r in zip(unknown, rows, strict=True))


def test_a_held_out_calibration_fits_the_head_an_older_index_lacks(tmp_path: Path) -> None:
    from visrec import ops

    root, out = tmp_path / "data", tmp_path / "idx.vrx"
    make_labeled_tree(root, ("amber", "blue", "crimson"), per_class=8, size=32)
    build_index(load_dataset(root), out, create_encoder("fake"), IndexConfig(calibrate=False))
    held = tmp_path / "held"
    make_labeled_tree(held, ("amber", "blue", "crimson"), per_class=6, size=32, seed=7)
    cals = ops.calibrate(out, held, None, ["knn", "prototype", "linear"])  # the CLI's default modes
    assert set(cals) == {"knn", "prototype", "linear"} and cals["linear"]["method"] == "held-out"
    with Index(out) as idx:
        assert idx.resolve_mode("auto") == "linear"
        pred = idx.classify(idx.encode([held / "blue" / sorted(os.listdir(held / "blue"))[0]]))[0]
        assert pred.mode == "linear" and pred.candidate == "blue"
