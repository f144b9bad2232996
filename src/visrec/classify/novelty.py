"""Novelty scores: how unlike every indexed class a query looks (higher = more likely none of them).

One small strategy interface, :class:`NoveltyScore` (``fit(vectors, labels)`` then ``score(queries)``), with
scores from the open-set literature that work on frozen features:

* ``"kth_distance"``: cosine distance to the ``k``-th nearest labeled item (Sun et al. 2022, "Out-of-distribution
  detection with deep nearest neighbors"). Needs nothing beyond the neighbours the kNN vote already fetched.
* ``"mahalanobis"``: smallest Mahalanobis distance to a class mean under one shared, shrunk (Ledoit-Wolf)
  covariance, in a PCA-reduced space (Lee et al. 2018).
* ``"relative_mahalanobis"``: the same minus the Mahalanobis distance to one Gaussian over all items (Ren et
  al. 2021), which removes the part of the distance that is about "unusual photo" rather than "unseen class".
* ``"max_cosine"``: one minus the best cosine to an item (the plain cut-off; kept as the baseline).

All are pure numpy on ``(n, d)`` float32 unit rows; :data:`NOVELTY_SCORES` names them. Which one is the
default is decided by ``benchmarks/novelty_scores.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from visrec.blas import blas_threads, usable_cores
from visrec.classify.base import check_vectors
from visrec.errors import BadInput, StageOrderError

_CHUNK = 1 << 22  # query x item similarities held at once
_FEW = 16
"""Up to this many queries the Gaussian score runs on one BLAS thread: a single query's small products took
~80 ms when BLAS threads competed for a loaded CPU, ~2-5 ms on one thread."""


_T = TypeVar("_T")
_R = TypeVar("_R")
_PARALLEL_BYTES = 1 << 28
"""Independent fits run side by side only while the fitted vectors' float64 copy stays under this (256 MiB): each
concurrent fit holds its own copies."""


def map_fits(fn: Callable[[_T], _R], items: Iterable[_T], fitted_bytes: int) -> list[_R]:
    """``[fn(item) ...]`` in order, one item per core at a time, each on one BLAS thread.

    For independent novelty fits (cross-validation folds): LAPACK's eigensolver gains little from a second
    thread, while two fits side by side use both cores fully; a multi-threaded BLAS also slowed to a crawl
    when other processes held a core. ``fitted_bytes``: float64 size of one fit's vectors (bounds memory). The
    BLAS limit is process-wide while the fits run.
    """
    from concurrent.futures import ThreadPoolExecutor

    work = list(items)
    cores = usable_cores()
    workers = min(cores, len(work)) if fitted_bytes <= _PARALLEL_BYTES else 1
    if workers <= 1:
        return [fn(item) for item in work]
    with blas_threads(1), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, work))


class NoveltyScore(Protocol):
    """``fit`` on labeled vectors, then ``score`` queries: ``(q,)`` float64, higher = more novel."""

    name: str

    def fit(self, vectors: np.ndarray, labels: Sequence[str]) -> NoveltyScore: ...

    def score(self, queries: np.ndarray) -> np.ndarray: ...


def kth_similarity(queries: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """``(q,)`` cosine of each query's ``k``-th most similar row of ``items`` (``(n, d)`` unit rows).

    ``k`` is clipped to ``n``; chunked so that at most ~4M similarities are held at once.
    """
    kk = min(k, items.shape[0])
    out = np.empty(queries.shape[0], np.float64)
    step = max(1, _CHUNK // max(1, items.shape[0]))
    for s in range(0, queries.shape[0], step):
        sims = queries[s : s + step] @ items.T
        out[s : s + step] = -np.partition(-sims, kk - 1, axis=1)[:, kk - 1]
    return out


class KthDistance:
    """Cosine distance ``1 - s_k`` to the ``k``-th nearest fitted item (``k=1``: the ``max_cosine`` baseline)."""

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise BadInput(f"k must be >= 1, got {k}")
        self.k = k
        self.name = "max_cosine" if k == 1 else "kth_distance"
        self._items: np.ndarray | None = None

    def fit(self, vectors: np.ndarray, labels: Sequence[str]) -> KthDistance:
        """Keep the ``(n, d)`` unit rows (labels are not used)."""
        self._items = check_vectors("vectors", vectors)
        if self._items.shape[0] == 0:
            raise BadInput("a novelty score needs at least one fitted vector")
        return self

    def score(self, queries: np.ndarray) -> np.ndarray:
        """``(q,)`` float64 ``1 - cos`` to the ``k``-th nearest fitted item."""
        if self._items is None:
            raise StageOrderError("call fit(vectors, labels) before score(queries)")
        q = check_vectors("queries", queries, self._items.shape[1])
        return 1.0 - kth_similarity(q, self._items, self.k)


def uses_gram(n: int, d: int) -> bool:
    """Whether ``n`` rows of ``d`` dimensions take their principal axes from the ``(n, n)`` Gram matrix: when
    ``n < d / 2``, where its eigen-solve costs under an eighth of the scatter's. Closer to ``n = d`` the two cost
    about the same, and rows of repeated images (rank far below ``n``) would have to be solved twice."""
    return 2 * n < d


def _principal_axes(centred: np.ndarray, dims: int, scatter: np.ndarray | None = None) -> np.ndarray:
    """``(dims, d)`` float64 leading principal axes of ``(n, d)`` centred rows.

    Eigenvectors of the ``(d, d)`` scatter matrix ``centred^T centred`` (memory ``d^2`` whatever
    ``n``), taken from ``scatter`` when given (cross-validation folds derive it from the full set's, see
    :class:`FoldScatter`), else summed in float32 blocks. Few rows (:func:`uses_gram`): the same axes from the
    ``(n, n)`` Gram matrix (``X^T u / sqrt(lambda)``), unless an axis has almost no variance.
    """
    n, d = centred.shape
    if uses_gram(n, d):
        vals, vecs = _leading_eigenvectors(np.asarray(centred @ centred.T, np.float64), dims)
        if vals[-1] > 1e-6 * vals[0]:  # else an axis is (nearly) outside the data's span: use the scatter
            axes = (centred.T @ vecs) / np.sqrt(vals)
            return np.ascontiguousarray(axes.T)
    if scatter is None:
        scatter = np.zeros((d, d), np.float32)
        for s in range(0, n, 8192):
            block = np.asarray(centred[s : s + 8192], np.float32)
            scatter += block.T @ block
    return np.ascontiguousarray(_leading_eigenvectors(np.asarray(scatter, np.float64), dims)[1].T)


def _leading_eigenvectors(matrix: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values (dims,), vectors (m, dims))`` float64: the ``dims`` largest eigenpairs of a symmetric ``(m, m)``
    float64 matrix, largest first, vectors as unit columns.

    The steps of LAPACK's divide-and-conquer solver (``dsyevd``) through SciPy, with only the wanted vectors
    transformed back: reduction to tridiagonal form (``dsytrd``), the tridiagonal problem by divide and conquer
    (``dstevd``), then ``dsytrd``'s reflectors applied to the ``dims`` leading vectors (``dormqr``) instead of
    all ``m``. Same eigenvalues to the bit and the same vectors to rounding as ``dsyevd``, in 0.55-0.85x its time
    for 512 of 1472 on one thread (``benchmarks/calibration_speed.py`` times the whole calibration). MRRR
    (``dsyevr``) on a subset was no faster here. A float32 solve (``ssyevd``) took half the time of ``dsyevd``
    but moved the Mahalanobis scores of a 20,000-item synthetic fold (1472-d, slowly decaying spectrum, as
    ``benchmarks/calibration_speed.py --synthetic`` generates) by up to 1.6 % (median 0.12 %) against float64, so
    it is not used.
    """
    m = matrix.shape[0]
    if m >= 3 and dims < m:
        got = _tridiagonal_leading(matrix, dims)
        if got is not None:
            return got
    from scipy.linalg import eigh

    vals, vecs = eigh(matrix, driver="evd", check_finite=False)
    return vals[::-1][:dims].astype(np.float64), vecs[:, ::-1][:, :dims].astype(np.float64)


