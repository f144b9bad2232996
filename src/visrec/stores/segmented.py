"""A vector store made of immutable segments plus tombstones: what a generation of an index folder holds.

Layout of a saved segmented store (the ``store/`` folder of a generation)::

    store/
      segments.json            format, backend, dim, count (live rows), options, next, segments: [{name, rows, deleted}]
      seg-000004/              one saved store of the backend (vectors.npy, metadata.sqlite, store.json, FAISS files)
      seg-000004.deleted.npy   sorted int64 rows of seg-000004 that were deleted or replaced (tombstones), if any
      seg-000009/

Saving hard-links the files of the segments that were loaded from disk (a segment never changes once written)
and writes only the segments made since (new rows, merges) and the tombstone lists, so a commit that adds one
row costs that row, not the index. New and replaced rows go to one in-memory *pending* segment; a replaced or
deleted row of a saved segment gets a tombstone. :meth:`SegmentedStore.compact` merges segments as a
:class:`~visrec.stores.merge_policy.MergePolicy` says. A store folder of the earlier layout (one store, no
``segments.json``) opens as a single segment, and its files become that segment on the next save.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput, IndexCorrupt
from visrec.stores._common import BaseStore, Batch, _check_ids, check_k, check_vectors
from visrec.stores._facts import FACTS, facts_of, load_facts, save_facts
from visrec.stores._files import link_or_copy
from visrec.stores._segment import (
    SEGMENTS,
    SEGMENTS_FORMAT,
    _count_segment,
    _read_info,
    _read_tombstones,
    _search_segment,
    _Segment,
    _segment_chunks,
    _split,
)
from visrec.stores.filters import parse_filter
from visrec.stores.merge_policy import MergePolicy
from visrec.types import Neighbors


class SegmentedStore:
    """Stable string ids -> unit vectors + metadata over immutable segments (the ``VectorStore`` protocol).

    Ids are unique across live rows. :meth:`ids` and :meth:`export` list segments in order, rows in order, so a
    replaced item moves to the end (unlike a single store, where it keeps its position). Thread-safe (one lock).
    """

    def __init__(self, backend: str, dim: int, options: Mapping[str, Any] | None = None) -> None:
        self.backend = backend
        self.dim = int(dim)
        self.options = dict(options or {})
        self._segs: list[_Segment] = []
        self._pending: _Segment | None = None
        self._next = 1
        self._lock = threading.RLock()

    # ---- opening --------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path, backend: str, *, mmap: bool = True, **options: Any) -> SegmentedStore:
        """Open the segmented store saved in ``folder`` (or a single store of the earlier layout) with segments
        of ``backend`` (vectors memory-mapped when ``mmap``); ``IndexCorrupt`` with the fix when files disagree."""
        folder = Path(folder)
        loader = _loader(backend)
        if not (folder / SEGMENTS).is_file():  # the earlier layout: one store, adopted as one segment
            single = loader(folder, mmap=mmap, **options)
            out = cls(backend, single.dim, single.options())
            out._segs = [_Segment(single, folder, "seg-000000")]
            return out
        info = _read_info(folder)
        out = cls(backend, int(info["dim"]), {**info.get("options", {}), **options})
        for entry in info["segments"]:
            name = str(entry["name"])
            seg = _Segment(loader(folder / name, mmap=mmap, **options), folder / name, name)
            if seg.rows != entry["rows"]:
                raise IndexCorrupt(f"{folder / name} holds {seg.rows} rows, {SEGMENTS} says {entry['rows']}; re-index")
            if entry["deleted"]:
                seg.kill(_read_tombstones(folder / f"{name}.deleted.npy", seg.rows, int(entry["deleted"])))
            out._segs.append(seg)
        out._next = int(info["next"])
        return out

    # ---- the VectorStore protocol -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and self._find(item) is not None

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Insert new items; ``BadInput`` if an id is already stored (use :meth:`upsert`)."""
        with self._lock:
            id_list = _check_ids(ids)
            stored = [i for i in id_list if (loc := self._find(i)) is not None and loc[0] is not self._pending]
            if stored:
                raise BadInput(f"{len(stored)} id(s) already stored, e.g. {stored[:3]}; upsert replaces them")
            self._writable().store.add(id_list, vectors, metadata)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Insert new items and replace stored ones (a replaced item gets a tombstone and moves to the end)."""
        with self._lock:
            pending = self._writable()
            id_list, vecs, metas = pending.store._validate(ids, vectors, metadata)
            self._tombstone(id_list)
            pending.store.upsert(id_list, vecs, metas)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove items (tombstones in saved segments); unknown ids are ignored. Returns how many were removed."""
        with self._lock:
            if isinstance(ids, str):
                raise BadInput(f"ids must be a sequence of strings, got the single string {ids!r}")
            unique = list(dict.fromkeys(ids))
            removed = self._tombstone(unique)
            if self._pending is not None:
                removed += self._pending.store.delete(unique)
            return removed

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors ``(n, dim)`` float32 (a copy) and metadata of ``ids`` in order; ``BadInput`` if unknown."""
        with self._lock:
            if isinstance(ids, str):
                raise BadInput(f"ids must be a sequence of strings, got the single string {ids!r}")
            locs = [self._find(i) for i in ids]
            unknown = [i for i, loc in zip(ids, locs, strict=True) if loc is None]
            if unknown:
                raise BadInput(f"{len(unknown)} unknown id(s), e.g. {unknown[:3]}")
            vecs = np.empty((len(locs), self.dim), np.float32)
            metas: list[dict[str, Any]] = [{}] * len(locs)
            for seg in self._segs:
                at = [(p, loc[1]) for p, loc in enumerate(locs) if loc is not None and loc[0] is seg]
                if at:
                    pos, rows = [p for p, _ in at], np.array([r for _, r in at], np.int64)
                    vecs[pos] = seg.store._mat.view[rows]
                    for p, m in zip(pos, seg.store._meta.get_rows(rows.tolist()), strict=True):
                        metas[p] = m
            return vecs, metas

    def search(self, queries: np.ndarray, k: int, where: str | None = None) -> Neighbors:
        """Top-``k`` live items by inner product for each row of ``queries`` ``(q, dim)``, among those matching
        ``where``; padded with id ``""`` and score ``-inf``. Ties keep segment order, then row order."""
        k = check_k(k)
        q = check_vectors(queries, self.dim, what="queries")
        flt = None if where is None else parse_filter(where)
        with self._lock:
            parts = [p for seg in self._segs if (p := _search_segment(seg, q, k, flt)) is not None]
        out_ids = np.full((len(q), k), "", dtype=object)
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        if parts:
            ids = np.concatenate([p[0] for p in parts], axis=1)
            scores = np.concatenate([p[1] for p in parts], axis=1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            kk = order.shape[1]
            out_ids[:, :kk] = np.take_along_axis(ids, order, axis=1)
            out_scores[:, :kk] = np.take_along_axis(scores, order, axis=1)
        return Neighbors(out_ids, out_scores)

    def count(self, where: str | None = None) -> int:
        """Number of live items (matching ``where``)."""
        with self._lock:
            if where is None:
                return sum(seg.live for seg in self._segs)
            flt = parse_filter(where)
            return sum(_count_segment(seg, flt) for seg in self._segs)

    def ids(self, where: str | None = None) -> list[str]:
        """Live ids (matching ``where``), segment by segment in row order."""
        flt = None if where is None else parse_filter(where)
        with self._lock:
            out: list[str] = []
            for seg in self._segs:
                rows = seg.live_rows(None if flt is None else seg.store._meta.rows(flt))
                ids = seg.store._ids
                out += list(ids) if rows is None else [ids[r] for r in rows.tolist()]
            return out

    def export(self, batch_size: int = 10_000) -> Iterator[Batch]:
        """Every live item in :meth:`ids` order, in batches of ``(ids, vectors (b, dim) float32, metadata)``."""
        batch_size = check_k(batch_size)
        buf: list[Batch] = []
        have = 0
        for part in self._chunks(batch_size):
            buf.append(part)
            have += len(part[0])
            while have >= batch_size:
                batch, buf = _split(buf, batch_size)
                have -= batch_size
                yield batch
        if have:
            yield _split(buf, have)[0]

    def metadata_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Metadata of the given live ids (unknown ones are left out), read without touching vectors."""
        with self._lock:
            locs = {i: loc for i in dict.fromkeys(ids) if (loc := self._find(i)) is not None}
            out: dict[str, dict[str, Any]] = {}
            for seg in self._segs:
                mine = [(i, r) for i, (sg, r) in locs.items() if sg is seg]
                if mine:
                    rows = [r for _, r in mine]
                    out.update(zip([i for i, _ in mine], seg.store._meta.get_rows(rows), strict=True))
            return out

    def metadata_items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(id, metadata)`` of every live item (no vectors read)."""
        with self._lock:
            segs = list(self._segs)
        for seg in segs:
            for r, (item, meta) in enumerate(seg.store._meta.iter_all()):
                if seg.dead is None or not seg.dead[r]:
                    yield item, meta

    def file_facts(self) -> tuple[list[str], np.ndarray]:
        """Ids of every live item and their file facts ``(n,)`` ``FACTS_DTYPE`` (see ``visrec.stores._facts``),
        read from each segment's ``facts.npy`` (computed from the metadata of a segment without one)."""
        with self._lock:
            segs = list(self._segs)
        ids: list[str] = []
        parts = []
        for seg in segs:
            facts = self._facts(seg)
            live = seg.live_rows()
            ids += list(seg.store._ids) if live is None else [seg.store._ids[r] for r in live.tolist()]
            parts.append(facts if live is None else facts[live])
        return ids, (np.concatenate(parts) if parts else facts_of([]))

    # ---- segments -----------------------------------------------------------------------------------------

    def segments(self) -> list[dict[str, Any]]:
        """``{"name", "rows", "deleted", "saved"}`` of each segment, in order (``name`` None: not saved yet)."""
        with self._lock:
            return [{"name": s.name, "rows": s.rows, "deleted": s.n_dead, "saved": s.source is not None}
                    for s in self._segs]  # fmt: skip

    def compact(self, policy: MergePolicy | None = None, *, full: bool = False) -> int:
        """Merge segments as ``policy`` says (default :class:`MergePolicy`), or all into one when ``full``;
        rows tombstoned in a merged segment are dropped. Returns how many segments were merged away."""
        with self._lock:
            self._segs = [s for s in self._segs if s.live]
            if self._pending is not None and not self._pending.live:
                self._pending = None
            if full:
                many = len(self._segs) > 1 or any(s.n_dead for s in self._segs)
                groups = [list(range(len(self._segs)))] if many else []
            else:
                groups = (policy or MergePolicy()).plan([s.rows for s in self._segs], [s.n_dead for s in self._segs])
            merged = {g[0]: self._merge([self._segs[i] for i in g]) for g in groups}
            gone = {i for g in groups for i in g}
            if self._pending is not None and self._segs.index(self._pending) in gone:
                self._pending = None
            self._segs = [merged.get(i) or s for i, s in enumerate(self._segs) if i not in gone or i in merged]
            return len(gone) - len(groups)

    def save(self, folder: Path) -> None:
        """Write the store into the empty folder ``folder``: saved segments are hard-linked, new ones written."""
        folder = Path(folder)
        if not folder.is_dir() or any(folder.iterdir()):
            raise BadInput(f"save needs an existing empty folder, got {folder}")
        with self._lock:
            entries = []
            for seg in self._segs:
                if not seg.live:
                    continue
                if seg.name is None:
                    seg.name, self._next = f"seg-{self._next:06d}", self._next + 1
                (folder / seg.name).mkdir()
                if seg.source is not None:
                    for f in sorted(seg.source.iterdir()):
                        if f.is_file() and not f.name.startswith(".") and f.name != FACTS:
                            link_or_copy(str(f), str(folder / seg.name / f.name))
                    self._save_facts(seg, folder / seg.name)
                else:
                    seg.store.save(folder / seg.name)
                    save_facts(folder / seg.name, (m for _, m in seg.store._meta.iter_all()))
                if seg.n_dead:
                    assert seg.dead is not None
                    np.save(folder / f"{seg.name}.deleted.npy", np.flatnonzero(seg.dead), allow_pickle=False)
                entries.append({"name": seg.name, "rows": seg.rows, "deleted": seg.n_dead})
            info = {"format": SEGMENTS_FORMAT, "backend": self.backend, "dim": self.dim, "count": self.count(),
                    "options": self.options, "next": self._next, "segments": entries}  # fmt: skip
            (folder / SEGMENTS).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")

    # ---- internals ------------------------------------------------------------------------------------------

    def _save_facts(self, seg: _Segment, dst: Path) -> None:
        """Link a saved segment's valid ``facts.npy``; write it when it is missing or of another format (a
        segment saved by an earlier visrec gets its facts on its first commit here)."""
        assert seg.source is not None
        if load_facts(seg.source, seg.rows) is not None:
            link_or_copy(str(seg.source / FACTS), str(dst / FACTS))
        else:
            np.save(dst / FACTS, self._facts(seg), allow_pickle=False)

    def _facts(self, seg: _Segment) -> np.ndarray:
        """The segment's file facts: its ``facts.npy``, else computed from its metadata (kept on a saved segment)."""
        if seg.source is None:  # not saved yet: it may still change
            return facts_of(m for _, m in seg.store._meta.iter_all())
        if seg.facts is None:
            saved = load_facts(seg.source, seg.rows)
            seg.facts = saved if saved is not None else facts_of(m for _, m in seg.store._meta.iter_all())
        return seg.facts

    def _find(self, item: str) -> tuple[_Segment, int] | None:
        for seg in reversed(self._segs):
            r = seg.row_of(item)
            if r is not None:
                return seg, r
        return None

    def _writable(self) -> _Segment:
        if self._pending is None:
            self._pending = _Segment(_new_store(self.backend, self.dim, self.options))
            self._segs.append(self._pending)
        return self._pending

    def _tombstone(self, ids: Sequence[str]) -> int:
        """Tombstone the live rows of ``ids`` in segments other than the pending one; returns how many."""
        n = 0
        for seg in self._segs:
            if seg is self._pending:
                continue
            rows = [r for i in ids if (r := seg.row_of(i)) is not None]
            if rows:
                seg.kill(rows)
                n += len(rows)
        return n

    def _merge(self, segs: Sequence[_Segment]) -> _Segment:
        store = _new_store(self.backend, self.dim, self.options)
        for seg in segs:
            for ids, vecs, metas in _segment_chunks(seg, 10_000):
                store.add(ids, vecs, metas)
        return _Segment(store)

    def _chunks(self, size: int) -> Iterator[Batch]:
        with self._lock:
            segs = list(self._segs)
        for seg in segs:
            yield from _segment_chunks(seg, size)


def _loader(backend: str) -> Any:
    from visrec.stores import STORES

    builder: Any = STORES.builder(backend)
    loader = getattr(builder, "load", None)
    if loader is None or not (isinstance(builder, type) and issubclass(builder, BaseStore)):
        raise BadInput(f"store {backend!r} keeps its own segments; it cannot be a segmented store")
    return loader


def _new_store(backend: str, dim: int, options: Mapping[str, Any]) -> BaseStore:
    from visrec.stores import create_store

    store = create_store(backend, dim, **options)
    if not isinstance(store, BaseStore):
        raise BadInput(f"store {backend!r} keeps its own segments; it cannot be a segmented store")
    return store
