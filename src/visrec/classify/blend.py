"""Text prompts for every class, blended with image prototypes for the classes that have images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.classify.base import masked_softmax, predictions_from_scores
from visrec.classify.prototype import PrototypeClassifier
from visrec.classify.zeroshot import ZeroShotClassifier
from visrec.errors import BadInput, DimensionMismatch
from visrec.types import Prediction

BLEND_SCORES = ("softmax", "combined")


@dataclass(frozen=True)
class BlendConfig:
    """Options of :class:`BlendClassifier`.

    ``alpha``: weight of the image affinity (0 = text only); ``beta``: sharpness of the affinity
    ``exp(-beta * (1 - cos))`` (large = only close image matches count); ``temperature``: softmax
    temperature of the combined score; ``score``: ``"softmax"`` (probability over classes) or
    ``"combined"`` (the combined cosine-scale score itself); ``top_k``: classes in ``Prediction.top_k``.
    """

    alpha: float = 0.5
    beta: float = 10.0
    temperature: float = 0.01
    score: str = "softmax"
    top_k: int = 5

    def __post_init__(self) -> None:
        if not self.alpha >= 0.0:
            raise BadInput(f"alpha must be >= 0, got {self.alpha}")
        if not self.beta > 0 or not self.temperature > 0:
            raise BadInput(f"beta and temperature must be > 0, got {self.beta} and {self.temperature}")
        if self.score not in BLEND_SCORES:
            raise BadInput(f"unknown blend score {self.score!r}; expected one of {', '.join(BLEND_SCORES)}")
        if self.top_k < 1:
            raise BadInput(f"top_k must be >= 1, got {self.top_k}")


class BlendClassifier:
    """Zero-shot text scores plus an image-prototype affinity bonus (Tip-Adapter style).

    Combined class score: ``text_cos_c + alpha * exp(-beta * (1 - image_cos_c))``, the affinity term being 0
    for classes without images; raw score: its softmax over classes at ``temperature`` (or the combined
    score, see :class:`BlendConfig`). The affinity is sharp on purpose: image-image cosines run much
    higher than image-text ones (CLIP: ~0.8 vs ~0.3) and a plain weighted sum of the two cosine matrices,
    or of two softmaxes, hands every query of a text-only class to some class with images. With the
    affinity, images only speak when the query is close to a class's images.
    """

    mode = "blend"

    def __init__(
        self,
        zeroshot: ZeroShotClassifier,
        prototypes: PrototypeClassifier,
        alpha: float = 0.5,
        beta: float = 10.0,
        temperature: float = 0.01,
        score: str = "softmax",
        top_k: int = 5,
    ) -> None:
        unknown = sorted(set(prototypes.classes) - set(zeroshot.classes))
        if unknown:
            raise BadInput(f"image prototypes of classes {unknown} have no text vector; add them to the zero-shot ones")
        self.zeroshot = zeroshot
        self.image = prototypes
        self.classes = zeroshot.classes
        self.config = BlendConfig(alpha=alpha, beta=beta, temperature=temperature, score=score, top_k=top_k)
        self._image_cols = np.array([self.classes.index(c) for c in prototypes.classes], np.int64)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable options."""
        c = self.config
        return {
            "mode": self.mode,
            "alpha": c.alpha,
            "beta": c.beta,
            "temperature": c.temperature,
            "score": c.score,
            "top_k": c.top_k,
        }

    def image_cosines(self, queries: np.ndarray) -> np.ndarray:
        """``(q, c)`` cosines to the image prototypes in :attr:`classes` order (``-inf``: class has none)."""
        out = np.full((queries.shape[0], len(self.classes)), -np.inf, np.float32)
        out[:, self._image_cols] = self.image.cosines(queries)
        return out

    def predict(self, queries: np.ndarray, joint_queries: np.ndarray | None = None) -> list[Prediction]:
        """Predictions for ``queries`` ``(q, d)`` (image-prototype space) and ``joint_queries`` ``(q, dj)``.

        ``joint_queries`` defaults to ``queries`` (CLIP-like encoders, where the two spaces are the same).
        """
        joint = queries if joint_queries is None else joint_queries
        if joint.shape[0] != queries.shape[0]:
            raise DimensionMismatch(f"{queries.shape[0]} queries but {joint.shape[0]} joint queries")
        return self.predict_from_scores(self.image_cosines(queries), self.zeroshot.cosines(joint))

    def predict_from_scores(self, image_cosines: np.ndarray, text_cosines: np.ndarray) -> list[Prediction]:
        """Predictions from two ``(q, c)`` cosine matrices in :attr:`classes` order.

        ``-inf`` in ``image_cosines``: the class has no image prototype (no affinity bonus); ``-inf`` in
        ``text_cosines``: the class is unavailable altogether.
        """
        c = self.config
        img = np.asarray(image_cosines, np.float64)
        affinity = np.where(np.isfinite(img), np.exp(-c.beta * (1.0 - np.where(np.isfinite(img), img, 1.0))), 0.0)
        combined = np.asarray(text_cosines, np.float64) + c.alpha * affinity
        scores = combined
        if c.score == "softmax":
            scores = np.where(np.isfinite(combined), masked_softmax(combined / c.temperature), -np.inf)
        return predictions_from_scores(self.classes, scores, self.mode, c.top_k)
