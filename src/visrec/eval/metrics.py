"""Evaluation metrics as accumulators: ``update`` with a batch, ``compute`` the figures, ``reset`` to reuse.

Pure numpy, no model and no I/O, so every figure is checked against a hand-computed example. Conventions:
a query's answer is a class name or ``None`` for *unknown*; scores are "higher = more confident".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visrec.errors import BadInput

UNKNOWN_COLUMN = "<unknown>"


def _check_same_length(**arrays: Sequence[Any] | np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise BadInput(f"metric inputs must have one entry per query, got lengths {lengths}")
    return next(iter(lengths.values()), 0)


class ClassificationMetrics:
    """Confusion matrix over ``classes`` plus an unknown column; top-1, per-class and macro P/R/F1.

    ``update(truths, answers)``: ``truths`` one class name per query (must be in ``classes``), ``answers`` the
    predicted class or ``None`` (unknown). The confusion matrix is ``(c, c + 1)`` int64: rows are true classes,
    columns predicted classes and, last, unknown. An unknown answer counts as wrong. Precision of a class is over
    the queries answered with it; macro figures average over the classes with at least one true query.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        if not classes or len(set(classes)) != len(classes):
            raise BadInput(f"classes must be a non-empty list of distinct names, got {list(classes)}")
        self.classes = list(classes)
        self._pos = {c: i for i, c in enumerate(self.classes)}
        self.confusion = np.zeros((len(self.classes), len(self.classes) + 1), np.int64)

    def reset(self) -> None:
        self.confusion[:] = 0

    def update(self, truths: Sequence[str], answers: Sequence[str | None]) -> None:
        _check_same_length(truths=truths, answers=answers)
        unknown_col = len(self.classes)
        for t, a in zip(truths, answers, strict=True):
            if t not in self._pos:
                raise BadInput(f"true class {t!r} is not among the evaluated classes {self.classes}")
            col = unknown_col if a is None else self._pos.get(a)
            if col is None:
                raise BadInput(f"answer {a!r} is not among the evaluated classes {self.classes}")
            self.confusion[self._pos[t], col] += 1

    def compute(self) -> dict[str, Any]:
        """``n``, ``top1``, ``unknown_rate``, ``macro_precision/recall/f1``, ``per_class``, ``confusion``."""
        cm = self.confusion
        n = int(cm.sum())
        if n == 0:
            raise BadInput("no query was added to the metric; call update() first")
        tp = np.diag(cm[:, :-1]).astype(np.float64)
        support = cm.sum(axis=1).astype(np.float64)
        answered = cm[:, :-1].sum(axis=0).astype(np.float64)
        prec = np.divide(tp, answered, out=np.zeros_like(tp), where=answered > 0)
        rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
        f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
        present = support > 0
        per = {
            c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(self.classes)
        }
        return {
            "n": n,
            "top1": float(tp.sum() / n),
            "unknown_rate": float(cm[:, -1].sum() / n),
            "macro_precision": float(prec[present].mean()),
            "macro_recall": float(rec[present].mean()),
            "macro_f1": float(f1[present].mean()),
            "per_class": per,
            "classes": list(self.classes),
            "confusion": cm.tolist(),
        }


class CoverageCurve:
    """Selective classification: accuracy among the ``c`` most confident answers, as coverage ``c / n`` grows.

    ``update(confidences, correct)``: one confidence (higher = surer) and one bool per query. ``compute`` sorts
    by confidence (ties keep insertion order) and returns ``coverage`` and ``accuracy`` lists of length ``n``
    (coverage ``k / n`` for ``k = 1..n``), the area under the curve ``aurc_accuracy`` (mean of ``accuracy``)
    and the accuracy at 50 % / 80 % / 100 % coverage.
    """

    def __init__(self) -> None:
        self._conf: list[np.ndarray] = []
        self._ok: list[np.ndarray] = []

    def reset(self) -> None:
        self._conf.clear()
        self._ok.clear()

    def update(self, confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray) -> None:
        _check_same_length(confidences=confidences, correct=correct)
        self._conf.append(np.asarray(confidences, np.float64))
        self._ok.append(np.asarray(correct, bool))

    def compute(self) -> dict[str, Any]:
        conf = np.concatenate(self._conf) if self._conf else np.zeros(0)
        ok = np.concatenate(self._ok) if self._ok else np.zeros(0, bool)
        if len(conf) == 0:
            raise BadInput("no query was added to the coverage curve; call update() first")
        order = np.argsort(-np.nan_to_num(conf, nan=-np.inf), kind="stable")
        hits = np.cumsum(ok[order])
        k = np.arange(1, len(ok) + 1)
        acc = hits / k
        cov = k / len(ok)

        def at(c: float) -> float:
            return float(acc[max(int(np.ceil(c * len(ok))) - 1, 0)])

        return {
            "coverage": cov.tolist(),
            "accuracy": acc.tolist(),
            "aurc_accuracy": float(acc.mean()),
            "accuracy_at_coverage": {"0.5": at(0.5), "0.8": at(0.8), "1.0": at(1.0)},
        }


