"""File facts of a segment's items in one compact array, so an update compares them without reading metadata.

A saved segment holds ``facts.npy`` beside its metadata: one record per row (``FACTS_DTYPE``) with the item's
file size, modification time (ns) and inode as stored in its metadata's ``extra`` (``-1`` where none is stored)
and a 64-bit digest of the rest of the metadata that describes the item (:func:`describe`, :func:`digests`).
An update stats the dataset's files, computes the same digest of each record and compares both with numpy; only
rows that differ have their metadata read. The file is derived from ``metadata.sqlite``: a segment without it
(saved by an earlier visrec) has the facts computed from its metadata when asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrec.npyio import load_npy

FACTS = "facts.npy"
FACTS_DTYPE = np.dtype([("size", "<i8"), ("mtime_ns", "<i8"), ("inode", "<i8"), ("describe_fnv1a2", "<u8")])
FILE_KEYS = ("size", "mtime_ns", "inode")
"""Keys of a metadata ``extra`` that hold the file's facts (strings of integers), left out of the digest."""
_NOT_DESCRIBING = frozenset((*FILE_KEYS, "phash"))


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_CHUNK = 8192


def describe(path: str, labels: Sequence[str], split: str | None, group: str | None, extra: Mapping[str, Any]) -> str:
    """What describes an item, as one string: path, labels, split, group and ``extra`` without the file facts
    and the perceptual hash (those change with the file, not with the description)."""
    rest = {k: v for k, v in extra.items() if k not in _NOT_DESCRIBING} if extra else None
    tail = json.dumps(rest, sort_keys=True, ensure_ascii=False) if rest else ""
    return "\x1f".join((path, "\x1e".join(labels), repr(split), repr(group), tail))


def digests(texts: Sequence[str]) -> np.ndarray:
    """``(n,)`` uint64 FNV-1a digests of ``texts`` over their code points and length, computed column by column
    with numpy (a hash call per item cost more than the whole comparison), in chunks so that one long text
    widens only its chunk's array. A text's digest does not depend on the others: columns past its end (the
    padding of shorter texts in a chunk) leave its hash as it is."""
    out = np.empty(len(texts), np.uint64)
    for start in range(0, len(texts), _CHUNK):
        part = texts[start : start + _CHUNK]
        arr = np.array(part, dtype=str)
        width = arr.dtype.itemsize // 4
        codes = arr.view(np.uint32).reshape(len(part), width).T.astype(np.uint64) if width else None
        lengths = np.fromiter(map(len, part), np.int64, len(part))
        h = np.full(len(part), _FNV_OFFSET, np.uint64)
        for j, col in enumerate(() if codes is None else codes):
            live = lengths > j
            h[live] = (h[live] ^ col[live]) * _FNV_PRIME
        h ^= lengths.astype(np.uint64)
        h *= _FNV_PRIME
        out[start : start + len(part)] = h
    return out


def as_int64(v: int) -> int:
    """``v`` wrapped into the int64 range (an inode can use all 64 bits)."""
    return v - 2**64 if v >= 2**63 else v


def _int(extra: Mapping[str, Any], key: str) -> int:
    v = extra.get(key)
    try:
        return as_int64(int(v)) if v is not None else -1
    except (TypeError, ValueError):
        return -1


def facts_of(metas: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """``(n,)`` ``FACTS_DTYPE`` facts of metadata dicts (the ``Metadata`` format), in order."""
    rows, texts = [], []
    for m in metas:
        ex = m.get("extra") or {}
        texts.append(describe(m.get("path", ""), m.get("labels", ()), m.get("split"), m.get("group"), ex))
        rows.append((_int(ex, "size"), _int(ex, "mtime_ns"), _int(ex, "inode"), 0))
    out = np.array(rows, dtype=FACTS_DTYPE) if rows else np.zeros(0, FACTS_DTYPE)
    out["describe_fnv1a2"] = digests(texts)
    return out


def save_facts(folder: Path, metas: Iterable[Mapping[str, Any]]) -> None:
    """Write ``folder/facts.npy`` from the segment's metadata in row order."""
    np.save(folder / FACTS, facts_of(metas), allow_pickle=False)


def load_facts(folder: Path, rows: int) -> np.ndarray | None:
    """The saved facts of a segment with ``rows`` rows, or None when absent or not matching (then the caller
    computes them from the metadata)."""
    try:
        arr = load_npy(folder / FACTS)
    except (OSError, ValueError):
        return None
    return arr if arr.dtype == FACTS_DTYPE and arr.shape == (rows,) else None
