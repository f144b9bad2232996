"""Name clusters from a labeled index: the majority label of the members' nearest indexed items (within a
distance), else, where the encoder has a text side, the label whose text prompts best match the cluster; else
the cluster stays unnamed.

Pure numpy over arrays the caller provides (:mod:`visrec.cluster.sources` reads them from index folders).
Similarities are cosine; distances are ``1 - cosine``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from visrec.cluster.edits import NOISE, Clustering
from visrec.errors import BadInput, DimensionMismatch

AUTO_NAME = re.compile(r"^c\d+$")


@dataclass(frozen=True)
class NamingConfig:
    """How clusters are named.

    ``k``: nearest indexed items looked up per member. ``max_distance``: neighbours farther than this cosine
    distance do not vote (None: all vote). ``min_share``: the winning label needs at least this share of all
    ``members x k`` votes (far neighbours count as votes for nobody), so a cluster of unknown people stays
    unnamed. ``min_text_similarity``: zero-shot names need this cosine between the cluster's mean joint vector and
    the label's prompts, and ``min_text_margin`` over the runner-up label.
    """

    k: int = 5
    max_distance: float | None = None
    min_share: float = 0.5
    min_text_similarity: float = 0.3
    min_text_margin: float = 0.02

    def __post_init__(self) -> None:
        if self.k < 1:
            raise BadInput(f"k must be >= 1, got {self.k}")
        if not 0.0 < self.min_share <= 1.0:
            raise BadInput(f"min_share must be within (0, 1], got {self.min_share}")


@dataclass(frozen=True)
class ClusterName:
    """The name found for one cluster: ``name`` None = unnamed; ``source``: ``neighbors``, ``zero-shot`` or
    ``none``; ``score``: the vote share (neighbours) or the prompt cosine (zero-shot); ``runner_up``: the next
    best label, if any."""

    cluster: str
    name: str | None
    source: str
    score: float
    runner_up: str | None = None


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def name_by_neighbors(
    members: Mapping[str, Sequence[int]],
    vectors: np.ndarray,
    index_vectors: np.ndarray,
    index_labels: Sequence[str],
    config: NamingConfig | None = None,
) -> dict[str, ClusterName]:
    """Cluster name -> :class:`ClusterName` by majority vote of the members' nearest indexed items.

    ``members``: cluster -> row numbers of ``vectors (n, d)``; ``index_vectors (m, d)`` with ``index_labels``.
    """
    cfg = config or NamingConfig()
    if len(index_vectors) != len(index_labels) or len(index_labels) == 0:
        raise BadInput(f"need one label per indexed vector and at least one; got {len(index_vectors)} vectors, "
                       f"{len(index_labels)} labels")  # fmt: skip
    if np.shape(vectors)[1] != np.shape(index_vectors)[1]:
        raise DimensionMismatch(
            f"cluster vectors are {np.shape(vectors)[1]}-d but the index's are {np.shape(index_vectors)[1]}-d; "
            "cluster with the index's encoder"
        )
    k = min(cfg.k, len(index_labels))
    sims = _unit(vectors) @ _unit(index_vectors).T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    out = {}
    for name, rows in members.items():
        votes: Counter[str] = Counter()
        for r in rows:
            for j in nearest[r]:
                if cfg.max_distance is None or 1.0 - sims[r, j] <= cfg.max_distance:
                    votes[str(index_labels[j])] += 1
        ranked = votes.most_common(2)
        share = ranked[0][1] / (len(rows) * k) if ranked else 0.0
        second = ranked[1][0] if len(ranked) > 1 else None
        if ranked and share >= cfg.min_share:
            out[name] = ClusterName(name, ranked[0][0], "neighbors", share, second)
        else:
            out[name] = ClusterName(name, None, "none", share, ranked[0][0] if ranked else None)
    return out


def name_by_text(
    members: Mapping[str, Sequence[int]],
    joint: np.ndarray,
    label_vectors: np.ndarray,
    labels: Sequence[str],
    config: NamingConfig | None = None,
) -> dict[str, ClusterName]:
    """Zero-shot: cluster name -> the label whose prompt vector (``label_vectors (c, dj)``, unit rows) is closest
    to the mean of the members' ``joint (n, dj)`` vectors, when similar and distinct enough."""
    cfg = config or NamingConfig()
    if len(label_vectors) != len(labels) or len(labels) == 0:
        raise BadInput(
            f"need one text vector per label and at least one label; got {len(label_vectors)}, {len(labels)}"
        )
    out = {}
    for name, rows in members.items():
        centre = _unit(np.asarray(joint, np.float64)[list(rows)].mean(0))
        sims = _unit(label_vectors) @ centre
        order = np.argsort(-sims, kind="stable")
        best = float(sims[order[0]])
        margin = best - float(sims[order[1]]) if len(order) > 1 else best
        second = str(labels[order[1]]) if len(order) > 1 else None
        ok = best >= cfg.min_text_similarity and margin >= cfg.min_text_margin
        label = str(labels[order[0]]) if ok else None
        out[name] = ClusterName(name, label, "zero-shot" if ok else "none", best, second)
    return out


def cluster_members(result: Clustering, ids: Sequence[str]) -> dict[str, list[int]]:
    """Cluster name -> row numbers (positions in ``ids``) of its items; noise and manually named clusters are left
    out (only automatic names ``c0, c1, ...`` are named)."""
    row = {item: i for i, item in enumerate(ids)}
    return {
        name: [row[i] for i in items if i in row]
        for name, items in result.clusters().items()
        if name != NOISE and AUTO_NAME.match(name)
    }


def name_clusters(
    result: Clustering,
    ids: Sequence[str],
    vectors: np.ndarray,
    index_vectors: np.ndarray,
    index_labels: Sequence[str],
    zero_shot: Callable[[Mapping[str, Sequence[int]]], dict[str, ClusterName]] | None = None,
    config: NamingConfig | None = None,
) -> list[ClusterName]:
    """Name the automatically named clusters of ``result`` in place (neighbours first, then ``zero_shot`` for those
    left unnamed) and record every decision in ``result.info["naming"]``. Two clusters given the same label are
    kept apart as ``label``, ``label (2)``. Returns one :class:`ClusterName` per cluster considered."""
    members = cluster_members(result, ids)
    found = name_by_neighbors(members, vectors, index_vectors, index_labels, config)
    unnamed = {c: members[c] for c, n in found.items() if n.name is None}
    if zero_shot is not None and unnamed:
        found |= {c: n for c, n in zero_shot(unnamed).items() if n.name is not None}
    used = {v for v in result.assignment.values() if not AUTO_NAME.match(v)}
    rename = {}
    for cname, n in found.items():
        if n.name is None:
            continue
        label, i = n.name, 2
        while label in used:
            label, i = f"{n.name} ({i})", i + 1
        used.add(label)
        rename[cname] = label
    result.assignment = {item: rename.get(c, c) for item, c in result.assignment.items()}
    result.info["naming"] = [asdict(n) | {"renamed_to": rename.get(n.cluster)} for n in found.values()]
    return list(found.values())
