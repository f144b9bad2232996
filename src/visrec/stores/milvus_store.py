"""Milvus store: the :class:`~visrec.stores.base.VectorStore` protocol over a Milvus collection.

One client API (``pymilvus.MilvusClient``) speaks to Milvus Lite (a local ``.db`` file, in-process; for tests
and small galleries), Milvus Standalone and Milvus Distributed. Pick the target with a URI:

- ``milvus://host:19530/collection`` (``milvuss://`` for TLS): a Milvus server; ``token=`` (or the
  ``VISREC_MILVUS_TOKEN`` environment variable, e.g. ``user:password``) authenticates.
- ``milvus-lite:///abs/path.db`` (optionally ``#collection``): a Milvus Lite file.
- no URI: a private Milvus Lite file in a temporary folder, deleted with the store.

Collection schema: ``id`` VARCHAR primary key, ``seq`` INT64 (insertion order, kept by upsert), ``vector``
FLOAT_VECTOR(dim), ``labels`` ARRAY<VARCHAR>, ``path``/``sha256`` VARCHAR, ``split``/``grp`` nullable VARCHAR,
``width``/``height`` INT64, ``extra`` JSON (other manifest columns, e.g. a box). The encoder fingerprint and
the visrec schema version are collection properties. Metric: inner product. Index ``flat`` (exact; the
default), ``ivf`` (IVF_FLAT, ``nlist``/``nprobe``) or ``hnsw`` (``m``/``ef``).

``save(folder)`` writes the portable files every backend reads (``vectors.npy``, ``metadata.sqlite``,
``store.json``) and ``milvus.json`` (uri, collection, count). :meth:`MilvusStore.load` re-attaches to a
server collection that still holds the saved count, and otherwise uploads the portable files into a new
collection (a private Lite file unless ``uri`` is given), so changes never touch the saved files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from visrec.errors import BadInput, MissingExtra, VisrecError
from visrec.stores import _milvus_io as mio
from visrec.stores._common import _check_ids, check_k, check_unit, check_vectors
from visrec.stores.metadata import normalize_metadata
from visrec.stores.milvus_expr import to_milvus
from visrec.types import Neighbors

log = logging.getLogger(__name__)
MAX_TOPK = 16_384
"""Milvus refuses a larger ``limit``; larger ``k`` are padded."""
Batch = tuple[list[str], np.ndarray, list[dict[str, Any]]]
SCHEMES = ("milvus", "milvuss", "milvus-lite")
TOKEN_ENV = "VISREC_MILVUS_TOKEN"


def _client(target: mio.Target, token: str | None) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as e:
        raise MissingExtra("pymilvus", "milvus", "The milvus store") from e
    try:
        return MilvusClient(target.client_uri, token=token or "")
    except Exception as e:  # pymilvus raises many types for an unreachable server or a bad file
        if target.is_lite:
            raise VisrecError(
                f"Milvus Lite cannot open {target.client_uri} ({e}); one process at a time may hold it: stop the "
                "other one (e.g. visrec serve), or use a Milvus server for shared access"
            ) from e
        uri = target.client_uri
        raise VisrecError(f"cannot connect to Milvus at {uri!r} ({e}); check the address and that it runs") from e


class MilvusStore:
    """Inner-product search in a Milvus collection (see the module docstring for URIs and the schema).

    Vectors follow the same rules as every store: unit-norm float32 rows, stable string ids, metadata in the
    ``Metadata`` format. ``ids()`` and ``export()`` return insertion order (the ``seq`` field).
    """

    backend = "milvus"

    def __init__(
        self,
        dim: int,
        *,
        uri: str | None = None,
        collection: str | None = None,
        token: str | None = None,
        index: str = "flat",
        nlist: int = 1024,
        nprobe: int = 16,
        m: int = 16,
        ef: int = 128,
        encoder_id: str = "",
        drop_existing: bool = False,
    ) -> None:
        """Open (or create) the collection for ``dim``-wide vectors; ``BadInput`` for a bad URI or option."""
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise BadInput(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.index = mio.check_index(index)
        self.index_options = {"nlist": nlist, "nprobe": nprobe, "m": m, "ef": ef}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if uri is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="visrec-milvus-", ignore_cleanup_errors=True)
            uri = f"milvus-lite://{self._tmp.name}/store.db"
        self.target = mio.parse_uri(uri, collection)
        self._lock = threading.RLock()
        self._client = _client(self.target, token or os.environ.get(TOKEN_ENV))
        self._finalizer = weakref.finalize(self, mio.close_client, self._client, self._tmp)
        self.collection = self.target.collection
        if drop_existing and self._client.has_collection(self.collection):
            self._client.drop_collection(self.collection)
        opts = self.index_options
        self.index = mio.ensure_collection(self._client, self.collection, dim, self.index, opts, encoder_id)
        self._next_seq = mio.next_seq(self._client, self.collection)
        # Milvus Lite searches unsealed (growing) segments by brute force in Python, ~20x slower than after a
        # flush; a server seals and indexes segments itself and dislikes frequent flushes
        self._flush_before_search = self.target.is_lite
        self._dirty = False

    def options(self) -> dict[str, Any]:
        """Constructor options saved in ``store.json`` (the target is in ``milvus.json``)."""
        return {"index": self.index, **self.index_options}

    def close(self) -> None:
        """Release the client (and delete a private Lite file)."""
        self._finalizer()

    # ---- writes -------------------------------------------------------------------------------------------

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Insert new items; ``BadInput`` if an id is already stored (use :meth:`upsert`) or repeats."""
        with self._lock:
            id_list, vecs, metas = self._validate(ids, vectors, metadata)
            stored = list(self._seqs(id_list))
            if stored:
                raise BadInput(f"{len(stored)} id(s) already stored, e.g. {stored[:3]}; upsert replaces them")
            self._write(id_list, vecs, metas, {})

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Insert new items and replace stored ones (which keep their place in the insertion order)."""
        with self._lock:
            id_list, vecs, metas = self._validate(ids, vectors, metadata)
            self._write(id_list, vecs, metas, self._seqs(id_list))

    def delete(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns how many were removed."""
        if isinstance(ids, str):
            raise BadInput(f"ids must be a sequence of strings, got the single string {ids!r}")
        with self._lock:
            present = list(self._seqs(list(dict.fromkeys(ids))))
            for start in range(0, len(present), mio.WRITE_BATCH):
                self._client.delete(self.collection, ids=present[start : start + mio.WRITE_BATCH])
            self._dirty = self._dirty or bool(present)
            return len(present)

    # ---- reads --------------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors ``(n, dim)`` float32 and metadata of ``ids`` in order; ``BadInput`` for unknown ids."""
        if isinstance(ids, str):
            raise BadInput(f"ids must be a sequence of strings, got the single string {ids!r}")
        id_list = list(ids)
        with self._lock:
            rows = mio.fetch_rows(self._client, self.collection, list(dict.fromkeys(id_list)))
        unknown = [i for i in id_list if i not in rows]
        if unknown:
            raise BadInput(f"{len(unknown)} unknown id(s), e.g. {unknown[:3]}")
        vecs = np.array([rows[i]["vector"] for i in id_list], np.float32).reshape(len(id_list), self.dim)
        return vecs, [mio.row_to_meta(rows[i]) for i in id_list]

    def search(self, queries: np.ndarray, k: int, where: str | None = None) -> Neighbors:
        """Top-``k`` by inner product for each row of ``queries`` ``(q, dim)`` among items matching ``where``.

        Rows with fewer than ``k`` candidates are padded with id ``""`` and score ``-inf``; at most
        :data:`MAX_TOPK` real hits per query.
        """
        k = check_k(k)
        q = check_vectors(queries, self.dim, what="queries")
        expr = to_milvus(where)
        out_ids = np.full((len(q), k), "", dtype=object)
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        with self._lock:
            if self._dirty and self._flush_before_search:
                self._client.flush(self.collection)
            self._dirty = False
            params = self._search_params(expr)
            hits = mio.search(self._client, self.collection, q, min(k, MAX_TOPK), expr, params)
        for r, row in enumerate(hits):
            for j, (hit_id, score) in enumerate(row):
                out_ids[r, j], out_scores[r, j] = hit_id, score
        return Neighbors(out_ids, out_scores)

    def count(self, where: str | None = None) -> int:
        """Number of items (matching ``where``)."""
        with self._lock:
            return mio.count(self._client, self.collection, to_milvus(where))

    def ids(self, where: str | None = None) -> list[str]:
        """Stored ids (matching ``where``) in insertion order."""
        with self._lock:
            return [i for i, _ in mio.scan_ids(self._client, self.collection, to_milvus(where), self._next_seq)]

    def export(self, batch_size: int = 10_000) -> Iterator[Batch]:
        """Everything in insertion order, in batches of ``(ids, vectors (b, dim) float32, metadata)``."""
        batch_size = check_k(batch_size)
        all_ids = self.ids()
        for start in range(0, len(all_ids), batch_size):
            chunk = all_ids[start : start + batch_size]
            vecs, metas = self.get(chunk)
            yield chunk, vecs, metas

    def __len__(self) -> int:
        return self.count()

    # ---- files --------------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the portable store files and ``milvus.json`` into ``folder`` (existing and empty)."""
        folder = Path(folder)
        if not folder.is_dir() or any(folder.iterdir()):
            raise BadInput(f"save needs an existing empty folder, got {folder}")
        with self._lock:
            n = mio.save_portable(self.export(), self.dim, folder, self.backend, self.options())
            pointer = {"uri": None if self._tmp else self.target.uri, "collection": self.collection, "count": n}
            (folder / "milvus.json").write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = True, **options: Any) -> MilvusStore:
        """Open a saved store (of any backend): re-attach to its server collection, else upload the files.

        ``options`` override the saved ones (``uri=``/``collection=`` choose where an upload goes).
        """
        return mio.load_store(cls, Path(folder), mmap=mmap, options=options)

    # ---- internals ----------------------------------------------------------------------------------------

    def _validate(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]
    ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        id_list = _check_ids(ids)
        vecs = check_vectors(vectors, self.dim, len(id_list))
        check_unit(vecs)
        if len(metadata) != len(id_list):
            raise BadInput(f"got {len(metadata)} metadata entries for {len(id_list)} ids; give one per id")
        mio.check_id_lengths(id_list)
        return id_list, vecs, [normalize_metadata(m, i) for i, m in zip(id_list, metadata, strict=True)]

    def _seqs(self, ids: list[str]) -> dict[str, int]:
        """``seq`` of each stored id among ``ids``."""
        return mio.fetch_seqs(self._client, self.collection, ids)

    def _write(self, ids: list[str], vecs: np.ndarray, metas: list[dict[str, Any]], seqs: dict[str, int]) -> None:
        rows = []
        for i, v, meta in zip(ids, vecs, metas, strict=True):
            seq = seqs.get(i)
            if seq is None:
                seq, self._next_seq = self._next_seq, self._next_seq + 1
            rows.append(mio.meta_to_row(i, seq, v, meta))
        write = self._client.upsert if seqs else self._client.insert
        for start in range(0, len(rows), mio.WRITE_BATCH):
            write(self.collection, rows[start : start + mio.WRITE_BATCH])
        self._dirty = True

    def _search_params(self, expr: str) -> dict[str, Any]:
        if self.index == "ivf":
            # a filter keeping a fraction f of the rows leaves ~f of each probed list: probe 1/f times more
            nprobe, nlist = self.index_options["nprobe"], self.index_options["nlist"]
            if expr:
                kept = mio.count(self._client, self.collection, expr) / max(
                    1, mio.count(self._client, self.collection, "")
                )
                nprobe = min(nlist, math.ceil(nprobe / max(kept, 1e-3)))
            return {"metric_type": "IP", "params": {"nprobe": nprobe}}
        if self.index == "hnsw":
            return {"metric_type": "IP", "params": {"ef": self.index_options["ef"]}}
        return {"metric_type": "IP"}


