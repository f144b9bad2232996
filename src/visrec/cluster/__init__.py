"""Clustering for any encoder's embeddings, quality against labels, and fixes that persist."""

from __future__ import annotations

from visrec.cluster.algorithms import METHODS, ClusterConfig, cluster, relabel_by_size, silhouette
from visrec.cluster.edits import Clustering, names_from_labels
from visrec.cluster.metrics import ari, cluster_quality, nmi, purity
from visrec.cluster.sheet import contact_sheet

__all__ = [
    "METHODS", "ClusterConfig", "Clustering", "ari", "cluster", "cluster_quality", "contact_sheet",
    "names_from_labels", "nmi", "purity", "relabel_by_size", "silhouette",
]  # fmt: skip
