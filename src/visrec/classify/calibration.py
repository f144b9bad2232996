"""Calibration: per-class thresholds that turn low-confidence predictions into "unknown", and P(correct).

Two ways to get one: from predictions on a labeled held-out set (:func:`calibrate_held_out`), or from the
indexed items themselves (:func:`calibrate_leave_one_group_out`), predicting each item without its
near-duplicate group and, to simulate genuinely new things, without its whole class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from visrec.classify.base import NO_CANDIDATE, check_vectors
from visrec.classify.knn import KnnClassifier
from visrec.classify.loo import Classifier, LooData, chunked_left_out, sample_queries
from visrec.classify.thresholds import ConfidenceMap, fit_confidence, per_class_thresholds
from visrec.errors import BadInput, EmptyDataset
from visrec.types import Prediction

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CalibrationOptions:
    """How to calibrate.

    ``target_precision``: wanted share of correct answers among accepted (not unknown) ones;
    ``min_support``: held-out predictions a class needs for its own threshold (else the global one);
    ``simulate_unknown``: also predict every query with its whole class removed (always wrong answers that
    teach the thresholds what a new class looks like); ``unknown_weight``: weight of each such prediction,
    i.e. how many new-class queries to expect per known-class query; ``max_queries``: seeded sample size
    of leave-one-group-out queries; ``seed``; ``chunk_size``: queries per matrix product.
    """

    target_precision: float = 0.95
    min_support: int = 5
    simulate_unknown: bool = True
    unknown_weight: float = 1.0
    max_queries: int = 3000
    seed: int = 0
    chunk_size: int = 512

    def __post_init__(self) -> None:
        if not 0.0 < self.target_precision <= 1.0:
            raise BadInput(f"target_precision must be in (0, 1], got {self.target_precision}")
        if self.min_support < 1 or self.max_queries < 1 or self.chunk_size < 1:
            raise BadInput("min_support, max_queries and chunk_size must be >= 1")
        if not self.unknown_weight >= 0.0:
            raise BadInput(f"unknown_weight must be >= 0, got {self.unknown_weight}")


@dataclass(frozen=True)
class Calibration:
    """Thresholds and confidence map of one classifier mode, with what they achieved on the calibration data.

    ``thresholds``: raw-score threshold per predicted class; ``global_threshold``: for other classes;
    ``confidence``: raw score -> P(correct); ``n_held_out``/``n_unknown``: real and simulated-unknown
    predictions used; ``precision``: weighted share of correct answers among accepted ones; ``coverage``:
    share of held-out (known-class) predictions accepted; ``unknown_rejected``: share of simulated unknowns
    turned into "unknown"; ``target_met``: whether the global threshold reached the target;
    ``below_target``: classes whose own threshold could not; ``params``: the classifier options.
    """

    mode: str
    method: str
    target_precision: float
    thresholds: dict[str, float]
    global_threshold: float
    confidence: ConfidenceMap
    n_held_out: int
    n_unknown: int
    unknown_weight: float
    precision: float
    coverage: float
    unknown_rejected: float
    target_met: bool
    below_target: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    def threshold_for(self, label: str) -> float:
        """Threshold of class ``label`` (the global one for a class never predicted during calibration)."""
        return self.thresholds.get(label, self.global_threshold)

    def apply(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        """Fill ``calibrated`` and ``threshold``; a candidate below its class threshold becomes unknown.

        Raises ``BadInput`` when a prediction comes from another mode than the one calibrated.
        """
        out = []
        for p in predictions:
            if p.mode != self.mode:
                raise BadInput(
                    f"this calibration is for mode {self.mode!r} but a prediction has mode {p.mode!r}; "
                    f"calibrate the {p.mode!r} classifier first"
                )
            if p.candidate == NO_CANDIDATE:
                out.append(replace(p, label=None, calibrated=0.0))
                continue
            t = self.threshold_for(p.candidate)
            label = p.candidate if p.score >= t else None
            out.append(replace(p, label=label, calibrated=float(self.confidence(p.score)), threshold=t))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (includes ``schema``)."""
        return {
            "schema": SCHEMA_VERSION,
            "mode": self.mode,
            "method": self.method,
            "target_precision": self.target_precision,
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "global_threshold": float(self.global_threshold),
            "confidence": self.confidence.to_dict(),
            "n_held_out": self.n_held_out,
            "n_unknown": self.n_unknown,
            "unknown_weight": self.unknown_weight,
            "precision": _json_float(self.precision),
            "coverage": _json_float(self.coverage),
            "unknown_rejected": _json_float(self.unknown_rejected),
            "target_met": self.target_met,
            "below_target": list(self.below_target),
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; raises ``BadInput`` on another schema version or missing keys."""
        if data.get("schema") != SCHEMA_VERSION:
            raise BadInput(f"calibration schema {data.get('schema')!r} is not supported (expected {SCHEMA_VERSION})")
        try:
            return cls(
                mode=str(data["mode"]),
                method=str(data["method"]),
                target_precision=float(data["target_precision"]),
                thresholds={str(k): float(v) for k, v in data["thresholds"].items()},
                global_threshold=float(data["global_threshold"]),
                confidence=ConfidenceMap.from_dict(data["confidence"]),
                n_held_out=int(data["n_held_out"]),
                n_unknown=int(data["n_unknown"]),
                unknown_weight=float(data["unknown_weight"]),
                precision=_float_or_nan(data["precision"]),
                coverage=_float_or_nan(data["coverage"]),
                unknown_rejected=_float_or_nan(data["unknown_rejected"]),
                target_met=bool(data["target_met"]),
                below_target=tuple(str(x) for x in data.get("below_target", ())),
                params=dict(data.get("params", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInput(f"calibration data is incomplete or malformed: {e!r}") from e


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _float_or_nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _rate(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def fit_calibration(
    known: Sequence[Prediction],
    truths: Sequence[Sequence[str]],
    unknown: Sequence[Prediction],
    options: CalibrationOptions,
    method: str,
    params: Mapping[str, Any] | None = None,
) -> Calibration:
    """Calibration from known-class predictions with their true labels plus always-wrong unknown predictions.

    Predictions without a candidate (``""``) are unknown whatever the threshold and are left out of the fit.
    """
    modes = {p.mode for p in [*known, *unknown]}
    if len(modes) != 1:
        raise BadInput(f"calibration needs predictions of exactly one mode, got {sorted(modes) or 'none'}")
    rows = [(p, p.candidate in truth, 1.0, False) for p, truth in zip(known, truths, strict=True)]
    rows += [(p, False, options.unknown_weight, True) for p in unknown]
    rows = [r for r in rows if r[0].candidate != NO_CANDIDATE]
    if not rows:
        raise EmptyDataset("no prediction with a candidate class to calibrate on")
    cand = [r[0].candidate for r in rows]
    scores = np.array([r[0].score for r in rows], np.float64)
    correct = np.array([r[1] for r in rows], bool)
    weights = np.array([r[2] for r in rows], np.float64)
    is_unknown = np.array([r[3] for r in rows], bool)
    th = per_class_thresholds(cand, scores, correct, options.target_precision, options.min_support, weights)
    accepted = scores >= np.array([th.threshold_for(c) for c in cand])
    return Calibration(
        mode=modes.pop(),
        method=method,
        target_precision=options.target_precision,
        thresholds=dict(th.thresholds),
        global_threshold=th.global_threshold,
        confidence=fit_confidence(scores, correct, weights),
        n_held_out=len(known),
        n_unknown=len(unknown),
        unknown_weight=options.unknown_weight,
        precision=_rate(float(np.sum(weights * (accepted & correct))), float(np.sum(weights * accepted))),
        coverage=_rate(float(np.sum(accepted & ~is_unknown)), float(len(known))),
        unknown_rejected=_rate(float(np.sum(~accepted & is_unknown)), float(np.sum(is_unknown))),
        target_met=th.target_met,
        below_target=th.below_target,
        params=dict(params or {}),
    )


def calibrate_held_out(
    predictions: Sequence[Prediction],
    true_labels: Sequence[Sequence[str]],
    options: CalibrationOptions | None = None,
    unknown_predictions: Sequence[Prediction] = (),
    params: Mapping[str, Any] | None = None,
) -> Calibration:
    """Calibrate from uncalibrated predictions on a labeled held-out set.

    ``true_labels[i]``: the label tuple of held-out item ``i`` (a prediction is correct when its candidate is
    one of them; items with an empty tuple are skipped). ``unknown_predictions``: optional predictions of
    items whose class is not in the index (always wrong, weighted by ``options.unknown_weight``).
    ``params``: classifier options to store with the result.
    """
    opts = options or CalibrationOptions()
    if len(predictions) != len(true_labels):
        raise BadInput(f"{len(predictions)} predictions but {len(true_labels)} label tuples; give one per prediction")
    keep = [i for i, t in enumerate(true_labels) if len(t) > 0]
    known = [predictions[i] for i in keep]
    truths = [tuple(true_labels[i]) for i in keep]
    return fit_calibration(known, truths, list(unknown_predictions), opts, "held-out", params)


def calibrate_leave_one_group_out(
    vectors: np.ndarray,
    labels: Sequence[Sequence[str]],
    groups: Sequence[str | None] | None = None,
    classifier: Classifier | None = None,
    options: CalibrationOptions | None = None,
    joint: np.ndarray | None = None,
) -> Calibration:
    """Calibrate a classifier on the indexed items themselves.

    ``vectors``: ``(n, d)`` float32 unit rows of every indexed item (unlabeled ones take part as neighbours);
    ``labels[i]``: label tuple of item ``i``; ``groups[i]``: its near-duplicate group id (None = its own).
    Each sampled labeled item is predicted from the others without its whole group and, when
    ``options.simulate_unknown``, once more without its whole class (a simulated unknown). ``classifier``
    defaults to ``KnnClassifier()``; zero-shot and blend classifiers also need ``joint`` ``(n, dj)`` vectors.
    """
    clf: Classifier = classifier if classifier is not None else KnnClassifier()
    opts = options or CalibrationOptions()
    vecs = check_vectors("vectors", vectors)
    jnt = None if joint is None else check_vectors("joint vectors", joint)
    data = LooData.build(vecs, labels, groups, jnt)
    rows = sample_queries(data.labels, opts.max_queries, opts.seed)
    if rows.size == 0:
        raise EmptyDataset(
            "cannot calibrate: none of the items has a label; calibration needs labeled images (a folder per "
            "label or a manifest with a label column)"
        )
    known = chunked_left_out(clf, data, rows, False, opts.chunk_size)
    unknown: list[Prediction] = []
    if opts.simulate_unknown and opts.unknown_weight > 0:
        unknown = chunked_left_out(clf, data, rows, True, opts.chunk_size)
    truths = [data.labels[i] for i in rows]
    return fit_calibration(known, truths, unknown, opts, "leave-one-group-out", clf.params())
