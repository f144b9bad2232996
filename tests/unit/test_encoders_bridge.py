"""The label-space bridge: class names, projection maths (stub text encoder), and real zero-shot ranking."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.encoders.bridge import LabelBridge, imagenet_class_names
from visrec.errors import BadInput, DimensionMismatch

DATA = SHARED_DATA


class _StubText:
    """A text encoder with 8-d one-hot-ish vectors (class c -> axis c % 8), counting its calls."""

    name, dim, fingerprint = "stub", 8, "stub-0000000000000000"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        index = {name: i for i, name in enumerate(imagenet_class_names())}
        out = np.zeros((len(texts), 8), np.float32)
        for row, text in enumerate(texts):
            out[row, index[text.removeprefix("a photo of a ")] % 8] = 1.0
        return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VISREC_CACHE_DIR", str(tmp_path))
    yield tmp_path


def test_class_names_are_the_standard_1000_in_order() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000
    assert (names[0], names[1], names[281], names[404], names[999]) == (
        "tench",
        "goldfish",
        "tabby cat",
        "airliner",
        "toilet paper",
    )


def test_top1_bridge_returns_the_winning_class_vector(cache: Path) -> None:
    bridge = LabelBridge(_StubText(), temperature=1.0, top_k=1)  # type: ignore[arg-type]
    logits = np.zeros((2, 1000), np.float32)
    logits[0, 3] = 5.0
    logits[1, 12] = 5.0
    joint = bridge.project(logits)
    assert joint.shape == (2, 8) and joint.dtype == np.float32
    np.testing.assert_allclose(joint, np.eye(8, dtype=np.float32)[[3, 4]], atol=1e-6)


def test_flat_logits_spread_over_classes_and_temperature_sharpens(cache: Path) -> None:
    text = _StubText()
    logits = np.zeros((1, 1000), np.float32)
    logits[0, 3] = 2.0
    flat = LabelBridge(text, temperature=10.0, top_k=0).project(logits)  # type: ignore[arg-type]
    sharp = LabelBridge(text, temperature=0.1, top_k=0).project(logits)  # type: ignore[arg-type]
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 1.0, atol=1e-6)
    assert sharp[0, 3] > 0.99 > flat[0, 3]


def test_prompt_vectors_are_cached_on_disk(cache: Path) -> None:
    text = _StubText()
    LabelBridge(text).class_vectors()  # type: ignore[arg-type]
    LabelBridge(text).class_vectors()  # type: ignore[arg-type]
    assert text.calls == 1 and len(list(cache.glob("imagenet-prompts-*.npy"))) == 1
    next(cache.glob("imagenet-prompts-*.npy")).write_bytes(b"\x93NUMPY truncated")
    LabelBridge(text).class_vectors()  # type: ignore[arg-type]
    assert text.calls == 2  # a damaged cache file is recomputed, not trusted


def test_invalid_settings_and_logits(cache: Path) -> None:
    with pytest.raises(BadInput):
        LabelBridge(_StubText(), temperature=0.0)  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        LabelBridge(_StubText(), prompt="no placeholder")  # type: ignore[arg-type]
    with pytest.raises(DimensionMismatch):
        LabelBridge(_StubText()).project(np.zeros((2, 10), np.float32))  # type: ignore[arg-type]


@pytest.mark.slow
def test_real_airplanes_rank_airplane_above_frog(session_cache: Path) -> None:
    images = DATA / "cifar10_subset" / "images"
    planes = sorted((images / "airplane").glob("test_*.jpg"))[:10]
    frogs = sorted((images / "frog").glob("test_*.jpg"))[:10]
    if len(planes) < 10 or len(frogs) < 10:
        pytest.skip(f"cifar10_subset not found under {DATA}")
    from visrec.encoders import create_encoder

    encoder = create_encoder("efficientnet-lite0")
    prompts = encoder.encode_texts(["a photo of an airplane", "a photo of a frog"])
    scores = encoder.encode_images(planes + frogs).joint @ prompts.T  # type: ignore[operator]
    assert scores[0, 0] > scores[0, 1] + 0.05, scores[0]  # the first test airplane, by a clear margin
    right = (scores[:10, 0] > scores[:10, 1]).sum() + (scores[10:, 1] > scores[10:, 0]).sum()
    assert right >= 14, scores  # 32-px images: 15 of 20 when this was written, chance is 10


def test_wordnet_texts_add_synonyms_and_glosses_but_no_latin_names() -> None:
    from visrec.encoders.bridge import class_texts, imagenet_wordnet

    wordnet = imagenet_wordnet()
    assert len(wordnet) == 1000 and "toilet tissue" in wordnet[999][0]
    synonyms, gloss = class_texts("synonyms"), class_texts("gloss")
    assert synonyms[999][0] == "toilet paper" and "bathroom tissue" in synonyms[999]
    assert synonyms[0] == ["tench"]  # "Tinca tinca", a Latin binomial, is left out
    assert gloss[281] == ["tabby cat", "tabby cat, a cat with a grey or tawny coat mottled with black"]
    with pytest.raises(BadInput, match="class_text"):
        class_texts("poems")


class _HashText:
    """8-d unit vectors from a hash of the text (any text), so the class space can be exercised without MiniLM."""

    name, dim, fingerprint = "hash", 8, "hash-0000000000000000"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        out = np.array([r.normal(size=8) for r in rng], np.float32).reshape(len(texts), 8)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_class_space_scores_a_text_by_the_image_probability_on_its_classes(cache: Path) -> None:
    text = _HashText()
    bridge = LabelBridge(text, temperature=1.0, top_k=0, space="classes", text_temperature=0.05)  # type: ignore[arg-type]
    assert bridge.dim == 1000 and bridge.config()["space"] == "classes"
    logits = np.zeros((2, 1000), np.float32)
    logits[0, 281], logits[1, 404] = 12.0, 12.0  # a tabby cat, an airliner
    joint = bridge.project(logits)
    np.testing.assert_allclose(np.linalg.norm(joint, axis=1), 1.0, atol=1e-6)
    # A text whose MiniLM vector is exactly the tabby-cat class vector lands on that class.
    cat = bridge.class_vectors()[281]
    text.encode = lambda texts: np.tile(cat, (len(texts), 1))  # type: ignore[method-assign]
    q = bridge.encode_texts(["my cat"])
    assert q.shape == (1, 1000) and int(np.argmax(q[0])) == 281
    scores = joint @ q[0]
    assert scores[0] > scores[1]
    with pytest.raises(BadInput, match="space"):
        LabelBridge(text, space="pixels")  # type: ignore[arg-type]


def test_concepts_name_what_the_bridge_reads_and_sees(cache: Path) -> None:
    bridge = LabelBridge(_StubText(), temperature=1.0, top_k=1)  # type: ignore[arg-type]
    logits = np.zeros((1, 1000), np.float32)
    logits[0, 3] = 5.0
    names = imagenet_class_names()
    seen = bridge.concepts(bridge.project(logits), top=2)
    assert seen == [(names[3], names[11])]  # the image's class first (then its stub twin, 11 % 8 == 3)
    assert bridge.concepts(bridge.encode_texts(["a photo of a tench"]))[0][0] == names[0]
