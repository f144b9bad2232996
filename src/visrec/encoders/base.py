"""The encoder contract: images (and texts, where the model has a text side) in, ``Embeddings`` out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
from PIL import Image

from visrec.types import Embeddings

ImageLike = Union[np.ndarray, Image.Image, str, Path]
"""An RGB ``uint8`` array ``(h, w, 3)``, a PIL image, or a path to an image file."""


@runtime_checkable
class Encoder(Protocol):
    """What every image encoder provides.

    ``dim`` is the width of the retrieval space (``Embeddings.vectors``); ``joint_dim`` the width of the space
    shared with the text side (``Embeddings.joint``, and what :meth:`encode_texts` returns), or None when the
    encoder has no text side. ``fingerprint`` changes whenever the model, its weights or its preprocessing
    change; an index built with one fingerprint refuses queries from another. ``input_size`` is the side in
    pixels the model wants, so readers can decode JPEGs straight to about that size.
    """

    name: str
    dim: int
    joint_dim: int | None
    fingerprint: str
    input_size: int

    def encode_images(
        self,
        images: Sequence[ImageLike],
        ids: Sequence[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Embeddings:
        """Encode images in order; ids default to ``"0".."n-1"``. Rows are L2-normalised float32."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, joint_dim)`` float32 L2-normalised text vectors. Raises ``VisrecError`` with no text side."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable facts stored in an index manifest: name, weights, licence, preprocessing, dims."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """A text-only sentence encoder (used to match free text against label names)."""

    name: str
    dim: int
    fingerprint: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised sentence vectors."""
        ...
