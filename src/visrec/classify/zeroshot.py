"""Zero-shot classification from class names (text prompts).

Two scorings. ``joint``: the cosine of the image's joint (image-text) vector to each class's prompt vector -- what a
CLIP-like encoder does. ``concepts`` (encoders whose text side is the ImageNet label bridge): each class is a
distribution over the 1000 ImageNet classes (:meth:`visrec.encoders.bridge.LabelBridge.concept_weights`) and an
image scores it by the probability mass its ImageNet logits put there; the bridge's joint vectors keep only an
image's top classes and blur them in the sentence space, the full distribution does not (``benchmarks/
bridge_eval.py``: caltech101_dev / cifar10_subset test top-1 46.5 / 44.6 % by cosine, see the README for
concepts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.classify.base import (
    check_classes,
    check_vectors,
    masked_softmax,
    normalize_rows,
    predictions_from_scores,
)
from visrec.errors import BadInput, DimensionMismatch
from visrec.types import Prediction

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of {}.",
    "an image of {}.",
    "a drawing of {}.",
    "an anime drawing of {}.",
    "a close-up photo of {}.",
    "a cropped photo of {}.",
    "art of {}.",
)
"""Prompt ensemble (``{}`` = class name), in the spirit of CLIP's prompt ensembling."""

ZEROSHOT_SCORES = ("softmax", "cosine")
ZEROSHOT_SCORINGS = ("concepts", "joint")

ClassNames = Mapping[str, str] | Sequence[str]
"""Zero-shot classes: label -> name put in the prompts, or plain names that are both."""


def class_prompts(classes: ClassNames) -> dict[str, str]:
    """``{label: prompt name}`` of zero-shot classes, in order.

    ``classes``: a mapping, or a sequence of ``"label=name"`` / ``"name"`` items (``Motorbikes=motorbike``:
    answers say ``Motorbikes``, the label a dataset uses, while the prompts say "a photo of a motorbike.").
    """
    if isinstance(classes, Mapping):
        pairs = [(str(k).strip(), str(v).strip()) for k, v in classes.items()]
    else:
        pairs = []
        for item in classes:
            label, _, name = str(item).partition("=")
            pairs.append((label.strip(), name.strip() or label.strip()))
    bad = [f"{lab}={name}" for lab, name in pairs if not lab or not name]
    if bad or not pairs:
        raise BadInput(f"zero-shot classes need a label and a name each ('Label=name' or 'name'); got {bad or []}")
    labels = [lab for lab, _ in pairs]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise BadInput(f"zero-shot classes list a label twice: {', '.join(dup)}; give each label once")
    return dict(pairs)


