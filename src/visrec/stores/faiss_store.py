"""FAISS store: exact ``IndexFlatIP`` for small collections; from ``ivf_threshold`` vectors (20k by default) an
HNSW graph up to ``hnsw_max`` vectors (250k by default) and IVF-Flat above.

Vectors, ids and metadata live in the shared files of :class:`~visrec.stores._common.BaseStore`; the
FAISS index is derived from them. The Flat index uses the row number as FAISS id and is rebuilt (a copy) after
a delete or a replace. The IVF index holds stable int64 ids (``faiss_ids.npy``, increasing with insertion
order, kept across deletes) and is updated in place; it is trained once on a sample and retrained when the
collection has grown 4-fold. The HNSW index (``IndexHNSWFlat``, inner product) labels vectors by insertion
position; ``_fids`` then holds each row's label, a replaced vector is added under a new label and its old one is
left out of searches with an id selector (HNSW cannot remove), and the graph is rebuilt once more than half of
its vectors are such orphans. Filters that keep few rows are searched exactly with numpy (IVF recall drops
on selective filters); others go through the IVF or HNSW index with an ``IDSelectorBitmap``.

Saved files besides the shared ones (IVF or HNSW; a Flat index is rebuilt from ``vectors.npy`` on first search):
``faiss.index``, ``faiss_ids.npy`` and ``faiss.json`` (``kind`` ``"ivf"`` or ``"hnsw"``; stores saved before
HNSW existed hold an IVF index and keep searching it). Both kinds are opened mapped (``IO_FLAG_MMAP_IFC`` maps
IVF lists and HNSW's vectors and graph alike).

``quantize`` (``"fp16"`` or ``"sq8"``; default None) keeps the codes of the IVF or HNSW index as float16 or 8-bit
scalar-quantized values instead of float32 (half / a quarter of the index's second copy of the vectors, on disk
and in the pages a search maps); the index then proposes twice the asked candidates and they are re-scored
against the float32 vectors, so returned scores stay exact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from visrec.errors import BadInput
from visrec.npyio import load_npy
from visrec.stores._common import BaseStore
from visrec.stores._search import exact_topk

log = logging.getLogger(__name__)
faiss: Any = _faiss  # the SWIG stubs do not know the Python wrappers' keyword arguments

NLIST_CAP = 4096
TRAIN_PER_LIST = 40
"""Training points per IVF list (FAISS warns below 39)."""
ADD_CHUNK = 65_536
IVF_THRESHOLD = 20_000
"""Default size from which a store (an index segment) is searched through IVF. At 20k x 1472-d synthetic vectors
IVF answered in 0.6-0.7 ms at recall@10 0.99-1.0 where exact search took 16-19 ms (benchmarks/ann_recall.py,
docs/index-updates.md); smaller segments are searched exactly. A saved IVF index is mapped, not read, at open."""
HNSW_MAX = 250_000
"""Default size up to which an approximate segment is an HNSW graph (larger ones: IVF). At 100k x 1472-d real
embeddings scaled up with generated neighbours (benchmarks/ann_compare.py, docs/index-updates.md) HNSW answered
in 0.59 ms at recall@10 0.99 where IVF-Flat at its default nprobe took 7.2 ms (loaded machine); but building the
graph took 94-133 s at 100k on two loaded cores (IVF: 54-80 s), grows a little faster than linearly, and a merge
pays it inside a commit, so larger segments keep IVF (trained on a sample)."""
QUANTIZERS: dict[str | None, Any] = {
    None: None,
    "fp16": faiss.ScalarQuantizer.QT_fp16,
    "sq8": faiss.ScalarQuantizer.QT_8bit,
}
"""Codes an IVF or HNSW index may keep (``quantize``): float32 (None), float16, or 8 bits per dimension."""
HNSW_M = 32
"""Graph degree. On the real-embedding proxy (100k, tuned there, raw FAISS) M 32 reached recall@10 0.96 at efSearch
32 where M 16 gave 0.86, and 0.99 at efSearch 64 (M 16: 0.94), for about twice the build time."""
HNSW_EF_CONSTRUCTION = 40
EF_SEARCH = 64
"""Default HNSW candidate list per query (at least ``k``): recall@10 0.99 on the 100k real-embedding proxy, 0.97
on tight synthetic clusters (efSearch 32: 0.95 / 0.90)."""
_omp_lock = threading.Lock()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run FAISS on one OpenMP thread inside the block (process-wide setting, restored afterwards)."""
    with _omp_lock:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)


