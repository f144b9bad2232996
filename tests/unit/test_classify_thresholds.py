"""Pure threshold and confidence functions on hand-computed and synthetic examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visrec.classify import ConfidenceMap, fit_confidence, per_class_thresholds
from visrec.errors import BadInput

# class A: 0.9 ok, 0.8 ok, 0.7 wrong, 0.6 ok, 0.5 wrong -> precision from the top: 1, 1, 2/3, 3/4, 3/5
# class B: 0.95 wrong, 0.85 ok (only 2 predictions)
# pooled: .95F .9T .85T .8T .7F .6T .5F -> 0, 1/2, 2/3, 3/4, 3/5, 4/6, 4/7
LABELS = ["A", "A", "A", "A", "A", "B", "B"]
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.85])
CORRECT = np.array([True, True, False, True, False, False, True])


def test_per_class_threshold_is_the_lowest_score_meeting_the_target() -> None:
    th = per_class_thresholds(LABELS, SCORES, CORRECT, target_precision=0.75, min_support=3)
    assert th["A"] == pytest.approx(0.6)
    assert th.global_threshold == pytest.approx(0.8)
    assert th["B"] == pytest.approx(0.8) and th.fallback == ("B",)
    assert th.target_met and th.below_target == ()
    assert th.support == {"A": 5, "B": 2}
    assert dict(th) == {"A": pytest.approx(0.6), "B": pytest.approx(0.8)}
    assert th.threshold_for("never-predicted") == pytest.approx(0.8)


def test_higher_target_raises_the_threshold() -> None:
    th = per_class_thresholds(LABELS, SCORES, CORRECT, target_precision=0.9, min_support=3)
    assert th["A"] == pytest.approx(0.8)


def test_unreachable_target_uses_max_precision_threshold_and_says_so() -> None:
    th = per_class_thresholds(["A", "A", "A"], np.array([0.9, 0.8, 0.7]), np.array([False, True, False]), 0.95, 1)
    assert th["A"] == pytest.approx(0.8) and th.below_target == ("A",)
    assert not th.target_met and th.global_threshold == pytest.approx(0.8)


def test_weights_count_simulated_unknowns_more_or_less() -> None:
    labels = ["A"] * 4
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, False, True, True])  # the 0.8 one is a simulated unknown
    light = per_class_thresholds(labels, scores, correct, 0.7, 1, weights=np.array([1, 0.1, 1, 1]))
    heavy = per_class_thresholds(labels, scores, correct, 0.7, 1, weights=np.array([1, 5.0, 1, 1]))
    assert light["A"] == pytest.approx(0.6) and heavy["A"] == pytest.approx(0.9)


def test_ties_are_accepted_together() -> None:
    th = per_class_thresholds(["A"] * 3, np.array([0.9, 0.5, 0.5]), np.array([True, True, False]), 0.7, 1)
    assert th["A"] == pytest.approx(0.9)  # accepting 0.5 takes both tied items: precision 2/3


def test_bad_inputs_raise() -> None:
    with pytest.raises(BadInput, match="target_precision"):
        per_class_thresholds(LABELS, SCORES, CORRECT, target_precision=1.5)
    with pytest.raises(BadInput, match="one per prediction"):
        per_class_thresholds(LABELS[:3], SCORES, CORRECT)
    with pytest.raises(BadInput, match="at least one"):
        fit_confidence(np.array([]), np.array([], bool))
    with pytest.raises(BadInput, match="finite"):
        fit_confidence(np.array([np.nan]), np.array([True]))


def test_confidence_map_is_monotone_calibrated_and_round_trips_through_json() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 4000)
    correct = rng.uniform(0, 1, 4000) < scores  # true P(correct | s) = s
    cmap = fit_confidence(scores, correct)
    grid = np.linspace(-0.5, 1.5, 201)
    probs = cmap(grid)
    assert np.all(np.diff(probs) >= 0) and probs.min() >= 0.0 and probs.max() <= 1.0
    assert cmap(0.2) == pytest.approx(0.2, abs=0.08) and cmap(0.8) == pytest.approx(0.8, abs=0.08)
    again = ConfidenceMap.from_dict(json.loads(json.dumps(cmap.to_dict())))
    np.testing.assert_array_equal(again(grid), probs)


def test_confidence_map_with_one_distinct_score_and_weights() -> None:
    cmap = fit_confidence(np.array([0.5, 0.5, 0.5]), np.array([True, False, True]))
    assert float(cmap(0.1)) == pytest.approx(2 / 3) and float(cmap(0.9)) == pytest.approx(2 / 3)
    weighted = fit_confidence(np.array([0.2, 0.8]), np.array([False, True]), weights=np.array([3.0, 1.0]))
    assert float(weighted(0.2)) == pytest.approx(0.0) and float(weighted(0.8)) == pytest.approx(1.0)
    with pytest.raises(BadInput):
        ConfidenceMap(np.array([0.0, 1.0]), np.array([0.9, 0.1]))
    with pytest.raises(BadInput, match="'x' and 'y'"):
        ConfidenceMap.from_dict({"x": [0.0]})
