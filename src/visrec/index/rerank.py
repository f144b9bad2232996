"""Image search re-ranked in the index's centred space, with average query expansion.

Pooled CNN features are non-negative, so every vector of an index shares a large common component and raw cosine
similarity is dominated by it. :func:`rerank_search` takes the store's raw top ``DEPTH * k`` candidates, moves
query and candidates onto the index's mean (``x - mean``, then unit length), expands the query with the mean of
its ``EXPAND`` best candidates there (average query expansion), and orders the candidates by their cosine with
the expanded query. A hit's ``score`` is that cosine; ``rerank=False`` in :meth:`visrec.index.reader.Index.
search_vectors` keeps the store's plain cosine.

Chosen on the train splits of the three dev sets (each train image queried against the other train images,
its near-duplicate group left out; ``benchmarks/search_rerank.py``): mean mAP@R 0.469 (plain cosine) -> 0.543.
The mean is estimated on at most ``MEAN_SAMPLE`` items spread evenly over the store, once per generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from visrec.encoders.common import l2_normalize
from visrec.types import Hit, Neighbors

if TYPE_CHECKING:
    from visrec.index.snapshot import Snapshot

EXPAND = 5
DEPTH = 4
MEAN_SAMPLE = 5_000
SAME = 1e-4  # centred cosine of a copy of the query: 1 up to float32 rounding of its encoding


def store_mean(s: Snapshot) -> np.ndarray:
    """``(dim,)`` float32 mean of the snapshot's image vectors (an even sample of at most ``MEAN_SAMPLE``)."""
    ids = s.store.ids()
    if not ids:
        return np.zeros(s.store.dim, np.float32)
    step = max(1, len(ids) // MEAN_SAMPLE)
    vectors, _ = s.store.get(ids[::step])
    return np.asarray(vectors, np.float64).mean(axis=0).astype(np.float32)


def expanded_scores(query: np.ndarray, cand: np.ndarray, expand: int = EXPAND) -> np.ndarray:
    """``(K,)`` cosine of each centred unit candidate row of ``cand`` ``(K, dim)`` with the centred unit ``query``
    ``(dim,)`` expanded by the sum of its ``expand`` best candidates (``expand=0`` or one candidate: no expansion).

    A candidate that is the query itself (cosine >= ``1 - SAME``, an indexed copy of the query image) keeps its
    unexpanded score, so it stays first; expansion can otherwise rank a typical neighbour above it.
    """
    plain = cand @ query
    if expand <= 0 or len(cand) < 2:
        return np.asarray(plain, np.float32)
    top = np.argsort(-plain, kind="stable")[:expand]
    scores = cand @ l2_normalize((query + cand[top].sum(axis=0))[None, :])[0]
    return np.asarray(np.where(plain >= 1.0 - SAME, np.maximum(plain, scores), scores), np.float32)


def rerank_search(
    s: Snapshot, queries: np.ndarray, k: int, where: str | None = None, expand: int = EXPAND
) -> list[list[Hit]]:
    """Top-``k`` hits per query vector ``(q, dim)``, re-ranked as the module says (``expand=0``: centring only)."""
    q = np.asarray(queries, np.float32)
    nb = s.store.search(q, DEPTH * k, where)
    found = sorted({str(i) for i in nb.ids.ravel() if i != ""})
    if not found:
        return s.hits(nb)
    vectors, _ = s.store.get(found)
    mean = s.gallery_mean
    cand = l2_normalize(np.asarray(vectors, np.float32) - mean)  # (u, dim)
    pos = {i: j for j, i in enumerate(found)}
    out_ids = np.full((len(q), k), "", dtype=object)
    out_scores = np.full((len(q), k), -np.inf, np.float32)
    for r, (row_ids, query) in enumerate(zip(nb.ids, l2_normalize(q - mean), strict=True)):
        rows = np.array([pos[str(i)] for i in row_ids if i != ""], np.int64)
        scores = expanded_scores(query, cand[rows], expand)
        order = np.argsort(-scores, kind="stable")[:k]
        out_ids[r, : len(order)] = [found[j] for j in rows[order]]
        out_scores[r, : len(order)] = scores[order]
    return s.hits(Neighbors(out_ids, out_scores))
