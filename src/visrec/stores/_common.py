"""What every local store shares: the vector matrix, ids, SQLite metadata, validation, save/load.

Subclasses only decide how to search (:meth:`BaseStore._search`) and may keep an index in step through the
``_after_*`` hooks.

Files of a saved store (``save(folder)``): ``vectors.npy`` (``(n, dim)`` float32, row ``i`` = item at
row ``i``), ``metadata.sqlite`` (see :mod:`visrec.stores.metadata`), ``store.json`` (backend, dim, count,
options) and whatever the backend adds. Every backend can load the files of every other one.
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from visrec.errors import REINDEX_FIX, BadInput, DimensionMismatch, IndexCorrupt
from visrec.npyio import load_npy
from visrec.stores._search import exact_topk
from visrec.stores.metadata import MetadataTable, normalize_metadata
from visrec.types import Neighbors

STORE_FORMAT = 1
IDS_FILE = "ids.txt"
NORM_TOLERANCE = 1e-3
"""Stored rows must have ``| ||v|| - 1 | <= NORM_TOLERANCE``."""

S = TypeVar("S", bound="BaseStore")
Batch = tuple[list[str], np.ndarray, list[dict[str, Any]]]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` ``(n, d)`` scaled to unit L2 norm, as float32; ``BadInput`` on a zero row."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise BadInput("cannot L2-normalise a zero vector")
    return np.ascontiguousarray(v / norms, dtype=np.float32)


def check_vectors(vectors: Any, dim: int, n: int | None = None, *, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` array; a 1-D vector counts as one row.

    Raises ``DimensionMismatch`` for a wrong width or row count and ``BadInput`` for non-numeric or
    non-finite values.
    """
    v = np.asarray(vectors)
    if v.dtype.kind not in "fiu":
        raise BadInput(f"{what} must be a numeric array, got dtype {v.dtype}")
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2:
        raise DimensionMismatch(f"{what} must be 2-D (n, {dim}), got shape {v.shape}")
    if v.shape[1] != dim:
        raise DimensionMismatch(
            f"{what} have width {v.shape[1]}, the store holds width {dim}: use the encoder that built it"
        )
    if n is not None and v.shape[0] != n:
        raise DimensionMismatch(f"{what} have {v.shape[0]} rows, expected {n} (one per id)")
    v = np.ascontiguousarray(v, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(v).all(axis=1))
    if len(bad):
        raise BadInput(f"{what} row {int(bad[0])} holds NaN or infinite values ({len(bad)} bad rows)")
    return v


