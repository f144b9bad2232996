"""Clustering of L2-normalised embeddings from any encoder: agglomerative (cosine), HDBSCAN, k-means (auto k).

Every method returns ``(n,)`` int64 labels ``0..k-1``, ``-1`` for noise (HDBSCAN only), numbered by decreasing
cluster size so results are stable and readable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visrec.errors import BadInput

METHODS = ("agglomerative", "hdbscan", "kmeans")
AUTO_RULES = ("merge-gap", "silhouette")


@dataclass(frozen=True)
class ClusterConfig:
    """How to cluster.

    ``k``: number of clusters, or None for automatic (agglomerative: ``distance_threshold`` when given, else the
    best silhouette over ``k_range``; k-means: best silhouette; HDBSCAN is always automatic).
    ``distance_threshold``: cosine distance at which agglomerative stops merging (e.g. a face verification
    threshold). ``min_cluster_size``: HDBSCAN's smallest group. ``seed`` fixes k-means.
    """

    method: str = "agglomerative"
    k: int | None = None
    distance_threshold: float | None = None
    linkage: str = "average"
    min_cluster_size: int = 2
    k_range: tuple[int, int] = (2, 30)
    seed: int = 0
    auto: str = "merge-gap"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInput(f"unknown clustering method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.k is not None and self.k < 1:
            raise BadInput(f"k must be >= 1, got {self.k}")
        if self.auto not in AUTO_RULES:
            raise BadInput(f"unknown automatic-k rule {self.auto!r}; use one of {', '.join(AUTO_RULES)}")


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0.. by decreasing size (ties: first appearance); -1 stays -1."""
    labels = np.asarray(labels, np.int64)
    keep = labels[labels >= 0]
    uniq, first, counts = np.unique(keep, return_index=True, return_counts=True)
    order = uniq[np.lexsort((first, -counts))]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping.get(int(x), -1) for x in labels], np.int64)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise BadInput(f"clustering needs a non-empty (n, d) array, got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _agglomerative(x: np.ndarray, k: int | None, threshold: float | None, linkage: str) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if len(x) == 1:
        return np.zeros(1, np.int64)
    model = AgglomerativeClustering(
        n_clusters=k, distance_threshold=None if k is not None else threshold, metric="cosine", linkage=linkage
    )
    return np.asarray(model.fit_predict(x), np.int64)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return np.asarray(KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x), np.int64)


def _hdbscan(x: np.ndarray, min_cluster_size: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    if len(x) < max(2, min_cluster_size):
        return np.full(len(x), -1, np.int64)
    model = HDBSCAN(min_cluster_size=max(2, min_cluster_size), min_samples=1, metric="euclidean", copy=True)
    return np.asarray(model.fit_predict(x), np.int64)  # euclidean on unit rows ranks like cosine


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine silhouette (noise rows ignored); -1 when fewer than 2 clusters or every point alone."""
    from sklearn.metrics import silhouette_score

    mask = labels >= 0
    n_clusters = len(np.unique(labels[mask]))
    if n_clusters < 2 or n_clusters >= mask.sum():
        return -1.0
    return float(silhouette_score(x[mask], labels[mask], metric="cosine"))


def merge_gap_k(heights: np.ndarray, k_range: tuple[int, int]) -> int:
    """The k in ``k_range`` whose cut of a dendrogram falls in the widest gap between merge distances.

    ``heights``: the ``(n-1,)`` merge distances of an agglomerative tree over n items (monotone, as average
    linkage gives). k clusters keep the n-k closest merges and undo the rest, so the cut for k lies between
    the (n-k)-th and (n-k+1)-th smallest heights; groups that are far apart leave a wide gap there.
    """
    h = np.sort(np.asarray(heights, np.float64))
    n = len(h) + 1
    lo, hi = max(2, k_range[0]), min(k_range[1], n - 1)
    if hi < lo:
        return 1
    ks = np.arange(lo, hi + 1)
    gaps = h[n - ks] - h[n - ks - 1]
    return int(ks[int(np.argmax(gaps))])


def auto_k(x: np.ndarray, cfg: ClusterConfig) -> int:
    """The number of clusters for unit rows ``x (n, d)``: by ``cfg.auto`` over ``cfg.k_range`` (clipped to n-1).

    ``merge-gap`` (default): the widest gap between merge distances of the average-linkage cosine tree (one
    tree, any method); ``silhouette``: the k with the best mean silhouette for ``cfg.method``.
    """
    lo, hi = cfg.k_range
    hi = min(hi, len(x) - 1)
    if hi < max(2, lo):
        return 1
    if cfg.auto == "merge-gap":
        from scipy.cluster.hierarchy import linkage

        return merge_gap_k(linkage(x, method="average", metric="cosine")[:, 2], (lo, hi))
    best, best_k = -2.0, max(2, lo)
    for k in range(max(2, lo), hi + 1):
        labels = _kmeans(x, k, cfg.seed) if cfg.method == "kmeans" else _agglomerative(x, k, None, cfg.linkage)
        score = silhouette(x, labels)
        if score > best:
            best, best_k = score, k
    return best_k


def cluster(vectors: np.ndarray, config: ClusterConfig | None = None) -> np.ndarray:
    """Cluster ``(n, d)`` vectors (cosine geometry); returns ``(n,)`` int64 labels, -1 for noise."""
    cfg = config or ClusterConfig()
    x = _normalize(vectors)
    if cfg.method == "hdbscan":
        return relabel_by_size(_hdbscan(x, cfg.min_cluster_size))
    k = cfg.k
    if k is None and not (cfg.method == "agglomerative" and cfg.distance_threshold is not None):
        k = auto_k(x, cfg)
    if k is not None and k > len(x):
        raise BadInput(f"k={k} is more than the {len(x)} items to cluster")
    if cfg.method == "kmeans":
        return relabel_by_size(_kmeans(x, int(k or 1), cfg.seed))
    return relabel_by_size(_agglomerative(x, k, cfg.distance_threshold, cfg.linkage))