def precision_recall_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall ``(n,)`` float64 when accepting the top ``1..n`` scores (positives: bool ``(n,)``)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    pos = np.asarray(positives, bool)[order]
    tp = np.cumsum(pos)
    precision = tp / np.arange(1, len(pos) + 1)
    recall = tp / max(int(pos.sum()), 1)
    return precision, recall


class RetrievalMetrics:
    """Retrieval figures from ranked relevance: top-k accuracy, the 1000-point score, precision@k, mAP@R, CMC.

    ``update(relevant, n_relevant)``: ``relevant`` ``(q, L)`` bool, whether the hit at rank ``j`` shares a label
    with query ``i`` (best first, ``L`` >= the largest ``ks`` ideally); ``n_relevant`` ``(q,)`` int, how many
    gallery items share a label with the query (``R``). Queries with ``R = 0`` are counted apart and not scored.
    mAP@R of a query is ``(1/R) * sum_{j <= R} P@j * rel_j`` (ranks beyond ``L`` count as not relevant).
    CMC[r] is the share of queries whose first relevant hit is at rank ``<= r + 1``.
    """

    def __init__(self, ks: Sequence[int] = (1, 5, 10)) -> None:
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        if not self.ks or self.ks[0] < 1:
            raise BadInput(f"ks must be positive ranks, got {ks}")
        self.reset()

    def reset(self) -> None:
        self._first: list[np.ndarray] = []
        self._p_at: list[np.ndarray] = []
        self._ap: list[np.ndarray] = []
        self._no_relevant = 0
        self._depth: int | None = None

    def update(self, relevant: np.ndarray, n_relevant: Sequence[int] | np.ndarray) -> None:
        rel = np.asarray(relevant, bool)
        nrel = np.asarray(n_relevant, np.int64)
        if rel.ndim != 2 or rel.shape[0] != len(nrel):
            raise BadInput(f"relevant must be (q, L) with q = len(n_relevant) = {len(nrel)}, got {rel.shape}")
        keep = nrel > 0
        self._no_relevant += int((~keep).sum())
        rel, nrel = rel[keep], nrel[keep]
        depth = rel.shape[1]
        self._depth = depth if self._depth is None else min(self._depth, depth)
        first = np.where(rel.any(axis=1), rel.argmax(axis=1), np.iinfo(np.int64).max)
        self._first.append(first)
        self._p_at.append(np.stack([rel[:, : min(k, depth)].sum(axis=1) / k for k in self.ks], axis=1))
        cum = np.cumsum(rel, axis=1)
        ranks = np.arange(1, depth + 1)
        within_r = ranks[None, :] <= nrel[:, None]
        self._ap.append((rel * within_r * cum / ranks).sum(axis=1) / nrel)

    def compute(self) -> dict[str, Any]:
        """``n``, ``top{k}``, ``precision@{k}``, ``map_at_r``, ``score_1000`` (when 1, 5, 10 are in ks), ``cmc``."""
        if not self._first:
            raise BadInput("no query was added to the retrieval metric; call update() first")
        first = np.concatenate(self._first)
        if len(first) == 0:
            raise BadInput(f"none of the {self._no_relevant} queries has a relevant item in the gallery")
        p_at = np.concatenate(self._p_at)
        out: dict[str, Any] = {"n": len(first), "queries_without_relevant": self._no_relevant}
        for j, k in enumerate(self.ks):
            out[f"top{k}"] = float((first < k).mean())
            out[f"precision@{k}"] = float(p_at[:, j].mean())
        if {1, 5, 10} <= set(self.ks):
            out["score_1000"] = 600 * out["top1"] + 300 * out["top5"] + 100 * out["top10"]
        out["map_at_r"] = float(np.concatenate(self._ap).mean())
        depth = self._depth or 0
        out["cmc"] = [float((first <= r).mean()) for r in range(depth)]
        return out


