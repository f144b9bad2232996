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
from visrec.classify.decision import LOW_SCORE, NOVEL, OpenSetDecision
from visrec.classify.knn import KnnClassifier
from visrec.classify.linear import LinearClassifier, left_out_predictions
from visrec.classify.loo import Classifier, LooData, chunked_left_out, sample_queries
from visrec.classify.loo_whitened import knn_left_out
from visrec.classify.prototype import PrototypeClassifier
from visrec.classify.target import NOVEL_IMAGES, target_verdict
from visrec.classify.thresholds import ConfidenceMap, fit_confidence, per_class_thresholds
from visrec.errors import BadInput, DimensionMismatch, EmptyDataset
from visrec.types import Prediction

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)


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
    novelty: str | None = None
    novelty_prior: float = 0.1
    shrink: float = 10.0
    held_out_cache: dict[Any, Any] | None = field(default=None, compare=False, repr=False)
    """Give one dict to the calibrations of several modes of one index: their held-out novelty scores (the same
    items, folds and score) are then fitted once."""

    def __post_init__(self) -> None:
        if not 0.0 < self.target_precision <= 1.0:
            raise BadInput(f"target_precision must be in (0, 1], got {self.target_precision}")
        if self.min_support < 1 or self.max_queries < 1 or self.chunk_size < 1:
            raise BadInput("min_support, max_queries and chunk_size must be >= 1")
        if not self.unknown_weight >= 0.0:
            raise BadInput(f"unknown_weight must be >= 0, got {self.unknown_weight}")
        if not 0.0 <= self.novelty_prior < 1.0:
            raise BadInput(f"novelty_prior must be in [0, 1), got {self.novelty_prior}")


