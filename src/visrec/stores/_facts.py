"""File facts of a segment's items in one compact array, so an update compares them without reading metadata.

A saved segment holds ``facts.npy`` beside its metadata: one record per row (``FACTS_DTYPE``) with the item's
file size, modification time (ns) and inode as stored in its metadata's ``extra`` (``-1`` where none is stored)
and a 64-bit digest of the rest of the metadata that describes the item (:func:`meta_digest`). An update stats
the dataset's files, computes the same digest of each record and compares both with numpy; only rows that differ
have their metadata read. The file is derived from ``metadata.sqlite``: a segment without it (saved by an
earlier visrec) has the facts computed from its metadata when asked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FACTS = "facts.npy"
FACTS_DTYPE = np.dtype([("size", "<i8"), ("mtime_ns", "<i8"), ("inode", "<i8"), ("digest", "<u8")])
FILE_KEYS = ("size", "mtime_ns", "inode")
"""Keys of a metadata ``extra`` that hold the file's facts (strings of integers), left out of the digest."""
_NOT_DESCRIBING = frozenset((*FILE_KEYS, "phash"))


def meta_digest(
    path: str, labels: Sequence[str], split: str | None, group: str | None, extra: Mapping[str, Any]
) -> int:
    """64-bit blake2b digest of what describes an item: path, labels, split, group and ``extra`` without the
    file facts and the perceptual hash (those change with the file, not with the description)."""
    rest = {k: v for k, v in extra.items() if k not in _NOT_DESCRIBING}
    tail = json.dumps(rest, sort_keys=True, ensure_ascii=False) if rest else ""
    text = "\x1f".join((path, "\x1e".join(labels), repr(split), repr(group), tail))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


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
    rows = []
    for m in metas:
        ex = m.get("extra") or {}
        digest = meta_digest(m.get("path", ""), m.get("labels", ()), m.get("split"), m.get("group"), ex)
        rows.append((_int(ex, "size"), _int(ex, "mtime_ns"), _int(ex, "inode"), digest))
    return np.array(rows, dtype=FACTS_DTYPE) if rows else np.zeros(0, FACTS_DTYPE)


def save_facts(folder: Path, metas: Iterable[Mapping[str, Any]]) -> None:
    """Write ``folder/facts.npy`` from the segment's metadata in row order."""
    np.save(folder / FACTS, facts_of(metas), allow_pickle=False)


def load_facts(folder: Path, rows: int) -> np.ndarray | None:
    """The saved facts of a segment with ``rows`` rows, or None when absent or not matching (then the caller
    computes them from the metadata)."""
    try:
        arr = np.load(folder / FACTS, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.dtype == FACTS_DTYPE and arr.shape == (rows,) else None