class OpenSetMetrics:
    """Rejection of "none of these" images at a fixed recall of the known classes.

    ``update(known_scores, unknown_scores)``: the confidence of the best class for images of known classes and
    for images of classes the index does not hold. The threshold is the highest score that still accepts
    ``known_recall`` of the known images; ``rejection_rate`` is the share of unknown images scoring below it.
    ``auroc``: probability that a random known image scores above a random unknown one (ties count half).
    """

    def __init__(self, known_recall: float = 0.95) -> None:
        if not 0.0 < known_recall <= 1.0:
            raise BadInput(f"known_recall must be in (0, 1], got {known_recall}")
        self.known_recall = known_recall
        self.reset()

    def reset(self) -> None:
        self._known: list[np.ndarray] = []
        self._unknown: list[np.ndarray] = []

    def update(self, known_scores: Sequence[float] | np.ndarray, unknown_scores: Sequence[float] | np.ndarray) -> None:
        self._known.append(np.asarray(known_scores, np.float64))
        self._unknown.append(np.asarray(unknown_scores, np.float64))

    def compute(self) -> dict[str, Any]:
        known = np.concatenate(self._known) if self._known else np.zeros(0)
        unknown = np.concatenate(self._unknown) if self._unknown else np.zeros(0)
        if len(known) == 0 or len(unknown) == 0:
            raise BadInput(f"open-set needs known and unknown images, got {len(known)} and {len(unknown)}")
        accept = int(np.ceil(self.known_recall * len(known)))
        threshold = float(np.sort(known)[::-1][accept - 1])
        greater = (known[:, None] > unknown[None, :]).mean()
        ties = (known[:, None] == unknown[None, :]).mean()
        return {
            "known_recall_target": self.known_recall,
            "threshold": threshold,
            "known_recall": float((known >= threshold).mean()),
            "rejection_rate": float((unknown < threshold).mean()),
            "auroc": float(greater + 0.5 * ties),
            "n_known": len(known),
            "n_unknown": len(unknown),
        }


def best_known_answered(
    known_conf: Sequence[float] | np.ndarray,
    known_correct: Sequence[bool] | np.ndarray,
    unknown_conf: Sequence[float] | np.ndarray,
    target: float,
) -> float:
    """The largest share of known images any single confidence threshold answers while the answered stream
    (known images plus the unknown ones, each image weighing one) keeps precision ``target``: the ceiling a
    calibration of this confidence could reach on this test stream, found with the test labels (an oracle).

    ``known_conf``/``known_correct``: ``(n,)`` confidence and whether the candidate is right for each known image;
    ``unknown_conf``: ``(m,)`` confidence of the "none of these" images (always wrong when answered). Images with
    equal confidence are answered together; 0.0 when no threshold reaches ``target``.
    """
    kc = np.asarray(known_conf, np.float64)
    ok = np.asarray(known_correct, bool)
    uc = np.asarray(unknown_conf, np.float64)
    _check_same_length(known_conf=kc, known_correct=ok)
    if not 0.0 < target <= 1.0:
        raise BadInput(f"target precision must be in (0, 1], got {target}")
    if kc.size == 0:
        raise BadInput("best_known_answered needs at least one known image")
    conf = np.r_[kc, uc]
    order = np.argsort(-conf, kind="stable")
    right = np.cumsum(np.r_[ok, np.zeros(uc.size, bool)][order])
    known = np.cumsum(np.r_[np.ones(kc.size, bool), np.zeros(uc.size, bool)][order])
    sorted_conf = conf[order]
    cut = np.r_[sorted_conf[1:] != sorted_conf[:-1], True]  # a threshold answers every image of its confidence
    good = np.flatnonzero(cut & (right >= target * np.arange(1, conf.size + 1) - 1e-9))
    return float(known[good[-1]] / kc.size) if good.size else 0.0
