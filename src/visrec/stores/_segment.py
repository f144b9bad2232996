"""One segment of a :class:`~visrec.stores.segmented.SegmentedStore` and what is done segment by segment:
search with tombstones, counting, chunked reading, and the files that describe segments on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import REINDEX_FIX, IndexCorrupt
from visrec.npyio import load_npy
from visrec.stores._common import BaseStore, Batch
from visrec.stores.filters import Filter

SEGMENTS = "segments.json"
SEGMENTS_FORMAT = 1
OVERFETCH_MAX = 256
"""A segment with at most this many tombstones is searched for ``k + tombstones`` rows, then filtered; one with
more is searched over its live rows only."""


class _Segment:
    """One store of the backend, the folder it was loaded from (None: not saved yet) and its tombstones."""

    def __init__(self, store: BaseStore, source: Path | None = None, name: str | None = None) -> None:
        self.store = store
        self.source = source
        self.name = name
        self.dead: np.ndarray | None = None  # bool (rows,)
        self.n_dead = 0
        self._live: np.ndarray | None = None
        self._ids_arr: np.ndarray | None = None
        self.facts: np.ndarray | None = None  # FACTS_DTYPE (rows,), once read or computed

    @property
    def rows(self) -> int:
        return len(self.store)

    @property
    def live(self) -> int:
        return self.rows - self.n_dead

    def row_of(self, item: str) -> int | None:
        """Row of a live item, else None."""
        r = self.store._row.get(item)
        return None if r is None or (self.dead is not None and self.dead[r]) else r

    def kill(self, rows: Sequence[int] | np.ndarray) -> None:
        if self.dead is None:
            self.dead = np.zeros(self.rows, bool)
        self.dead[np.asarray(rows, np.int64)] = True
        self.n_dead = int(self.dead.sum())
        self._live = None

    def live_rows(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        """The sorted ``rows`` (all when None) without tombstoned ones; None means all rows, none tombstoned."""
        if not self.n_dead:
            return rows
        assert self.dead is not None
        if rows is None:
            if self._live is None:
                self._live = np.flatnonzero(~self.dead)
            return self._live
        return rows[~self.dead[rows]]

    def ids_arr(self) -> np.ndarray:
        """Ids by row as an object array with ``""`` appended (row -1 maps to it)."""
        if self._ids_arr is None or len(self._ids_arr) != self.rows + 1 or self.source is None:
            self._ids_arr = np.array([*self.store._ids, ""], dtype=object)
        return self._ids_arr


def _segment_chunks(seg: _Segment, size: int) -> Iterator[Batch]:
    """Live rows of one segment in chunks of at most ``size``: ``(ids, vectors, metadata)``."""
    live = seg.live_rows(None)
    rows = np.arange(seg.rows, dtype=np.int64) if live is None else live
    for b0 in range(0, len(rows), size):
        chunk = rows[b0 : b0 + size]
        with seg.store._lock:
            if live is None:
                vecs = np.array(seg.store._mat.view[int(chunk[0]) : int(chunk[-1]) + 1])
                metas = [m for _, m in seg.store._meta.iter_range(int(chunk[0]), int(chunk[-1]) + 1)]
            else:
                vecs = seg.store._mat.view[chunk]
                metas = seg.store._meta.get_rows(chunk.tolist())
            ids = [seg.store._ids[r] for r in chunk.tolist()]
        yield ids, vecs, metas


def _search_segment(seg: _Segment, q: np.ndarray, k: int, flt: Filter | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ids (q, k') object, scores (q, k') float32)`` of one segment's live top-k, or None when it has none."""
    if not seg.live:
        return None
    with seg.store._lock:
        sel = None if flt is None else seg.store._meta.rows(flt)
        if sel is not None and len(sel) == 0:
            return None
        if sel is None and 0 < seg.n_dead <= OVERFETCH_MAX:
            rows, scores = seg.store._search(q, k + seg.n_dead, None)
            rows, scores = _drop_dead(seg, rows, scores, k)
        else:
            sel = seg.live_rows(sel)
            if sel is not None and len(sel) == 0:
                return None
            rows, scores = seg.store._search(q, k, sel)
    ids = seg.ids_arr()[np.where(rows >= 0, rows, -1)]
    return ids, np.where(rows >= 0, scores, -np.inf).astype(np.float32)


def _drop_dead(seg: _Segment, rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` hits of each row that are not tombstoned (order kept); missing ones are row -1."""
    assert seg.dead is not None
    bad = rows < 0
    bad[~bad] = seg.dead[rows[~bad]]
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    rows = np.where(np.take_along_axis(bad, order, axis=1), -1, np.take_along_axis(rows, order, axis=1))
    return rows, np.take_along_axis(scores, order, axis=1)


def _count_segment(seg: _Segment, flt: Filter) -> int:
    if not seg.n_dead:
        return seg.store._meta.count(flt)
    rows = seg.live_rows(seg.store._meta.rows(flt))
    return 0 if rows is None else len(rows)


def _split(buf: list[Batch], n: int) -> tuple[Batch, list[Batch]]:
    """The first ``n`` items of the buffered parts as one batch, and the rest."""
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    rest: list[Batch] = []
    for part in buf:
        take = min(n - len(ids), len(part[0]))
        if take:
            ids += part[0][:take]
            vecs.append(part[1][:take])
            metas += part[2][:take]
        if take < len(part[0]):
            rest.append((part[0][take:], part[1][take:], part[2][take:]))
    return (ids, np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32), metas), rest


def _read_info(folder: Path) -> dict[str, Any]:
    try:
        info = json.loads((folder / SEGMENTS).read_text(encoding="utf-8"))
        if info.get("format") != SEGMENTS_FORMAT:
            raise ValueError(f"unknown format {info.get('format')!r}")
        int(info["dim"]), int(info["next"])
        for e in info["segments"]:
            if not (isinstance(e["name"], str) and e["name"].startswith("seg-") and "/" not in e["name"]):
                raise ValueError(f"bad segment name {e['name']!r}")
            int(e["rows"]), int(e["deleted"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IndexCorrupt(f"{folder / SEGMENTS} is not a valid segment list ({e}); {REINDEX_FIX}") from None
    return dict(info)


def _read_tombstones(path: Path, rows: int, expected: int) -> np.ndarray:
    try:
        dead = load_npy(path)
    except (OSError, ValueError) as e:
        raise IndexCorrupt(f"{path} cannot be read ({e}); {REINDEX_FIX}") from None
    if dead.ndim != 1 or len(dead) != expected or dead.dtype.kind not in "iu" or (len(dead) and dead.max() >= rows):
        raise IndexCorrupt(f"{path} does not match its segment ({len(dead)} rows, expected {expected}); re-index")
    return np.asarray(dead, np.int64)
