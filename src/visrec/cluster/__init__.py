"""Clustering for any encoder's embeddings, quality against labels, fixes that persist, names from an index."""

from __future__ import annotations

from visrec.cluster.algorithms import METHODS, ClusterConfig, cluster, relabel_by_size, silhouette
from visrec.cluster.edits import Clustering, names_from_labels
from visrec.cluster.metrics import ari, cluster_quality, nmi, purity
from visrec.cluster.naming import ClusterName, NamingConfig, name_by_neighbors, name_by_text, name_clusters
from visrec.cluster.sheet import contact_sheet

__all__ = [
    "METHODS", "ClusterConfig", "ClusterName", "Clustering", "NamingConfig", "ari", "cluster", "cluster_quality",
    "contact_sheet", "name_by_neighbors", "name_by_text", "name_clusters", "names_from_labels", "nmi", "purity",
    "relabel_by_size", "silhouette",
]  # fmt: skip
