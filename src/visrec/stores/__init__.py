"""Vector stores: stable string ids -> L2-normalised float32 vectors + metadata, searched by inner product.

Backends are registered in :data:`STORES` and load lazily (importing this package imports neither FAISS nor
torch). On disk a store lives in a generation of an index folder (:class:`visrec.index.IndexFolder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visrec.errors import BadInput
from visrec.registry import Registry
from visrec.stores._common import l2_normalize
from visrec.stores.base import Metadata, VectorStore
from visrec.stores.filters import Filter, parse_filter

STORES: Registry[VectorStore] = Registry("store")
STORES.register("exact", "visrec.stores.exact:ExactStore", help="brute-force numpy; exact; fine to a few 100k vectors")
STORES.register("faiss", "visrec.stores.faiss_store:FaissStore", help="FAISS: exact Flat, IVF-Flat from 20k vectors")
STORES.register("milvus", "visrec.stores.milvus_store:MilvusStore", help="Milvus server or Lite file; visrec[milvus]")

__all__ = [
    "STORES",
    "Filter",
    "Metadata",
    "VectorStore",
    "create_store",
    "l2_normalize",
    "load_store",
    "parse_filter",
]


def create_store(name: str, dim: int, **options: Any) -> VectorStore:
    """An empty store of backend ``name`` for ``dim``-wide vectors; ``options`` go to its constructor."""
    return STORES.create(name, dim=dim, **options)


def load_store(name: str, folder: str | Path, **options: Any) -> VectorStore:
    """Open the store saved in ``folder`` with backend ``name`` (any backend reads any other's files).

    ``options``: ``mmap`` (default True) and constructor options overriding the saved ones. A folder of
    segments (``segments.json``, see :mod:`visrec.stores.segmented`) opens as a ``SegmentedStore``.
    """
    if (Path(folder) / "segments.json").is_file():
        from visrec.stores.segmented import SegmentedStore

        return SegmentedStore.load(folder, name, **options)
    loader = getattr(STORES.builder(name), "load", None)
    if loader is None:
        raise BadInput(f"store {name!r} cannot be loaded from a folder")
    store: VectorStore = loader(Path(folder), **options)
    return store
