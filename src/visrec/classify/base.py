"""Shared helpers of the classifiers: input checks, softmax, and class-score matrices -> Predictions.

A *class-score matrix* is ``(q, c)`` float, one column per class in a fixed order; ``-inf`` marks a class
that is not available for that query (no prototype, or removed to simulate an unknown class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visrec.errors import BadInput, DimensionMismatch
from visrec.types import Prediction

NO_CANDIDATE = ""
"""``Prediction.candidate`` when a query had no usable evidence at all (e.g. only unlabeled neighbours)."""


def check_vectors(name: str, vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Validate a ``(n, d)`` array of L2-normalised rows and return it as float32.

    Raises ``DimensionMismatch`` when it is not 2-D or its width is not ``dim``, ``BadInput`` when it holds
    NaN/inf values.
    """
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise DimensionMismatch(f"{name} must be a 2-D (n, d) array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatch(f"{name} have width {arr.shape[1]}, expected {dim}: use vectors from the same encoder")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and not np.isfinite(arr).all():
        raise BadInput(f"{name} hold NaN or infinite values; re-encode the images")
    return arr


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """``(n, d)`` rows divided by their L2 norm (zero rows stay zero), float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def masked_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(q, c)`` logits over the finite entries; ``-inf`` entries get 0.

    A row with no finite entry comes back all zeros.
    """
    finite = np.isfinite(logits)
    row_max = np.max(np.where(finite, logits, -np.inf), axis=1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.exp(np.where(finite, logits - row_max, -np.inf))
    total = e.sum(axis=1, keepdims=True)
    return (e / np.where(total > 0, total, 1.0)).astype(np.float64)


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Class names as a tuple; raises ``BadInput`` on an empty list, empty names or duplicates."""
    out = tuple(str(c) for c in classes)
    if not out:
        raise BadInput("a classifier needs at least one class, got none")
    if any(not c for c in out):
        raise BadInput("class names must be non-empty strings")
    if len(set(out)) != len(out):
        dup = sorted({c for c in out if out.count(c) > 1})
        raise BadInput(f"class names must be unique, got duplicates {dup}")
    return out


def predictions_from_scores(classes: Sequence[str], scores: np.ndarray, mode: str, top_k: int) -> list[Prediction]:
    """Turn a ``(q, c)`` class-score matrix into one uncalibrated ``Prediction`` per row.

    The candidate is the best finite column (ties: first class in ``classes`` order); ``top_k`` lists up to
    ``top_k`` finite ``(class, score)`` pairs best first. A row with no finite score gives candidate ``""``,
    score 0.0 and an empty ``top_k``. ``label`` is the candidate (no unknown decision before calibration),
    ``calibrated`` is NaN and ``threshold`` None.
    """
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise DimensionMismatch(f"class scores must be (q, {len(classes)}), got shape {scores.shape}")
    order = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf), axis=1, kind="stable")
    out: list[Prediction] = []
    for row, idx in zip(scores, order[:, : max(1, top_k)], strict=True):
        ranked = tuple((classes[j], float(row[j])) for j in idx if np.isfinite(row[j]))
        out.append(make_prediction(ranked, mode))
    return out


def make_prediction(ranked: tuple[tuple[str, float], ...], mode: str) -> Prediction:
    """An uncalibrated ``Prediction`` from ``(class, score)`` pairs sorted best first (may be empty)."""
    if not ranked:
        return Prediction(None, NO_CANDIDATE, 0.0, float("nan"), (), mode)
    best, score = ranked[0]
    return Prediction(best, best, score, float("nan"), ranked, mode)
