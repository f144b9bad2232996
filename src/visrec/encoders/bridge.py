"""The label-space bridge: ImageNet class probabilities mapped into the MiniLM sentence space.

Without a CLIP-like model, an ImageNet classifier still knows what everyday things look like. For an image
with logits ``z`` the bridge computes::

    joint = normalise( sparsify_top_k( softmax(z / T) ) @ C )

where row ``c`` of ``C`` is the (unit) MiniLM vector of the prompt ``"a photo of a {class name}"`` for
ImageNet-1k class ``c``. A free-text query encoded by MiniLM then lands near images whose likely ImageNet
classes it describes.

What it can do: text search and zero-shot labels for everyday, ImageNet-like concepts (animals, vehicles,
food, household objects, clothing, scenes such as "seashore" or "volcano"), including wordings ImageNet never
used ("a kitten" retrieves cat pictures), because the matching happens in MiniLM's sentence space. Measured
on cifar10_subset (32-px images, far below the model's 224-px input; ``benchmarks/encoder_accuracy.py``):
zero-shot top-1 43 % over the 10 classes (chance 10 %), text->image precision@10 82 %, with the defaults
``temperature=3``, ``top_k=5`` (softmax at T=1 over all classes: 39 % and 76 %). Zero-shot *classification*
does better without the joint vectors: :meth:`LabelBridge.concept_weights` turns each label's prompts into weights
over the 1000 classes and the classifier scores the image's full class distribution on them (55.2 % on
cifar10_subset, 56.3 % on caltech101_dev; :class:`visrec.classify.ZeroShotClassifier`).

What it cannot do: recognise things outside ImageNet's 1000 classes -- in particular the names of the user's
own characters, people, pets or products ("Naruto", "my aunt"); ImageNet has no "person" class either. Those
come from the user's labels: the index resolves such queries by matching the text against label names, not
through this bridge. Fine-grained distinctions suffer on small or unusual images (drawings, tiny thumbnails).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.encoders.cache import atomic_write_bytes, cache_dir
from visrec.errors import BadInput, DimensionMismatch
from visrec.npyio import load_npy

if TYPE_CHECKING:
    from visrec.encoders.text import MiniLMTextEncoder

DEFAULT_PROMPT = "a photo of a {}"
SPACES = ("text", "classes")
CLASS_TEXTS = ("name", "synonyms", "gloss", "synonyms+gloss")
"""What describes each ImageNet class: ``name`` = its readable name only; ``synonyms`` = the name and every
WordNet lemma of its synset ("toilet paper", "toilet tissue", "bathroom tissue"); ``gloss`` = the name and
"name, gloss" (WordNet's short definition); ``synonyms+gloss`` = both. A class's vector is the renormalised
mean of its texts' MiniLM vectors, each text put in the bridge's ``prompt``."""


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order (0 = tench, 281 = tabby cat).

    The readable names of OpenAI's CLIP prompt-engineering notebook (as shipped in ``open_clip``), which
    disambiguate WordNet lemmas ("crane bird" vs "construction crane") for use in text prompts.
    """
    text = resources.files("visrec").joinpath("resources/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise DimensionMismatch(f"resources/imagenet_classes.txt holds {len(names)} names, expected 1000")
    return names


def imagenet_wordnet() -> tuple[tuple[tuple[str, ...], str], ...]:
    """Per ImageNet-1k class, in index order: ``(WordNet lemmas, gloss)`` (``resources/imagenet_wordnet.tsv``)."""
    text = resources.files("visrec").joinpath("resources/imagenet_wordnet.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(rows) != 1000 or any(len(r) != 3 for r in rows):
        raise DimensionMismatch(f"resources/imagenet_wordnet.tsv holds {len(rows)} rows, expected 1000 of 3 fields")
    return tuple((tuple(x.strip() for x in lemmas.split(",") if x.strip()), gloss.strip()) for _, lemmas, gloss in rows)


def class_texts(mode: str) -> list[list[str]]:
    """The texts that describe each of the 1000 ImageNet classes under ``mode`` (one of :data:`CLASS_TEXTS`)."""
    if mode not in CLASS_TEXTS:
        raise BadInput(f"bridge class_text must be one of {list(CLASS_TEXTS)}, got {mode!r}")
    names = imagenet_class_names()
    if mode == "name":
        return [[n] for n in names]
    out = []
    for name, (lemmas, gloss) in zip(names, imagenet_wordnet(), strict=True):
        texts = [name]
        if "synonyms" in mode:
            # Lemmas with a capitalised second word are mostly Latin binomials ("Tinca tinca"): no help in prompts.
            seen = {name.lower()}
            for lemma in (x.replace("_", " ") for x in lemmas):
                words = lemma.split()
                if lemma.lower() not in seen and not (
                    len(words) == 2 and words[0][:1].isupper() and words[1].islower()
                ):
                    seen.add(lemma.lower())
                    texts.append(lemma)
        if "gloss" in mode:
            texts.append(f"{name}, {gloss}")
        out.append(texts)
    return out


class LabelBridge:
    """Maps ``(n, 1000)`` ImageNet logits, and free texts, into one joint space.

    ``space="text"``: the MiniLM sentence space (384-d): an image is the probability-weighted mean of its likely
    classes' text vectors, a text its MiniLM vector. ``space="classes"``: the ImageNet class space (1000-d): an
    image is ``sqrt(p)`` of its class probabilities ``p``; a text is ``sqrt(q)`` where ``q`` is the softmax, at
    ``text_temperature``, of its MiniLM cosines to the 1000 class vectors -- which ImageNet classes the text
    describes. The cosine of the two is the Bhattacharyya coefficient of ``p`` and ``q``: a text scores an image
    by how much of the image's probability falls on the classes it names, undiluted by the fuzzy similarity of
    MiniLM to every unrelated class. Better zero-shot over a label set (``benchmarks/bridge_eval.py``), but a
    single text's ``q`` is flat, so ranking images for one text favours images with spread-out ``p``.

    ``temperature`` sharpens (<1) or flattens (>1) the image's class distribution; ``top_k`` keeps only the k most
    probable classes of each image (0 keeps all). ``class_text`` chooses the texts of each class
    (:data:`CLASS_TEXTS`). The 1000 class vectors are computed once per machine and cached in the cache folder
    as ``.npy`` (keyed by the text encoder's fingerprint and the prompts).
    """

    def __init__(
        self,
        text: MiniLMTextEncoder | None = None,
        temperature: float = 3.0,
        top_k: int = 5,
        prompt: str = DEFAULT_PROMPT,
        class_text: str = "name",
        space: str = "text",
        text_temperature: float = 0.08,
    ) -> None:
        if temperature <= 0:
            raise BadInput(f"bridge temperature must be > 0, got {temperature}")
        if not 0 <= top_k <= 1000:
            raise BadInput(f"bridge top_k must be between 0 (all classes) and 1000, got {top_k}")
        if "{}" not in prompt:
            raise BadInput(f"the bridge prompt must contain '{{}}' where the class name goes, got {prompt!r}")
        if class_text not in CLASS_TEXTS:
            raise BadInput(f"bridge class_text must be one of {list(CLASS_TEXTS)}, got {class_text!r}")
        if space not in SPACES:
            raise BadInput(f"bridge space must be one of {list(SPACES)}, got {space!r}")
        if text_temperature <= 0:
            raise BadInput(f"bridge text_temperature must be > 0, got {text_temperature}")
        if text is None:
            from visrec.encoders.text import MiniLMTextEncoder

            text = MiniLMTextEncoder()
        self.text = text
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.prompt = prompt
        self.class_text = class_text
        self.space = space
        self.text_temperature = float(text_temperature)
        self.dim = 1000 if space == "classes" else text.dim
        self._classes: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        """JSON facts that change the joint vectors (part of the image encoder's fingerprint)."""
        cfg: dict[str, Any] = {
            "text": self.text.fingerprint,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "prompt": self.prompt,
        }
        # Absent at their old defaults, so indexes built before these options keep their fingerprint.
        if self.class_text != "name":
            cfg["class_text"] = self.class_text
        if self.space != "text":
            cfg["space"] = self.space
            cfg["text_temperature"] = self.text_temperature
        return cfg

    def class_vectors(self) -> np.ndarray:
        """``(1000, 384)`` float32 unit MiniLM vectors of the class prompts (cached on disk)."""
        if self._classes is not None:
            return self._classes
        texts = class_texts(self.class_text)
        prompts = self._prompts(texts)
        path = self.class_vectors_path()
        vectors = _load_npy(path, (1000, self.text.dim))
        if vectors is None:
            per_prompt = self.text.encode(prompts).astype(np.float64)
            owner = np.repeat(np.arange(1000), [len(t) for t in texts])
            sums = np.zeros((1000, per_prompt.shape[1]))
            np.add.at(sums, owner, per_prompt)
            vectors = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
            buf = io.BytesIO()
            np.save(buf, vectors, allow_pickle=False)
            atomic_write_bytes(path, buf.getvalue())
        self._classes = vectors
        return vectors

    def _prompts(self, texts: list[list[str]]) -> list[str]:
        return [self.prompt.format(t) for per_class in texts for t in per_class]

    def class_vectors_path(self) -> Path:
        """Where :meth:`class_vectors` caches its ``.npy`` (keyed by the text encoder and the prompts)."""
        prompts = self._prompts(class_texts(self.class_text))
        key = hashlib.sha256("\n".join([self.text.fingerprint, *prompts]).encode()).hexdigest()[:16]
        return cache_dir() / f"imagenet-prompts-{key}.npy"

    def project(self, logits: np.ndarray) -> np.ndarray:
        """``(n, 1000)`` logits -> ``(n, dim)`` float32 unit vectors in the joint space."""
        if logits.ndim != 2 or logits.shape[1] != 1000:
            raise DimensionMismatch(f"bridge expects (n, 1000) ImageNet logits, got {logits.shape}")
        z = logits.astype(np.float64) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        if 0 < self.top_k < 1000:
            drop = np.argpartition(probs, -self.top_k, axis=1)[:, : -self.top_k]
            np.put_along_axis(probs, drop, 0.0, axis=1)
        if self.space == "classes":
            joint = np.sqrt(probs).astype(np.float32)
        else:
            joint = (probs @ self.class_vectors().astype(np.float64)).astype(np.float32)
        return joint / np.maximum(np.linalg.norm(joint, axis=1, keepdims=True), 1e-12)

    def concepts(self, vectors: np.ndarray, top: int = 3) -> list[tuple[str, ...]]:
        """The ``top`` ImageNet class names nearest each ``(n, dim)`` joint vector (a query, or an image's
        projection): what the bridge reads a query as, or sees in an image. In the class space a vector's largest
        entries are its classes."""
        names = imagenet_class_names()
        v = np.atleast_2d(vectors)
        scores = v if self.space == "classes" else v @ self.class_vectors().T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        return [tuple(names[j] for j in row) for row in order]

    def concept_weights(
        self, prompts: Sequence[Sequence[str]], temperature: float = 0.06, keep: int = 50
    ) -> np.ndarray:
        """``(c, 1000)`` float64 weights of the ImageNet classes for ``c`` classes given by their prompts.

        Row ``i`` is a distribution over the 1000 classes: for each prompt of class ``i``, the softmax at
        ``temperature`` of its MiniLM cosines to the 1000 class vectors, averaged over the prompts; only the
        ``keep`` largest weights stay (renormalised), so a class is not credited with the long tail of classes
        every text resembles a little. An image's probability mass on these weights is how much of what the
        ImageNet model sees in it the class describes (:class:`visrec.classify.ZeroShotClassifier`). Cached in the
        cache folder as ``.npy`` (keyed by the text encoder, the class vectors, the prompts and the settings).
        """
        if temperature <= 0 or not 1 <= keep <= 1000:
            raise BadInput(f"concept weights need temperature > 0 and 1 <= keep <= 1000, got {temperature}, {keep}")
        if not prompts or any(not p for p in prompts):
            raise BadInput("concept weights need at least one prompt per class")
        flat = [t for per_class in prompts for t in per_class]
        facts = [self.text.fingerprint, self.class_vectors_path().name, f"{temperature}", f"{keep}"]
        sizes = [str(len(p)) for p in prompts]
        key = hashlib.sha256("\n".join([*facts, *sizes, *flat]).encode()).hexdigest()[:16]
        path = cache_dir() / f"zeroshot-concepts-{key}.npy"
        cached = _load_npy(path, (len(prompts), 1000))
        if cached is not None and (cached >= 0).all() and (cached.sum(axis=1) > 0).all():
            weights = cached.astype(np.float64)
            return weights / weights.sum(axis=1, keepdims=True)
        weights = self._concept_weights(flat, [len(p) for p in prompts], temperature, keep)
        buf = io.BytesIO()
        np.save(buf, weights.astype(np.float32), allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
        return weights

    def _concept_weights(self, flat: list[str], sizes: list[int], temperature: float, keep: int) -> np.ndarray:
        vectors = self.text.encode(flat).astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sims = vectors @ self.class_vectors().astype(np.float64).T / temperature
        q = np.exp(sims - sims.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        owner = np.repeat(np.arange(len(sizes)), sizes)
        weights = np.zeros((len(sizes), 1000))
        np.add.at(weights, owner, q)
        if keep < 1000:
            drop = np.argpartition(weights, -keep, axis=1)[:, :-keep]
            np.put_along_axis(weights, drop, 0.0, axis=1)
        return weights / weights.sum(axis=1, keepdims=True)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 unit vectors of free texts (the query side of the bridge)."""
        vectors = self.text.encode(texts)
        if self.space == "text":
            return vectors
        sims = vectors.astype(np.float64) @ self.class_vectors().astype(np.float64).T / self.text_temperature
        q = np.exp(sims - sims.max(axis=1, keepdims=True)) if len(sims) else sims
        q = np.sqrt(q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300))
        return (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _load_npy(path: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached array, or None when absent, truncated, or of the wrong shape (then it is recomputed)."""
    try:
        arr = load_npy(path)
    except (OSError, ValueError, EOFError):
        return None
    if arr.shape != shape or arr.dtype != np.float32 or not np.isfinite(arr).all():
        return None
    return arr
