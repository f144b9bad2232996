"""Clustering methods on separable synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.cluster import ClusterConfig, cluster, cluster_quality
from visrec.errors import BadInput


def _blobs(k: int = 4, per: int = 12, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    x = np.concatenate([c + rng.normal(0, 0.08, (per, dim)) for c in centres])
    return x.astype(np.float32), [i for i in range(k) for _ in range(per)]


@pytest.mark.parametrize(
    "cfg",
    [
        ClusterConfig("spectral", k=4),
        ClusterConfig("spectral"),
        ClusterConfig("agglomerative", k=4),
        ClusterConfig("agglomerative"),
        ClusterConfig("agglomerative", distance_threshold=0.3),
        ClusterConfig("kmeans", k=4),
        ClusterConfig("kmeans"),
        ClusterConfig("hdbscan", min_cluster_size=3),
    ],
)
def test_each_method_recovers_separated_groups(cfg: ClusterConfig) -> None:
    x, truth = _blobs()
    labels = cluster(x, cfg)
    q = cluster_quality(labels, truth)
    assert q["purity"] == 1.0 and q["nmi"] == pytest.approx(1.0), q


def test_labels_are_numbered_by_cluster_size() -> None:
    x, _ = _blobs(k=2, per=5)
    x = np.concatenate([x, x[:5] + 0.001])  # group 0 now has 10 items
    labels = cluster(x, ClusterConfig("agglomerative", k=2))
    assert (labels == 0).sum() == 10


def test_bad_config_and_too_large_k() -> None:
    with pytest.raises(BadInput, match="spectral, agglomerative, hdbscan, kmeans"):
        ClusterConfig("dbscan")
    with pytest.raises(BadInput, match="eigengap, silhouette"):
        ClusterConfig(auto="elbow")
    with pytest.raises(BadInput, match="more than the 3"):
        cluster(np.eye(3, dtype=np.float32), ClusterConfig("kmeans", k=5))


def _frames(classes: int = 4, scenes: int = 8, per: int = 4, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Video-like data: each class is several tight groups of near-identical frames (scenes) around its centre."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for c, centre in enumerate(rng.normal(size=(classes, 32))):
        for scene in centre + rng.normal(0, 0.35, (scenes, 32)):
            rows.append(scene + rng.normal(0, 0.03, (per, 32)))
            truth += [c] * per
    return np.concatenate(rows).astype(np.float32), truth


def test_automatic_k_finds_the_classes_not_the_scenes() -> None:
    x, truth = _frames()
    labels = cluster(x, ClusterConfig())  # the default: spectral, eigengap k
    q = cluster_quality(labels, truth)
    assert q["clusters"] == 4 and q["nmi"] > 0.95, q
    before = cluster(x, ClusterConfig("agglomerative", auto="silhouette"))
    assert len(set(before.tolist())) > 8  # the former rule split the classes into their scenes


def test_min_size_reports_clusters_seen_once_as_noise() -> None:
    """Four people with three photos each and two passers-by seen once: the passers-by are unclustered, every
    person keeps a cluster (people with two photos too), and without the rule each stranger is a cluster."""
    x, truth = _blobs(k=6, per=3)
    x = np.concatenate([x[:12], x[12:13], x[15:16]])  # groups 4 and 5 keep one face each
    truth = [*truth[:12], 4, 5]
    everything = cluster(x, ClusterConfig("agglomerative", distance_threshold=0.3))
    assert len(set(everything.tolist())) == 6
    labels = cluster(x, ClusterConfig("agglomerative", distance_threshold=0.3, min_size=2))
    assert labels[-2:].tolist() == [-1, -1]
    assert sorted(set(labels.tolist())) == [-1, 0, 1, 2, 3]
    assert cluster_quality(labels[:12], truth[:12])["nmi"] == pytest.approx(1.0)
    pairs = cluster(x[[0, 1, 3, 4, 12]], ClusterConfig("agglomerative", distance_threshold=0.3, min_size=2))
    assert pairs.tolist() == [0, 0, 1, 1, -1]  # two photos are enough to stay a person
    with pytest.raises(BadInput, match="min_size must be >= 1"):
        ClusterConfig(min_size=0)
