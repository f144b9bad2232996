"""The scan stage of an update: which dataset records are new, changed or gone, compared with what is stored.

Unchanged files are found with numpy over compact arrays: each stored item's file facts (size, mtime_ns,
inode) and a digest of its description (``visrec.stores._facts``) against a ``stat`` of each listed file and the
same digest of its record. Only the records that differ have their stored metadata read and go through the
per-record checks (hash the file, compare metadata); so an update reads no JSON for unchanged items.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadImage
from visrec.index.pipeline import IndexingReport, _Item, record_metadata
from visrec.stores._facts import as_int64, describe, digests, facts_of
from visrec.types import ImageRecord, LabeledSet

MetadataOf = Callable[[Sequence[str]], dict[str, dict[str, Any]]]


@dataclass
class StoredItems:
    """What the current generation holds, for change detection: live ``ids``, their ``facts`` (``(n,)``
    ``FACTS_DTYPE``) and ``metadata_of(ids) -> {id: metadata}`` to read the full metadata of a few."""

    ids: list[str]
    facts: np.ndarray
    metadata_of: MetadataOf = field(repr=False)

    @classmethod
    def from_metadata(cls, metas: dict[str, dict[str, Any]]) -> StoredItems:
        """From every item's metadata by id (a store without segment facts, such as Milvus)."""
        return cls(list(metas), facts_of(metas.values()), lambda ids: {i: metas[i] for i in ids if i in metas})

    @classmethod
    def empty(cls) -> StoredItems:
        return cls.from_metadata({})

    @cached_property
    def position(self) -> dict[str, int]:
        """Id -> index in :attr:`ids`."""
        return {i: k for k, i in enumerate(self.ids)}

    def __contains__(self, item: object) -> bool:
        return item in self.position

    def __len__(self) -> int:
        return len(self.ids)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Plan:
    embed: list[_Item]
    keep: list[str]
    meta_only: list[_Item]
    remove: list[str]


_STAT_KEYS = ("size", "mtime_ns", "inode")


