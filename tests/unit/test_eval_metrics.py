"""Evaluation metrics against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.errors import BadInput
from visrec.eval.metrics import (
    ClassificationMetrics,
    CoverageCurve,
    OpenSetMetrics,
    RetrievalMetrics,
    best_known_answered,
    precision_recall_curve,
)


def test_classification_confusion_and_f1_by_hand() -> None:
    m = ClassificationMetrics(["a", "b", "c"])
    # a: 2 right, 1 unknown; b: 1 right, 1 answered a; c: 1 answered b.
    m.update(["a", "a", "a", "b"], ["a", "a", None, "b"])
    m.update(["b", "c"], ["a", "b"])
    r = m.compute()
    assert r["confusion"] == [[2, 0, 0, 1], [1, 1, 0, 0], [0, 1, 0, 0]]
    assert r["n"] == 6 and r["top1"] == pytest.approx(3 / 6) and r["unknown_rate"] == pytest.approx(1 / 6)
    # a: P = 2/3, R = 2/3, F1 = 2/3;  b: P = 1/2, R = 1/2, F1 = 1/2;  c: 0.
    assert r["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    m.reset()
    with pytest.raises(BadInput, match="update"):
        m.compute()


def test_classification_rejects_unknown_names() -> None:
    m = ClassificationMetrics(["a", "b"])
    with pytest.raises(BadInput, match="'z'"):
        m.update(["z"], ["a"])
    with pytest.raises(BadInput, match="one entry per query"):
        m.update(["a", "b"], ["a"])


def test_macro_skips_classes_without_true_queries() -> None:
    m = ClassificationMetrics(["a", "b"])
    m.update(["a", "a"], ["a", "b"])
    r = m.compute()
    # only class a has support: P = 1, R = 1/2, F1 = 2/3; b (no true query) is left out of the macro mean
    assert r["macro_f1"] == pytest.approx(2 / 3) and r["macro_precision"] == pytest.approx(1.0)


def test_coverage_curve_by_hand() -> None:
    c = CoverageCurve()
    c.update([0.9, 0.2, 0.8, 0.5], [True, False, False, True])
    r = c.compute()
    # by confidence: 0.9 ok, 0.8 wrong, 0.5 ok, 0.2 wrong
    assert r["coverage"] == [0.25, 0.5, 0.75, 1.0]
    assert r["accuracy"] == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert r["accuracy_at_coverage"] == pytest.approx({"0.5": 0.5, "0.8": 0.5, "1.0": 0.5})
    assert r["aurc_accuracy"] == pytest.approx((1 + 0.5 + 2 / 3 + 0.5) / 4)


def test_precision_recall_curve_by_hand() -> None:
    p, r = precision_recall_curve(np.array([0.1, 0.9, 0.5]), np.array([True, True, False]))
    assert p.tolist() == pytest.approx([1.0, 0.5, 2 / 3]) and r.tolist() == pytest.approx([0.5, 0.5, 1.0])


def test_retrieval_by_hand() -> None:
    rel = np.array(
        [
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # first hit right, R = 2
            [0, 0, 1, 1, 0, 0, 0, 0, 0, 0],  # first right at rank 3, R = 2
            [0] * 10,  # nothing within 10, R = 1
            [0] * 10,  # no relevant item in the gallery: not scored
        ],
        bool,
    )
    m = RetrievalMetrics()
    m.update(rel, [2, 2, 1, 0])
    r = m.compute()
    assert r["n"] == 3 and r["queries_without_relevant"] == 1
    assert (r["top1"], r["top5"], r["top10"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert r["score_1000"] == pytest.approx(600 / 3 + 300 * 2 / 3 + 100 * 2 / 3)
    assert r["precision@5"] == pytest.approx((1 / 5 + 2 / 5 + 0) / 3)
    # AP@R: q1 = (1/2)(1/1) = 0.5; q2 = R=2, relevant within the first 2 ranks: none -> 0; q3 -> 0
    assert r["map_at_r"] == pytest.approx(0.5 / 3)
    assert r["cmc"][:4] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3]) and len(r["cmc"]) == 10


def test_map_at_r_perfect_and_interleaved() -> None:
    m = RetrievalMetrics()
    m.update(np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool), [2, 2])
    # q1: (1 + 1) / 2 = 1; q2: only rank 1 counts within R = 2 -> 1/2
    assert m.compute()["map_at_r"] == pytest.approx(0.75)


def test_open_set_by_hand() -> None:
    o = OpenSetMetrics(known_recall=0.75)
    o.update([0.9, 0.8, 0.7, 0.2], [0.75, 0.5, 0.1])
    r = o.compute()
    # accepting 3 of 4 known images needs threshold 0.7: unknown 0.5 and 0.1 are rejected, 0.75 is not
    assert r["threshold"] == pytest.approx(0.7) and r["known_recall"] == pytest.approx(0.75)
    assert r["rejection_rate"] == pytest.approx(2 / 3)
    # pairs known > unknown: 0.9:3, 0.8:3, 0.7:2, 0.2:1 -> 9 of 12
    assert r["auroc"] == pytest.approx(9 / 12)
    with pytest.raises(BadInput):
        OpenSetMetrics(known_recall=0.0)


def test_best_known_answered_by_hand() -> None:
    # conf 0.9 right, 0.8 unknown, 0.7 right, 0.6 wrong: at 2/3 precision the best threshold answers 0.7 and up.
    assert best_known_answered([0.9, 0.7, 0.6], [True, True, False], [0.8], 2 / 3) == pytest.approx(2 / 3)
    assert best_known_answered([0.9, 0.7, 0.6], [True, True, False], [0.8], 1.0) == pytest.approx(1 / 3)
    assert best_known_answered([0.5, 0.5], [True, False], [], 0.9) == 0.0  # a tie cannot be split
    with pytest.raises(BadInput):
        best_known_answered([0.5], [True, False], [], 0.9)


@pytest.mark.parametrize("seed", range(5))
def test_best_known_answered_matches_every_threshold_tried(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kc = rng.integers(0, 12, size=40) / 10.0  # ties on purpose
    ok = rng.random(40) < 0.5 + 0.4 * kc / 1.2
    uc = rng.integers(0, 12, size=8) / 10.0
    best = 0.0
    for t in np.unique(np.r_[kc, uc]):
        answered = (kc >= t).sum() + (uc >= t).sum()
        if (ok & (kc >= t)).sum() >= 0.8 * answered:
            best = max(best, float((kc >= t).mean()))
    assert best_known_answered(kc, ok, uc, 0.8) == pytest.approx(best)
