"""The whitened kNN metric of an index generation (:mod:`visrec.classify.whitening`).

Once an index uses it (``visrec index --knn-metric whitened`` or ``visrec calibrate --metric whitened``), every commit
that changes a labeled item (and ``visrec calibrate``) fits it on the generation's single-label items and writes it
beside the other derived files: ``whitening.json`` (schema, shrinkage, sizes and a digest of the ids, labels and
vectors it was fitted on; or why it was skipped) and ``whitening.npz`` (``mean``, ``basis``, ``factor`` float32, read
without pickle). A generation only ever reads its own files, and the digest is checked against the items it holds, so
a fit made for other items is refused instead of used. The labeled items are whitened once per opened generation; a
kNN query is whitened the same way and its neighbours are found among them by exact matrix products.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visrec.classify.whitening import (
    SHRINK,
    WithinClassWhitening,
    fit_within_class_whitening,
    whitening_arrays,
    whitening_from_arrays,
    whitening_skip_reason,
)
from visrec.errors import BadInput, DimensionMismatch, IndexCorrupt, NotCalibrated
from visrec.npyio import load_npz

WHITENING_JSON = "whitening.json"
WHITENING_ARRAYS = "whitening.npz"
WHITENING_SCHEMA = 1


def labeled_digest(ids: Sequence[str], vectors: np.ndarray, labels: Sequence[Sequence[str]]) -> str:
    """sha1 of the labeled items (id, labels, float32 vector bytes), in id order: what a whitening was fitted on."""
    h = hashlib.sha1()
    for i in sorted(range(len(ids)), key=lambda j: ids[j]):
        if labels[i]:
            h.update(f"{ids[i]}\t{'|'.join(labels[i])}\n".encode("utf-8", "surrogatepass"))
            h.update(np.ascontiguousarray(vectors[i], np.float32).tobytes())
    return h.hexdigest()


def whitening_files(ids: Sequence[str], vectors: np.ndarray, labels: Sequence[Sequence[str]]) -> dict[str, bytes]:
    """``{WHITENING_JSON, WHITENING_ARRAYS}`` of a generation's items (``vectors`` ``(n, d)`` float32 unit rows,
    ``labels[i]`` the label tuple of ``ids[i]``); only the JSON, with the reason, when no whitening can be fitted."""
    reason = whitening_skip_reason(labels)
    info: dict[str, Any] = {"schema": WHITENING_SCHEMA, "fitted": reason is None}
    if reason is not None:
        return {WHITENING_JSON: json.dumps({**info, "reason": reason}).encode()}
    from visrec.blas import blas_threads, free_cores

    single = [i for i, row in enumerate(labels) if len(row) == 1]
    with blas_threads(free_cores()):  # a core another process holds would stall every BLAS thread (visrec.blas)
        fit = fit_within_class_whitening(vectors[single], [labels[i][0] for i in single], SHRINK)
    buf = io.BytesIO()
    np.savez(buf, **whitening_arrays(fit))  # type: ignore[arg-type]
    info |= {"shrink": SHRINK, "fitted_items": len(single), "dim": fit.dim, "rank": int(fit.basis.shape[1]),
             "digest": labeled_digest(ids, vectors, labels)}  # fmt: skip
    return {WHITENING_JSON: json.dumps(info).encode(), WHITENING_ARRAYS: buf.getvalue()}


def whitening_info(gen: Path) -> dict[str, Any] | None:
    """The generation's ``whitening.json`` (None when it has none: indexed before the metric existed)."""
    p = gen / WHITENING_JSON
    if not p.is_file():
        return None
    try:
        return dict(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        raise IndexCorrupt(f"{p} cannot be read ({e}); run: visrec calibrate INDEX") from None


@dataclass(frozen=True)
class WhitenedGallery:
    """The labeled items of one generation in the whitened space: ``labels[i]`` and ``vectors`` ``(n, d)``
    float32 unit rows, mapped by ``whitening``."""

    labels: tuple[tuple[str, ...], ...]
    vectors: np.ndarray
    whitening: WithinClassWhitening

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[tuple[str, ...]]], np.ndarray]:
        """``(labels (q, k'), cosines (q, k') float64)`` of the ``k`` nearest labeled items of ``(q, d)`` query
        vectors in the whitened space, best first (``k' = min(k, n)``)."""
        from visrec.classify.loo import _CELLS_PER_CHUNK, top_neighbours

        q = self.whitening.transform(queries)
        kk = min(k, self.vectors.shape[0])
        labels: list[list[tuple[str, ...]]] = []
        scores = np.zeros((q.shape[0], kk))
        step = max(1, _CELLS_PER_CHUNK // max(1, self.vectors.shape[0]))
        for start in range(0, q.shape[0], step):
            top, top_s = top_neighbours(q[start : start + step] @ self.vectors.T, kk)
            labels += [[self.labels[j] for j in row] for row in top]
            scores[start : start + step] = top_s
        return labels, scores


def whitened_gallery(
    gen: Path, root: Path, ids: Sequence[str], vectors: np.ndarray, labels: Sequence[Sequence[str]]
) -> WhitenedGallery:
    """The whitened labeled gallery of generation folder ``gen`` of index ``root`` holding these items.

    Raises ``NotCalibrated`` when the generation has no fit (or one was skipped, with the reason) and
    ``IndexCorrupt`` when its files are unreadable or were fitted on other items; each names the fix."""
    info = whitening_info(gen)
    fix = f"run: visrec calibrate {root}"
    if info is None:
        raise NotCalibrated(f"{root} holds no whitened kNN metric (indexed before it existed); {fix}")
    if not info.get("fitted"):
        raise NotCalibrated(f"{root} has no whitened kNN metric: {info.get('reason')}; use the cosine metric")
    if info.get("schema") != WHITENING_SCHEMA:
        raise NotCalibrated(f"{gen / WHITENING_JSON} has schema {info.get('schema')!r}, not {WHITENING_SCHEMA}; {fix}")
    if info.get("digest") != labeled_digest(ids, vectors, labels):
        raise IndexCorrupt(f"{gen / WHITENING_JSON} was fitted on other items than {root} holds now; {fix}")
    try:
        whitening = whitening_from_arrays(load_npz(gen / WHITENING_ARRAYS))
    except (OSError, ValueError, KeyError, BadInput, DimensionMismatch) as e:
        raise IndexCorrupt(f"{gen / WHITENING_ARRAYS} cannot be read ({e}); {fix}") from None
    keep = [i for i, row in enumerate(labels) if row]
    labs = tuple(tuple(labels[i]) for i in keep)
    return WhitenedGallery(labs, whitening.transform(vectors[keep]), whitening)
