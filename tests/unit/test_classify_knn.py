"""kNN vote over store results: multi-label and unlabeled neighbours, padding, and the raw score choices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from visrec.classify import CLASSIFIERS, KnnClassifier, KnnConfig
from visrec.errors import BadInput, DimensionMismatch

NEG = -np.inf


def test_vote_ignores_unlabeled_and_padding_and_counts_multilabel_for_each_label() -> None:
    # neighbour 0: unlabeled but closest; 1: A; 2: A and B; 3: padding that pretends to be B
    labels = [[(), ("A",), ("A", "B"), ("B",)]]
    scores = np.array([[0.99, 0.9, 0.8, NEG]], np.float32)
    knn = KnnClassifier(k=4, temperature=0.1, score="vote")
    (p,) = knn.predict_from_neighbors(labels, scores)
    w1, w2 = 1.0, math.exp((0.8 - 0.9) / 0.1)
    assert p.candidate == "A" and p.label == "A" and p.mode == "knn"
    assert p.score == pytest.approx(1.0)  # every labeled neighbour carries A
    assert dict(p.top_k)["B"] == pytest.approx(w2 / (w1 + w2), rel=1e-5)
    assert math.isnan(p.calibrated) and p.threshold is None


def test_vote_similarity_separates_a_far_away_query_that_the_vote_alone_cannot() -> None:
    labels = [[("A",)] * 3, [("A",)] * 3]
    scores = np.array([[0.95, 0.94, 0.93], [0.30, 0.29, 0.28]], np.float32)
    near, far = KnnClassifier(k=3, score="vote").predict_from_neighbors(labels, scores)
    assert near.score == far.score == pytest.approx(1.0)  # unanimous vote either way
    near, far = KnnClassifier(k=3, score="vote_similarity").predict_from_neighbors(labels, scores)
    assert near.score == pytest.approx(0.95) and far.score == pytest.approx(0.30)
    assert near.candidate == far.candidate == "A"


def test_close_call_between_two_classes_scores_lower_than_a_clear_one() -> None:
    labels = [[("A",), ("B",)], [("A",), ("A",)]]
    scores = np.array([[0.9, 0.9], [0.9, 0.9]], np.float32)
    split, clear = KnnClassifier(k=2).predict_from_neighbors(labels, scores)
    assert split.score == pytest.approx(0.45) and clear.score == pytest.approx(0.9)
    assert [lab for lab, _ in split.top_k] == ["A", "B"]  # tie broken by name, deterministically


def test_similarity_score_is_the_best_cosine_of_the_class() -> None:
    labels = [[("A",), ("B",), ("B",)]]
    scores = np.array([[0.9, 0.8, 0.79]], np.float32)
    (p,) = KnnClassifier(k=3, score="similarity").predict_from_neighbors(labels, scores)
    assert p.candidate == "A" and p.score == pytest.approx(0.9)
    assert p.top_k[1] == ("B", pytest.approx(0.8))


def test_only_first_k_columns_vote() -> None:
    labels = [[("A",), ("B",), ("B",), ("B",)]]
    scores = np.array([[0.9, 0.5, 0.5, 0.5]], np.float32)
    (p,) = KnnClassifier(k=1, temperature=10.0, score="vote").predict_from_neighbors(labels, scores)
    assert p.candidate == "A" and [lab for lab, _ in p.top_k] == ["A"]


def test_query_without_labeled_neighbours_is_unknown_with_no_candidate() -> None:
    labels = [[(), ("A",)]]
    scores = np.array([[0.9, NEG]], np.float32)
    (p,) = KnnClassifier(k=2).predict_from_neighbors(labels, scores)
    assert p.label is None and p.candidate == "" and p.top_k == () and p.score == 0.0
    assert p.to_dict()["label"] is None


def test_top_k_is_limited_and_sorted() -> None:
    labels = [[(c,) for c in "ABCDEF"]]
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]], np.float32)
    (p,) = KnnClassifier(k=6, top_k=3).predict_from_neighbors(labels, scores)
    assert [lab for lab, _ in p.top_k] == ["A", "B", "C"]
    assert p.top_k[0][1] >= p.top_k[1][1] >= p.top_k[2][1]


def test_bad_options_and_shapes_raise_typed_errors() -> None:
    with pytest.raises(BadInput, match="k must be"):
        KnnClassifier(k=0)
    with pytest.raises(BadInput, match="unknown kNN score"):
        KnnClassifier(score="votes")
    with pytest.raises(BadInput, match="temperature"):
        KnnConfig(temperature=0.0)
    with pytest.raises(DimensionMismatch):
        KnnClassifier().predict_from_neighbors([[("A",)]], np.zeros((2, 1), np.float32))
    with pytest.raises(DimensionMismatch):
        KnnClassifier().predict_from_neighbors([[("A",), ("B",)]], np.zeros((1, 1), np.float32))


def test_registry_builds_every_classifier_kind() -> None:
    assert CLASSIFIERS.names() == ["knn", "prototype", "zeroshot", "blend", "linear"]
    knn = CLASSIFIERS.create("knn", k=3, temperature=0.1)
    assert isinstance(knn, KnnClassifier) and knn.k == 3
    assert KnnClassifier.from_config(knn.config).config == knn.config
    assert knn.params()["mode"] == "knn"