def _positive_int(name: str, v: Any, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise BadInput(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {v!r}")
    return v


class FaissStore(BaseStore):
    """Inner-product search with FAISS (see :class:`BaseStore` for the API and the vector rules).

    ``ivf_threshold``: from this many vectors on, an approximate index is used (below: exact Flat): HNSW up to
    ``hnsw_max`` vectors (0: never HNSW), IVF-Flat above. ``ef_search``: HNSW candidates per query (default 64).
    ``nlist``: IVF lists (default ``min(4 * sqrt(n), n / 40, 4096)``). ``nprobe``: lists visited per query
    (default ``max(16, nlist / 16)``). A filter keeping fewer than ``small_filter`` rows or less than
    ``small_fraction`` of the store (or any filter while the index is Flat) is searched exactly with numpy.
    """

    backend = "faiss"
    single_thread_queries = 4
    """Query batches up to this size are searched on one thread (faster than OpenMP's fan-out for so few)."""

    def __init__(
        self,
        dim: int,
        *,
        ivf_threshold: int = IVF_THRESHOLD,
        hnsw_max: int = HNSW_MAX,
        ef_search: int | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        small_filter: int = 20_000,
        small_fraction: float = 0.05,
        quantize: str | None = None,
    ) -> None:
        super().__init__(dim)
        if quantize not in QUANTIZERS:
            raise BadInput(f"quantize must be one of {sorted(k for k in QUANTIZERS if k)} or None, got {quantize!r}")
        self.quantize = quantize
        self.ivf_threshold = int(_positive_int("ivf_threshold", ivf_threshold) or 0)
        if isinstance(hnsw_max, bool) or not isinstance(hnsw_max, int) or hnsw_max < 0:
            raise BadInput(f"hnsw_max must be a non-negative integer (0: no HNSW), got {hnsw_max!r}")
        self.hnsw_max = hnsw_max
        self.ef_search = _positive_int("ef_search", ef_search, allow_none=True)
        self.nlist = _positive_int("nlist", nlist, allow_none=True)
        self.nprobe = _positive_int("nprobe", nprobe, allow_none=True)
        self.small_filter = int(_positive_int("small_filter", small_filter) or 0)
        if not 0.0 <= small_fraction <= 1.0:
            raise BadInput(f"small_fraction must be within [0, 1], got {small_fraction!r}")
        self.small_fraction = float(small_fraction)
        self._index: Any = None
        self._kind: str | None = None
        self._trained_n = 0
        self._fids = np.zeros(0, np.int64)
        self._next_fid = 0
        self._adopted: tuple[Any, int] | None = None  # (empty trained IVF index, vectors it was trained on)
        self._mapped = False  # the IVF index's lists are mapped from a saved file (read-only)
        self._row_of: np.ndarray | None = None  # HNSW label -> row (see _hnsw_rows)

    def options(self) -> dict[str, Any]:
        return {"ivf_threshold": self.ivf_threshold, "hnsw_max": self.hnsw_max, "ef_search": self.ef_search,
                "nlist": self.nlist, "nprobe": self.nprobe,
                "small_filter": self.small_filter, "small_fraction": self.small_fraction,
                **({"quantize": self.quantize} if self.quantize else {})}  # fmt: skip

    @property
    def index_kind(self) -> str:
        """``"flat"``, ``"hnsw"`` or ``"ivf"``: the index the next unfiltered search uses."""
        with self._lock:
            self._ensure_index()
            return str(self._kind)

    # ---- index maintenance --------------------------------------------------------------------------------

    def _ensure_index(self) -> Any:
        n = len(self)
        if self._index is not None and self._keep_index(n):
            return self._index
        self._index, self._mapped, self._row_of = None, False, None  # free the old one before building
        if n < self.ivf_threshold:
            self._index, self._kind = faiss.IndexFlatIP(self.dim), "flat"
            self._index.add(self._mat.view)
            return self._index
        self._fids, self._next_fid = np.arange(n, dtype=np.int64), n  # a fresh index: labels are rows again
        if n <= self.hnsw_max:
            self._index, self._kind = self._build_hnsw(), "hnsw"
        elif self._adopted is not None and n <= 4 * self._adopted[1]:
            self._index, self._kind, self._trained_n = self._fill_adopted(), "ivf", self._adopted[1]
        else:
            self._index, self._kind, self._trained_n = self._build_ivf(), "ivf", n
        return self._index

    def _keep_index(self, n: int) -> bool:
        """Whether the current index still suits ``n`` vectors (a band around the thresholds avoids flapping)."""
        if self._kind == "flat":
            return n < self.ivf_threshold
        if self._kind == "hnsw":
            return self.ivf_threshold // 2 <= n <= 2 * max(self.hnsw_max, 1) and self._index.ntotal <= 2 * n
        return self.ivf_threshold // 2 <= n <= 4 * self._trained_n

    def _build_hnsw(self) -> Any:
        x = self._mat.view
        if self.quantize:
            index = faiss.IndexHNSWSQ(self.dim, QUANTIZERS[self.quantize], HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.train(np.ascontiguousarray(x[_train_rows(len(x))]))
        else:
            index = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        for b0 in range(0, len(x), ADD_CHUNK):
            index.add(np.ascontiguousarray(x[b0 : b0 + ADD_CHUNK]))
        log.info("built HNSW index: %d vectors, M=%d", len(x), HNSW_M)
        return index

    def _default_nlist(self, n: int) -> int:
        return max(1, min(int(4 * math.sqrt(n)), n // TRAIN_PER_LIST, NLIST_CAP))

    def _build_ivf(self) -> Any:
        x = self._mat.view
        n = len(x)
        nlist = min(self.nlist or self._default_nlist(n), n)
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.quantize:
            qtype = QUANTIZERS[self.quantize]
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, qtype, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # centroids on the unit sphere, like the data
        n_train = min(n, nlist * TRAIN_PER_LIST)
        sample = np.sort(np.random.default_rng(0).choice(n, n_train, replace=False))
        index.train(np.ascontiguousarray(x[sample]))
        for b0 in range(0, n, ADD_CHUNK):
            index.add_with_ids(np.ascontiguousarray(x[b0 : b0 + ADD_CHUNK]), self._fids[b0 : b0 + ADD_CHUNK])
        log.info("trained IVF index: %d vectors, nlist=%d, %d training points", n, nlist, n_train)
        return index

    def adopt_trained(self, folder: Path) -> bool:
        """Reuse the IVF centroids of the store saved in ``folder`` (e.g. the previous generation of an index):
        when this store needs an IVF index, its vectors are added to those centroids instead of training new
        ones (training dominates a commit: 23-27 s at 20k vectors here). Used while this store holds at most 4x
        the vectors the centroids were trained on. Returns whether there was a usable trained index."""
        try:
            info = json.loads((Path(folder) / "faiss.json").read_text(encoding="utf-8"))
            index = faiss.read_index(str(Path(folder) / "faiss.index"))
        except (OSError, ValueError, RuntimeError):
            return False
        if index.d != self.dim or not index.is_trained or not hasattr(index, "nlist"):
            return False
        index.reset()  # keep the centroids, drop the vectors
        self._adopted = (index, int(info.get("trained_n", index.nlist)))
        return True

    def _fill_adopted(self) -> Any:
        assert self._adopted is not None
        index = self._adopted[0]
        index.reset()
        x = self._mat.view
        for b0 in range(0, len(x), ADD_CHUNK):
            index.add_with_ids(np.ascontiguousarray(x[b0 : b0 + ADD_CHUNK]), self._fids[b0 : b0 + ADD_CHUNK])
        log.info("filled a reused IVF index: %d vectors, nlist=%d", len(x), index.nlist)
        return index

    def _nprobe(self) -> int:
        nlist = int(self._index.nlist)
        return min(nlist, self.nprobe or max(16, math.ceil(nlist / 16)))

    def _own_index(self) -> None:
        """Copy a mapped IVF index into memory before its first change (FAISS aborts on changing a mapped one)."""
        if self._mapped and self._index is not None:
            self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
            self._mapped = False

    def _after_append(self, start: int, count: int) -> None:
        self._own_index()
        self._row_of = None
        first = self._index.ntotal if self._kind == "hnsw" and self._index is not None else self._next_fid
        new = np.arange(first, first + count, dtype=np.int64)
        self._fids = np.concatenate([self._fids, new])
        self._next_fid = first + count
        if self._index is None:
            return
        block = self._mat.view[start : start + count]
        if self._kind == "ivf":
            self._index.add_with_ids(block, new)
        else:
            self._index.add(block)

    def _after_replace(self, rows: np.ndarray) -> None:
        self._own_index()
        self._row_of = None
        if self._kind == "ivf" and self._index is not None:
            ids = self._fids[rows]
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._index.add_with_ids(np.ascontiguousarray(self._mat.view[rows]), ids)
        elif self._kind == "hnsw" and self._index is not None:
            # HNSW cannot remove: the new vectors get new labels, the old ones are orphans left out of searches
            self._fids[rows] = np.arange(self._index.ntotal, self._index.ntotal + len(rows), dtype=np.int64)
            self._index.add(np.ascontiguousarray(self._mat.view[rows]))
            self._next_fid = self._index.ntotal
        else:
            self._index = None

    def _after_delete(self, rows: np.ndarray) -> None:
        self._own_index()
        self._row_of = None
        if self._kind == "ivf" and self._index is not None:
            self._index.remove_ids(faiss.IDSelectorBatch(self._fids[rows]))
        elif self._kind != "hnsw":
            self._index = None
        self._fids = np.delete(self._fids, rows)

    # ---- search -------------------------------------------------------------------------------------------

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if n == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        index = self._ensure_index()
        small = rows is not None and (len(rows) < self.small_filter or len(rows) < self.small_fraction * n)
        if rows is not None and (small or self._kind == "flat"):
            # a Flat index with an id selector leaves BLAS (measured 7x slower than gathering the rows)
            return exact_topk(queries, self._mat.view, k, rows)
        k_eff = min(k, n if rows is None else len(rows))
        if self.quantize and self._kind != "flat":
            k_eff = min(2 * k_eff, n if rows is None else len(rows))  # candidates, re-scored exactly below
        orphans = self._kind == "hnsw" and index.ntotal > n
        bitmap = None if rows is None and not orphans else self._bitmap(rows)
        sel = None if bitmap is None else faiss.IDSelectorBitmap(bitmap)
        if self._kind == "ivf":
            params: Any = faiss.SearchParametersIVF(nprobe=self._nprobe(), sel=sel)
        elif self._kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search or EF_SEARCH, k_eff), sel=sel)
        else:
            params = None if sel is None else faiss.SearchParameters(sel=sel)
        if len(queries) <= self.single_thread_queries:
            # OpenMP fan-out costs more than it saves for a handful of queries (benchmarks/query_latency.py:
            # 1 query over 10k vectors 3.0 ms on 1 thread vs 16 ms on all, under load)
            with _one_thread():
                scores, labels = index.search(queries, k_eff, params=params)
        else:
            scores, labels = index.search(queries, k_eff, params=params)
        if self._kind == "ivf":
            pos = np.searchsorted(self._fids, labels)
            labels = np.where(labels >= 0, pos, -1)
        elif self._kind == "hnsw" and (row_of := self._hnsw_rows()) is not None:
            labels = row_of[labels]  # label -1 (no hit) reads the last entry, -1
        if self.quantize and self._kind != "flat":
            return _rescore(queries, self._mat.view, labels.astype(np.int64), k)
        return labels.astype(np.int64), scores.astype(np.float32)

    def _hnsw_rows(self) -> np.ndarray | None:
        """Row of each HNSW label (``ntotal + 1`` entries, -1 for orphans and for label -1), or None while label i
        is row i (no delete or replace since the graph was built). Cached until the next change."""
        if self._row_of is None:
            n, total = len(self), int(self._index.ntotal)
            if total == n and bool(np.array_equal(self._fids, np.arange(n))):
                self._row_of = np.zeros(0, np.int64)
            else:
                self._row_of = np.full(total + 1, -1, np.int64)
                self._row_of[self._fids] = np.arange(n, dtype=np.int64)
        return self._row_of if len(self._row_of) else None

    def _bitmap(self, rows: np.ndarray | None) -> np.ndarray:
        """Packed little-endian bitmap of the FAISS ids of ``rows`` (None: all rows)."""
        ids = self._fids if rows is None else rows if self._kind == "flat" else self._fids[rows]
        bits = np.zeros(len(self) if self._kind == "flat" else self._next_fid, bool)
        bits[ids] = True
        return np.packbits(bits, bitorder="little")

    # ---- persistence --------------------------------------------------------------------------------------

    def _save_extra(self, folder: Path) -> None:
        if len(self) < self.ivf_threshold:
            return
        self._ensure_index()  # train now, so that loading never has to
        faiss.write_index(self._index, str(folder / "faiss.index"))
        np.save(folder / "faiss_ids.npy", self._fids, allow_pickle=False)
        info = {"kind": self._kind, "trained_n": self._trained_n, "next_fid": self._next_fid}
        (folder / "faiss.json").write_text(json.dumps(info) + "\n", encoding="utf-8")

    def _load_extra(self, folder: Path) -> None:
        n = len(self)
        self._fids, self._next_fid = np.arange(n, dtype=np.int64), n
        if not (folder / "faiss.json").is_file():
            return
        try:
            info = json.loads((folder / "faiss.json").read_text(encoding="utf-8"))
            fids = load_npy(folder / "faiss_ids.npy")
            # IVF lists / HNSW vectors and graph (a second copy of the vectors) stay in the file, mapped, not read
            index = faiss.read_index(str(folder / "faiss.index"), faiss.IO_FLAG_MMAP_IFC)
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("%s: cannot read the saved FAISS index (%s); it will be rebuilt", folder, e)
            return
        kind = info.get("kind", "ivf")
        if not _saved_index_fits(kind, index, fids, n, self.dim, int(info.get("next_fid", -1))):
            log.warning("%s: the saved FAISS index does not match the vectors; it will be rebuilt", folder)
            return
        self._fids, self._next_fid = fids, int(info["next_fid"])
        self._index, self._kind, self._trained_n = index, kind, int(info.get("trained_n", n))
        self._row_of = None
        self._mapped = True


def _train_rows(n: int) -> np.ndarray:
    """Rows a scalar quantizer learns its value ranges from: a seeded sample of at most 65,536, ascending."""
    take = min(n, ADD_CHUNK)
    return np.sort(np.random.default_rng(0).choice(n, take, replace=False))


def _rescore(queries: np.ndarray, mat: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of candidate ``rows`` ``(q, c)`` (-1: none) by exact inner product with the float32 rows."""
    safe = np.maximum(rows, 0)
    exact = np.einsum("qd,qcd->qc", queries, mat[safe.ravel()].reshape(*rows.shape, -1))
    exact = np.where(rows >= 0, exact, -np.inf).astype(np.float32)
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    top_rows = np.take_along_axis(rows, order, axis=1)
    top = np.take_along_axis(exact, order, axis=1)
    return np.where(np.isfinite(top), top_rows, -1), np.where(np.isfinite(top), top, -np.inf).astype(np.float32)


def _saved_index_fits(kind: str, index: Any, fids: np.ndarray, n: int, dim: int, next_fid: int) -> bool:
    """Whether a saved index of ``kind`` and its ids ``fids`` (one per row) belong to ``n`` vectors of ``dim``."""
    if fids.shape != (n,) or fids.dtype != np.int64 or index.d != dim or next_fid <= int(fids.max(initial=-1)):
        return False
    if kind == "ivf":
        return bool(index.ntotal == n and np.all(np.diff(fids) > 0) and hasattr(index, "nlist"))
    if kind == "hnsw":
        ordered = np.sort(fids)  # np.unique's hashing took 0.23 s at 200,000 ids; a sort takes 0.01 s
        unique = bool(n == 0 or np.all(ordered[1:] != ordered[:-1]))
        return bool(hasattr(index, "hnsw") and unique and index.ntotal == next_fid and fids.min(initial=0) >= 0)
    return False
