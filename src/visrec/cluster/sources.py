"""Where cluster names come from: a face index folder (``faces.json``) or an image index folder (``visrec index``).

A :class:`NameSource` holds the labeled vectors to vote with, the distance beyond which a neighbour does not vote,
and, for an image index whose encoder has a CLIP-like text side (not the label bridge), a zero-shot namer over
the index's label names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visrec.cluster.naming import ClusterName, NamingConfig, name_by_text
from visrec.errors import BadInput, EmptyDataset


@dataclass
class NameSource:
    """Labeled vectors of an index. ``kind``: ``"faces"`` or ``"images"``; ``max_distance``: the index's own
    same-identity distance (face calibration), or None; ``encoder``: the image index's encoder (None for faces);
    ``text_labels``: label names usable as zero-shot prompts (empty when the encoder has no text side); ``index``: the
    opened :class:`visrec.index.Index` (images only)."""

    kind: str
    path: Path
    vectors: np.ndarray
    labels: list[str]
    max_distance: float | None = None
    encoder: Any = None
    text_labels: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    index: Any = None

    def zero_shot(
        self, joint: np.ndarray | None, config: NamingConfig
    ) -> Callable[[Mapping[str, Sequence[int]]], dict[str, ClusterName]] | None:
        """A zero-shot namer over ``joint`` (the clustered items' joint vectors), or None when unsupported."""
        if joint is None or not self.text_labels or self.encoder is None:
            return None
        from visrec.classify.zeroshot import prompt_vectors

        texts = prompt_vectors(self.text_labels, lambda t: self.encoder.encode_texts(t))
        labels = self.text_labels
        return lambda members: name_by_text(members, joint, texts, labels, config)


def _faces(path: Path) -> NameSource:
    from visrec.faces import FaceGallery
    from visrec.faces.pipeline import DEFAULT_THRESHOLDS

    g = FaceGallery.load(path)
    if not g.rows:
        raise EmptyDataset(f"{path}: the face index has no face to name clusters with")
    emb = g.pipeline.get("embedder", {})
    thr = g.calibration.threshold if g.calibration else DEFAULT_THRESHOLDS.get(str(emb.get("name")))
    return NameSource("faces", path, g.vectors, g.labels, thr, info={"pipeline": g.pipeline})


def zero_shot_labels(index: Any, labels: Sequence[str]) -> list[str]:
    """The label names usable as zero-shot prompts: none when the index has no joint space, or when its text side
    is the ImageNet label bridge (it knows everyday objects, not the names of people or characters, and named a
    cluster of celebrity photos "Tsunade")."""
    if index.joint is None or getattr(index.encoder, "bridge", None) is not None:
        return []
    return sorted(set(labels))


def _images(path: Path) -> NameSource:
    from visrec.index import Index

    index = Index(path)
    vecs, labels = [], []
    for _, v, metas in index.store.export():
        for row, m in zip(v, metas, strict=True):
            if m.get("labels"):
                vecs.append(row)
                labels.append(str(m["labels"][0]))
    if not labels:
        raise EmptyDataset(f"{path}: the index has no labeled image to name clusters with")
    text = zero_shot_labels(index, labels)
    info = {"encoder": index.encoder_info.get("name"), "fingerprint": index.encoder_info.get("fingerprint")}
    return NameSource("images", path, np.array(vecs, np.float32), labels, None, index.encoder, text, info, index)


def load_name_source(path: str | Path) -> NameSource:
    """Open a face index (``faces.json``) or an image index folder as a :class:`NameSource`."""
    p = Path(path)
    if (p / "faces.json").is_file():
        return _faces(p)
    if not p.is_dir():
        raise BadInput(f"{p}: no such index folder; build one with `visrec index` or `visrec faces index`")
    return _images(p)


def name_from_source(
    result: Any,
    ids: Sequence[str],
    vectors: np.ndarray,
    source: NameSource,
    joint: np.ndarray | None = None,
    config: NamingConfig | None = None,
) -> list[ClusterName]:
    """Name the clusters of ``result`` (a :class:`visrec.cluster.Clustering`) from ``source``; the source's own
    distance is used when ``config.max_distance`` is None. Records the source in ``result.info``."""
    from dataclasses import replace

    from visrec.cluster.naming import name_clusters

    cfg = config or NamingConfig()
    if cfg.max_distance is None and source.max_distance is not None:
        cfg = replace(cfg, max_distance=source.max_distance)
    names = name_clusters(result, ids, vectors, source.vectors, source.labels, source.zero_shot(joint, cfg), cfg)
    result.info["named_from"] = {
        "kind": source.kind, "path": str(source.path), "max_distance": cfg.max_distance, "k": cfg.k,
        "min_share": cfg.min_share, "zero_shot_labels": len(source.text_labels),
    }  # fmt: skip
    return names
