"""Small frozen dataclasses that flow from stage to stage, validated on construction.

Conventions: vectors are ``float32`` row-major ``(n, d)``; images are RGB; boxes are ``xyxy`` pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import DimensionMismatch


def _check_rows(name: str, arr: np.ndarray, n: int) -> None:
    if arr.shape[0] != n:
        raise DimensionMismatch(f"{name} has {arr.shape[0]} rows, expected {n} (one per id)")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    ``id`` is stable across runs (derived from the relative path); ``path`` is relative to the dataset root
    (POSIX separators); ``labels`` is empty for an unlabeled image and holds several names for a multi-label
    one; ``group`` is the near-duplicate group when known; ``extra`` holds any other manifest column.
    ``sha256``, ``width`` and ``height`` are empty/0 until the file has been read.
    """

    id: str
    path: str
    labels: tuple[str, ...] = ()
    split: str | None = None
    sha256: str = ""
    width: int = 0
    height: int = 0
    group: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("ImageRecord.id must be a non-empty string")
        if not isinstance(self.labels, tuple):
            object.__setattr__(self, "labels", tuple(self.labels))

    @classmethod
    def of_file(cls, rel: str, labels: tuple[str, ...] = (), split: str | None = None) -> ImageRecord:
        """A record of a listed file (id and path ``rel``, non-empty) built without the dataclass ``__init__``:
        about 3x cheaper, which counts when a folder of 200,000 files is listed on every update."""
        obj = object.__new__(cls)
        obj.__dict__.update(id=rel, path=rel, labels=labels, split=split, sha256="", width=0, height=0,
                            group=None, extra={})  # fmt: skip
        return obj

    @property
    def label(self) -> str | None:
        """The single label, or None when the image is unlabeled or multi-label."""
        return self.labels[0] if len(self.labels) == 1 else None

    def field(self, name: str) -> Any:
        """Value of a named field or manifest column (used by filter expressions)."""
        if name == "label":
            return self.label
        if name in ("id", "path", "split", "sha256", "width", "height", "group", "labels"):
            return getattr(self, name)
        return self.extra.get(name)


@dataclass(frozen=True)
class LabeledSet:
    """A dataset: a root folder and its records. ``classes`` are in natural sort order."""

    root: Path
    records: tuple[ImageRecord, ...]
    classes: tuple[str, ...]
    source: str = "folder"

    def __post_init__(self) -> None:
        ids = [r.id for r in self.records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"duplicate record id {dup!r} in dataset {self.root}")
        known = set(self.classes)
        if known.issuperset({lab for r in self.records for lab in r.labels}):
            return
        for r in self.records:
            missing = [lab for lab in r.labels if lab not in known]
            if missing:
                raise ValueError(f"{r.path}: label(s) {missing} are not among the classes {self.classes}")

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def abspath(self, record: ImageRecord) -> Path:
        """Absolute path of a record's file."""
        return self.root / record.path

    def subset(self, records: Sequence[ImageRecord]) -> LabeledSet:
        """Same root and classes, fewer records."""
        return LabeledSet(self.root, tuple(records), self.classes, self.source)