def parse_store_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``(backend, options)`` of a ``--store`` value: a backend name as is, a Milvus URI as ``milvus`` + ``uri``."""
    if "://" not in spec:
        from visrec.stores import STORES

        if spec not in STORES:  # checked before a new index folder records the name in its manifest
            raise BadInput(f"unknown store {spec!r}; known: {', '.join(STORES.names())}")
        return spec, {}
    if urlsplit(spec).scheme not in SCHEMES:
        raise BadInput(
            f"unknown store URI {spec!r}; write milvus://host:19530/collection, milvuss://... (TLS) or "
            "milvus-lite:///path/to/file.db, or a backend name (faiss, exact, milvus)"
        )
    return "milvus", {"uri": spec}


def part_options(part: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Options of one part of an index (``store`` or ``joint``): a joint store gets ``<collection>_joint``."""
    if part != "joint" or not options.get("uri"):
        return dict(options)
    name = mio.parse_uri(options["uri"], options.get("collection")).collection
    return {**options, "collection": f"{name}_joint"}


def require_empty(store: MilvusStore, purpose: str) -> None:
    """``BadInput`` unless the store's collection is empty (so that ``purpose`` overwrites nobody's data)."""
    n = store.count()
    if n:
        raise BadInput(
            f"the Milvus collection {store.collection!r} at {store.target.uri} already holds {n} items; "
            f"{purpose} needs a new or empty collection: name another one in the URI, or drop this one"
        )


