"""Within-class whitening: a metric for kNN learned from a labeled gallery (no training loop, one eigen-solve).

Cosine kNN on pooled CNN features weighs every direction alike, including directions along which images of one
class vary a lot (pose, background, colour). Within-class whitening (WCCN) divides them out: with ``R`` the
gallery vectors minus their class means, ``S_w = R^T R / n`` and ``S = S_w + lambda I`` where ``lambda = shrink *
trace(S_w) / d`` (shrinkage keeps the directions the gallery never saw from being blown up), vectors are centred
on the gallery mean and mapped by ``S^(-1/2)``, then scaled to unit length; kNN then runs on cosines there.

``S_w`` has rank at most ``n - classes``, so the map is stored as that many eigenvectors (from an SVD of ``R``)
plus the identity on the rest: ``(n - classes) x d`` floats, not ``d x d``.

Measured (``python benchmarks/raw_variants.py evaluate``; shrink chosen on 5 folds inside the train splits of
naruto_roboflow, cifar10_subset and caltech101_dev): default kNN vote, EfficientNet-Lite0, test top-1 cifar
74.4 -> 76.5 %, caltech 89.5 -> 90.1 %; with the ``efficientnet-ensemble`` encoder 76.3 -> 80.9 % and 91.5 ->
93.1 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from visrec.errors import BadInput, DimensionMismatch

# Chosen on 5 folds inside the three dev train splits, mean top-1 at shrink 0.1 / 0.3 / 1.0: EfficientNet-Lite0
# 86.7 / 87.0 / 86.8 %, efficientnet-ensemble 89.6 / 89.8 / 89.5 %.
SHRINK = 0.3


@dataclass(frozen=True)
class WithinClassWhitening:
    """``transform(x) = unit(x - mean + basis @ ((factor - 1) * (basis.T @ (x - mean))))``.

    ``mean``: ``(d,)`` float32 gallery mean; ``basis``: ``(d, r)`` float32 orthonormal eigenvectors of the
    within-class scatter with non-zero eigenvalue; ``factor``: ``(r,)`` float32 ``sqrt(lambda / (w + lambda))``
    (the whitening scaled by ``sqrt(lambda)``, which leaves cosines unchanged).
    """

    mean: np.ndarray
    basis: np.ndarray
    factor: np.ndarray

    def __post_init__(self) -> None:
        d = self.mean.shape[0]
        if self.mean.ndim != 1 or self.basis.shape[0] != d or self.basis.shape[1:] != self.factor.shape:
            raise DimensionMismatch(
                f"whitening parts disagree: mean {self.mean.shape}, basis {self.basis.shape}, factor "
                f"{self.factor.shape}; expected (d,), (d, r), (r,)"
            )

    @property
    def dim(self) -> int:
        """Input (and output) width ``d``."""
        return int(self.mean.shape[0])

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """``(n, d)`` float32 vectors -> ``(n, d)`` float32 unit rows in the whitened space."""
        x = np.asarray(vectors, np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DimensionMismatch(f"vectors must be (n, {self.dim}), got shape {x.shape}")
        c = x - self.mean
        y = c + ((c @ self.basis) * (self.factor - 1.0)) @ self.basis.T
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return (y / np.maximum(norms, 1e-12)).astype(np.float32)


def whitening_skip_reason(labels: Sequence[Sequence[str]]) -> str | None:
    """Why no whitening can be fitted on items with these label tuples (None when one can).

    Only single-label items take part: a multi-label item has no one class mean to be compared with."""
    single = [row[0] for row in labels if len(row) == 1]
    _, counts = np.unique(np.asarray(single, dtype=object), return_counts=True) if single else (None, np.zeros(0))
    if len(counts) < 2:
        return f"within-class whitening needs two classes of single-label items; found {len(counts)}"
    if counts.max() < 2:
        return "within-class whitening needs a class with two single-label items; every class has one"
    return None


def fit_within_class_whitening(
    vectors: np.ndarray, labels: Sequence[str] | np.ndarray, shrink: float = SHRINK
) -> WithinClassWhitening:
    """Fit on a labeled gallery: ``vectors`` ``(n, d)`` float32 (unit rows), ``labels`` ``(n,)`` one label each.

    Needs at least two classes and one class with two items (else there is no within-class variation to learn).
    With fewer items than dimensions the eigenvectors come from the ``(n, n)`` Gram matrix of the residuals (the
    same directions as an SVD of the ``(n, d)`` residuals, for a fraction of the work).
    """
    x, resid = _class_residuals(vectors, labels, shrink)
    w, basis = _scatter_eigen(resid)
    lam = shrink * float(w.sum()) / x.shape[1]
    keep = w > 1e-12 * max(float(w.max()), 1e-30)
    factor = np.sqrt(lam / (w[keep] + lam))
    return WithinClassWhitening(
        x.mean(axis=0).astype(np.float32), basis[:, keep].astype(np.float32), factor.astype(np.float32)
    )


def _class_residuals(
    vectors: np.ndarray, labels: Sequence[str] | np.ndarray, shrink: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, d), residuals (n, d))`` float64: the vectors and each minus its class mean, after checking that a
    whitening can be fitted (two classes, a class with two items, ``shrink > 0``)."""
    x = np.asarray(vectors, np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise DimensionMismatch(f"need vectors (n, d) and labels (n,), got {x.shape} and {y.shape}")
    if not shrink > 0:
        raise BadInput(f"shrink must be > 0, got {shrink}")
    classes, idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2 or counts.max() < 2:
        raise BadInput(
            f"within-class whitening needs two classes and a class with two items; got {len(classes)} "
            f"class(es), largest {int(counts.max()) if len(counts) else 0}"
        )
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    means = np.add.reduceat(x[np.argsort(idx, kind="stable")], starts, axis=0) / counts[:, None]
    return x, x - means[idx]


def _scatter_eigen(resid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(w (r,), basis (d, r))``: eigenvalues and eigenvectors of ``resid.T @ resid / n`` (float64)."""
    n, d = resid.shape
    if n >= d:
        w, v = np.linalg.eigh(resid.T @ resid / n)
        return np.clip(w, 0.0, None), v
    w, u = np.linalg.eigh(resid @ resid.T / n)
    w = np.clip(w, 0.0, None)
    # right singular vectors from the left ones: v = R^T u / sqrt(n w); directions with w ~ 0 are dropped later
    scale = np.sqrt(np.maximum(w * n, 1e-300))
    return w, (resid.T @ u) / scale


def cholesky_whitener(
    vectors: np.ndarray, labels: Sequence[str] | np.ndarray, shrink: float = SHRINK
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (d,), map (d, d))`` float32 with ``unit((x - mean) @ map)`` giving the same cosines as
    ``fit_within_class_whitening(vectors, labels, shrink).transform(x)``, for a fraction of the work.

    Both are ``S^(-1/2)``-type maps of ``S = S_w + lambda I``; any ``W`` with ``W W^T = S^(-1)`` keeps every inner
    product ``a^T S^(-1) b``, so the inverse Cholesky factor (one ``d^3 / 3`` factorisation and a triangular
    inverse) replaces the eigen-solve. For fits that are used once and thrown away (the calibration's folds); the
    stored fit keeps the eigenvector form, which is ``(n - classes) x d`` when that is smaller.
    """
    from scipy.linalg import blas, lapack

    x, resid = _class_residuals(vectors, labels, shrink)
    resid = np.asfortranarray(resid)
    scatter = blas.dsyrk(1.0 / len(x), resid, trans=1, lower=1)  # the lower triangle of R^T R / n
    scatter[np.diag_indices_from(scatter)] += shrink * float(np.trace(scatter)) / x.shape[1]
    lower, info = lapack.dpotrf(scatter, lower=1, clean=1, overwrite_a=1)
    if info == 0:
        lower, info = lapack.dtrtri(lower, lower=1, overwrite_c=1)
    if info != 0:  # not expected: the shrinkage makes the matrix positive definite
        raise BadInput(f"within-class scatter could not be factorised (LAPACK info {info}); check for NaN vectors")
    return x.mean(axis=0).astype(np.float32), np.ascontiguousarray(np.tril(lower).T, np.float32)


def apply_whitener(whitener: tuple[np.ndarray, np.ndarray], vectors: np.ndarray) -> np.ndarray:
    """``(n, d)`` float32 unit rows ``unit((x - mean) @ map)`` of a :func:`cholesky_whitener`."""
    mean, matrix = whitener
    y = (np.asarray(vectors, np.float32) - mean) @ matrix
    return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


def whitening_arrays(whitening: WithinClassWhitening) -> dict[str, np.ndarray]:
    """``{"mean", "basis", "factor"}`` float32 arrays (saved as ``.npz`` with the index, never pickled)."""
    return {"mean": whitening.mean, "basis": whitening.basis, "factor": whitening.factor}


def whitening_from_arrays(arrays: dict[str, np.ndarray]) -> WithinClassWhitening:
    """Inverse of :func:`whitening_arrays`; raises ``BadInput`` when an array is missing."""
    missing = sorted({"mean", "basis", "factor"} - set(arrays))
    if missing:
        raise BadInput(f"whitening arrays {missing} are missing")
    return WithinClassWhitening(*(np.asarray(arrays[k], np.float32) for k in ("mean", "basis", "factor")))
