"""Encoder ensembles: ``--encoder efficientnet-lite0+mobilenet-v2`` (any registered image encoders joined by ``+``).

Each image is decoded once and encoded by every member. The retrieval vector is the concatenation of the
members' unit vectors, block ``i`` scaled by ``sqrt(w_i / sum(w))`` -- so the cosine similarity of two
ensemble vectors is exactly the weighted mean of the members' cosine similarities (score-level fusion and
normalised concatenation are the same thing here, and every store, classifier and adapter works unchanged).
``Embeddings.joint`` (the text side) is the normalised weighted mean of the members' bridge vectors, which all
live in the same MiniLM space. The ensemble's fingerprint covers every member's fingerprint and the weights.

Default weights are equal; ``benchmarks/encoder_accuracy.py --cache`` sweeps them on the train splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from visrec.encoders.base import Encoder, ImageLike
from visrec.encoders.cache import fingerprint
from visrec.encoders.common import check_batch_size, check_images, l2_normalize, progress_bar, resolve_ids
from visrec.errors import BadInput, VisrecError
from visrec.types import Embeddings

SEPARATOR = "+"
# The recommended accuracy-oriented ensemble, ``--encoder efficientnet-ensemble``: chosen on the train splits of
# naruto_roboflow, cifar10_subset and caltech101_dev (``benchmarks/raw_variants.py``, docs/encoders.md).
# Raw kNN top-1 on the test splits: cifar10_subset 74.4 -> 76.3 %, caltech101_dev 89.5 -> 91.5 % (naruto 98.8 %).
RECOMMENDED_NAME = "efficientnet-ensemble"
RECOMMENDED = "efficientnet-lite0+efficientnet-lite1+efficientnet-lite2"
RECOMMENDED_WEIGHTS = (2.0, 1.0, 1.0)
RECOMMENDED_MEMBERS: tuple[Mapping[str, Any], ...] = ({"flip": True},) * 3
ENSEMBLE_VERSION = 1  # bump when the fusion changes: fingerprints then renew
CHUNK = 64  # images decoded ahead of the members (bounds memory: full-size decodes are large)


def member_names(name: str) -> list[str]:
    """``"a+b"`` -> ``["a", "b"]``; raises ``BadInput`` for an empty member. A name may repeat (the same model
    with other ``members`` options, e.g. two input sizes)."""
    names = [n.strip() for n in name.split(SEPARATOR)]
    if len(names) < 2 or not all(names):
        raise BadInput(f"an encoder ensemble is two or more encoder names joined by '+', got {name!r}")
    return names


def fuse(blocks: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Unit-row blocks ``(n, d_i)`` -> ``(n, sum d_i)`` float32 unit rows whose dot products are the
    ``weights``-weighted mean of the blocks' dot products."""
    w = np.asarray(weights, np.float64)
    scales = np.sqrt(w / w.sum())
    return np.concatenate([l2_normalize(b) * np.float32(s) for b, s in zip(blocks, scales, strict=True)], axis=1)


