"""Held-out kNN predictions in the whitened space, the whitening refitted without what is held out.

An index fits its within-class whitening (:mod:`visrec.classify.whitening`) on every labeled item, so each of them
sits unusually close to its class mean there: scored with that fit, held-out items look far easier than new
images (caltech101_dev, EfficientNet-Lite0, leave-one-out kNN top-1 88.6 % plain, 99.3 % whitened with the fit
on every item, 90.6 % refitted per fold). So the calibration holds out folds and, per fold, refits the whitening
on the labeled items the fold leaves in and searches neighbours among those same items: each query meets an
index that never saw it, as a new image does, on 9/10 of the gallery.

* *Known* queries: whole near-duplicate groups are dealt into :data:`KNOWN_FOLDS` folds (a query's group is in
  its own fold, so it is never its own neighbour).
* *Simulated unknowns* (the query's classes removed): classes are dealt into up to :data:`NOVEL_FOLDS` folds; a
  query is scored against the items of the other folds' classes with the whitening fitted on them, so the metric
  never saw the query's class either, as it never saw a genuinely new one.

A fold whose items cannot be fitted (:func:`~visrec.classify.whitening.whitening_skip_reason`) is scored with
plain cosines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from visrec.classify.knn import KnnClassifier
from visrec.classify.linear import group_folds
from visrec.classify.loo import _CELLS_PER_CHUNK, LooData, chunked_left_out, top_neighbours
from visrec.classify.whitening import apply_whitener, cholesky_whitener, whitening_skip_reason
from visrec.types import Prediction

KNOWN_FOLDS = 10
NOVEL_FOLDS = 10


def cosine_fallback(clf: KnnClassifier, data: LooData) -> KnnClassifier:
    """``clf`` itself, or with ``metric="cosine"`` when it asks for whitening that ``data``'s labels cannot fit
    (the index then stores no whitening either, so calibration and prediction agree)."""
    if clf.whitened and whitening_skip_reason(data.labels) is not None:
        return KnnClassifier.from_config(replace(clf.config, metric="cosine"))
    return clf


def knn_left_out(
    clf: KnnClassifier, data: LooData, rows: np.ndarray, simulate: bool, seed: int, chunk_size: int
) -> tuple[list[Prediction], list[Prediction], KnnClassifier]:
    """``(known, simulated unknowns, classifier)``: held-out kNN predictions of ``rows`` in the classifier's metric
    (cosine where whitening cannot be fitted: the returned classifier says which); no unknowns unless ``simulate``."""
    clf = cosine_fallback(clf, data)
    if not clf.whitened:
        unknown = chunked_left_out(clf, data, rows, True, chunk_size) if simulate else []
        return chunked_left_out(clf, data, rows, False, chunk_size), unknown, clf
    unknown = whitened_left_out(clf, data, rows, True, seed) if simulate else []
    return whitened_left_out(clf, data, rows, False, seed), unknown, clf


def whitened_left_out(
    clf: KnnClassifier, data: LooData, rows: np.ndarray, remove_class: bool, seed: int = 0
) -> list[Prediction]:
    """Predict items ``rows`` of ``data`` (labeled) with the whitening and gallery of their fold (module docstring);
    ``remove_class``: simulated unknowns (the query's classes are never among its neighbours)."""
    from visrec.classify.novelty import map_fits

    labeled = np.array([len(x) > 0 for x in data.labels], bool)
    query_fold, out_of_fold = _folds(data, remove_class, seed)

    def run(f: int) -> tuple[np.ndarray, list[Prediction]]:
        at = np.flatnonzero(query_fold[rows] == f)
        gallery = np.flatnonzero(labeled & out_of_fold(f))
        if gallery.size == 0:
            return at, clf.predict_from_neighbors([[] for _ in at], np.zeros((at.size, 0)))
        return at, _fold_predictions(clf, data, rows[at], gallery, remove_class)

    out: list[Prediction | None] = [None] * rows.size
    # folds side by side, one BLAS thread each (an eigensolver gains little from a second thread)
    for at, preds in map_fits(run, np.unique(query_fold[rows]).tolist(), 8 * data.vectors.size):
        for i, p in zip(at.tolist(), preds, strict=True):
            out[i] = p
    return [p for p in out if p is not None]


def _folds(data: LooData, remove_class: bool, seed: int) -> tuple[np.ndarray, Callable[[int], np.ndarray]]:
    """``(fold of each item as a query (n,), f -> (n,) bool: items the fold leaves in)``."""
    if not remove_class:
        folds = group_folds(data.gid, KNOWN_FOLDS, seed)
        return folds, lambda f: folds != f
    n_folds = max(1, min(NOVEL_FOLDS, len(data.classes)))
    class_fold = np.random.default_rng(seed).permutation(len(data.classes)) % n_folds
    onehot = (class_fold[:, None] == np.arange(n_folds)[None, :]).astype(np.float32)
    touches = np.asarray((data.incidence @ onehot) > 0)  # (n, folds): the item carries a class of the fold
    first = {c: j for j, c in enumerate(data.classes)}
    query_fold = np.array([class_fold[first[row[0]]] if row else -1 for row in data.labels], np.int64)
    return query_fold, lambda f: ~touches[:, f]


def _fold_predictions(
    clf: KnnClassifier, data: LooData, queries: np.ndarray, gallery: np.ndarray, remove_class: bool
) -> list[Prediction]:
    whitener = _fit(data, gallery)
    g = data.vectors[gallery] if whitener is None else apply_whitener(whitener, data.vectors[gallery])
    step = max(1, _CELLS_PER_CHUNK // gallery.size)
    out: list[Prediction] = []
    for start in range(0, queries.size, step):
        q_rows = queries[start : start + step]
        q = data.vectors[q_rows] if whitener is None else apply_whitener(whitener, data.vectors[q_rows])
        sims = q @ g.T
        sims[data.excluded(q_rows, remove_class)[:, gallery]] = -np.inf  # own group (and classes) never count
        top, top_s = top_neighbours(sims, clf.k)
        out.extend(clf.predict_from_neighbors([[data.labels[gallery[j]] for j in row] for row in top], top_s))
    return out


def _fit(data: LooData, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The whitening of the single-label items among ``gallery`` (a :func:`cholesky_whitener`: the same cosines as
    the stored fit's, without its eigen-solve); None when they cannot be fitted."""
    single = gallery[[len(data.labels[i]) == 1 for i in gallery.tolist()]]
    labels = [data.labels[i] for i in single.tolist()]
    if whitening_skip_reason(labels) is not None:
        return None
    return cholesky_whitener(data.vectors[single], [row[0] for row in labels])