@dataclass(frozen=True)
class Calibration:
    """Thresholds and confidence map of one classifier mode, with what they achieved on the calibration data.

    ``thresholds``: raw-score threshold per predicted class; ``global_threshold``: for other classes;
    ``confidence``: raw score -> P(correct); ``n_held_out``/``n_unknown``: real and simulated-unknown
    predictions used; ``precision``: weighted share of correct answers among accepted ones; ``coverage``:
    share of held-out (known-class) predictions accepted; ``unknown_rejected``: share of simulated unknowns
    turned into "unknown"; ``target_met``: whether the target was reached overall and by every class (see
    :mod:`visrec.classify.target`); ``below_target``: classes clearly under it; ``reasons``: why it was not
    met; ``class_precision``: held-out precision per answered class; ``params``: the classifier options.
    ``decision``: the open-set decision (novel / ambiguous, precision at a novelty prior; see
    :mod:`visrec.classify.decision`) when the calibration has one, else the raw-score thresholds decide.
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
    reasons: tuple[str, ...] = ()
    class_precision: dict[str, float] = field(default_factory=dict)
    novelty_prior: float = 0.0
    decision: OpenSetDecision | None = None
    _points: dict[tuple[float, float], Any] = field(default_factory=dict, compare=False, repr=False)

    def threshold_for(self, label: str) -> float:
        """Threshold of class ``label`` (the global one for a class never predicted during calibration)."""
        return self.thresholds.get(label, self.global_threshold)

    def operating_point(self, target_precision: float | None = None, novelty_prior: float | None = None) -> Any:
        """The :class:`visrec.classify.decision.OperatingPoint` at a target precision and novelty prior (the
        calibrated ones by default); raises ``BadInput`` for a calibration without an open-set decision."""
        if self.decision is None:
            raise BadInput(f"this {self.mode} calibration has no open-set decision; recalibrate the index")
        key = (
            self.target_precision if target_precision is None else float(target_precision),
            self.novelty_prior if novelty_prior is None else float(novelty_prior),
        )
        if key not in self._points:  # one pass over the held-out stream per (precision, prior)
            self._points[key] = self.decision.operating_point(*key)
        return self._points[key]

    def apply(
        self,
        predictions: Sequence[Prediction],
        novelty: np.ndarray | None = None,
        target_precision: float | None = None,
        novelty_prior: float | None = None,
    ) -> list[Prediction]:
        """Fill ``calibrated``, ``threshold`` and ``reason``; a candidate that fails the decision becomes unknown.

        With an open-set decision, ``novelty`` ``(q,)`` holds each query's novelty score and
        ``target_precision``/``novelty_prior`` may replace the calibrated ones (no refit needed). Raises
        ``BadInput`` when a prediction comes from another mode than the one calibrated.
        """
        for p in predictions:
            if p.mode != self.mode:
                raise BadInput(
                    f"this calibration is for mode {self.mode!r} but a prediction has mode {p.mode!r}; "
                    f"calibrate the {p.mode!r} classifier first"
                )
        if self.decision is not None:
            if novelty is None or len(novelty) != len(predictions):
                raise BadInput("this calibration decides with novelty scores: pass one per prediction")
            return self._decide(predictions, np.asarray(novelty, np.float64), target_precision, novelty_prior)
        out = []
        for p in predictions:
            if p.candidate == NO_CANDIDATE:
                out.append(replace(p, label=None, calibrated=0.0))
                continue
            t = self.threshold_for(p.candidate)
            label = p.candidate if p.score >= t else None
            out.append(replace(p, label=label, calibrated=float(self.confidence(p.score)), threshold=t,
                               reason=None if label else LOW_SCORE))  # fmt: skip
        return out

    def _decide(self, predictions: Sequence[Prediction], novelty: np.ndarray, target: float | None,
                prior: float | None) -> list[Prediction]:  # fmt: skip
        assert self.decision is not None
        pi = self.novelty_prior if prior is None else prior
        tau = self.operating_point(target, pi).tau
        scores = np.array([p.score for p in predictions], np.float64)
        answered, conf, reasons = self.decision.decide(scores, [p.candidate for p in predictions], novelty, tau, pi)
        out = []
        for p, a, c, r in zip(predictions, answered, conf, reasons, strict=True):
            if p.candidate == NO_CANDIDATE:
                out.append(replace(p, label=None, calibrated=0.0, threshold=tau, reason=NOVEL))
            else:
                out.append(replace(p, label=p.candidate if a else None, calibrated=float(c), threshold=tau, reason=r))
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
            "reasons": list(self.reasons),
            "class_precision": {k: _json_float(v) for k, v in self.class_precision.items()},
            "novelty_prior": self.novelty_prior,
            "decision": None if self.decision is None else self.decision.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; raises ``BadInput`` on another schema version or missing keys."""
        if data.get("schema") not in READABLE_SCHEMAS:
            raise BadInput(
                f"calibration schema {data.get('schema')!r} is not supported (expected one of {READABLE_SCHEMAS}); "
                "recalibrate with: visrec calibrate INDEX"
            )
        dec = data.get("decision")
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
                reasons=tuple(str(x) for x in data.get("reasons", ())),
                class_precision={str(k): _float_or_nan(v) for k, v in data.get("class_precision", {}).items()},
                novelty_prior=float(data.get("novelty_prior", 0.0)),
                decision=None if dec is None else OpenSetDecision.from_dict(dec),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInput(f"calibration data is incomplete or malformed: {e!r}") from e


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _float_or_nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _rate(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def class_figures(
    cand: np.ndarray, accepted: np.ndarray, correct: np.ndarray, weights: np.ndarray
) -> tuple[dict[str, float], dict[str, int]]:
    """Per answered class: weighted precision of its accepted held-out answers, and how many there were."""
    prec: dict[str, float] = {}
    answers: dict[str, int] = {}
    for c in sorted(set(cand.tolist())):
        r = accepted & (cand == c)
        answers[c] = int(r.sum())
        prec[c] = _rate(float(np.sum(weights[r] * correct[r])), float(np.sum(weights[r])))
    return prec, answers


def confusions(
    cand: Sequence[str], truth: Sequence[str], wrong: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, str]:
    """For each candidate class, the true class that carries most (weighted) of its accepted wrong answers."""
    w = np.ones(len(cand)) if weights is None else weights
    counts: dict[str, dict[str, float]] = {}
    for c, t, bad, wi in zip(cand, truth, wrong, w, strict=True):
        if bad:
            counts.setdefault(c, {}).setdefault(t, 0.0)
            counts[c][t] += float(wi)
    return {c: max(d, key=lambda k: d[k]) for c, d in counts.items()}


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
    precision = _rate(float(np.sum(weights * (accepted & correct))), float(np.sum(weights * accepted)))
    class_precision, answers = class_figures(np.asarray(cand, dtype=object), accepted, correct, weights)
    truth_of = [next(iter(t), "") for t in truths] + [NOVEL_IMAGES] * len(unknown)
    kept_truth = [t for t, r in zip(truth_of, [*known, *unknown], strict=True) if r.candidate != NO_CANDIDATE]
    confused = confusions(cand, kept_truth, accepted & ~correct, weights)
    verdict = target_verdict(
        options.target_precision, precision, class_precision, answers, th.support, confused, options.min_support
    )
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
        precision=precision,
        coverage=_rate(float(np.sum(accepted & ~is_unknown)), float(len(known))),
        unknown_rejected=_rate(float(np.sum(~accepted & is_unknown)), float(np.sum(is_unknown))),
        target_met=verdict.met,
        below_target=verdict.below,
        params=dict(params or {}),
        reasons=verdict.reasons,
        class_precision=class_precision,
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
    queries: np.ndarray | None = None,
) -> Calibration:
    """Calibrate a classifier on the indexed items themselves.

    ``vectors``: ``(n, d)`` float32 unit rows of every indexed item (unlabeled ones take part as neighbours);
    ``labels[i]``: label tuple of item ``i``; ``groups[i]``: its near-duplicate group id (None = its own).
    Each sampled labeled item is predicted from the others without its whole group and, when
    ``options.simulate_unknown``, once more without its whole class (a simulated unknown). With
    ``options.novelty`` (kNN and prototype), the result holds an open-set decision whose novelty scores come
    from leave-classes-out folds (:mod:`visrec.classify.openset_fit`). ``classifier`` defaults to
    ``KnnClassifier()`` (with ``metric="whitened"`` each fold refits the whitening:
    :mod:`visrec.classify.loo_whitened`); zero-shot and blend classifiers
    also need ``joint`` ``(n, dj)`` vectors. ``queries``: optional ``(n,)`` bool mask of the items that may be
    held-out queries (the others still serve as neighbours and fit the per-fold models): vectors a head or backbone
    was trained on sit unusually close to their class, so an adapted index is calibrated on the items its training
    never saw, as new images will be.
    """
    clf: Classifier = classifier if classifier is not None else KnnClassifier()
    opts = options or CalibrationOptions()
    vecs = check_vectors("vectors", vectors)
    jnt = None if joint is None else check_vectors("joint vectors", joint)
    data = LooData.build(vecs, labels, groups, jnt)
    if queries is not None and np.asarray(queries).shape != (len(data.labels),):
        raise DimensionMismatch(f"queries mask must be ({len(data.labels)},), got {np.asarray(queries).shape}")
    rows = sample_queries(data.labels, opts.max_queries, opts.seed, queries)
    if rows.size == 0 and queries is not None:
        raise EmptyDataset("cannot calibrate: none of the items allowed as held-out queries has a label")
    if rows.size == 0:
        raise EmptyDataset(
            "cannot calibrate: none of the items has a label; calibration needs labeled images (a folder per "
            "label or a manifest with a label column)"
        )
    unknown: list[Prediction] = []
    if isinstance(clf, LinearClassifier):
        known, simulated, clf = left_out_predictions(clf, data.vectors, data.labels, data.gid, rows, opts.seed)
        if opts.simulate_unknown and opts.unknown_weight > 0:
            unknown = simulated
    elif isinstance(clf, KnnClassifier):
        simulate = opts.simulate_unknown and opts.unknown_weight > 0
        known, unknown, clf = knn_left_out(clf, data, rows, simulate, opts.seed, opts.chunk_size)
    else:
        known = chunked_left_out(clf, data, rows, False, opts.chunk_size)
        if opts.simulate_unknown and opts.unknown_weight > 0:
            unknown = chunked_left_out(clf, data, rows, True, opts.chunk_size)
    truths = [data.labels[i] for i in rows]
    if opts.novelty and unknown and isinstance(clf, (KnnClassifier, PrototypeClassifier, LinearClassifier)):
        from visrec.classify.openset_fit import fit_open_set

        cal = fit_open_set(data, rows, known, unknown, opts, clf.params())
        if cal is not None:
            return cal
    return fit_calibration(known, truths, unknown, opts, "leave-one-group-out", clf.params())
