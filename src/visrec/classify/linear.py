"""A linear probe on the index's own vectors: ridge regression onto one-hot labels (a regularised least-squares
classifier), with the penalty chosen by grouped cross-validation on the index itself.

Why: on frozen features a linear probe ranks its own answers far better than a nearest-neighbour vote. Measured on
the train/test splits of the dev sets (``benchmarks/linear_probe.py``; penalty chosen on held-out folds of the
train split only): raw top-1 caltech101_dev 91.9 % vs 89.5 % for kNN, cifar10_subset 78.5 vs 74.4, naruto 98.8
vs 98.8; answered at a 95 % precision threshold chosen on held-out folds of the train split 95.0 / 54.2 / 100 %
against 82 / 21 / 100 % for the kNN vote. Ridge instead of logistic regression: as accurate there, and its fit is
one Cholesky solve per penalty (0.1 s at 1,500 x 1,472 against 4 s for a multinomial logistic fit).

Fit: ``W = (X^T X + lam I)^-1 X^T Y`` on centred rows, ``Y`` the 0/1 class incidence (a multi-label row counts
for each label), bias ``b = mean(Y) - mean(X) W``. Class score of a query: its output for that class minus the
best output of the other classes, so the best class scores its margin over the runner-up (positive) and every
other class its distance below the best (negative): the margin ranked answers better than the top output alone
(same benchmark). ``lam`` is chosen from :data:`PENALTIES` by held-out top-1 over :data:`FOLDS` folds that keep
each near-duplicate group together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.classify.base import check_classes, check_vectors, predictions_from_scores
from visrec.errors import BadInput, EmptyDataset, StageOrderError
from visrec.types import Prediction

PENALTIES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
"""Ridge penalties tried (unit rows: the scatter's trace is the number of rows)."""
FOLDS = 5
MAX_FOLD_ROWS = 20_000
"""The cross-validation (penalty and held-out predictions) fits on at most this many labeled rows: the calibrated
queries plus a seeded sample of the others. The stored head is fitted on every labeled row."""
_BLOCK = 8192


@dataclass(frozen=True)
class LinearConfig:
    """Options of :class:`LinearClassifier`: ``top_k`` classes listed in ``Prediction.top_k``; ``penalty``: the
    ridge penalty (None: chosen by grouped cross-validation at fit time)."""

    top_k: int = 5
    penalty: float | None = None

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise BadInput(f"top_k must be >= 1, got {self.top_k}")
        if self.penalty is not None and not self.penalty > 0:
            raise BadInput(f"penalty must be > 0, got {self.penalty}")


def incidence(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """``(n, c)`` float64 0/1 matrix: row i has a 1 for each of its labels that is among ``classes``."""
    col = {c: j for j, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), np.float64)
    for i, labs in enumerate(labels):
        for lab in labs:
            j = col.get(str(lab))
            if j is not None:
                out[i, j] = 1.0
    return out


def ridge_fit(
    x: np.ndarray, y: np.ndarray, penalties: Sequence[float], scatter: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(weights (d, c) float32, bias (c,) float32)]``, one per penalty, for rows ``x (n, d)`` onto ``y (n, c)``.

    One scatter (float64, summed over blocks of rows so no float64 copy of ``x`` is made; ``scatter``: that
    ``(d, d)`` matrix of ``x`` about its mean when already known, see :class:`visrec.classify.novelty.FoldScatter`),
    then one Cholesky factorisation per penalty (SciPy's ``cho_factor``)."""
    from scipy.linalg import cho_factor, cho_solve

    mean_x, mean_y = x.mean(axis=0, dtype=np.float64), y.mean(axis=0)
    d = x.shape[1]
    total, cross = np.zeros((d, d)) if scatter is None else scatter, np.zeros((d, y.shape[1]))
    for s in range(0, x.shape[0], _BLOCK):
        xb = np.asarray(x[s : s + _BLOCK], np.float64) - mean_x
        if scatter is None:
            total += xb.T @ xb
        cross += xb.T @ (y[s : s + _BLOCK] - mean_y)
    out = []
    for lam in penalties:
        shifted = total.copy()
        shifted.flat[:: d + 1] += lam  # total + lam I with one (d, d) array instead of three
        w = cho_solve(cho_factor(shifted, overwrite_a=True, check_finite=False), cross, check_finite=False)
        out.append((w.astype(np.float32), (mean_y - mean_x @ w).astype(np.float32)))
    return out


def margins(outputs: np.ndarray) -> np.ndarray:
    """``(q, c)`` class scores from regression outputs: each output minus the best output of the other classes."""
    out = np.asarray(outputs, np.float64)
    if out.shape[1] < 2:
        return out
    top2 = np.partition(out, out.shape[1] - 2, axis=1)[:, -2:]
    best, second = top2.max(axis=1, keepdims=True), top2.min(axis=1, keepdims=True)
    return out - np.where(out >= best, second, best)


def labeled_classes(labels: Sequence[Sequence[str]]) -> tuple[list[int], tuple[str, ...]]:
    """The labeled rows and their classes in natural order; ``EmptyDataset`` with fewer than two classes."""
    from natsort import natsorted

    rows = [i for i, x in enumerate(labels) if len(x) > 0]
    classes = tuple(natsorted({str(lab) for i in rows for lab in labels[i]}))
    if len(classes) < 2:
        raise EmptyDataset(f"a linear probe needs labeled images of at least 2 classes, got {len(classes)}")
    return rows, classes


def group_folds(groups: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """``(n,)`` int fold number of each row: whole groups (integer codes ``groups``) go to one fold, at random."""
    uniq, inverse = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(uniq.size)
    return np.asarray(order[inverse] % folds, np.int64)


class LinearClassifier:
    """Ridge linear probe. Raw score: the best class's output margin over the runner-up (see the module doc).

    ``fit(vectors, labels, groups)`` once, then ``predict(queries)``; or build from saved arrays with
    :meth:`from_arrays`.
    """

    mode = "linear"

    def __init__(self, top_k: int = 5, penalty: float | None = None) -> None:
        self.config = LinearConfig(top_k=top_k, penalty=penalty)
        self._classes: tuple[str, ...] | None = None
        self._weights: np.ndarray | None = None
        self._bias: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls, classes: Sequence[str], weights: np.ndarray, bias: np.ndarray, top_k: int = 5, penalty: float | None = None
    ) -> LinearClassifier:
        """A fitted classifier from saved ``classes``, ``(d, c)`` weights and ``(c,)`` bias."""
        names = check_classes(classes)
        w, b = np.asarray(weights, np.float32), np.asarray(bias, np.float32)
        if w.ndim != 2 or w.shape[1] != len(names) or b.shape != (len(names),):
            raise BadInput(f"linear head of shape {w.shape} / {b.shape} does not fit {len(names)} classes")
        clf = cls(top_k=top_k, penalty=penalty)
        clf._classes, clf._weights, clf._bias = names, w, b
        return clf

    def params(self) -> dict[str, Any]:
        """JSON-serialisable options."""
        return {"mode": self.mode, "top_k": self.config.top_k, "penalty": self.config.penalty}

    @property
    def classes(self) -> tuple[str, ...]:
        if self._classes is None:
            raise StageOrderError("LinearClassifier has no classes yet: call fit(vectors, labels) first")
        return self._classes

    def arrays(self) -> dict[str, np.ndarray]:
        """``{"weights": (d, c) float32, "bias": (c,) float32}`` of the fitted head."""
        if self._weights is None or self._bias is None:
            raise StageOrderError("LinearClassifier is not fitted yet: call fit(vectors, labels) first")
        return {"weights": self._weights, "bias": self._bias}

    def fit(
        self, vectors: np.ndarray, labels: Sequence[Sequence[str]], groups: np.ndarray | None = None, seed: int = 0
    ) -> LinearClassifier:
        """Fit on ``(n, d)`` unit rows and their label tuples (unlabeled rows skipped); ``groups``: ``(n,)``
        integer near-duplicate group codes kept together by the cross-validation (default: each row alone)."""
        vecs = check_vectors("vectors", vectors)
        rows, classes = labeled_classes(labels)
        x, y = vecs[rows], incidence([labels[i] for i in rows], classes)
        lam = self.config.penalty
        if lam is None:
            codes = np.arange(len(rows)) if groups is None else np.asarray(groups)[rows]
            lam = choose_penalty(x, y, group_folds(codes, FOLDS, seed))
        from visrec.blas import blas_threads

        with blas_threads(1):  # a multi-threaded BLAS crawled on a loaded CPU
            ((w, b),) = ridge_fit(x, y, [lam])
        self.config = LinearConfig(top_k=self.config.top_k, penalty=lam)
        self._classes, self._weights, self._bias = classes, w, b
        return self

    def outputs(self, queries: np.ndarray) -> np.ndarray:
        """``(q, c)`` regression outputs of ``queries (q, d)``."""
        head = self.arrays()
        q = check_vectors("queries", queries, head["weights"].shape[0])
        return q @ head["weights"] + head["bias"]

    def predict(self, queries: np.ndarray) -> list[Prediction]:
        """One uncalibrated ``Prediction`` (``mode="linear"``) per row of ``queries`` ``(q, d)``."""
        return self.predict_from_outputs(self.outputs(queries))

    def predict_from_outputs(self, outputs: np.ndarray) -> list[Prediction]:
        """Predictions from ``(q, c)`` outputs in :attr:`classes` order (``-inf``: class unavailable)."""
        out = np.asarray(outputs, np.float64)
        finite = np.isfinite(out)
        scores = np.where(finite, margins(np.where(finite, out, -1e30)), -np.inf)
        return predictions_from_scores(self.classes, scores, self.mode, self.config.top_k)


def fold_outputs(x: np.ndarray, y: np.ndarray, folds: np.ndarray, penalties: Sequence[float]) -> list[np.ndarray]:
    """Held-out ``(n, c)`` outputs of every row, one array per penalty: each fold's rows from the heads fitted
    without that fold (folds side by side, one BLAS thread each: :func:`visrec.classify.novelty.map_fits`; each
    fold's scatter derived from the full set's: :class:`visrec.classify.novelty.FoldScatter`)."""
    from visrec.classify.novelty import FoldScatter, map_fits

    scatters = FoldScatter(x)  # a fold's scatter is the full set's minus that of the rows it leaves out

    def fit(f: int) -> list[np.ndarray]:
        test, train = folds == f, folds != f
        if not train.any():
            return [np.full((int(test.sum()), y.shape[1]), -np.inf) for _ in penalties]
        return [x[test] @ w + b for w, b in ridge_fit(x[train], y[train], penalties, scatters.of(train))]

    fold_ids = [int(f) for f in np.unique(folds)]
    parts = map_fits(fit, fold_ids, 8 * x.shape[0] * x.shape[1])
    out = [np.zeros(y.shape, np.float64) for _ in penalties]
    for f, outs in zip(fold_ids, parts, strict=True):
        for arr, o in zip(out, outs, strict=True):
            arr[folds == f] = o
    return out


def best_penalty(outputs: Sequence[np.ndarray], y: np.ndarray, penalties: Sequence[float]) -> int:
    """Index of the penalty whose held-out ``outputs`` get the most rows right (ties: the larger penalty)."""
    hits = np.array([y[np.arange(y.shape[0]), np.argmax(o, axis=1)].sum() for o in outputs])
    return int(np.flatnonzero(hits == hits.max())[-1])


def choose_penalty(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> float:
    """The penalty of :data:`PENALTIES` with the best held-out top-1 over the folds (ties: the larger one)."""
    return float(PENALTIES[best_penalty(fold_outputs(x, y, folds, PENALTIES), y, PENALTIES)])


def left_out_predictions(
    clf: LinearClassifier,
    vectors: np.ndarray,
    labels: Sequence[tuple[str, ...]],
    groups: np.ndarray,
    rows: np.ndarray,
    seed: int = 0,
) -> tuple[list[Prediction], list[Prediction], LinearClassifier]:
    """Held-out predictions of ``rows`` for a calibration: ``(known, unknown, fitted)``.

    ``known``: each row from the head fitted without its fold (whole near-duplicate ``groups`` per fold);
    ``unknown``: the same outputs with the row's own classes removed (a simulated new class: the head still saw
    that class, so the runner-up's margin is what a new class would show, a little optimistic). ``fitted``:
    the classifier whose options (the penalty chosen on the folds) the calibration stores.
    """
    labeled, classes = labeled_classes(labels)
    labeled = _fold_rows(labeled, rows, seed)
    x, y = np.asarray(vectors[labeled], np.float32), incidence([labels[i] for i in labeled], classes)
    folds = group_folds(np.asarray(groups)[labeled], FOLDS, seed)
    penalties = PENALTIES if clf.config.penalty is None else (clf.config.penalty,)
    outputs = fold_outputs(x, y, folds, penalties)
    chosen = best_penalty(outputs, y, penalties)
    lam = float(penalties[chosen])
    pos = np.full(len(labels), -1)
    pos[labeled] = np.arange(len(labeled))
    if (pos[rows] < 0).any():
        raise BadInput("held-out predictions are only made for labeled rows")
    outs = outputs[chosen][pos[rows]]
    fitted = LinearClassifier(top_k=clf.config.top_k, penalty=lam)
    fitted._classes = classes
    known = fitted.predict_from_outputs(outs)
    own = y[pos[rows]] > 0
    unknown = fitted.predict_from_outputs(np.where(own, -np.inf, outs))
    return known, unknown, fitted


def _fold_rows(labeled: list[int], rows: np.ndarray, seed: int) -> list[int]:
    """``labeled`` itself, or past :data:`MAX_FOLD_ROWS` the ``rows`` asked for plus a seeded sample of the rest."""
    if len(labeled) <= MAX_FOLD_ROWS:
        return labeled
    asked = {int(r) for r in rows}
    others = np.asarray([i for i in labeled if i not in asked], np.int64)
    room = max(0, MAX_FOLD_ROWS - len(asked))
    extra = np.random.default_rng(seed).choice(others, size=min(room, others.size), replace=False)
    return sorted(asked | {int(i) for i in extra})
