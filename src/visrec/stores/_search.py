"""Brute-force top-k by inner product in bounded memory: the reference every backend is checked against."""

from __future__ import annotations

import numpy as np

CHUNK_BYTES = 64 << 20
"""Upper bound on one block of the score matrix (queries x database rows, float32)."""
BLOCK_BYTES = 32 << 20
"""Upper bound on one gathered block of database vectors."""


def exact_topk(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    rows: np.ndarray | None = None,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``vectors`` ``(n, d)`` float32 by inner product with ``queries`` ``(q, d)``.

    Only the (sorted, unique) ``rows`` are searched when given. Returns ``(rows, scores)``, both ``(q, k')``
    with ``k' = min(k, candidates)``: ``int64`` row numbers and ``float32`` scores, best first, ties broken by
    lower row (insertion order). Memory stays near ``chunk_bytes + block_bytes`` whatever ``n`` and ``q``.
    """
    n_cand = vectors.shape[0] if rows is None else len(rows)
    q, d = queries.shape
    k = min(k, n_cand)
    if k == 0 or q == 0:
        return np.zeros((q, k), np.int64), np.zeros((q, k), np.float32)
    nb = max(1, min(n_cand, block_bytes // (4 * max(d, 1))))
    qc = max(1, chunk_bytes // (4 * nb))
    out_rows = np.empty((q, k), np.int64)
    out_scores = np.empty((q, k), np.float32)
    for q0 in range(0, q, qc):
        qs = queries[q0 : q0 + qc]
        best_r = np.zeros((len(qs), 0), np.int64)
        best_s = np.zeros((len(qs), 0), np.float32)
        for b0 in range(0, n_cand, nb):
            if rows is None:
                block_rows = np.arange(b0, min(b0 + nb, n_cand), dtype=np.int64)
                block = vectors[b0 : b0 + nb]
            else:
                block_rows = rows[b0 : b0 + nb]
                block = vectors[block_rows]
            scores = qs @ np.ascontiguousarray(block, dtype=np.float32).T
            idx = topk_indices(scores, k)
            cand_r = np.concatenate([best_r, block_rows[idx]], axis=1)
            cand_s = np.concatenate([best_s, np.take_along_axis(scores, idx, axis=1)], axis=1)
            order = np.lexsort((cand_r, -cand_s), axis=-1)[:, :k]
            best_r = np.take_along_axis(cand_r, order, axis=1)
            best_s = np.take_along_axis(cand_s, order, axis=1)
        out_rows[q0 : q0 + qc] = best_r
        out_scores[q0 : q0 + qc] = best_s
    return out_rows, out_scores


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row of ``scores`` ``(q, n)``, best first.

    Equal values are ordered by lower column, also across the k-th boundary.
    """
    q, n = scores.shape
    k = min(k, n)
    if k == n:
        part = np.broadcast_to(np.arange(n, dtype=np.int64), (q, n)).copy()
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k].astype(np.int64)
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        # argpartition picks arbitrarily among values equal to the k-th one: fix those (rare) rows exactly
        crowded = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
        for i in crowded:
            above = np.flatnonzero(scores[i] > kth[i])
            equal = np.flatnonzero(scores[i] == kth[i])
            part[i] = np.concatenate([above, equal[: k - len(above)]])
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=-1)
    return np.take_along_axis(part, order, axis=1)
