"""Glue between an opened index and the pure classifiers of :mod:`visrec.classify`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from visrec.encoders.base import Encoder
from visrec.errors import BadInput, VisrecError
from visrec.stores.base import VectorStore
from visrec.types import Embeddings, Prediction

if TYPE_CHECKING:
    from visrec.classify import Classifier, ClassNames, ZeroShotClassifier
    from visrec.encoders.bridge import LabelBridge

MODES = ("knn", "prototype", "linear", "zeroshot", "blend")
AUTO = "auto"
"""The default mode: ``linear`` on an index with a linear head (any calibrated index with two labeled classes or
more), else ``knn``; ``knn`` too when a neighbour count is given."""


class OpenedIndex(Protocol):
    """What the classifiers need of an opened index (:class:`visrec.index.reader.Index` is one)."""

    store: VectorStore
    joint: VectorStore | None

    @property
    def path(self) -> Path: ...

    @property
    def encoder_info(self) -> dict[str, Any]: ...

    @property
    def encoder(self) -> Encoder: ...

    def prototypes(self) -> tuple[np.ndarray, list[str]]: ...

    def linear_head(self) -> dict[str, np.ndarray]: ...

    def metadata(self) -> dict[str, dict[str, Any]]: ...

    def metadata_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def whitened_gallery(self) -> Any: ...


def knn_metric(calibrated: bool, has_whitening: bool) -> str:
    """The kNN metric of an index whose calibration does not name one: ``"whitened"`` for an uncalibrated index
    holding a fitted whitening (only an index opted in to the metric stores one, e.g. ``visrec index
    --knn-metric whitened --no-calibrate``), else ``"cosine"`` (also for a calibration stored before the option
    existed: its thresholds were fitted on cosines)."""
    return "whitened" if has_whitening and not calibrated else "cosine"


def _text_vectors(index: OpenedIndex, classes: Sequence[str]) -> np.ndarray:
    from visrec.classify import prompt_vectors

    if index.joint is None:
        raise VisrecError(f"zero-shot needs an encoder with a text side; {index.encoder_info.get('name')} has none")
    enc = index.encoder
    return prompt_vectors(list(classes), lambda t: enc.encode_texts(t))


def label_bridge(encoder: Encoder) -> LabelBridge | None:
    """The ImageNet label bridge behind an encoder's text side (its own, or an ensemble's first text member's)."""
    from visrec.encoders.bridge import LabelBridge

    bridge = getattr(encoder, "bridge", None)
    members, text_members = getattr(encoder, "members", None), getattr(encoder, "text_members", None)
    if bridge is None and members and text_members:
        bridge = getattr(members[text_members[0]], "bridge", None)
    return bridge if isinstance(bridge, LabelBridge) else None


def concept_weights(bridge: LabelBridge, names: Sequence[str]) -> np.ndarray:
    """``(c, 1000)`` ImageNet-class weights of zero-shot classes: each name's prompts are the classifier's
    templates around the name and its WordNet texts (:meth:`visrec.encoders.wordnet.WordNetNouns.describe`)."""
    from visrec.classify import DEFAULT_TEMPLATES
    from visrec.encoders.wordnet import WordNetNouns

    nouns = WordNetNouns()
    prompts = [[t.format(x) for t in DEFAULT_TEMPLATES for x in nouns.describe(n)] for n in names]
    return bridge.concept_weights(prompts)


def _zeroshot(index: OpenedIndex, prompts: dict[str, str], opts: dict[str, Any]) -> ZeroShotClassifier:
    """Concept scoring where the encoder's text side is the label bridge, unless ``opts`` (stored with a
    calibration) say ``scoring="joint"`` or predate the option."""
    from visrec.classify import ZeroShotClassifier

    cls, text = list(prompts), _text_vectors(index, list(prompts.values()))
    # A calibration stored before concept scoring existed has options but no "scoring": it was fitted on cosines.
    scoring = opts.pop("scoring", "joint" if opts else "concepts")
    bridge = label_bridge(index.encoder) if scoring == "concepts" else None
    if bridge is None:
        opts.pop("concept_temperature", None)
        return ZeroShotClassifier(cls, text, **opts)
    return ZeroShotClassifier(cls, text, concepts=concept_weights(bridge, list(prompts.values())), **opts)