def check_unit(v: np.ndarray) -> None:
    """Raise ``BadInput`` unless every row of ``v`` has unit L2 norm (within :data:`NORM_TOLERANCE`)."""
    norms = np.linalg.norm(v, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if len(bad):
        i = int(bad[0])
        raise BadInput(
            f"vectors must be L2-normalised (norm 1), row {i} has norm {norms[i]:.4g} "
            f"({len(bad)} such rows); normalise them first with visrec.stores.l2_normalize(vectors)"
        )


def check_k(k: Any) -> int:
    """``k`` as a positive int, else ``BadInput``."""
    try:
        k_int = operator.index(k)
    except TypeError:
        raise BadInput(f"k must be a positive integer, got {k!r}") from None
    if isinstance(k, bool) or k_int <= 0:
        raise BadInput(f"k must be a positive integer, got {k!r}")
    return k_int


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise BadInput(f"ids must be a sequence of strings, got the single string {ids!r}")
    out = list(ids)
    for i in out:
        if not isinstance(i, str) or not i:
            raise BadInput(f"ids must be non-empty strings, got {i!r}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(i for i in out if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise BadInput(f"id {dup!r} appears more than once in one call; ids must be unique")
    return out


class _Matrix:
    """A growable float32 ``(n, dim)`` matrix; a memory-mapped one is copied into RAM on the first change."""

    def __init__(self, dim: int, data: np.ndarray | None = None) -> None:
        self.dim = dim
        self._buf = np.zeros((0, dim), np.float32) if data is None else data
        self.n = self._buf.shape[0]
        self._owned = data is None

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self.n]

    def _reserve(self, n_new: int) -> None:
        need = self.n + n_new
        if self._owned and need <= self._buf.shape[0]:
            return
        cap = need if not self._owned else max(need, int(self._buf.shape[0] * 1.5), 1024)
        buf = np.empty((cap, self.dim), np.float32)
        buf[: self.n] = self._buf[: self.n]
        self._buf, self._owned = buf, True

    def append(self, block: np.ndarray) -> None:
        self._reserve(len(block))
        self._buf[self.n : self.n + len(block)] = block
        self.n += len(block)

    def set_rows(self, rows: np.ndarray, block: np.ndarray) -> None:
        self._reserve(0)
        self._buf[rows] = block

    def delete_rows(self, rows: np.ndarray) -> None:
        keep = np.ones(self.n, bool)
        keep[rows] = False
        kept = self.view[keep]
        self._buf, self.n, self._owned = np.ascontiguousarray(kept), len(kept), True


class BaseStore:
    """The shared behaviour of :class:`~visrec.stores.exact.ExactStore` and ``FaissStore``.

    Vectors are validated, never changed: each stored row must already be L2-normalised (``BadInput``
    otherwise; see :func:`l2_normalize`). Queries are used as given (scores are inner products, hence cosine
    similarities for unit-norm queries). Methods are safe to call from several threads (one lock per store).
    """

    backend: ClassVar[str] = "base"

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise BadInput(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self._lock = threading.RLock()
        self._mat = _Matrix(dim)
        self._ids: list[str] = []
        self._row_map: dict[str, int] | None = {}
        self._ids_arr: np.ndarray | None = None
        self._meta = MetadataTable(":memory:")

    @property
    def _row(self) -> dict[str, int]:
        """Id -> row, built on first use (an update that only adds rows to a large loaded store never needs it)."""
        if self._row_map is None:
            self._row_map = {i: r for r, i in enumerate(self._ids)}
        return self._row_map

    # ---- options and hooks for subclasses ----------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """Constructor options (besides ``dim``) saved in ``store.json``."""
        return {}

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(rows, scores)`` ``(q, k')`` among all rows or the given sorted ones; row -1 = empty."""
        return exact_topk(queries, self._mat.view, k, rows)

    def _after_append(self, start: int, count: int) -> None:
        """Rows ``start .. start+count-1`` were appended."""

    def _after_replace(self, rows: np.ndarray) -> None:
        """The vectors at ``rows`` were overwritten."""

    def _after_delete(self, rows: np.ndarray) -> None:
        """The (sorted) ``rows`` were removed and the rest compacted."""

    def _save_extra(self, folder: Path) -> None:
        """Write backend files into ``folder``."""

    def _load_extra(self, folder: Path) -> None:
        """Read backend files from ``folder`` (after vectors and metadata are loaded)."""

    # ---- the VectorStore protocol -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._mat.n

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Insert new items: ``vectors`` ``(n, dim)`` unit-norm float32, one metadata mapping per id.

        Raises ``BadInput`` if an id is already stored (use :meth:`upsert`) or repeats within the call.
        """
        with self._lock:
            id_list, vecs, metas = self._validate(ids, vectors, metadata)
            stored = [i for i in id_list if i in self._row]
            if stored:
                raise BadInput(f"{len(stored)} id(s) already stored, e.g. {stored[:3]}; upsert replaces them")
            self._append(id_list, vecs, metas)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Insert new items and replace the vector and metadata of stored ones (which keep their position)."""
        with self._lock:
            id_list, vecs, metas = self._validate(ids, vectors, metadata)
            old = [j for j, i in enumerate(id_list) if i in self._row]
            new = [j for j, i in enumerate(id_list) if i not in self._row]
            if old:
                rows = np.array([self._row[id_list[j]] for j in old], np.int64)
                self._meta.replace([id_list[j] for j in old], rows.tolist(), [metas[j] for j in old])
                self._mat.set_rows(rows, vecs[old])
                self._after_replace(rows)
            if new:
                self._append([id_list[j] for j in new], vecs[new], [metas[j] for j in new])

    def delete(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns how many were removed. Later rows move up."""
        with self._lock:
            if isinstance(ids, str):
                raise BadInput(f"ids must be a sequence of strings, got the single string {ids!r}")
            rows = np.unique(np.array([self._row[i] for i in set(ids) if i in self._row], np.int64))
            if len(rows) == 0:
                return 0
            self._meta.delete_rows(rows)
            self._mat.delete_rows(rows)
            first = int(rows[0])
            gone = set(rows.tolist())
            tail = [i for r, i in enumerate(self._ids[first:], start=first) if r not in gone]
            for i in (self._ids[r] for r in rows.tolist()):
                del self._row[i]
            self._ids[first:] = tail
            self._row.update((i, r) for r, i in enumerate(tail, start=first))
            self._ids_arr = None
            self._after_delete(rows)
            return len(rows)

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors ``(n, dim)`` float32 (a copy) and metadata of ``ids`` in order; ``BadInput`` if unknown."""
        with self._lock:
            if isinstance(ids, str):
                raise BadInput(f"ids must be a sequence of strings, got the single string {ids!r}")
            unknown = [i for i in ids if i not in self._row]
            if unknown:
                raise BadInput(f"{len(unknown)} unknown id(s), e.g. {unknown[:3]}")
            rows = np.array([self._row[i] for i in ids], np.int64)
            return self._mat.view[rows].copy(), self._meta.get_rows(rows.tolist())

    def search(self, queries: np.ndarray, k: int, where: str | None = None) -> Neighbors:
        """Top-``k`` items by inner product for each row of ``queries`` ``(q, dim)`` (a 1-D query is one row).

        Only items matching the filter ``where`` are candidates. Rows with fewer than ``k`` candidates are
        padded with id ``""`` and score ``-inf``.
        """
        k = check_k(k)
        q = check_vectors(queries, self.dim, what="queries")
        with self._lock:
            rows_sel = None if where is None else self._meta.rows(where)
            if rows_sel is not None and len(rows_sel) == 0:
                rows, scores = np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
            else:
                rows, scores = self._search(q, k, rows_sel)
            return self._neighbors(rows, scores, k)

    def count(self, where: str | None = None) -> int:
        """Number of items (matching ``where``)."""
        with self._lock:
            return self._mat.n if where is None else self._meta.count(where)

    def ids(self, where: str | None = None) -> list[str]:
        """Stored ids (matching ``where``) in insertion order."""
        with self._lock:
            if where is None:
                return list(self._ids)
            return [self._ids[r] for r in self._meta.rows(where).tolist()]

    def export(self, batch_size: int = 10_000) -> Iterator[Batch]:
        """Everything in insertion order, in batches of ``(ids, vectors (b, dim) float32, metadata)``.

        Do not change the store while iterating.
        """
        batch_size = check_k(batch_size)
        for start in range(0, self._mat.n, batch_size):
            with self._lock:
                stop = min(start + batch_size, self._mat.n)
                pairs = list(self._meta.iter_range(start, stop))
                vecs = self._mat.view[start:stop].copy()
            yield [p[0] for p in pairs], vecs, [p[1] for p in pairs]

    # ---- internals ----------------------------------------------------------------------------------------

    def _validate(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]
    ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        id_list = _check_ids(ids)
        vecs = check_vectors(vectors, self.dim, len(id_list))
        check_unit(vecs)
        if len(metadata) != len(id_list):
            raise BadInput(f"got {len(metadata)} metadata entries for {len(id_list)} ids; give one per id")
        metas = [normalize_metadata(m, i) for i, m in zip(id_list, metadata, strict=True)]
        return id_list, vecs, metas

    def _append(self, ids: list[str], vecs: np.ndarray, metas: list[dict[str, Any]]) -> None:
        if not ids:
            return
        start = self._mat.n
        self._meta.insert(ids, range(start, start + len(ids)), metas)
        self._mat.append(vecs)
        self._ids.extend(ids)
        self._row.update((i, r) for r, i in enumerate(ids, start=start))
        self._ids_arr = None
        self._after_append(start, len(ids))

    def _neighbors(self, rows: np.ndarray, scores: np.ndarray, k: int) -> Neighbors:
        if self._ids_arr is None:
            self._ids_arr = np.array([*self._ids, ""], dtype=object)
        q = rows.shape[0]
        out_ids = np.full((q, k), "", dtype=object)
        out_scores = np.full((q, k), -np.inf, dtype=np.float32)
        kk = rows.shape[1]
        valid = rows >= 0
        out_ids[:, :kk] = self._ids_arr[np.where(valid, rows, len(self._ids))]
        out_scores[:, :kk] = np.where(valid, scores, -np.inf)
        return Neighbors(out_ids, out_scores)

    # ---- persistence --------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write ``vectors.npy``, ``metadata.sqlite``, ``store.json`` (and backend files) into ``folder``.

        ``folder`` must exist and be empty (an index folder's new generation).
        """
        folder = Path(folder)
        if not folder.is_dir() or any(folder.iterdir()):
            raise BadInput(f"save needs an existing empty folder, got {folder}")
        with self._lock:
            np.save(folder / "vectors.npy", self._mat.view, allow_pickle=False)
            self._meta.save(folder / "metadata.sqlite")
            write_ids(folder, self._ids)
            info = {"format": STORE_FORMAT, "backend": self.backend, "dim": self.dim, "count": self._mat.n,
                    "options": self.options()}  # fmt: skip
            (folder / "store.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            self._save_extra(folder)

    @classmethod
    def load(cls: type[S], folder: Path, *, mmap: bool = True, **options: Any) -> S:
        """Open a saved store. ``mmap`` maps ``vectors.npy`` instead of reading it (copied on first change).

        ``options`` override the ones saved in ``store.json``. Raises ``IndexCorrupt`` (with the fix) when
        files are missing or disagree.
        """
        folder = Path(folder)
        info = read_store_info(folder)
        saved = info.get("options") if cls.backend == info.get("backend") else {}
        store = cls(int(info["dim"]), **{**(saved or {}), **options})
        try:
            vecs = load_npy(folder / "vectors.npy", mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as e:
            raise IndexCorrupt(f"{folder}/vectors.npy cannot be read ({e}); {REINDEX_FIX}") from None
        if vecs.ndim != 2 or vecs.shape != (info["count"], store.dim) or vecs.dtype != np.float32:
            raise IndexCorrupt(
                f"{folder}/vectors.npy holds {vecs.shape} {vecs.dtype}, store.json says "
                f"({info['count']}, {store.dim}) float32; {REINDEX_FIX}"
            )
        store._meta = MetadataTable(folder / "metadata.sqlite", readonly=True)
        ids = read_ids(folder, len(vecs))
        store._ids = store._meta.ids_by_row() if ids is None else ids
        if len(store._ids) != len(vecs):
            raise IndexCorrupt(f"{folder}: {len(store._ids)} metadata rows for {len(vecs)} vectors; re-index")
        store._row_map = None
        store._mat = _Matrix(store.dim, vecs)
        store._load_extra(folder)
        return store


def write_ids(folder: Path, ids: Sequence[str]) -> None:
    """``folder/ids.txt``: the ids in row order, UTF-8, separated by NUL (which no id holds, else no file is
    written). Derived from ``metadata.sqlite``: opening a store reads ids from it in one read instead of a query
    over every row (0.14 s of CPU per 200,000 ids)."""
    blob = "\x00".join(ids)
    if blob.count("\x00") == max(len(ids) - 1, 0):  # ids from undecodable file names keep their surrogates
        (folder / IDS_FILE).write_bytes(blob.encode("utf-8", "surrogatepass"))


def read_ids(folder: Path, rows: int) -> list[str] | None:
    """The ids of ``folder/ids.txt`` when it exists and holds ``rows`` of them, else None (then they are read
    from the metadata; stores saved before the file existed have none)."""
    try:
        blob = (folder / IDS_FILE).read_bytes()
    except OSError:
        return None
    try:
        ids = blob.decode("utf-8", "surrogatepass").split("\x00") if rows else []
    except UnicodeDecodeError:
        return None
    return ids if len(ids) == rows and all(ids[:1]) else None


def read_store_info(folder: Path) -> dict[str, Any]:
    """The parsed ``store.json`` of a saved store; ``IndexCorrupt`` when files are missing."""
    missing = [n for n in ("store.json", "vectors.npy", "metadata.sqlite") if not (folder / n).is_file()]
    if missing:
        raise IndexCorrupt(
            f"{folder} is missing {', '.join(missing)}: the index is damaged; re-index the images or restore "
            "the folder from a backup"
        )
    try:
        info = json.loads((folder / "store.json").read_text(encoding="utf-8"))
        if info.get("format") != STORE_FORMAT or not isinstance(info.get("count"), int):
            raise ValueError(f"unexpected format {info.get('format')!r}")
        int(info["dim"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IndexCorrupt(f"{folder}/store.json is not a valid store description ({e}); re-index") from None
    return dict(info)