def _same_meta(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same metadata, and the same file facts (size, mtime, inode: kept current so the next scan skips the file)."""
    keys = ("path", "labels", "split", "group")
    ea = {k: v for k, v in a.get("extra", {}).items() if k != "phash"}
    eb = {k: v for k, v in b.get("extra", {}).items() if k != "phash"}
    return all(a.get(k) == b.get(k) for k in keys) and ea == eb


def _unchanged_file(old: dict[str, Any] | None, st: os.stat_result) -> bool:
    """Whether the stored (size, mtime_ns, inode) match ``st`` (an entry stored without an inode matches on the
    other two)."""
    if not old:
        return False
    ex = old.get("extra", {})
    now = {"size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns), "inode": str(st.st_ino)}
    return all(ex.get(k) == now[k] for k in _STAT_KEYS if k != "inode" or "inode" in ex)


def plan_changes(
    dataset: LabeledSet,
    stored: StoredItems,
    report: IndexingReport,
    workers: int = 2,
    rehash: bool = False,
) -> _Plan:
    """Decide which records need embedding: new files, changed content (sha256) and changed metadata.

    A file whose size, mtime, inode and description match what is stored is kept without reading anything
    else (unless ``rehash``); for the others the stored metadata is read and the file hashed: one whose facts
    changed but whose content did not gets its stored facts refreshed (a metadata-only update). Files are
    stat'ed in this thread (a thread pool costs more per file than a ``stat``); only the files to hash go to
    ``workers`` threads.
    """
    root, records = str(dataset.root), dataset.records
    pos = stored.position
    where = np.fromiter((pos.get(r.id, -1) for r in records), np.int64, len(records))
    same = np.zeros(len(records), bool) if rehash else _unchanged(root, records, where, stored.facts)
    rest = np.flatnonzero(~same).tolist()
    olds = stored.metadata_of([records[k].id for k in rest if where[k] >= 0])
    scanned = {k: _stat_record(root, records[k], olds.get(records[k].id), rehash) for k in rest}
    todo = {k: res for k, res in scanned.items() if isinstance(res, tuple)}
    if todo:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            hashes = pool.map(lambda t: _sha256(t[1]), todo.values())
            for (k, (rec, path, st)), sha in zip(todo.items(), hashes, strict=True):
                scanned[k] = _Item(rec, path, {**record_metadata(rec, st), "sha256": sha})
    plan = _Plan([], [], [], [])
    keep = same.copy()
    for k, res in scanned.items():
        if isinstance(res, BadImage):
            report.skip(res)
        elif isinstance(res, str):
            keep[k] = True
        elif isinstance(res, _Item):
            _place(plan, res, olds.get(res.record.id))
    plan.keep = [records[k].id for k in np.flatnonzero(keep).tolist()] + plan.keep
    seen = np.zeros(len(stored), bool)
    seen[where[where >= 0]] = True
    plan.remove = [stored.ids[k] for k in np.flatnonzero(~seen).tolist()]
    return plan


def _unchanged(root: str, records: Sequence[ImageRecord], where: np.ndarray, facts: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: records whose stored row (``where``, -1: none) has the file's current size, mtime and
    inode and the record's description digest. A file that cannot be stat'ed or is empty is not unchanged."""
    size: list[int] = []
    mtime: list[int] = []
    inode: list[int] = []
    texts: list[str] = []
    stat, prefix = os.stat, os.path.join(root, "")
    for rec, w in zip(records, where.tolist(), strict=True):
        st = None
        if w >= 0:
            path = rec.path
            try:
                st = stat(path if path[:1] == "/" else prefix + path)
            except OSError:
                st = None  # reported by the per-record check
        if st is None:
            size.append(-2)
            mtime.append(-2)
            inode.append(-2)
            texts.append("")
        else:
            size.append(st.st_size)
            mtime.append(st.st_mtime_ns)
            inode.append(as_int64(st.st_ino))
            texts.append(describe(path, rec.labels, rec.split, rec.group, rec.extra))
    digest = digests(texts)
    n = len(records)
    f = facts[np.maximum(where, 0)] if len(facts) else np.zeros(n, facts.dtype)
    ok = (where >= 0) & (np.asarray(size) > 0) & (f["size"] == np.asarray(size))
    ok &= (f["mtime_ns"] == np.asarray(mtime)) & (f["inode"] == np.asarray(inode, dtype=np.int64))
    return np.asarray(ok & (f["describe_fnv1a"] == digest), dtype=bool)


_Scanned = str | _Item | BadImage | tuple[ImageRecord, Path, os.stat_result]


def _stat_record(root: str, rec: ImageRecord, old: dict[str, Any] | None, rehash: bool) -> _Scanned:
    """The record's id when it is stored as it is; its item when its stored facts match but its metadata
    changed (its stored sha256 kept); a bad image; or ``(record, path, stat)`` of a file to hash."""
    path = os.path.join(root, rec.path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return BadImage(str(path), "missing", "the file does not exist (moved or deleted since it was listed?)")
    except OSError as e:
        return BadImage(str(path), "unreadable", f"{e.strerror or e}; check the path and permissions")
    if st.st_size == 0:
        return BadImage(str(path), "empty", "the file has zero bytes; re-export or delete it")
    if old is None or rehash or not _unchanged_file(old, st):
        return rec, Path(path), st
    meta = record_metadata(rec, st)
    if _same_meta(old, meta):
        return rec.id
    return _Item(rec, Path(path), {**meta, "sha256": old["sha256"]})


def _place(plan: _Plan, item: _Item, old: dict[str, Any] | None) -> None:
    if old is None or old["sha256"] != item.meta["sha256"]:
        plan.embed.append(item)
    elif _same_meta(old, item.meta):
        plan.keep.append(item.record.id)
    else:
        item.meta["width"], item.meta["height"] = old["width"], old["height"]
        item.meta["extra"]["phash"] = old.get("extra", {}).get("phash", "")
        plan.meta_only.append(item)