def make_classifier(
    index: OpenedIndex, mode: str, params: dict[str, Any], classes: ClassNames | None = None
) -> Classifier:
    """The ``mode`` classifier for ``index`` with ``params`` (as stored with a calibration).

    ``classes`` (zero-shot/blend): labels to answer with, each with the name its prompts use
    (:func:`visrec.classify.class_prompts`); default the index's labels. Blend keeps the image prototype of every
    such label the index holds.
    """
    from visrec.classify import (
        BlendClassifier,
        KnnClassifier,
        LinearClassifier,
        PrototypeClassifier,
        ZeroShotClassifier,
        class_prompts,
    )

    opts = {k: v for k, v in params.items() if k != "mode"}
    if mode == "knn":
        return KnnClassifier(**opts)
    if mode == "linear":
        head = index.linear_head()
        return LinearClassifier.from_arrays([str(c) for c in head["classes"]], head["weights"], head["bias"], **opts)
    protos, names = index.prototypes()
    if mode == "prototype":
        if not names:
            raise VisrecError(f"{index.path} holds no labeled image, so it has no class prototypes")
        return PrototypeClassifier.from_arrays(names, protos, **opts)
    if mode in ("zeroshot", "blend"):
        if not classes and not names:
            raise BadInput("zero-shot needs class names: the index has no labels, pass classes=[...]")
        prompts = class_prompts(classes if classes else names)
        if mode == "zeroshot":
            return _zeroshot(index, prompts, opts)
        cls, text = list(prompts), _text_vectors(index, list(prompts.values()))
        zs_opts = {k: v for k, v in opts.items() if k in ("temperature", "top_k")}
        zs = ZeroShotClassifier(cls, text, **zs_opts)
        keep = [i for i, n in enumerate(names) if n in cls]
        proto = PrototypeClassifier.from_arrays([names[i] for i in keep], protos[keep])
        return BlendClassifier(zs, proto, **opts)
    raise BadInput(f"unknown classifier mode {mode!r}; choose one of {', '.join(MODES)}")


def neighbor_labels(index: OpenedIndex, ids: np.ndarray) -> list[list[tuple[str, ...]]]:
    """Label tuples of a ``(q, k)`` array of neighbour ids (``()`` for padding and unlabeled items)."""
    metas = index.metadata_of([str(i) for i in np.asarray(ids).ravel()])
    return [[tuple(metas[str(i)].get("labels", ())) if i != "" else () for i in row] for row in ids]


def predict(index: OpenedIndex, clf: Classifier, emb: Embeddings, mode: str) -> list[Prediction]:
    """Uncalibrated predictions of ``clf`` for query embeddings ``emb``."""
    from visrec.classify import BlendClassifier, KnnClassifier, ZeroShotClassifier

    if isinstance(clf, KnnClassifier) and clf.whitened:
        labels, scores = index.whitened_gallery().search(emb.vectors, clf.k)
        return clf.predict_from_neighbors(labels, scores)
    if isinstance(clf, KnnClassifier):
        nb = index.store.search(emb.vectors, clf.k)
        return clf.predict_from_neighbors(neighbor_labels(index, nb.ids), nb.scores)
    if isinstance(clf, (ZeroShotClassifier, BlendClassifier)) and emb.joint is None:
        raise VisrecError(f"mode {mode!r} needs joint (image-text) vectors, which this encoder does not produce")
    if isinstance(clf, ZeroShotClassifier):
        return clf.predict(emb.joint, emb.logits)  # type: ignore[arg-type]
    if isinstance(clf, BlendClassifier):
        return clf.predict(emb.vectors, emb.joint)
    return clf.predict(emb.vectors)


def make_classifier_from_params(mode: str, params: dict[str, Any]) -> Classifier:
    """A kNN, prototype or linear classifier from stored options, for calibration on the index's own vectors
    (the prototype classifier is fitted there, per left-out group; the linear one per fold; kNN on the index's
    default metric unless the options name one)."""
    from visrec.classify import KnnClassifier, LinearClassifier, PrototypeClassifier
    from visrec.classify.knn import DEFAULT_METRIC

    opts = {k: v for k, v in params.items() if k != "mode"}
    if mode == "knn":
        return KnnClassifier(**{"metric": DEFAULT_METRIC, **opts})
    if mode == "linear":
        return LinearClassifier(**opts)
    if mode == "prototype":
        return PrototypeClassifier(**opts)
    raise BadInput(f"mode {mode!r} cannot be calibrated on the index alone; give a labeled held-out set")
