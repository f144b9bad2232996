"""Clustering by the neighbourhood structure instead of the global geometry, given the true k, on every labeled dev
set: does any of these methods separate naruto_roboflow's characters better than the default?

Usage: ``python benchmarks/cluster_neighbourhood.py [DATA_ROOT] [--cache DIR] [--per-class 40]
[--caltech-classes 12]`` (the same sets, samples and vector cache as ``benchmarks/cluster_auto_k.py``; run that
first with the same ``--cache`` to reuse its vectors).

Methods, each given the true k (no label is used except to score; every setting below is the literature's default
or the library's neighbour rule, round(sqrt(n)) neighbours, none tuned on these sets):

- the default: spectral clustering of the locally scaled neighbour graph (``visrec.cluster``);
- SCAN's clustering step (Van Gansbeke et al. 2020) on the frozen features: a linear softmax head trained so that
  each item and its nearest neighbours land in the same cluster, with an entropy term (weight 5, the paper's) that
  keeps every cluster in use; the lowest-loss head of 3 restarts (numpy, full-batch Adam);
- Louvain communities (networkx) of the unweighted k-nearest-neighbour graph, the resolution bisected until there
  are k of them (skipped when networkx is not installed);
- spectral clustering of the shared-nearest-neighbour (Jaccard of the k-NN sets) graph;
- Ward linkage restricted to the k-NN graph (merges only between neighbouring groups);
- graph smoothing: each vector averaged over its neighbours (two steps of the normalised graph), then k-means.

Prints one JSON line per set (NMI, purity, seconds per method; the k that Louvain at resolution 1 and the eigengap of
the shared-neighbour graph pick by themselves) and, for the default's partition, its "whole-scene" errors: the 3
largest blocks of >= 5 items that sit in a cluster of another label's majority, with the labels of their 3
nearest items outside the block (when those are mostly the cluster's label, no neighbourhood rule can recover them).
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from cluster_auto_k import K_RANGE, _unit, dev_set_arguments, face_sets, image_sets

from visrec.cluster import cluster_quality
from visrec.cluster.algorithms import ClusterConfig, cluster, eigengap_k


def _neighbours(x: np.ndarray) -> tuple[int, np.ndarray]:
    """The library's neighbour count for n items and each item's nearest (cosine) ``(n, nn)``."""
    nn = min(len(x) - 2, max(2, round(np.sqrt(len(x)))))
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return nn, np.argsort(-sims, axis=1)[:, :nn]


def _knn_adjacency(x: np.ndarray) -> np.ndarray:
    """Dense ``(n, n)`` 0/1 adjacency of the k-NN graph, either way round."""
    _, idx = _neighbours(x)
    a = np.zeros((len(x), len(x)))
    a[np.repeat(np.arange(len(x)), idx.shape[1]), idx.ravel()] = 1.0
    return np.maximum(a, a.T)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def scan(x: np.ndarray, k: int, entropy_weight: float = 5.0, steps: int = 200, restarts: int = 3) -> np.ndarray:
    """SCAN's clustering loss on frozen unit vectors ``x (n, d)``: -log <p_i, p_j> over neighbour pairs, plus
    ``entropy_weight`` times the negative entropy of the mean assignment. Returns ``(n,)`` cluster indices."""
    x = _unit(x - x.mean(axis=0))
    n, d = x.shape
    _, idx = _neighbours(x)
    rows, cols = np.repeat(np.arange(n), idx.shape[1]), idx.ravel()
    rng = np.random.default_rng(0)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(restarts):
        params = [rng.normal(0, 0.01, (d, k)), np.zeros(k)]
        moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
        for t in range(1, steps + 1):
            p = _softmax(x @ params[0] + params[1])
            dots = np.maximum((p[rows] * p[cols]).sum(1), 1e-12)
            mean = p.mean(axis=0)
            grad = np.zeros_like(p)
            np.add.at(grad, rows, -p[cols] / (len(rows) * dots[:, None]))
            np.add.at(grad, cols, -p[rows] / (len(rows) * dots[:, None]))
            grad += entropy_weight / n * (np.log(np.maximum(mean, 1e-12)) + 1.0)
            dz = p * (grad - (grad * p).sum(axis=1, keepdims=True))
            for param, g, (m, v) in zip(params, (x.T @ dz, dz.sum(0)), moments, strict=True):
                m[...] = 0.9 * m + 0.1 * g
                v[...] = 0.999 * v + 0.001 * g * g
                param -= 0.05 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        loss = float(-np.log(dots).mean())
        if best is None or loss < best[0]:
            best = (loss, p.argmax(axis=1))
    assert best is not None
    return best[1]


def louvain(x: np.ndarray, k: int) -> np.ndarray | None:
    """Louvain communities of the k-NN graph, resolution bisected towards k communities (None: no networkx)."""
    try:
        import networkx as nx
    except ImportError:
        return None
    graph = nx.from_numpy_array(_knn_adjacency(x))
    lo, hi, labels = 0.0, 2.0, np.zeros(len(x), np.int64)
    for _ in range(25):
        res = (lo + hi) / 2
        communities = nx.community.louvain_communities(graph, resolution=res, seed=0)
        for i, members in enumerate(communities):
            labels[list(members)] = i
        if len(communities) == k:
            break
        hi, lo = (res, lo) if len(communities) > k else (hi, res)
    return labels


def _snn_graph(x: np.ndarray) -> np.ndarray:
    """Shared-nearest-neighbour affinities: Jaccard of the k-NN sets (each with its item), on the k-NN edges."""
    a = _knn_adjacency(x)
    member = a + np.eye(len(x))
    shared = member @ member.T
    return shared / (member.sum(1)[:, None] + member.sum(1)[None, :] - shared) * a


def snn_spectral(x: np.ndarray, k: int) -> np.ndarray:
    """Spectral clustering of the shared-nearest-neighbour graph."""
    from sklearn.cluster import SpectralClustering

    model = SpectralClustering(k, affinity="precomputed", assign_labels="cluster_qr", random_state=0)
    return np.asarray(model.fit_predict(_snn_graph(x)), np.int64)


def k_rules(x: np.ndarray) -> dict[str, int]:
    """How many clusters each neighbourhood method would pick by itself: Louvain's communities at resolution 1
    (modularity's own count) and the eigengap of the shared-neighbour graph (the default's rule on that graph)."""
    from scipy.sparse import csr_matrix

    out = {"eigengap, shared-neighbour graph": eigengap_k(csr_matrix(_snn_graph(x)), K_RANGE)}
    try:
        import networkx as nx
    except ImportError:
        return out
    found = nx.community.louvain_communities(nx.from_numpy_array(_knn_adjacency(x)), resolution=1.0, seed=0)
    return out | {"Louvain, resolution 1": len(found)}


def knn_ward(x: np.ndarray, k: int) -> np.ndarray:
    """Ward linkage whose merges follow the k-NN graph."""
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(k, connectivity=_knn_adjacency(x), linkage="ward")
    return np.asarray(model.fit_predict(x), np.int64)


def smoothed_kmeans(x: np.ndarray, k: int, steps: int = 2) -> np.ndarray:
    """k-means of the vectors averaged over the normalised k-NN graph ``steps`` times."""
    from sklearn.cluster import KMeans

    a = _knn_adjacency(x)
    deg = np.sqrt(a.sum(1))
    y = x
    for _ in range(steps):
        y = (a / deg[:, None] / deg[None, :]) @ y
    return np.asarray(KMeans(k, n_init=10, random_state=0).fit_predict(_unit(y)), np.int64)


METHODS: dict[str, Callable[[np.ndarray, int], np.ndarray | None]] = {
    "spectral (default)": lambda x, k: cluster(x, ClusterConfig("spectral", k=k)),
    "SCAN head": scan,
    "Louvain, k-NN graph": louvain,
    "spectral, shared-neighbour graph": snn_spectral,
    "Ward on the k-NN graph": knn_ward,
    "graph-smoothed k-means": smoothed_kmeans,
}


def scene_errors(x: np.ndarray, labels: np.ndarray, truth: list[str]) -> list[dict[str, Any]]:
    """The 3 largest blocks of >= 5 items of one label inside a cluster whose majority is another label, and the
    labels of the 3 nearest items of each member outside the block."""
    t = np.asarray(truth)
    out = []
    for c in np.unique(labels):
        inside = labels == c
        values, counts = np.unique(t[inside], return_counts=True)
        major = values[np.argmax(counts)]
        for label in values[(values != major) & (counts >= 5)]:
            block = np.nonzero(inside & (t == label))[0]
            sims = x[block] @ x.T
            sims[:, block] = -np.inf
            near = Counter(t[np.argsort(-sims, axis=1)[:, :3]].ravel().tolist())
            out.append({"label": str(label), "in_cluster_of": str(major), "items": len(block),
                        "labels_of_their_3_nearest_outside": dict(near.most_common())})  # fmt: skip
    return sorted(out, key=lambda block: -block["items"])[:3]


def main() -> None:
    args = dev_set_arguments(__doc__.splitlines()[0]).parse_args()
    sets = image_sets(args.data, args.per_class, args.caltech_classes, args.cache) | face_sets(args.data, args.cache)
    warnings.filterwarnings("ignore", message="Graph is not fully connected")
    for name, (vecs, truth) in sets.items():
        x, k = _unit(vecs), len(set(truth))
        row: dict[str, Any] = {"n": len(truth), "true_k": k}
        for method, fn in METHODS.items():
            start = time.perf_counter()
            labels = fn(x, k)
            if labels is None:
                row[method] = "skipped: networkx is not installed"
                continue
            q = cluster_quality(labels.tolist(), truth)
            row[method] = {"nmi": round(q["nmi"], 3), "purity": round(q["purity"], 3),
                           "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
        row["k found by itself"] = k_rules(x)
        row["whole-scene errors of the default"] = scene_errors(x, METHODS["spectral (default)"](x, k), truth)
        print(json.dumps({name: row}), flush=True)


if __name__ == "__main__":
    main()
