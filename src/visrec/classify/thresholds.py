"""Pure functions that turn held-out (score, correct) pairs into a confidence map and per-class thresholds.

No classifier, store or disk here: numpy arrays in, small JSON-serialisable objects out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visrec.errors import BadInput


@dataclass(frozen=True)
class ConfidenceMap:
    """Increasing map raw score -> P(prediction is correct), applied by linear interpolation.

    ``x``: ``(m,)`` increasing raw scores; ``y``: ``(m,)`` non-decreasing probabilities in [0, 1]. Scores
    outside ``[x[0], x[-1]]`` get the end values.
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        x = np.asarray(self.x, np.float64).ravel()
        y = np.asarray(self.y, np.float64).ravel()
        if x.shape != y.shape or x.size == 0:
            raise BadInput(f"ConfidenceMap needs x and y of the same non-zero length, got {x.shape} and {y.shape}")
        if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
            raise BadInput("ConfidenceMap x and y must both be non-decreasing")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __call__(self, scores: np.ndarray | float) -> np.ndarray:
        """P(correct) for each raw score, float64 array of the same shape."""
        return np.interp(np.asarray(scores, np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        """``{"x": [...], "y": [...]}`` for JSON."""
        return {"x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfidenceMap:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64))
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"not a confidence map (expected keys 'x' and 'y' with number lists): {e}") from e


def _check_pairs(scores: np.ndarray, correct: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
    s = np.asarray(scores, np.float64).ravel()
    c = np.asarray(correct, bool).ravel()
    w = np.ones_like(s) if weights is None else np.asarray(weights, np.float64).ravel()
    if not (s.shape == c.shape == w.shape):
        raise BadInput(f"scores {s.shape}, correct {c.shape} and weights {w.shape} must have one entry each")
    if s.size == 0:
        raise BadInput("calibration needs at least one held-out prediction, got none")
    if not np.isfinite(s).all():
        raise BadInput("calibration scores must be finite (no NaN or inf)")
    if np.any(w < 0) or not w.sum() > 0:
        raise BadInput("calibration weights must be >= 0 with a positive sum")
    return s, c, w


def fit_confidence(scores: np.ndarray, correct: np.ndarray, weights: np.ndarray | None = None) -> ConfidenceMap:
    """Isotonic regression (increasing, clipped to [0, 1]) of P(correct | raw score).

    ``scores``: ``(n,)`` raw scores; ``correct``: ``(n,)`` bool; ``weights``: optional ``(n,)`` sample
    weights.
    """
    from sklearn.isotonic import IsotonicRegression

    s, c, w = _check_pairs(scores, correct, weights)
    if np.unique(s).size == 1:
        p = float(np.average(c, weights=w))
        return ConfidenceMap(np.array([s[0]]), np.array([p]))
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(s, c.astype(np.float64), sample_weight=w)
    return ConfidenceMap(np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_))


@dataclass(frozen=True)
class ThresholdCurve:
    """Precision and coverage when accepting ``score >= t`` for each distinct observed score ``t``.

    ``t`` is decreasing; ``precision`` and ``accepted`` (weighted count) are cumulative from the top.
    """

    t: np.ndarray
    precision: np.ndarray
    accepted: np.ndarray


def threshold_curve(scores: np.ndarray, correct: np.ndarray, weights: np.ndarray | None = None) -> ThresholdCurve:
    """Precision of ``{score >= t}`` for every distinct score ``t`` (ties are accepted together)."""
    s, c, w = _check_pairs(scores, correct, weights)
    order = np.argsort(-s, kind="stable")
    s, c, w = s[order], c[order], w[order]
    cum_w = np.cumsum(w)
    cum_ok = np.cumsum(w * c)
    last = np.r_[s[1:] != s[:-1], True]  # last position of each run of equal scores
    acc = cum_w[last]
    prec = np.where(acc > 0, cum_ok[last] / np.where(acc > 0, acc, 1.0), 0.0)
    return ThresholdCurve(s[last], prec, acc)


def pick_threshold(curve: ThresholdCurve, target_precision: float) -> tuple[float, bool]:
    """The lowest observed score whose acceptance set reaches ``target_precision``, and whether it did.

    When no threshold reaches the target, the one with the highest precision (ties: the lowest, i.e. the most
    coverage) is returned with ``False``.
    """
    ok = np.flatnonzero(curve.precision >= target_precision - 1e-12)
    if ok.size:
        return float(curve.t[ok[-1]]), True
    best = np.flatnonzero(curve.precision >= curve.precision.max() - 1e-12)
    return float(curve.t[best[-1]]), False


@dataclass(frozen=True)
class ClassThresholds(Mapping[str, float]):
    """Per-class thresholds (a read-only ``{class: threshold}`` mapping) plus how they were obtained.

    ``global_threshold``: used for classes not in the mapping; ``target_met``: whether the global threshold
    reached the target precision; ``below_target``: classes whose own threshold could not reach it (they got
    the max-precision threshold); ``fallback``: classes with too little support that got the global one.
    """

    thresholds: dict[str, float]
    global_threshold: float
    target_met: bool
    below_target: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    support: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.thresholds[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.thresholds)

    def __len__(self) -> int:
        return len(self.thresholds)

    def threshold_for(self, label: str) -> float:
        """The threshold of ``label``, or the global one for a class that was never predicted."""
        return self.thresholds.get(label, self.global_threshold)


def per_class_thresholds(
    pred_labels: Sequence[str],
    scores: np.ndarray,
    correct: np.ndarray,
    target_precision: float = 0.95,
    min_support: int = 5,
    weights: np.ndarray | None = None,
) -> ClassThresholds:
    """For each predicted class, the lowest observed score ``t`` such that the (weighted) precision of that
    class's held-out predictions with ``score >= t`` is at least ``target_precision``.

    ``pred_labels``: ``(n,)`` predicted class names; ``scores``: ``(n,)`` raw scores; ``correct``: ``(n,)``
    bool; ``weights``: optional ``(n,)`` sample weights (e.g. for simulated unknowns). Classes with fewer
    than ``min_support`` predictions get the global threshold, computed the same way over all predictions.
    Where a target cannot be met, the max-precision threshold is used and the result says so.
    """
    if not 0.0 < target_precision <= 1.0:
        raise BadInput(f"target_precision must be in (0, 1], got {target_precision}")
    s, c, w = _check_pairs(scores, correct, weights)
    labs = np.asarray([str(p) for p in pred_labels], dtype=object)
    if labs.shape != s.shape:
        raise BadInput(f"got {labs.size} predicted labels for {s.size} scores; give one per prediction")
    global_t, global_met = pick_threshold(threshold_curve(s, c, w), target_precision)
    thresholds: dict[str, float] = {}
    support: dict[str, int] = {}
    below: list[str] = []
    fallback: list[str] = []
    for lab in sorted(set(labs.tolist())):
        rows = labs == lab
        support[lab] = int(rows.sum())
        if support[lab] < min_support:
            thresholds[lab] = global_t
            fallback.append(lab)
            continue
        thresholds[lab], met = pick_threshold(threshold_curve(s[rows], c[rows], w[rows]), target_precision)
        if not met:
            below.append(lab)
    return ClassThresholds(thresholds, global_t, global_met, tuple(below), tuple(fallback), support)