@dataclass(frozen=True)
class Embeddings:
    """Encoded images or texts.

    ``vectors``: ``(n, d)`` float32, L2-normalised rows (the retrieval space).
    ``joint``: ``(n, dj)`` float32 in the space shared with the encoder's text tower, or None when the
    encoder has no text side. For a CLIP-like encoder ``joint`` is ``vectors``.
    ``logits``: ``(n, m)`` float32 scores of the encoder's classifier head (ImageNet-1k: ``m = 1000``) for the
    zero-shot classifier, or None. Not stored in an index.
    """

    vectors: np.ndarray
    ids: tuple[str, ...]
    encoder_id: str
    joint: np.ndarray | None = None
    logits: np.ndarray | None = None

    def __post_init__(self) -> None:
        v = self.vectors
        if v.ndim != 2:
            raise DimensionMismatch(f"Embeddings.vectors must be 2-D (n, d), got shape {v.shape}")
        if v.dtype != np.float32:
            raise DimensionMismatch(f"Embeddings.vectors must be float32, got {v.dtype}")
        if not isinstance(self.ids, tuple):
            object.__setattr__(self, "ids", tuple(self.ids))
        _check_rows("Embeddings.vectors", v, len(self.ids))
        if self.joint is not None:
            if self.joint.ndim != 2 or self.joint.dtype != np.float32:
                raise DimensionMismatch(
                    f"Embeddings.joint must be 2-D float32, got shape {self.joint.shape} {self.joint.dtype}"
                )
            _check_rows("Embeddings.joint", self.joint, len(self.ids))
        if self.logits is not None:
            if self.logits.ndim != 2 or self.logits.dtype != np.float32:
                raise DimensionMismatch(
                    f"Embeddings.logits must be 2-D float32, got shape {self.logits.shape} {self.logits.dtype}"
                )
            _check_rows("Embeddings.logits", self.logits, len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def take(self, rows: Sequence[int] | np.ndarray) -> Embeddings:
        """The given rows, in the given order."""
        idx = np.asarray(rows, dtype=np.int64)
        joint = None if self.joint is None else self.joint[idx]
        logits = None if self.logits is None else self.logits[idx]
        return Embeddings(self.vectors[idx], tuple(self.ids[i] for i in idx), self.encoder_id, joint, logits)

    @staticmethod
    def concat(parts: Sequence[Embeddings], encoder_id: str, dim: int, joint_dim: int | None) -> Embeddings:
        """Stack several batches (which may be empty) into one."""
        if not parts:
            joint = None if joint_dim is None else np.zeros((0, joint_dim), np.float32)
            return Embeddings(np.zeros((0, dim), np.float32), (), encoder_id, joint)
        ids = tuple(i for p in parts for i in p.ids)
        vecs = np.concatenate([p.vectors for p in parts]).astype(np.float32, copy=False)
        joints = [p.joint for p in parts]
        joint = None
        if all(j is not None for j in joints):
            joint = np.concatenate(joints).astype(np.float32, copy=False)  # type: ignore[arg-type]
        heads = [p.logits for p in parts]
        logits = None
        if all(h is not None for h in heads):
            logits = np.concatenate(heads).astype(np.float32, copy=False)  # type: ignore[arg-type]
        return Embeddings(vecs, ids, encoder_id, joint, logits)


@dataclass(frozen=True)
class Neighbors:
    """Top-k result of a vector search for ``q`` queries.

    ``ids``: ``(q, k)`` object array of string ids, ``""`` where fewer than k items matched.
    ``scores``: ``(q, k)`` float32 cosine similarities (inner products of normalised vectors), best first,
    ``-inf`` where padded.
    """

    ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.shape != self.scores.shape or self.ids.ndim != 2:
            raise DimensionMismatch(
                f"Neighbors.ids {self.ids.shape} and scores {self.scores.shape} must be the same (q, k) shape"
            )

    def row(self, i: int) -> list[tuple[str, float]]:
        """Hits of query ``i`` as ``(id, score)`` pairs, padding dropped."""
        return [(str(a), float(s)) for a, s in zip(self.ids[i], self.scores[i], strict=True) if a != ""]


@dataclass(frozen=True)
class Hit:
    """One search result with the item's stored metadata."""

    id: str
    score: float
    path: str
    labels: tuple[str, ...] = ()
    split: str | None = None

    @property
    def label(self) -> str | None:
        return self.labels[0] if len(self.labels) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 6), "path": self.path, "labels": list(self.labels)}


@dataclass(frozen=True)
class Prediction:
    """A classification of one image.

    ``label`` is None when the answer is *unknown* (below the calibrated threshold of the best class).
    ``candidate`` is the best class before the unknown decision. ``score`` is the raw score of the classifier
    (its meaning depends on ``mode``); ``calibrated`` is the estimated probability that ``candidate`` is
    right (NaN when the index was never calibrated), the very confidence the unknown decision compared with
    ``threshold``. ``top_k`` lists ``(label, raw score)`` best first. ``reason`` says why an answer is unknown:
    ``"novel"`` (none of the classes), ``"ambiguous"`` (one of them, unclear which) or ``"low score"`` (an older
    calibration that cannot tell the two apart); None for answered or uncalibrated predictions.
    """

    label: str | None
    candidate: str
    score: float
    calibrated: float
    top_k: tuple[tuple[str, float], ...]
    mode: str
    threshold: float | None = None
    reason: str | None = None

    @property
    def is_unknown(self) -> bool:
        return self.label is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "candidate": self.candidate,
            "score": round(self.score, 6),
            "calibrated": None if np.isnan(self.calibrated) else round(self.calibrated, 6),
            "threshold": self.threshold,
            "reason": self.reason,
            "mode": self.mode,
            "top_k": [[lab, round(s, 6)] for lab, s in self.top_k],
        }
