"""The open-set decision: answer a class, or say "unknown" because the image is *novel* (none of the classes)
or *ambiguous* (one of them, but which is unclear), at a target precision on a stream with a novelty prior.

Two calibrated factors, both fitted on held-out predictions of the index's own items:

* ``p_known``: P(the image shows one of the classes | novelty score), an isotonic map fitted with known and
  simulated-novel held-out items weighted equally, then moved to the novelty prior ``pi`` by Bayes' rule
  (odds times ``(1 - pi) / pi``), so the prior can change at classify time without refitting;
* ``p_class``: P(the candidate is right | the image is known, raw class score): an isotonic map per class,
  shrunk toward the shared map as ``(n_c * f_c + m * f) / (n_c + m)`` so a class with few held-out images
  leans on the shared one.

The confidence is ``p_known * p_class``, and it is what the decision uses: an image is answered when it
reaches the threshold ``tau`` at which the held-out stream (known items plus novel ones at prior ``pi``) has
precision ``target``; otherwise it is unknown, ``novel`` when ``p_known`` is the smaller factor, else
``ambiguous``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.classify.thresholds import ConfidenceMap, fit_confidence, pick_threshold, threshold_curve
from visrec.errors import BadInput

NOVEL = "novel"
AMBIGUOUS = "ambiguous"
LOW_SCORE = "low score"
"""Reason of an unknown from raw-score thresholds, which cannot tell novel from ambiguous."""
_EPS = 1e-6


def _check_prior(prior: float) -> float:
    if not 0.0 <= prior < 1.0:
        raise BadInput(f"novelty prior must be in [0, 1), got {prior}")
    return float(prior)


@dataclass(frozen=True)
class HeldOut:
    """Held-out predictions: ``score`` raw class score, ``candidate`` class, ``novelty`` score, ``correct``.

    All ``(n,)``; novel items have ``correct`` all False.
    """

    score: np.ndarray
    candidate: np.ndarray
    novelty: np.ndarray
    correct: np.ndarray

    def to_dict(self) -> dict[str, list[Any]]:
        return {"score": self.score.round(6).tolist(), "candidate": self.candidate.tolist(),
                "novelty": self.novelty.round(6).tolist(), "correct": self.correct.astype(int).tolist()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeldOut:
        return cls(np.asarray(d["score"], np.float64), np.asarray(d["candidate"], dtype=object),
                   np.asarray(d["novelty"], np.float64), np.asarray(d["correct"], bool))  # fmt: skip


@dataclass(frozen=True)
class OperatingPoint:
    """What the threshold ``tau`` does on the held-out stream at ``prior``: precision of answered, share of known
    answered (``coverage``), share of novel rejected, per-class precision and held-out answers."""

    tau: float
    target_met: bool
    precision: float
    coverage: float
    novel_rejected: float
    class_precision: dict[str, float]
    class_answers: dict[str, int]


@dataclass(frozen=True)
class OpenSetDecision:
    """Fitted factors plus the held-out stream they were fitted on (see the module docstring)."""

    novelty_name: str
    novelty_map: ConfidenceMap
    shared: ConfidenceMap
    per_class: dict[str, ConfidenceMap]
    support: dict[str, int]
    shrink: float
    known: HeldOut
    novel: HeldOut
    novelty_dims: int | None = None
    """PCA axes of a Gaussian novelty score: the final fit must use the ones the held-out scores were made with."""

    def p_known(self, novelty: np.ndarray, prior: float) -> np.ndarray:
        """``(q,)`` P(known) for novelty scores at novelty prior ``prior``."""
        q = np.clip(self.novelty_map(-np.asarray(novelty, np.float64)), _EPS, 1 - _EPS)
        pi = _check_prior(prior)
        return q / (q + (1 - q) * pi / (1 - pi)) if pi > 0 else np.ones_like(q)

    def p_class(self, scores: np.ndarray, candidates: Sequence[str]) -> np.ndarray:
        """``(q,)`` P(candidate right | known), per-class maps shrunk toward the shared one."""
        s = np.asarray(scores, np.float64)
        out = self.shared(s)
        if s.size == 0:
            return out
        names, inv = np.unique(np.asarray(candidates, dtype=object), return_inverse=True)
        for j, c in enumerate(names.tolist()):
            if c in self.per_class:
                rows = inv == j
                n = self.support[c]
                out[rows] = (n * self.per_class[c](s[rows]) + self.shrink * out[rows]) / (n + self.shrink)
        return out

    def confidence(self, h: HeldOut, prior: float) -> tuple[np.ndarray, np.ndarray]:
        """``(p_known, p_class)`` of held-out-like arrays."""
        return self.p_known(h.novelty, prior), self.p_class(h.score, list(h.candidate))

    def operating_point(self, target: float, prior: float) -> OperatingPoint:
        """The confidence threshold whose answered held-out stream reaches precision ``target`` with the most
        answers: the lowest held-out confidence it answers, except where that is above ``target`` itself (a
        cleanly separated stream: known items all near 1, novel ones far below), where it moves down to the
        larger of ``target`` and the midpoint to the next held-out confidence. The same held-out items are
        answered either way, but a new image whose calibrated confidence is a hair below every known held-out
        item's, and still above the target, is no longer refused."""
        if not 0.0 < target <= 1.0:
            raise BadInput(f"target precision must be in (0, 1], got {target}")
        pi = _check_prior(prior)
        ck = np.prod(self.confidence(self.known, pi), axis=0)
        cn = np.prod(self.confidence(self.novel, pi), axis=0)
        wk = np.full(ck.size, (1 - pi) / max(1, ck.size))
        wn = np.full(cn.size, pi / max(1, cn.size))
        conf, ok, w = np.r_[ck, cn], np.r_[self.known.correct, np.zeros(cn.size, bool)], np.r_[wk, wn]
        curve = threshold_curve(conf, ok, w)
        tau, met = pick_threshold(curve, target)
        below = curve.t[curve.t < tau]
        if met and below.size and tau > target:  # a threshold above the target probability: lower it toward the
            tau = max(0.5 * (tau + float(below.max())), target)  # next held-out item (same held-out answers)
        acc = conf >= tau
        cand = np.r_[self.known.candidate, self.novel.candidate]
        prec: dict[str, float] = {}
        answers: dict[str, int] = {}
        for c in sorted(set(cand.tolist())):
            r = acc & (cand == c)
            answers[c] = int(r.sum())
            prec[c] = float((w * ok)[r].sum() / w[r].sum()) if w[r].sum() > 0 else float("nan")
        return OperatingPoint(
            tau=float(tau), target_met=bool(met),
            precision=float((w * ok)[acc].sum() / max(w[acc].sum(), 1e-300)),
            coverage=float(acc[: ck.size].mean()) if ck.size else float("nan"),
            novel_rejected=float((~acc[ck.size :]).mean()) if cn.size else float("nan"),
            class_precision=prec, class_answers=answers,
        )  # fmt: skip

    def decide(
        self, scores: np.ndarray, candidates: Sequence[str], novelty: np.ndarray, tau: float, prior: float
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """``(answered (q,) bool, confidence (q,) float, reason per query)`` at threshold ``tau``."""
        pk = self.p_known(novelty, prior)
        pc = self.p_class(scores, candidates)
        conf = pk * pc
        answered = conf >= tau
        reasons: list[str | None] = [None if a else (NOVEL if k <= c else AMBIGUOUS)
                                     for a, k, c in zip(answered, pk, pc, strict=True)]  # fmt: skip
        return answered, conf, reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "novelty": self.novelty_name,
            "novelty_map": self.novelty_map.to_dict(),
            "shared": self.shared.to_dict(),
            "per_class": {c: m.to_dict() for c, m in self.per_class.items()},
            "support": dict(self.support),
            "shrink": self.shrink,
            "known": self.known.to_dict(),
            "novel": self.novel.to_dict(),
        } | ({} if self.novelty_dims is None else {"novelty_dims": self.novelty_dims})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpenSetDecision:
        try:
            return cls(
                novelty_name=str(d["novelty"]),
                novelty_map=ConfidenceMap.from_dict(d["novelty_map"]),
                shared=ConfidenceMap.from_dict(d["shared"]),
                per_class={str(c): ConfidenceMap.from_dict(m) for c, m in d["per_class"].items()},
                support={str(c): int(n) for c, n in d["support"].items()},
                shrink=float(d["shrink"]),
                known=HeldOut.from_dict(d["known"]),
                novel=HeldOut.from_dict(d["novel"]),
                novelty_dims=None if d.get("novelty_dims") is None else int(d["novelty_dims"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInput(f"open-set decision data is incomplete or malformed: {e!r}") from e


def fit_decision(known: HeldOut, novel: HeldOut, novelty_name: str, shrink: float = 10.0,
                 min_support: int = 3, novelty_dims: int | None = None) -> OpenSetDecision:  # fmt: skip
    """Fit both factors from held-out known items (with ``correct``) and simulated novel items.

    ``shrink``: pseudo-count ``m`` of the shared class map; classes with fewer than ``min_support`` held-out
    predictions use the shared map alone.
    """
    if known.score.size == 0:
        raise BadInput("the open-set decision needs held-out predictions of known items, got none")
    if novel.score.size:
        nov = np.r_[known.novelty, novel.novelty]
        lab = np.r_[np.ones(known.novelty.size, bool), np.zeros(novel.novelty.size, bool)]
        w = np.r_[np.full(known.novelty.size, 0.5 / known.novelty.size),
                  np.full(novel.novelty.size, 0.5 / novel.novelty.size)]  # fmt: skip
        novelty_map = fit_confidence(-nov, lab, w)
    else:
        novelty_map = ConfidenceMap(np.array([0.0]), np.array([1.0]))
    shared = fit_confidence(known.score, known.correct)
    per_class, support = {}, {}
    for c in sorted(set(known.candidate.tolist())):
        rows = known.candidate == c
        support[c] = int(rows.sum())
        if support[c] >= min_support:
            per_class[c] = fit_confidence(known.score[rows], known.correct[rows])
    return OpenSetDecision(novelty_name, novelty_map, shared, per_class, support, shrink, known, novel, novelty_dims)
