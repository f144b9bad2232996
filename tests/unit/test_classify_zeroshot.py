"""Zero-shot prompts with a fake text encoder, and the blend of text and image prototypes."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.classify import (
    CLASSIFIERS,
    DEFAULT_TEMPLATES,
    BlendClassifier,
    PrototypeClassifier,
    ZeroShotClassifier,
    prompt_vectors,
)
from visrec.errors import BadInput, DimensionMismatch

D = 32
CLASSES = ["Gaara", "Naruto", "Sakura"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _direction(text: str) -> np.ndarray:
    seed = sum(ord(ch) * (i + 1) for i, ch in enumerate(text))
    return np.random.default_rng(seed).normal(size=D)


class FakeTextEncoder:
    """A prompt's vector = its class name's direction + a smaller direction of the template wording."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for t in texts:
            name = next(c for c in CLASSES if c in t)
            rows.append(_direction(name) + 0.5 * _direction(t.replace(name, "{}")))
        return 3.0 * np.array(rows)  # not normalised: prompt_vectors must normalise


def test_prompt_vectors_average_the_template_ensemble_per_class() -> None:
    enc = FakeTextEncoder()
    tv = prompt_vectors(CLASSES, enc)
    assert tv.shape == (3, D) and tv.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(tv, axis=1), 1.0, atol=1e-5)
    assert len(enc.calls) == 1 and len(enc.calls[0]) == 3 * len(DEFAULT_TEMPLATES)
    assert "an anime drawing of Naruto." in enc.calls[0]
    # averaging over templates cancels the wording: each class vector is close to its name direction
    cos = tv @ _unit(np.stack([_direction(c) for c in CLASSES])).T
    assert np.argmax(cos, axis=1).tolist() == [0, 1, 2] and np.diag(cos).min() > 0.8


def test_prompt_vectors_reject_bad_templates_and_bad_encoder_output() -> None:
    with pytest.raises(BadInput, match="template"):
        prompt_vectors(CLASSES, FakeTextEncoder(), templates=["a photo"])
    with pytest.raises(DimensionMismatch):
        prompt_vectors(CLASSES, lambda texts: np.zeros((1, D)), templates=["{}"])


def test_zero_shot_softmax_and_cosine_scores() -> None:
    tv = prompt_vectors(CLASSES, FakeTextEncoder())
    queries = _unit(tv + 0.2 * np.random.default_rng(0).normal(size=tv.shape) / np.sqrt(D))
    soft = ZeroShotClassifier(CLASSES, tv).predict(queries)
    assert [p.label for p in soft] == CLASSES and all(p.mode == "zeroshot" for p in soft)
    assert all(0.0 < p.score <= 1.0 for p in soft)
    assert sum(s for _, s in soft[0].top_k) == pytest.approx(1.0)  # all 3 classes listed: a distribution
    cos = ZeroShotClassifier(CLASSES, tv, score="cosine").predict(queries)
    assert cos[1].score == pytest.approx(float(queries[1] @ tv[1]), abs=1e-5)
    with pytest.raises(DimensionMismatch):
        ZeroShotClassifier(CLASSES, tv).predict(np.zeros((1, D + 1), np.float32))
    with pytest.raises(BadInput, match="one per class"):
        ZeroShotClassifier(CLASSES[:2], tv)


def test_zero_shot_leaves_unavailable_classes_out_of_the_softmax() -> None:
    zs = ZeroShotClassifier(["A", "B", "C"], np.eye(3, dtype=np.float32))
    (p,) = zs.predict_from_scores(np.array([[0.9, -np.inf, 0.1]]))
    assert p.candidate == "A" and [lab for lab, _ in p.top_k] == ["A", "C"]
    assert sum(s for _, s in p.top_k) == pytest.approx(1.0)


def _blend_setup() -> tuple[ZeroShotClassifier, PrototypeClassifier, np.ndarray]:
    rng = np.random.default_rng(3)
    a, b, c = _unit(rng.normal(size=(3, D)))
    # the names of A and B read almost the same to the text encoder; only C's name is distinct
    text = _unit(np.stack([a + b, a + b + 0.05 * rng.normal(size=D), c]))
    img_a = _unit(a + 0.3 * rng.normal(size=(10, D)) / np.sqrt(D))
    img_b = _unit(b + 0.3 * rng.normal(size=(10, D)) / np.sqrt(D))
    protos = PrototypeClassifier().fit(np.concatenate([img_a, img_b]), [("A",)] * 10 + [("B",)] * 10)
    queries = _unit(np.stack([a, b, c]) + 0.2 * rng.normal(size=(3, D)) / np.sqrt(D))
    return ZeroShotClassifier(["A", "B", "C"], text), protos, queries


def test_blend_uses_images_where_text_is_ambiguous_and_text_for_classes_without_images() -> None:
    zs, protos, queries = _blend_setup()
    text_only = [p.candidate for p in zs.predict(queries)]
    assert text_only[:2] in (["A", "A"], ["B", "B"])  # text cannot tell A from B
    blend = BlendClassifier(zs, protos, alpha=0.5)
    preds = blend.predict(queries)
    assert [p.label for p in preds] == ["A", "B", "C"]  # C has no image at all
    assert all(p.mode == "blend" and 0.0 < p.score <= 1.0 for p in preds)
    text_ranked = BlendClassifier(zs, protos, alpha=0.0).predict(queries)
    assert [p.candidate for p in text_ranked] == text_only
    combined = BlendClassifier(zs, protos, score="combined").predict(queries)
    assert [p.label for p in combined] == ["A", "B", "C"]
    assert combined[2].score == pytest.approx(float(queries[2] @ zs.text_vectors[2]), abs=0.01)


def test_blend_options_and_class_checks() -> None:
    zs, protos, _ = _blend_setup()
    with pytest.raises(BadInput, match="alpha"):
        BlendClassifier(zs, protos, alpha=-1.0)
    with pytest.raises(BadInput, match="blend score"):
        BlendClassifier(zs, protos, score="vote")
    other = PrototypeClassifier().fit(np.eye(2, dtype=np.float32), [("A",), ("Z",)])
    with pytest.raises(BadInput, match="Z"):
        BlendClassifier(zs, other)
    built = CLASSIFIERS.create("blend", zeroshot=zs, prototypes=protos, alpha=0.3)
    assert isinstance(built, BlendClassifier) and built.config.alpha == 0.3
