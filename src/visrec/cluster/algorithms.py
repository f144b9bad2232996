"""Clustering of L2-normalised embeddings from any encoder: spectral (k-nearest-neighbour graph), agglomerative
(cosine), HDBSCAN, k-means.

Automatic k (``auto="eigengap"``, the default): the widest gap among the smallest eigenvalues of the normalised
Laplacian of the mutual-neighbour graph (each item linked to its round(sqrt(n)) nearest, cosine). k groups that
link within but hardly across leave k eigenvalues near 0 and a jump after them. Chosen over the best silhouette
(the former rule) by ``benchmarks/cluster_auto_k.py`` across naruto_roboflow, cifar10_subset, caltech101_dev
and deepface_celebs: silhouette kept rising with k on video frames (30 clusters for 4 characters).

Every method returns ``(n,)`` int64 labels ``0..k-1``, ``-1`` for noise (HDBSCAN's, and members of clusters smaller
than ``min_size``), numbered by decreasing cluster size so results are stable and readable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.errors import BadInput

METHODS = ("spectral", "agglomerative", "hdbscan", "kmeans")
AUTO_RULES = ("eigengap", "silhouette")
FACES_MIN_SIZE = 2
"""Face clustering's smallest cluster: a face seen once (often a passer-by in the background) is reported as
unclustered rather than as a person of its own. On deepface_celebs this turns 15 clusters for 13 people into 14;
every person with two photos or more keeps a cluster (``benchmarks/cluster_auto_k.py``)."""


@dataclass(frozen=True)
class ClusterConfig:
    """How to cluster.

    ``k``: number of clusters, or None for automatic (agglomerative: ``distance_threshold`` when given; else the
    ``auto`` rule over ``k_range``: ``eigengap`` (default) or ``silhouette``; HDBSCAN is always automatic).
    ``distance_threshold``: cosine distance at which agglomerative stops merging (e.g. a face verification
    threshold). ``min_cluster_size``: HDBSCAN's smallest group. ``min_size`` (any method): members of clusters
    smaller than this are labeled noise (-1, "unclustered"); 1 keeps every cluster. ``seed`` fixes k-means.
    """

    method: str = "spectral"
    k: int | None = None
    distance_threshold: float | None = None
    linkage: str = "average"
    min_cluster_size: int = 2
    k_range: tuple[int, int] = (2, 30)
    seed: int = 0
    auto: str = "eigengap"
    min_size: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInput(f"unknown clustering method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.k is not None and self.k < 1:
            raise BadInput(f"k must be >= 1, got {self.k}")
        if self.auto not in AUTO_RULES:
            raise BadInput(f"unknown automatic-k rule {self.auto!r}; use one of {', '.join(AUTO_RULES)}")
        if self.min_size < 1:
            raise BadInput(f"min_size must be >= 1 (1 keeps every cluster), got {self.min_size}")


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0.. by decreasing size (ties: first appearance); -1 stays -1."""
    labels = np.asarray(labels, np.int64)
    keep = labels[labels >= 0]
    uniq, first, counts = np.unique(keep, return_index=True, return_counts=True)
    order = uniq[np.lexsort((first, -counts))]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping.get(int(x), -1) for x in labels], np.int64)


def drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``(n,)`` int labels with the members of clusters smaller than ``min_size`` set to -1 (noise)."""
    labels = np.asarray(labels, np.int64).copy()
    values, counts = np.unique(labels[labels >= 0], return_counts=True)
    labels[np.isin(labels, values[counts < min_size])] = -1
    return labels


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


def neighbour_graph(x: np.ndarray, neighbours: int | None = None) -> Any:
    """Symmetric sparse ``(n, n)`` affinities linking each unit row of ``x`` to its ``neighbours`` nearest (cosine;
    default round(sqrt(n)), at least 2), either way round.

    Edge weights are ``exp(-d_ij^2 / (s_i s_j))`` with ``s_i`` the distance from i to its farthest linked
    neighbour (local scaling, Zelnik-Manor & Perona 2004): dense and sparse regions weigh alike.
    """
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    nn = min(n - 1, neighbours or max(2, round(np.sqrt(n))))
    dist, idx = NearestNeighbors(n_neighbors=nn + 1, metric="cosine").fit(x).kneighbors(x)
    dist, idx = np.maximum(dist[:, 1:], 0.0), idx[:, 1:]  # drop each item itself
    scale = np.maximum(dist[:, -1], 1e-6)
    weights = np.exp(-(dist**2) / (scale[:, None] * scale[idx]))
    graph = csr_matrix((weights.ravel(), (np.repeat(np.arange(n), nn), idx.ravel())), shape=(n, n))
    return graph.maximum(graph.T).tocsr()


def eigengap_k(graph: Any, k_range: tuple[int, int]) -> int:
    """The k in ``k_range`` after which the smallest eigenvalues of the graph's normalised Laplacian jump most."""
    from scipy.sparse import diags
    from scipy.sparse.linalg import eigsh

    n = graph.shape[0]
    lo, hi = max(2, k_range[0]), min(k_range[1], n - 1)
    if hi < lo:
        return 1
    deg = np.asarray(graph.sum(axis=1)).ravel()
    scale = diags(1.0 / np.sqrt(np.maximum(deg, 1e-12)))
    affinity = (scale @ graph @ scale).astype(np.float64)  # eigenvalues 1 - those of the normalised Laplacian
    m = min(hi + 1, n)
    if n <= 1000 or m >= n - 1:
        top = np.linalg.eigvalsh(affinity.toarray())[::-1][:m]
    else:
        top = np.sort(eigsh(affinity, k=m, which="LA", return_eigenvectors=False))[::-1]
    lap = 1.0 - top  # ascending
    ks = np.arange(lo, hi + 1)
    return int(ks[int(np.argmax(lap[ks] - lap[ks - 1]))])


def _spectral(x: np.ndarray, k: int, seed: int, graph: Any = None) -> np.ndarray:
    from sklearn.cluster import SpectralClustering

    if k <= 1 or len(x) <= 2:
        return np.zeros(len(x), np.int64)
    graph = neighbour_graph(x) if graph is None else graph
    model = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr", random_state=seed)
    with warnings.catch_warnings():  # a graph of separate groups is the easy case, not a problem
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return np.asarray(model.fit_predict(graph), np.int64)


def auto_k(x: np.ndarray, cfg: ClusterConfig, graph: Any = None) -> int:
    """The number of clusters for unit rows ``x (n, d)`` by ``cfg.auto`` over ``cfg.k_range`` (clipped to n-1):
    ``eigengap`` of the neighbour graph (see the module docstring) or the best mean silhouette for ``cfg.method``."""
    lo, hi = cfg.k_range
    hi = min(hi, len(x) - 1)
    if hi < max(2, lo):
        return 1
    if cfg.auto == "eigengap":
        return eigengap_k(neighbour_graph(x) if graph is None else graph, (lo, hi))
    best, best_k = -2.0, max(2, lo)
    for k in range(max(2, lo), hi + 1):
        labels = _fixed_k(x, k, cfg, graph)
        score = silhouette(x, labels)
        if score > best:
            best, best_k = score, k
    return best_k


def _fixed_k(x: np.ndarray, k: int, cfg: ClusterConfig, graph: Any = None) -> np.ndarray:
    if cfg.method == "kmeans":
        return _kmeans(x, k, cfg.seed)
    if cfg.method == "spectral":
        return _spectral(x, k, cfg.seed, graph)
    return _agglomerative(x, k, None, cfg.linkage)


def cluster(vectors: np.ndarray, config: ClusterConfig | None = None) -> np.ndarray:
    """Cluster ``(n, d)`` vectors (cosine geometry); returns ``(n,)`` int64 labels, -1 for noise (HDBSCAN's, and
    the members of clusters smaller than ``config.min_size``)."""
    cfg = config or ClusterConfig()
    labels = _cluster(_normalize(vectors), cfg)
    return relabel_by_size(drop_small(labels, cfg.min_size)) if cfg.min_size > 1 else labels


def _cluster(x: np.ndarray, cfg: ClusterConfig) -> np.ndarray:
    if cfg.method == "hdbscan":
        return relabel_by_size(_hdbscan(x, cfg.min_cluster_size))
    if cfg.method == "agglomerative" and cfg.k is None and cfg.distance_threshold is not None:
        return relabel_by_size(_agglomerative(x, None, cfg.distance_threshold, cfg.linkage))
    graph = neighbour_graph(x) if cfg.method == "spectral" and len(x) > 2 else None
    k = cfg.k if cfg.k is not None else auto_k(x, cfg, graph)
    if k > len(x):
        raise BadInput(f"k={k} is more than the {len(x)} items to cluster")
    if k <= 1:
        return np.zeros(len(x), np.int64)
    return relabel_by_size(_fixed_k(x, k, cfg, graph))
