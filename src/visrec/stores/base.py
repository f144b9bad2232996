"""The vector store contract every backend passes (see tests/contract)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from visrec.types import Neighbors

Metadata = Mapping[str, Any]
"""Per-item metadata: ``path`` (str), ``labels`` (list[str]), ``split`` (str | None), ``sha256`` (str),
``width``/``height`` (int), ``group`` (str | None) and ``extra`` (dict[str, str]) of other manifest columns."""


@runtime_checkable
class VectorStore(Protocol):
    """Stable string ids -> L2-normalised float32 vectors of width ``dim`` plus metadata.

    ``where`` arguments are filter expressions (see :mod:`visrec.stores.filters`), e.g.
    ``label == "Sakura" and split != "test"``.
    """

    dim: int

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]) -> None:
        """Insert new items; raises ``BadInput`` if an id is already stored."""
        ...

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]) -> None:
        """Insert or replace items."""
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns how many were removed."""
        ...

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors ``(n, dim)`` and metadata of the given ids, in order; raises ``BadInput`` for unknown ids."""
        ...

    def search(self, queries: np.ndarray, k: int, where: str | None = None) -> Neighbors:
        """Top-``k`` by inner product for each row of ``queries`` ``(q, dim)``, among items matching ``where``."""
        ...

    def count(self, where: str | None = None) -> int:
        """Number of items (matching ``where``)."""
        ...

    def ids(self, where: str | None = None) -> list[str]:
        """Stored ids (matching ``where``) in insertion order."""
        ...

    def export(self, batch_size: int = 10_000) -> Iterator[tuple[list[str], np.ndarray, list[dict[str, Any]]]]:
        """Everything, in batches of ``(ids, vectors, metadata)``."""
        ...

    def save(self, folder: Path) -> None:
        """Write the store's files into ``folder`` (which exists and is empty)."""
        ...
