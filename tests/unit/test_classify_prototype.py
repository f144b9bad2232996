"""Class prototypes: means of normalised vectors, renormalised; saved as arrays and rebuilt."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.classify import PrototypeClassifier
from visrec.errors import DimensionMismatch, EmptyDataset, StageOrderError


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clusters(seed: int = 0, d: int = 16) -> tuple[np.ndarray, list[tuple[str, ...]], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(3, d)))
    vecs = _unit(np.repeat(centres, 20, axis=0) + 0.3 * rng.normal(size=(60, d)) / np.sqrt(d))
    names = ["class10", "class2", "class1"]
    labels = [(names[i // 20],) for i in range(60)]
    return vecs, labels, centres


def test_fit_gives_unit_prototypes_in_natural_order_and_classifies_clusters() -> None:
    vecs, labels, centres = _clusters()
    clf = PrototypeClassifier().fit(vecs, labels)
    assert clf.classes == ("class1", "class2", "class10")
    assert clf.prototypes.shape == (3, 16) and clf.prototypes.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(clf.prototypes, axis=1), 1.0, atol=1e-5)
    expected = _unit(vecs[:20].mean(axis=0))  # class10 rows
    np.testing.assert_allclose(clf.prototypes[2], expected, atol=1e-5)
    preds = clf.predict(centres)
    assert [p.label for p in preds] == ["class10", "class2", "class1"]
    assert all(p.mode == "prototype" for p in preds)
    best = float(np.max(centres[0] @ clf.prototypes.T))
    assert preds[0].score == pytest.approx(best, abs=1e-5)
    assert len(preds[0].top_k) == 3 and preds[0].top_k[0][1] >= preds[0].top_k[1][1]


def test_unlabeled_rows_are_skipped_and_multilabel_rows_count_for_each_label() -> None:
    vecs = _unit(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32))
    clf = PrototypeClassifier().fit(vecs, [("A",), ("A", "B"), ()])
    np.testing.assert_allclose(clf.prototypes[0], _unit(np.array([1, 1, 0], np.float32)), atol=1e-6)
    np.testing.assert_allclose(clf.prototypes[1], [0, 1, 0], atol=1e-6)


def test_saved_arrays_rebuild_the_same_classifier() -> None:
    vecs, labels, centres = _clusters(1)
    clf = PrototypeClassifier(top_k=2).fit(vecs, labels)
    again = PrototypeClassifier.from_arrays(list(clf.classes), np.array(clf.prototypes), top_k=2)
    assert [p.to_dict() for p in again.predict(centres)] == [p.to_dict() for p in clf.predict(centres)]
    assert all(len(p.top_k) == 2 for p in again.predict(centres))


def test_errors_are_typed_and_say_what_to_do() -> None:
    with pytest.raises(StageOrderError, match="fit"):
        PrototypeClassifier().predict(np.zeros((1, 4), np.float32))
    with pytest.raises(EmptyDataset):
        PrototypeClassifier().fit(np.eye(2, dtype=np.float32), [(), ()])
    clf = PrototypeClassifier().fit(np.eye(3, dtype=np.float32), [("A",), ("B",), ("C",)])
    with pytest.raises(DimensionMismatch, match="expected 3"):
        clf.predict(np.zeros((1, 4), np.float32))
