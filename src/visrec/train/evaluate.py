"""Before/after figures of an embedding on one split, with the project's metrics (:mod:`visrec.eval.metrics`).

Queries are the test rows; the gallery is the train + val rows. Classification is the project's kNN vote
(:class:`visrec.classify.KnnClassifier`, uncalibrated) over the gallery; retrieval ranks the whole gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visrec.eval.metrics import ClassificationMetrics, RetrievalMetrics


def neighbours(query: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` gallery rows by cosine for each query row: ``(q, k)`` int64 positions and float32 scores."""
    sims = np.asarray(query, np.float32) @ np.asarray(gallery, np.float32).T
    k = min(k, sims.shape[1])
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def knn_answers(
    query: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray, classes: Sequence[str], k: int = 10
) -> list[str]:
    """The kNN vote's best class per query (no "unknown": raw candidates)."""
    from visrec.classify import KnnClassifier

    pos, sims = neighbours(query, gallery, k)
    labels = [[(classes[int(gallery_labels[j])],) for j in row] for row in pos]
    return [p.candidate for p in KnnClassifier(k=k).predict_from_neighbors(labels, sims)]


def classification(truth: np.ndarray, answers: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
    """``top1`` and ``macro_f1`` of class-name ``answers`` against integer ``truth``."""
    m = ClassificationMetrics(list(classes))
    m.update([classes[int(t)] for t in truth], list(answers))
    out = m.compute()
    return {"top1": out["top1"], "macro_f1": out["macro_f1"]}


def retrieval(query: np.ndarray, qy: np.ndarray, gallery: np.ndarray, gy: np.ndarray) -> dict[str, float]:
    """Image-to-image retrieval of the gallery: ``r_at_1``, ``r_at_5`` (a same-label hit in the top k) and
    ``map_at_r``."""
    n_rel = (qy[:, None] == gy[None, :]).sum(axis=1)
    depth = int(max(10, n_rel.max(initial=0)))
    pos, _ = neighbours(query, gallery, depth)
    m = RetrievalMetrics((1, 5, 10))
    m.update(gy[pos] == qy[:, None], n_rel)
    out = m.compute()
    return {"r_at_1": out["top1"], "r_at_5": out["top5"], "map_at_r": out["map_at_r"]}


def embedding_figures(
    z: np.ndarray, labels: np.ndarray, query_rows: np.ndarray, gallery_rows: np.ndarray,
    classes: Sequence[str], k: int = 10,
) -> dict[str, Any]:  # fmt: skip
    """kNN ``top1`` / ``macro_f1`` and retrieval figures of ``query_rows`` against ``gallery_rows`` of ``z``."""
    q, g = z[query_rows], z[gallery_rows]
    qy, gy = labels[query_rows], labels[gallery_rows]
    answers = knn_answers(q, g, gy, classes, k)
    return classification(qy, answers, classes) | retrieval(q, qy, g, gy)


def score(figures: dict[str, Any]) -> float:
    """One number to early-stop on: kNN top-1 plus mAP@R (both 0..1), so ties in top-1 still move."""
    return float(figures["top1"] + figures["map_at_r"])
