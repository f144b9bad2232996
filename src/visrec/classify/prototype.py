"""Nearest class mean: one prototype per class (the renormalised mean of its normalised vectors)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from natsort import natsorted

from visrec.classify.base import check_classes, check_vectors, normalize_rows, predictions_from_scores
from visrec.errors import BadInput, EmptyDataset, StageOrderError
from visrec.types import Prediction


@dataclass(frozen=True)
class PrototypeConfig:
    """Options of :class:`PrototypeClassifier`: ``top_k`` classes listed in ``Prediction.top_k``."""

    top_k: int = 5

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise BadInput(f"top_k must be >= 1, got {self.top_k}")


def class_sums(vectors: np.ndarray, labels: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Per-class sums of ``(n, d)`` vectors: ``(classes, sums (c, d) float64, counts (c,) int64)``.

    ``labels[i]`` is the label tuple of row ``i`` (empty = unlabeled, skipped; a multi-label row counts for
    each of its labels). Classes come in natural sort order.
    """
    if len(labels) != vectors.shape[0]:
        raise BadInput(f"got {vectors.shape[0]} vectors but {len(labels)} label entries; give one per vector")
    classes = tuple(natsorted({str(lab) for labs in labels for lab in labs}))
    col = {c: i for i, c in enumerate(classes)}
    sums = np.zeros((len(classes), vectors.shape[1]), np.float64)
    counts = np.zeros(len(classes), np.int64)
    for i, labs in enumerate(labels):
        for lab in dict.fromkeys(labs):
            sums[col[str(lab)]] += vectors[i]
            counts[col[str(lab)]] += 1
    return classes, sums, counts


class PrototypeClassifier:
    """Cosine to class prototypes. Raw score: cosine to the best prototype (in [-1, 1]).

    ``fit(vectors, labels)`` once, then ``predict(queries)``; or build directly from saved arrays with
    :meth:`from_arrays`. ``prototypes`` is ``(c, d)`` float32 with unit rows, ``classes`` their names.
    """

    mode = "prototype"

    def __init__(self, top_k: int = 5) -> None:
        self.config = PrototypeConfig(top_k=top_k)
        self._classes: tuple[str, ...] | None = None
        self._prototypes: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, classes: Sequence[str], prototypes: np.ndarray, top_k: int = 5) -> PrototypeClassifier:
        """A fitted classifier from saved ``classes`` and ``(c, d)`` prototypes (renormalised here)."""
        names = check_classes(classes)
        protos = check_vectors("prototypes", prototypes)
        if protos.shape[0] != len(names):
            raise BadInput(f"{protos.shape[0]} prototypes for {len(names)} classes; give one row per class")
        clf = cls(top_k=top_k)
        clf._classes, clf._prototypes = names, normalize_rows(protos)
        return clf

    def params(self) -> dict[str, Any]:
        """JSON-serialisable options."""
        return {"mode": self.mode, "top_k": self.config.top_k}

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, one per prototype row (natural sort order after :meth:`fit`)."""
        if self._classes is None:
            raise StageOrderError("PrototypeClassifier has no classes yet: call fit(vectors, labels) first")
        return self._classes

    @property
    def prototypes(self) -> np.ndarray:
        """``(c, d)`` float32 unit rows, in the order of :attr:`classes`."""
        if self._prototypes is None:
            raise StageOrderError("PrototypeClassifier has no prototypes yet: call fit(vectors, labels) first")
        return self._prototypes

    def fit(self, vectors: np.ndarray, labels: Sequence[Sequence[str]]) -> PrototypeClassifier:
        """Compute prototypes from ``(n, d)`` float32 unit vectors and their label tuples; returns self.

        Unlabeled rows (empty tuple) are skipped; multi-label rows count for each label.
        """
        vecs = check_vectors("vectors", vectors)
        classes, sums, _ = class_sums(vecs, labels)
        if not classes:
            raise EmptyDataset("cannot fit prototypes: none of the vectors has a label")
        self._classes, self._prototypes = classes, normalize_rows(sums)
        return self

    def cosines(self, queries: np.ndarray) -> np.ndarray:
        """``(q, c)`` cosine of each query ``(q, d)`` to each prototype."""
        protos = self.prototypes
        q = check_vectors("queries", queries, protos.shape[1])
        return q @ protos.T

    def predict(self, queries: np.ndarray) -> list[Prediction]:
        """One uncalibrated ``Prediction`` (``mode="prototype"``) per row of ``queries`` ``(q, d)``."""
        return self.predict_from_scores(self.cosines(queries))

    def predict_from_scores(self, cosines: np.ndarray) -> list[Prediction]:
        """Predictions from ``(q, c)`` cosines in :attr:`classes` order (``-inf`` = class unavailable)."""
        return predictions_from_scores(self.classes, cosines, self.mode, self.config.top_k)