def _tridiagonal_leading(matrix: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_leading_eigenvectors` through ``dsytrd`` + ``dstevd`` + ``dormqr``; None when LAPACK reports a
    failure (the caller then solves with ``dsyevd``)."""
    from scipy.linalg import lapack

    m = matrix.shape[0]
    work = int(lapack.dsytrd_lwork(m, lower=1)[0])
    packed, diag, off, tau, info = lapack.dsytrd(np.asarray(matrix, np.float64), lower=1, lwork=max(m, work))
    if info != 0:
        return None
    vals, tri, info = lapack.dstevd(diag, off)
    if info != 0:
        return None
    top = tri[:, m - dims :][:, ::-1]  # eigenvectors of the tridiagonal matrix, largest first
    # A = Q T Q^T with Q = diag(1, Q1); Q1's reflectors sit below the subdiagonal of ``packed``.
    reflectors, rest = packed[1:, :-1], np.asfortranarray(top[1:])
    work = int(lapack.dormqr("L", "N", reflectors, tau, rest, lwork=-1)[1][0])
    back, _, info = lapack.dormqr("L", "N", reflectors, tau, rest, lwork=max(dims, work), overwrite_c=1)
    if info != 0:
        return None
    return vals[::-1][:dims].astype(np.float64), np.vstack([top[:1], back]).astype(np.float64)


class FoldScatter:
    """Scatter matrices of subsets of one set of rows, each the full set's minus that of the rows left out.

    Scatter is additive: for kept rows ``K`` and left-out rows ``L`` of ``y = x - mean(x)``,
    ``sum_K y y^T = T - sum_L y y^T`` and ``sum_K y = -sum_L y``, so a fold that leaves out a tenth of the rows
    costs a tenth of a full scatter (``O(|L| d^2)``) instead of ``O(n d^2)``; the smaller side is summed.
    ``vectors``: ``(n, d)`` rows (kept by reference; float64 sums in blocks).
    """

    def __init__(self, vectors: np.ndarray) -> None:
        self._x = vectors
        self._mean = vectors.mean(axis=0, dtype=np.float64)
        self._total = self._sums(np.ones(vectors.shape[0], bool))[0]

    def _sums(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(sum y y^T (d, d), sum y (d,))`` float64 over the rows of boolean mask ``rows``."""
        d = self._x.shape[1]
        outer, total = None, np.zeros(d)
        idx = np.flatnonzero(rows)
        for s in range(0, idx.size, 8192):
            block = self._x[idx[s : s + 8192]].astype(np.float64) - self._mean
            part = block.T @ block
            outer = part if outer is None else np.add(outer, part, out=outer)  # no (d, d) temporaries
            total += block.sum(axis=0)
        return (np.zeros((d, d)) if outer is None else outer), total

    def of(self, keep: np.ndarray) -> np.ndarray:
        """``(d, d)`` float64 scatter of the rows of boolean mask ``keep`` (``(n,)``) about their own mean."""
        count = int(keep.sum())
        if count == 0:
            raise BadInput("a fold scatter needs at least one kept row")
        if count >= keep.size - count:
            outer, left_sum = self._sums(~keep)
            np.subtract(self._total, outer, out=outer)
            total = -left_sum
        else:
            outer, total = self._sums(keep)
        mean_part = np.outer(total, total)
        mean_part /= count
        outer -= mean_part  # in place: each (d, d) temporary cost as much as the left-out rows' product
        return outer


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite ``(k, k)`` matrix by Cholesky (~10x faster than ``pinv``'s SVD
    at k=512), falling back to ``pinv`` when the matrix is singular (a shrinkage of zero)."""
    from scipy.linalg import lapack

    try:
        factor = np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return np.asarray(np.linalg.pinv(matrix))
    inv_factor, info = lapack.dtrtri(factor, lower=1)  # a triangular inverse: a third of an LU solve's work
    if info != 0:
        return np.asarray(np.linalg.pinv(matrix))
    inv_factor = np.tril(inv_factor)
    return np.asarray(inv_factor.T @ inv_factor)


def ledoit_wolf_covariance(rows: np.ndarray, assume_centered: bool = False) -> np.ndarray:
    """``(p, p)`` float64 Ledoit-Wolf shrunk covariance of ``(n, p)`` float64 rows, as scikit-learn's
    ``sklearn.covariance.ledoit_wolf`` computes it, from one ``X^T X`` product instead of three: the sum of
    ``X2^T X2`` (``X2`` the squared entries) is the sum of the rows' squared norms squared, and the empirical
    covariance serves both the shrinkage and the result. ``assume_centered``: the rows are already centred.
    """
    x = rows if assume_centered else rows - rows.mean(axis=0)
    n, p = x.shape
    emp = (x.T @ x) / n
    if p == 1:  # one feature: the same whatever the shrinkage
        return emp
    trace = float(np.trace(emp))
    mu = trace / p
    norms = np.einsum("ij,ij->i", x, x)
    squared = float(np.sum(emp**2))  # sum of the squared entries of X^T X, over n^2
    beta = (float(np.sum(norms**2)) / n - squared) / (p * n)
    delta = (squared - 2.0 * mu * trace + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    out = (1.0 - shrinkage) * emp
    out.flat[:: p + 1] += shrinkage * mu
    return out


class GaussianNovelty:
    """Class-conditional Gaussians with one shared Ledoit-Wolf covariance in a PCA space of ``dims`` axes.

    Score: ``min_c (z - mu_c)^T P (z - mu_c)`` with ``P`` the inverse shared covariance; ``relative`` subtracts
    ``(z - mu_0)^T P_0 (z - mu_0)`` of one Gaussian fitted to every item. ``dims`` is clipped to what the data
    supports (items minus classes).
    """

    def __init__(self, dims: int = 512, relative: bool = False) -> None:
        if dims < 1:
            raise BadInput(f"dims must be >= 1, got {dims}")
        self.dims = dims
        self.relative = relative
        self.name = "relative_mahalanobis" if relative else "mahalanobis"
        self.state: dict[str, np.ndarray] | None = None
        self._fast: dict[str, np.ndarray] | None = None
        self._blas: Any = None

    def fit(self, vectors: np.ndarray, labels: Sequence[str], scatter: np.ndarray | None = None) -> GaussianNovelty:
        """Fit PCA, class means and the shrunk covariances on ``(n, d)`` rows with one label each.

        ``scatter``: the rows' ``(d, d)`` scatter about their mean when already known (see :class:`FoldScatter`);
        it must be that of ``vectors``.
        """
        x = check_vectors("vectors", vectors).astype(np.float64)
        labs = np.asarray([str(v) for v in labels], dtype=object)
        if labs.shape != (x.shape[0],):
            raise BadInput(f"got {x.shape[0]} vectors but {labs.size} labels; give one label per vector")
        classes, inv = np.unique(labs, return_inverse=True)
        if x.shape[0] < classes.size + 2:
            raise BadInput(f"a Gaussian novelty score needs more items than classes + 1, got {x.shape[0]}")
        mean = x.mean(axis=0)
        dims = int(min(self.dims, x.shape[0] - classes.size - 1, x.shape[1]))
        x -= mean
        vt = _principal_axes(x, dims, scatter)
        z = x @ vt.T
        mus = np.stack([z[inv == c].mean(axis=0) for c in range(classes.size)])
        within = ledoit_wolf_covariance(z - mus[inv], assume_centered=True)
        # The all-items Gaussian is only used by the relative score (kept as an identity otherwise: same arrays).
        precision0 = _spd_inverse(ledoit_wolf_covariance(z)) if self.relative else np.eye(dims)
        self._fast = None
        self.state = {"mean": mean, "axes": vt, "means": mus, "precision": _spd_inverse(within),
                      "mean0": z.mean(axis=0), "precision0": precision0}  # fmt: skip
        return self

    def score(self, queries: np.ndarray) -> np.ndarray:
        """``(q,)`` float64 (relative) Mahalanobis distance to the nearest class mean."""
        if self.state is None:
            raise StageOrderError("call fit(vectors, labels) before score(queries)")
        if self._fast is None:  # per-fit constants in float32, computed once rather than per query
            st = self.state
            mp = st["means"] @ st["precision"]
            f32 = {k: np.ascontiguousarray(v, np.float32) for k, v in st.items()}
            self._fast = f32 | {"axes_t": np.ascontiguousarray(st["axes"].T, np.float32),
                                "means_quad": (mp * st["means"]).sum(axis=1).astype(np.float32)}  # fmt: skip
        q = check_vectors("queries", queries, self.state["mean"].shape[0])
        if q.shape[0] > _FEW:
            return self._score(q, self._fast)
        if self._blas is None:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController()
        with self._blas.limit(limits=1, user_api="blas"):
            return self._score(q, self._fast)

    def _score(self, q: np.ndarray, st: dict[str, np.ndarray]) -> np.ndarray:
        z = (q - st["mean"]) @ st["axes_t"]
        zp = z @ st["precision"]
        quad = (zp * z).sum(axis=1)[:, None] - 2.0 * zp @ st["means"].T + st["means_quad"][None, :]
        out = quad.min(axis=1).astype(np.float64)
        if self.relative:
            d0 = z - st["mean0"]
            out = out - ((d0 @ st["precision0"]) * d0).sum(axis=1)
        return np.asarray(out, np.float64)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named float32 arrays (for ``np.savez``; no pickle)."""
        if self.state is None:
            raise StageOrderError("call fit(vectors, labels) before saving a novelty score")
        return {k: v.astype(np.float32) for k, v in self.state.items()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], relative: bool = False) -> GaussianNovelty:
        """A fitted score from :meth:`to_arrays` output; raises ``BadInput`` when an array is missing."""
        missing = sorted({"mean", "axes", "means", "precision", "mean0", "precision0"} - set(arrays))
        if missing:
            raise BadInput(f"novelty state lacks arrays {missing}; recalibrate the index")
        out = cls(dims=int(arrays["axes"].shape[0]), relative=relative)
        out.state = {k: np.ascontiguousarray(arrays[k], np.float64) for k in arrays}
        return out


DEFAULT_NOVELTY = "mahalanobis"
"""Chosen by ``benchmarks/novelty_scores.py`` (leave-classes-out on caltech101_dev's train split; see docs)."""

NOVELTY_SCORES = ("kth_distance", "relative_mahalanobis", "mahalanobis", "max_cosine")


def create_novelty(name: str, **options: Any) -> NoveltyScore:
    """A novelty score by name (see :data:`NOVELTY_SCORES`); ``options``: ``k`` or ``dims``."""
    if name == "kth_distance":
        return KthDistance(k=int(options.get("k", 5)))
    if name == "max_cosine":
        return KthDistance(k=1)
    if name in ("mahalanobis", "relative_mahalanobis"):
        return GaussianNovelty(dims=int(options.get("dims", 512)), relative=name == "relative_mahalanobis")
    raise BadInput(f"unknown novelty score {name!r}; choose one of {', '.join(NOVELTY_SCORES)}")
