"""k-nearest-neighbour vote over what a vector store returns.

Raw scores (``KnnConfig.score``), for a query with labeled neighbours ``j`` of cosine ``s_j``:

* ``w_j = exp(s_j / T)``; the *vote* of class ``c`` is ``p_c = sum(w_j, c in labels_j) / sum(w_j)`` (its share
  of the softmax weight; a multi-label neighbour votes for each of its labels).
* ``m_c = max(s_j, c in labels_j)``: the best cosine to an item of class ``c``.

``"vote_similarity"`` (default) is ``p_c * max(m_c, 0)``: a class only scores high when it wins the vote AND
its nearest member is actually close. The vote alone cannot say "unknown" (an image of a new character gets
100 % of the vote from its nearest, far-away neighbours) and the similarity alone ignores a close call between
two classes. ``"vote"`` and ``"similarity"`` give the two parts alone. Measured on naruto_roboflow
(EfficientNet-Lite0 features, leak-free split, leave-one-group-out calibration at precision 0.95, k=10,
T=0.05): "vote" kept 66 % of known test images, "similarity" 89 % while turning 56 % of a held-out
character into unknown, "vote_similarity" 89 % and 69 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from visrec.classify.base import make_prediction
from visrec.errors import BadInput, DimensionMismatch
from visrec.types import Prediction

KNN_SCORES = ("vote_similarity", "vote", "similarity")
KNN_METRICS = ("cosine", "whitened")
"""Where neighbours are found: ``"cosine"``, plain cosines of the vectors, or ``"whitened"``, cosines after the
within-class whitening an index fits on its labeled items (:mod:`visrec.classify.whitening`; neighbours among the
labeled items). The classifier itself only votes over the neighbours it is given; the metric tells an index (and
its calibration, :mod:`visrec.classify.loo_whitened`) where to find them."""
DEFAULT_METRIC = "cosine"
"""The metric of an index's kNN unless its calibration says otherwise (``visrec calibrate INDEX --metric whitened``
opts in, and later updates of the index keep it). Whitened kNN wins on the train splits of the three dev sets,
each item held out with its near-duplicate group, the whitening refitted per fold as the calibration does
(``python benchmarks/whitened_knn.py INDEX...``): naruto / cifar / caltech top-1 cosine -> whitened, EfficientNet-Lite0
98.0 -> 98.7, 73.7 -> 74.1, 87.6 -> 89.4 % (mean 86.4 -> 87.4); ``efficientnet-ensemble`` 98.0 -> 99.3, 76.7 ->
80.6, 90.8 -> 92.3 % (mean 88.5 -> 90.8). It stays opt-in because scene analysis names regions with the index's
kNN, and on seed-1 generated scenes whitened kNN lost (mean right-label F1 0.627 against cosine's 0.655; naruto
crowded 0.726 against 0.833: small crops score far below the raw minimum learnt on whole images there), and
because it adds to every build's calibration (docs/encoders.md)."""


@dataclass(frozen=True)
class KnnConfig:
    """Options of :class:`KnnClassifier`.

    ``k``: neighbours to ask the store for; ``temperature``: softmax temperature ``T`` of the vote weights
    (small = the nearest neighbour dominates, large = plain counting); ``score``: one of ``KNN_SCORES``;
    ``top_k``: classes listed in ``Prediction.top_k``; ``metric``: one of ``KNN_METRICS`` (the similarities
    ``s_j`` are cosines in that space).
    """

    k: int = 10
    temperature: float = 0.05
    score: str = "vote_similarity"
    top_k: int = 5
    metric: str = "cosine"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise BadInput(f"k must be >= 1, got {self.k}")
        if not self.temperature > 0:
            raise BadInput(f"temperature must be > 0, got {self.temperature}")
        if self.score not in KNN_SCORES:
            raise BadInput(f"unknown kNN score {self.score!r}; expected one of {', '.join(KNN_SCORES)}")
        if self.top_k < 1:
            raise BadInput(f"top_k must be >= 1, got {self.top_k}")
        if self.metric not in KNN_METRICS:
            raise BadInput(f"unknown kNN metric {self.metric!r}; expected one of {', '.join(KNN_METRICS)}")


class KnnClassifier:
    """Similarity-weighted vote of the ``k`` nearest labeled neighbours (see the module docstring)."""

    mode = "knn"

    def __init__(
        self,
        k: int = 10,
        temperature: float = 0.05,
        score: str = "vote_similarity",
        top_k: int = 5,
        metric: str = "cosine",
    ) -> None:
        self.config = KnnConfig(k=k, temperature=temperature, score=score, top_k=top_k, metric=metric)

    @classmethod
    def from_config(cls, config: KnnConfig) -> KnnClassifier:
        """Build from a :class:`KnnConfig`."""
        return cls(**asdict(config))

    @property
    def k(self) -> int:
        """Neighbours to ask the store for."""
        return self.config.k

    @property
    def whitened(self) -> bool:
        """Whether neighbours are found in the index's whitened space (``metric="whitened"``)."""
        return self.config.metric == "whitened"

    def params(self) -> dict[str, Any]:
        """JSON-serialisable options (stored with a calibration so that it is applied to the same scores)."""
        return {"mode": self.mode, **asdict(self.config)}

    def predict_from_neighbors(
        self, labels: Sequence[Sequence[tuple[str, ...]]], scores: np.ndarray
    ) -> list[Prediction]:
        """Classify ``q`` queries from their neighbours.

        ``labels[i][j]``: label tuple of the j-th neighbour of query ``i`` (``()`` = unlabeled, ignored);
        ``scores``: ``(q, k)`` cosine similarities, ``-inf`` where the store padded the result. Only the
        first ``config.k`` columns are used. Returns one uncalibrated ``Prediction`` per query
        (``mode="knn"``); a query without any labeled neighbour gets candidate ``""``, score 0 and
        ``label=None``.
        """
        sc = np.asarray(scores, dtype=np.float64)
        if sc.ndim != 2 or sc.shape[0] != len(labels):
            raise DimensionMismatch(f"scores must be (q={len(labels)}, k), got shape {sc.shape}")
        out = []
        for i, row in enumerate(labels):
            if len(row) != sc.shape[1]:
                raise DimensionMismatch(f"query {i} has {len(row)} neighbour labels but {sc.shape[1]} scores")
            kk = min(self.config.k, len(row))
            out.append(self._predict_one(row[:kk], sc[i, :kk]))
        return out

    def _predict_one(self, labels: Sequence[tuple[str, ...]], sims: np.ndarray) -> Prediction:
        use = [j for j in range(len(labels)) if labels[j] and np.isfinite(sims[j])]
        if not use:
            return make_prediction((), self.mode)
        s = sims[use]
        w = np.exp((s - s.max()) / self.config.temperature)
        vote: dict[str, float] = {}
        best: dict[str, float] = {}
        for wj, sj, j in zip(w, s, use, strict=True):
            for lab in dict.fromkeys(labels[j]):
                vote[lab] = vote.get(lab, 0.0) + float(wj)
                best[lab] = max(best.get(lab, -np.inf), float(sj))
        total = float(w.sum())
        scored = {lab: self._class_score(vote[lab] / total, best[lab]) for lab in vote}
        ranked = sorted(scored.items(), key=lambda kv: (-kv[1], -best[kv[0]], kv[0]))
        return make_prediction(tuple(ranked[: self.config.top_k]), self.mode)

    def _class_score(self, share: float, similarity: float) -> float:
        if self.config.score == "vote":
            return share
        if self.config.score == "similarity":
            return similarity
        return share * max(similarity, 0.0)