def _check_weights(weights: Sequence[float] | None, n: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * n
    w = tuple(float(x) for x in weights)
    if len(w) != n or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise BadInput(f"ensemble weights must be {n} non-negative numbers (not all zero), got {list(weights)}")
    return w


class EnsembleEncoder:
    """An ``Encoder`` made of member encoders, fused as described in the module docstring."""

    def __init__(
        self, members: Sequence[Encoder], weights: Sequence[float] | None = None, name: str | None = None
    ) -> None:
        if len(members) < 2:
            raise BadInput(f"an ensemble needs at least two members, got {len(members)}")
        self.members = list(members)
        self.weights = _check_weights(weights, len(self.members))
        # ``name``: a registered name that rebuilds this ensemble (e.g. "efficientnet-ensemble"), else "a+b".
        self.name = name or SEPARATOR.join(m.name for m in self.members)
        self.dim = sum(m.dim for m in self.members)
        self.input_size = max(m.input_size for m in self.members)
        # The text side: the first member that has one, averaged with every member sharing its text space.
        spaces = [_text_space(m) for m in self.members]
        first = next((s for s in spaces if s is not None), None)
        self.text_members = [i for i, s in enumerate(spaces) if s is not None and s == first]
        self.joint_dim = self.members[self.text_members[0]].joint_dim if self.text_members else None
        members_sha = hashlib.sha256("\n".join(m.fingerprint for m in self.members).encode()).hexdigest()
        cfg = {"version": ENSEMBLE_VERSION, "weights": list(self.weights)}
        self.fingerprint = fingerprint(self.name, members_sha, cfg)

    def encode_images(
        self,
        images: Sequence[ImageLike],
        ids: Sequence[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Embeddings:
        """Encode images with every member (each file decoded once), in order.

        ``vectors``: ``(n, dim)`` float32 unit rows (see :func:`fuse`); ``joint``: ``(n, joint_dim)`` or None;
        ``logits``: ``(n, 1000)``, the weighted mean of the text members' ImageNet logits, or None.
        """
        check_images(images)
        id_tuple = resolve_ids(len(images), ids)
        size = check_batch_size(batch_size, 32)
        n = len(images)
        vectors = np.empty((n, self.dim), np.float32)
        joint = np.empty((n, self.joint_dim), np.float32) if self.joint_dim else None
        logits: np.ndarray | None = np.empty((n, 1000), np.float32) if self.joint_dim else None
        pool = ThreadPoolExecutor(2, thread_name_prefix="visrec-ensemble-decode")
        with pool, progress_bar(n, progress, f"encoding with {self.name}") as advance:
            for start in range(0, n, CHUNK):
                chunk = list(pool.map(self._decoded, images[start : start + CHUNK]))
                v, j, lg = self._encode_chunk(chunk, size)
                vectors[start : start + len(chunk)] = v
                if joint is not None and j is not None:
                    joint[start : start + len(chunk)] = j
                if logits is not None and lg is not None:
                    logits[start : start + len(chunk)] = lg
                elif lg is None:
                    logits = None
                advance(len(chunk))
        return Embeddings(vectors, id_tuple, self.fingerprint, joint, logits)

    def _decoded(self, image: ImageLike) -> ImageLike:
        """A path decoded once (upright RGB, draft mode at the largest member's size); other inputs as given."""
        if isinstance(image, (str, Path)):
            from visrec.data.images import decode_file

            return decode_file(image, draft_size=self.input_size).image
        return image

    def _encode_chunk(
        self, chunk: Sequence[ImageLike], size: int
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        embs = [m.encode_images(chunk, batch_size=size) for m in self.members]
        vectors = fuse([e.vectors for e in embs], self.weights)
        if not self.text_members:
            return vectors, None, None
        joint = np.zeros((len(chunk), self.joint_dim or 0), np.float64)
        heads = [(self.weights[i], embs[i].logits) for i in self.text_members]
        for i in self.text_members:
            part = embs[i].joint
            if part is not None:
                joint += self.weights[i] * part
        logits = None
        if all(lg is not None and lg.shape[1] == 1000 for _, lg in heads):
            stacked = np.stack([np.asarray(lg, np.float64) * w for w, lg in heads])
            logits = (stacked.sum(axis=0) / sum(w for w, _ in heads)).astype(np.float32)
        return vectors, l2_normalize(joint), logits

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, joint_dim)`` text vectors of the first member with a text side (see :attr:`text_members`)."""
        if not self.text_members:
            raise VisrecError(f"no member of {self.name} has a text side; create the members with bridge=True")
        return self.members[self.text_members[0]].encode_texts(texts)

    def describe(self) -> dict[str, Any]:
        """JSON facts for an index manifest; ``encoder_from_info`` rebuilds the same ensemble from them."""
        members = [m.describe() for m in self.members]
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "options": {"weights": list(self.weights), "members": [d.get("options", {}) for d in members]},
            "dim": self.dim,
            "joint_dim": self.joint_dim,
            "input_size": self.input_size,
            "normalization": "l2",
            "fusion": "concatenation of unit member vectors scaled by sqrt(weight / total weight)",
            "members": members,
            "description": f"ensemble of {', '.join(m.name for m in self.members)}",
        }


def _text_space(encoder: Encoder) -> str | None:
    """Who owns the encoder's text space: the bridge's text encoder (shared by every ImageNet backbone), else the
    encoder itself; None without a text side."""
    if encoder.joint_dim is None:
        return None
    bridge = getattr(encoder, "bridge", None)
    if bridge is None:
        return encoder.fingerprint
    # Everything of the bridge's config except its image-side sharpening decides what a text maps to.
    text_side = {k: v for k, v in bridge.config().items() if k not in ("temperature", "top_k")}
    return f"bridge:{sorted(text_side.items())}:{encoder.joint_dim}"


def create(
    name: str,
    weights: Sequence[float] | None = None,
    members: Sequence[Mapping[str, Any]] | None = None,
    **shared: Any,
) -> EnsembleEncoder:
    """The ensemble named ``"a+b[+c...]"``: ``weights`` per member (default equal), ``members`` one options
    mapping per member (as :meth:`EnsembleEncoder.describe` records), ``shared`` options given to every member
    (e.g. ``bridge=False``)."""
    from visrec.encoders import create_encoder

    names = member_names(name)
    if members is not None and len(members) != len(names):
        raise BadInput(f"{name}: got options for {len(members)} members, expected {len(names)}")
    opts = list(members) if members is not None else [{}] * len(names)
    built = [create_encoder(n, **{**shared, **dict(o)}) for n, o in zip(names, opts, strict=True)]
    return EnsembleEncoder(built, weights)


def create_recommended(
    weights: Sequence[float] | None = None, members: Sequence[Mapping[str, Any]] | None = None, **shared: Any
) -> EnsembleEncoder:
    """``efficientnet-ensemble``: :data:`RECOMMENDED` with :data:`RECOMMENDED_WEIGHTS` and each member's
    :data:`RECOMMENDED_MEMBERS` options (mirror-image averaging), unless ``weights`` / ``members`` say otherwise;
    ``shared`` options go to every member. Named ``efficientnet-ensemble``; its manifest records that name with
    the weights and every member's options."""
    from visrec.encoders import create_encoder

    names = member_names(RECOMMENDED)
    chosen = RECOMMENDED_MEMBERS if members is None else members
    if len(chosen) != len(names):
        raise BadInput(f"efficientnet-ensemble: got options for {len(chosen)} members, expected {len(names)}")
    built = [create_encoder(n, **{**shared, **dict(o)}) for n, o in zip(names, chosen, strict=True)]
    return EnsembleEncoder(built, weights or RECOMMENDED_WEIGHTS, name=RECOMMENDED_NAME)
