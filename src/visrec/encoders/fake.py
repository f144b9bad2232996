"""``fake``: a deterministic, weight-free encoder for tests that still means something on synthetic images.

Image features: a 4x4 RGB thumbnail (centred on mid-gray) and a 3x3x3 RGB colour histogram, concatenated and
mapped to ``dim`` with a fixed orthonormal random projection (seeded), then L2-normalised -- so images of
similar colour and layout land close together. Text side: colour words in a text ("red", "dark blue"...)
map to the embedding of a solid image of that colour, so zero-shot tests on coloured synthetic images work;
any other text maps to a fixed pseudo-random unit vector derived from its sha256. ``joint = vectors``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from visrec.encoders.base import ImageLike
from visrec.encoders.cache import fingerprint
from visrec.encoders.common import check_batch_size, check_images, l2_normalize, progress_bar, resolve_ids
from visrec.errors import BadInput
from visrec.types import Embeddings

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (20, 180, 20),
    "blue": (20, 20, 220),
    "yellow": (235, 220, 20),
    "orange": (245, 140, 0),
    "purple": (130, 20, 160),
    "pink": (250, 150, 190),
    "brown": (120, 70, 20),
    "cyan": (20, 220, 220),
    "magenta": (220, 20, 220),
    "white": (250, 250, 250),
    "black": (5, 5, 5),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
}
_THUMB = 4
_BINS = 3
_RAW = _THUMB * _THUMB * 3 + _BINS**3
_SEED = 20240917


class FakeEncoder:
    """See the module docstring. ``dim`` (>= 8) is the output width; ``input_size`` is 64."""

    name = "fake"
    input_size = 64

    def __init__(self, dim: int = 64) -> None:
        if not isinstance(dim, int) or dim < 8:
            raise BadInput(f"fake encoder dim must be an int >= 8, got {dim!r}")
        self.dim = dim
        self.joint_dim = dim
        rng = np.random.default_rng(_SEED)
        side = max(dim, _RAW)
        basis, _ = np.linalg.qr(rng.standard_normal((side, side)))
        self._projection = basis[:_RAW, :dim].astype(np.float32)
        self.fingerprint = fingerprint(self.name, "none", {"version": 1, "dim": dim, "thumb": _THUMB, "bins": _BINS})

    def _raw(self, image: ImageLike) -> np.ndarray:
        from visrec.data.images import to_rgb_array

        rgb = to_rgb_array(image, draft_size=self.input_size)
        thumb = np.asarray(Image.fromarray(rgb).resize((_THUMB, _THUMB), Image.Resampling.BOX), np.float32)
        bins = np.minimum(rgb.reshape(-1, 3).astype(np.int64) * _BINS // 256, _BINS - 1)
        codes = (bins[:, 0] * _BINS + bins[:, 1]) * _BINS + bins[:, 2]
        hist = np.bincount(codes, minlength=_BINS**3).astype(np.float32) / len(codes)
        return np.concatenate([(thumb.ravel() / 255.0 - 0.5), hist * 2.0])

    def encode_images(
        self,
        images: Sequence[ImageLike],
        ids: Sequence[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Embeddings:
        """``(n, dim)`` float32 unit rows in input order; ``joint`` is the same array."""
        check_images(images)
        id_tuple = resolve_ids(len(images), ids)
        check_batch_size(batch_size, 32)
        raw = np.zeros((len(images), _RAW), np.float32)
        with progress_bar(len(images), progress, "encoding with fake") as advance:
            for i, image in enumerate(images):
                raw[i] = self._raw(image)
                advance(1)
        vectors = l2_normalize(raw @ self._projection)
        return Embeddings(vectors, id_tuple, self.fingerprint, vectors)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` unit vectors: the mean of the solid-colour embeddings of the colour words found,
        else a fixed vector seeded by the text's sha256."""
        if isinstance(texts, str):
            raise BadInput("encode_texts() takes a list of texts, got a single string; wrap it in a list")
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            words = [w for w in re.findall(r"[a-z]+", str(text).lower()) if w in COLOURS]
            if words:
                solids = [np.full((8, 8, 3), COLOURS[w], np.uint8) for w in words]
                out[i] = self.encode_images(solids).vectors.mean(axis=0)
            else:
                seed = int.from_bytes(hashlib.sha256(str(text).encode()).digest()[:8], "little")
                out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return l2_normalize(out)

    def describe(self) -> dict[str, Any]:
        """JSON facts for an index manifest."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "options": {"dim": self.dim},
            "dim": self.dim,
            "joint_dim": self.joint_dim,
            "input_size": self.input_size,
            "normalization": "l2",
            "weights": None,
            "description": "deterministic colour-thumbnail + histogram features, for tests",
        }


def create(dim: int = 64) -> FakeEncoder:
    """The ``fake`` encoder."""
    return FakeEncoder(dim=dim)