def claim_collection(dim: int, options: Mapping[str, Any], previous: Path | None) -> bool:
    """Check that the collection at ``options["uri"]`` may take an index's next generation.

    True when ``previous`` (the store folder of the index's current generation) already lives there; else the
    collection must be new or empty (``BadInput`` otherwise) and False is returned.
    """
    store = MilvusStore(dim, **options)
    try:
        if mio.points_at(previous, store.target):
            return True
        require_empty(store, "indexing into it")
        return False
    finally:
        store.close()


def fill_generation(
    dim: int, options: Mapping[str, Any], previous: Path | None, ids: list[str], vectors: np.ndarray,
    metadata: list[dict[str, Any]], unchanged: frozenset[str] = frozenset(),
) -> MilvusStore:  # fmt: skip
    """A store at ``options["uri"]`` holding exactly these items, for the next generation of an index folder.

    When ``previous`` (the store folder of the index's current generation) points at the same collection, the
    collection is brought up to date in place: ids no longer listed are deleted, the others upserted except
    ``unchanged`` ones (same vector and metadata as stored). Any other collection must be new or empty
    (``BadInput`` otherwise), so an index never adopts foreign data, and gets every item.
    """
    store = MilvusStore(dim, **options)
    same = mio.points_at(previous, store.target)
    if not same:
        require_empty(store, "indexing into it")
    keep = set(ids)
    store.delete([i for i in store.ids() if i not in keep])
    rows = [r for r, i in enumerate(ids) if not (same and i in unchanged)]
    if rows:
        store.upsert([ids[r] for r in rows], vectors[rows], [metadata[r] for r in rows])
    return store
