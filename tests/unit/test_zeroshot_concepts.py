"""Zero-shot by concept scoring: WordNet texts for class names, concept weights over the ImageNet classes, the
classifier scoring ImageNet logits by probability mass, and the logits carried by ``Embeddings``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.classify import ZeroShotClassifier
from visrec.encoders.bridge import LabelBridge, imagenet_class_names
from visrec.encoders.wordnet import WordNetNouns
from visrec.errors import BadInput, DimensionMismatch
from visrec.types import Embeddings

DATA = SHARED_DATA


@pytest.fixture(scope="module")
def nouns() -> WordNetNouns:
    return WordNetNouns()


def test_wordnet_defines_words_the_bridge_does_not_know(nouns: WordNetNouns) -> None:
    assert nouns.describe("ketch") == [
        "ketch",
        "ketch, a sailing vessel with two masts",
        "ketch, a kind of sailing vessel",
    ]
    motorbikes = nouns.describe("Motorbikes")  # a plural folder name, as datasets write them
    assert motorbikes[0] == "Motorbikes" and motorbikes[2] == "Motorbikes, a kind of motorcycle"
    assert nouns.describe("wild_cat")[2] == "wild cat, a kind of cat"  # underscores read as spaces, or joined


def test_wordnet_picks_the_sense_imagenet_knows(nouns: WordNetNouns) -> None:
    assert nouns.lookup("leopard")[2] == "big cat"  # type: ignore[index]  # not "the pelt of a leopard"
    assert nouns.lookup("schooner")[2] == "sailing vessel"  # type: ignore[index]  # not the beer glass
    assert nouns.lookup("bus")[1] == "a vehicle carrying many passengers"  # type: ignore[index]  # not a jalopy


def test_names_wordnet_lacks_get_no_extra_text(nouns: WordNetNouns) -> None:
    assert nouns.describe("car_side") == ["car side"]
    assert nouns.describe("Sakura") == ["Sakura"]
    assert nouns.lookup("  ") is None


class _AxisText:
    """A text encoder whose vectors are one-hot on the axis named by the text's last word ("a photo of a 3")."""

    name, dim, fingerprint = "axis", 1000, "axis-0000000000000000"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.full((len(texts), 1000), 1e-3, np.float32)
        for row, text in enumerate(texts):
            out[row, int(text.split()[-1])] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_concept_weights_put_a_class_on_the_imagenet_classes_its_prompts_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISREC_CACHE_DIR", str(tmp_path))
    names = imagenet_class_names()
    text = _AxisText()
    bridge = LabelBridge(text)  # type: ignore[arg-type]
    bridge._classes = np.eye(1000, dtype=np.float32)  # class j's vector is axis j (no prompt of the stub's form)
    w = bridge.concept_weights([["a photo of a 7"], ["a 3", "a 5"]], temperature=0.05, keep=20)
    assert w.shape == (2, 1000) and len(names) == 1000
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert w[0].argmax() == 7 and w[0, 7] > 0.9
    assert abs(w[1, 3] - w[1, 5]) < 1e-9 and w[1, 3] > 0.45  # two prompts share the class's weight
    assert (w > 0).sum(axis=1).max() <= 20  # only the kept classes carry weight
    calls = text.calls
    again = bridge.concept_weights([["a photo of a 7"], ["a 3", "a 5"]], temperature=0.05, keep=20)
    np.testing.assert_allclose(again, w, atol=1e-6)
    assert text.calls == calls and list(tmp_path.glob("zeroshot-concepts-*.npy"))  # read from the cache folder
    other = bridge.concept_weights([["a photo of a 7"], ["a 3", "a 6"]], temperature=0.05, keep=20)
    assert text.calls == calls + 1 and other[1].argmax() in (3, 6)  # other prompts: computed anew
    with pytest.raises(BadInput, match="keep"):
        bridge.concept_weights([["a 1"]], keep=0)
    with pytest.raises(BadInput, match="prompt"):
        bridge.concept_weights([[]])


def _classifier(concepts: np.ndarray | None) -> ZeroShotClassifier:
    text = np.eye(3, 4, dtype=np.float32)
    return ZeroShotClassifier(["cat", "dog", "car"], text, concepts=concepts, concept_temperature=1.0)


def test_concept_scoring_answers_by_probability_mass() -> None:
    # six "ImageNet" classes: 0-1 are cats, 2-4 dogs, 5 a car; the dog class spreads over its three breeds
    weights = np.array([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 0, 0, 1.0]])
    clf = _classifier(weights)
    logits = np.log(np.array([[0.30, 0.0, 0.25, 0.25, 0.2, 0.0], [0.05, 0.05, 0.0, 0.0, 0.0, 0.9]]) + 1e-9)
    scores = clf.concept_scores(logits)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    preds = clf.predict(np.eye(2, 4, dtype=np.float32), logits)
    assert [p.label for p in preds] == ["dog", "car"]  # the breeds together outweigh the single likeliest class
    assert preds[0].score == pytest.approx(scores[0, 1]) and preds[0].top_k[0][0] == "dog"
    assert clf.params()["scoring"] == "concepts" and clf.params()["concept_temperature"] == 1.0