def prompt_vectors(
    classes: Sequence[str],
    encode_texts: Callable[[list[str]], np.ndarray],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> np.ndarray:
    """One text vector per class: the renormalised mean of the encoded prompts ``template.format(name)``.

    ``encode_texts`` maps ``n`` strings to an ``(n, dj)`` float array (rows are normalised here first).
    Returns ``(c, dj)`` float32 unit rows in ``classes`` order.
    """
    names = check_classes(classes)
    if not templates or any("{}" not in t for t in templates):
        raise BadInput(f"every prompt template must contain '{{}}' for the class name, got {list(templates)}")
    prompts = [t.format(name) for name in names for t in templates]
    enc = np.asarray(encode_texts(prompts))
    if enc.ndim != 2 or enc.shape[0] != len(prompts):
        raise DimensionMismatch(f"encode_texts returned shape {enc.shape} for {len(prompts)} prompts, expected (n, d)")
    per_prompt = normalize_rows(enc.astype(np.float32))
    means = per_prompt.reshape(len(names), len(templates), -1).mean(axis=1)
    return normalize_rows(means)


@dataclass(frozen=True)
class ZeroShotConfig:
    """Options of :class:`ZeroShotClassifier`.

    ``score``: ``"softmax"`` = probability over the classes of ``cosine / temperature`` (CLIP's logit scale
    100 is ``temperature=0.01``); ``"cosine"`` = the raw cosine to the best class prompt, which keeps how far
    the image is from every prompt (better for the unknown decision with few classes). ``top_k``: classes
    listed in ``Prediction.top_k``.
    """

    temperature: float = 0.01
    score: str = "softmax"
    top_k: int = 5

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise BadInput(f"temperature must be > 0, got {self.temperature}")
        if self.score not in ZEROSHOT_SCORES:
            raise BadInput(f"unknown zero-shot score {self.score!r}; expected one of {', '.join(ZEROSHOT_SCORES)}")
        if self.top_k < 1:
            raise BadInput(f"top_k must be >= 1, got {self.top_k}")


class ZeroShotClassifier:
    """Classify images by class-name prompts: joint-space cosines (see ``ZeroShotConfig``), or, with
    ``concepts`` ``(c, m)`` (non-negative rows: each class's weights over the ``m`` ImageNet classes), by the
    probability mass of ``softmax(logits / concept_temperature)`` on each row, normalised over the classes."""

    mode = "zeroshot"

    def __init__(
        self,
        classes: Sequence[str],
        text_vectors: np.ndarray,
        temperature: float = 0.01,
        score: str = "softmax",
        top_k: int = 5,
        concepts: np.ndarray | None = None,
        concept_temperature: float = 1.5,
    ) -> None:
        self.classes = check_classes(classes)
        vecs = check_vectors("text_vectors", text_vectors)
        if vecs.shape[0] != len(self.classes):
            raise BadInput(f"{vecs.shape[0]} text vectors for {len(self.classes)} classes; give one per class")
        self.text_vectors = normalize_rows(vecs)
        self.config = ZeroShotConfig(temperature=temperature, score=score, top_k=top_k)
        if not concept_temperature > 0:
            raise BadInput(f"concept_temperature must be > 0, got {concept_temperature}")
        self.concept_temperature = float(concept_temperature)
        self.concepts = None if concepts is None else _check_concepts(concepts, len(self.classes))

    def params(self) -> dict[str, Any]:
        """JSON-serialisable options (``scoring``: which of :data:`ZEROSHOT_SCORINGS` the predictions use)."""
        c = self.config
        out: dict[str, Any] = {"mode": self.mode, "temperature": c.temperature, "score": c.score, "top_k": c.top_k}
        out["scoring"] = "joint" if self.concepts is None else "concepts"
        if self.concepts is not None:
            out["concept_temperature"] = self.concept_temperature
        return out

    def joint_only(self) -> ZeroShotClassifier:
        """The same classifier scoring by joint-space cosines only (for data that has no ImageNet logits)."""
        c = self.config
        return ZeroShotClassifier(self.classes, self.text_vectors, c.temperature, c.score, c.top_k)

    def cosines(self, joint_queries: np.ndarray) -> np.ndarray:
        """``(q, c)`` cosine of each joint-space query ``(q, dj)`` to each class text vector."""
        q = check_vectors("joint queries", joint_queries, self.text_vectors.shape[1])
        return q @ self.text_vectors.T

    def concept_scores(self, logits: np.ndarray) -> np.ndarray:
        """``(q, c)`` float64: each query's share of probability mass per class, rows summing to 1.

        ``logits``: ``(q, m)`` ImageNet logits of the queries; needs ``concepts``.
        """
        if self.concepts is None:
            raise BadInput("this zero-shot classifier has no concept weights; score joint vectors instead")
        z = np.asarray(logits, np.float64)
        if z.ndim != 2 or z.shape[1] != self.concepts.shape[1]:
            raise DimensionMismatch(f"logits must be (q, {self.concepts.shape[1]}), got shape {z.shape}")
        z = z / self.concept_temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mass = p @ self.concepts.T
        return mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-300)

    def predict(self, joint_queries: np.ndarray, logits: np.ndarray | None = None) -> list[Prediction]:
        """One uncalibrated ``Prediction`` (``mode="zeroshot"``) per query: by ``logits`` ``(q, m)`` when the
        classifier has concept weights and they are given, else by ``joint_queries`` ``(q, dj)``."""
        if self.concepts is not None and logits is not None:
            scores = self.concept_scores(logits)
            return predictions_from_scores(self.classes, scores, self.mode, self.config.top_k)
        return self.predict_from_scores(self.cosines(joint_queries))

    def predict_from_scores(self, cosines: np.ndarray) -> list[Prediction]:
        """Predictions from ``(q, c)`` cosines (``-inf`` = class unavailable, left out of the softmax)."""
        scores = cosines
        if self.config.score == "softmax":
            probs = masked_softmax(np.asarray(cosines, np.float64) / self.config.temperature)
            scores = np.where(np.isfinite(cosines), probs, -np.inf)
        return predictions_from_scores(self.classes, scores, self.mode, self.config.top_k)


def _check_concepts(concepts: np.ndarray, n_classes: int) -> np.ndarray:
    w = np.asarray(concepts, np.float64)
    if w.ndim != 2 or w.shape[0] != n_classes:
        raise DimensionMismatch(f"concept weights must be ({n_classes}, m), one row per class, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or (w.sum(axis=1) <= 0).any():
        raise BadInput("concept weights must be finite, non-negative, and give every class some weight")
    return w
