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
from visrec.prefetch import FileFacts
from visrec.stores._facts import FACTS_DTYPE, as_int64, describe, digests, facts_of
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
    prefetched: FileFacts | None = None,
) -> _Plan:
    """Decide which records need embedding: new files, changed content (sha256) and changed metadata.

    A file whose size, mtime, inode and description match what is stored is kept without reading anything
    else (unless ``rehash``); for the others the stored metadata is read and the file hashed: one whose facts
    changed but whose content did not gets its stored facts refreshed (a metadata-only update). Files are
    stat'ed in this thread (a thread pool costs more per file than a ``stat``); only the files to hash go to
    ``workers`` threads. ``prefetched``: the folder's file facts gathered by a helper process
    (:mod:`visrec.prefetch`), used instead of a ``stat`` where they have the file.
    """
    root, records = str(dataset.root), dataset.records
    pos = stored.position
    where = np.fromiter((pos.get(r.id, -1) for r in records), np.int64, len(records))
    same = np.zeros(len(records), bool) if rehash else _unchanged(root, records, where, stored.facts, prefetched)
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


def _unchanged(
    root: str, records: Sequence[ImageRecord], where: np.ndarray, facts: np.ndarray, pre: FileFacts | None = None
) -> np.ndarray:
    """``(n,)`` bool: records whose stored row (``where``, -1: none) has the file's current size, mtime and
    inode and the record's description digest. A file that cannot be stat'ed or is empty is not unchanged.

    Only stored records are looked at; their facts come from ``pre`` where it has them, else from a ``stat``
    here (200,000 ``stat`` calls cost about 0.7 s, mostly in the kernel)."""
    stored = np.flatnonzero(where >= 0)
    size, mtime, inode = _file_facts(root, [records[k].path for k in stored.tolist()], pre)
    texts = [describe((r := records[k]).path, r.labels, r.split, r.group, r.extra) for k in stored.tolist()]
    f = facts[where[stored]] if len(facts) else np.zeros(len(stored), FACTS_DTYPE)
    ok = (size > 0) & (f["size"] == size) & (f["mtime_ns"] == mtime) & (f["inode"] == inode)
    ok &= f["describe_fnv1a2"] == digests(texts)
    out = np.zeros(len(records), bool)
    out[stored[ok]] = True
    return out


def _file_facts(root: str, rels: list[str], pre: FileFacts | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(size, mtime_ns, inode)`` int64 arrays for ``rels`` (-2 where the file cannot be stat'ed)."""
    n = len(rels)
    size, mtime, inode = np.full(n, -2, np.int64), np.full(n, -2, np.int64), np.full(n, -2, np.int64)
    todo = list(range(n))
    if pre is not None and pre.root == root:
        at = np.fromiter(map(pre.position.get, rels, [-1] * n), np.int64, n)
        have = np.flatnonzero(at >= 0)
        size[have], mtime[have], inode[have] = pre.size[at[have]], pre.mtime_ns[at[have]], pre.inode[at[have]]
        todo = np.flatnonzero(at < 0).tolist()
    prefix = os.path.join(root, "")
    sts = _stat_all([p if (p := rels[k])[:1] == "/" else prefix + p for k in todo])
    for k, st in zip(todo, sts, strict=True):
        if st is not None:
            size[k], mtime[k], inode[k] = st.st_size, st.st_mtime_ns, as_int64(st.st_ino)
    return size, mtime, inode


def _stat_all(paths: list[str]) -> list[os.stat_result | None]:
    """``os.stat`` of each path, None where it fails (reported later by the per-record check)."""
    try:
        return list(map(os.stat, paths))  # the common case: every file is there
    except OSError:
        pass
    out: list[os.stat_result | None] = []
    for p in paths:
        try:
            out.append(os.stat(p))
        except OSError:
            out.append(None)
    return out


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