def test_without_logits_or_weights_the_joint_cosine_decides() -> None:
    weights = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    joint = np.array([[0, 0, 1, 0]], np.float32)  # nearest the "car" text vector
    assert _classifier(weights).predict(joint)[0].label == "car"
    plain = _classifier(weights).joint_only()
    assert plain.concepts is None and plain.params()["scoring"] == "joint"
    assert plain.predict(joint, np.array([[9.0, 0, 0]]))[0].label == "car"  # logits ignored without weights
    with pytest.raises(BadInput, match="no concept weights"):
        plain.concept_scores(np.zeros((1, 3)))


def test_bad_concept_weights_and_logits_are_refused() -> None:
    with pytest.raises(DimensionMismatch, match="one row per class"):
        _classifier(np.ones((2, 5)))
    with pytest.raises(BadInput, match="non-negative"):
        _classifier(np.array([[1.0, -1], [1, 0], [0, 1]]))
    with pytest.raises(BadInput, match="some weight"):
        _classifier(np.array([[1.0, 0], [0, 0], [0, 1]]))
    with pytest.raises(DimensionMismatch, match=r"\(q, 2\)"):
        _classifier(np.ones((3, 2))).concept_scores(np.zeros((1, 5)))


def test_embeddings_carry_logits_through_take_and_concat() -> None:
    vec = np.eye(3, 4, dtype=np.float32)
    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    emb = Embeddings(vec, ("a", "b", "c"), "enc", None, logits)
    np.testing.assert_array_equal(emb.take([2, 0]).logits, logits[[2, 0]])  # type: ignore[arg-type]
    both = Embeddings.concat([emb, emb.take([1])], "enc", 4, None)
    assert both.logits is not None and both.logits.shape == (4, 2)
    assert Embeddings.concat([emb, Embeddings(vec, ("x", "y", "z"), "enc")], "enc", 4, None).logits is None
    with pytest.raises(DimensionMismatch, match="logits"):
        Embeddings(vec, ("a", "b", "c"), "enc", None, logits.astype(np.float64))


@pytest.mark.slow
def test_real_default_encoder_names_caltech_objects_by_concepts(session_cache: Path) -> None:
    images = DATA / "caltech101_dev" / "images"
    labels = ("ketch", "Motorbikes", "airplanes", "sunflower")
    files = [f for lab in labels for f in sorted((images / lab).glob("*.jpg"))[-5:]]
    if len(files) < 20:
        pytest.skip(f"caltech101_dev not found under {DATA}")
    from visrec.encoders import create_encoder
    from visrec.index.recognize import concept_weights, label_bridge

    encoder = create_encoder("efficientnet-lite0")
    emb = encoder.encode_images(files)
    assert emb.logits is not None and emb.logits.shape == (20, 1000)
    bridge = label_bridge(encoder)
    assert bridge is not None
    clf = ZeroShotClassifier(labels, encoder.encode_texts(list(labels)), concepts=concept_weights(bridge, labels))
    preds = [p.label for p in clf.predict(emb.joint, emb.logits)]  # type: ignore[arg-type]
    right = sum(p == t for p, t in zip(preds, [lab for lab in labels for _ in range(5)], strict=True))
    assert right >= 16, preds  # 19 of 20 when this was written; chance is 5


class _HashText:
    """A text encoder of seeded random 16-d unit vectors per text."""

    name, dim, fingerprint = "hash", 16, "hash-0000000000000000"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.array([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts], np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class _BridgedIndex:
    """What ``make_classifier`` reads of an index whose encoder's text side is a label bridge."""

    path = Path("stub.vrx")
    joint = object()

    def __init__(self, bridge: LabelBridge) -> None:
        self.encoder_info = {"name": "stub"}
        self.encoder = type("Enc", (), {"bridge": bridge, "encode_texts": staticmethod(bridge.encode_texts)})()

    def prototypes(self) -> tuple[np.ndarray, list[str]]:
        return np.zeros((0, 4), np.float32), []


def test_stored_options_decide_the_scoring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visrec.index.recognize import make_classifier

    monkeypatch.setenv("VISREC_CACHE_DIR", str(tmp_path))
    bridge = LabelBridge(_HashText())  # type: ignore[arg-type]
    bridge._classes = _HashText().encode([str(i) for i in range(1000)])
    index = _BridgedIndex(bridge)
    fresh = make_classifier(index, "zeroshot", {}, ["ketch", "car_side"])  # type: ignore[arg-type]
    assert fresh.concepts is not None and fresh.concepts.shape == (2, 1000)  # type: ignore[union-attr]
    again = make_classifier(index, "zeroshot", fresh.params(), ["ketch", "car_side"])  # type: ignore[arg-type]
    assert again.params()["scoring"] == "concepts"  # a calibration fitted on concept scores keeps them
    old = {"mode": "zeroshot", "temperature": 0.01, "score": "softmax", "top_k": 5}  # stored before the option
    assert make_classifier(index, "zeroshot", old, ["ketch", "car_side"]).concepts is None  # type: ignore[arg-type,union-attr]
    joint = make_classifier(index, "zeroshot", {**old, "scoring": "joint"}, ["ketch"])  # type: ignore[arg-type]
    assert joint.params()["scoring"] == "joint"
