"""Near-duplicate detection: perceptual hashes, chunked Hamming distances, single-link grouping.

Hashes are packed bits: a ``(n, hash_size**2 // 8)`` ``uint8`` array, one row per image. Two images are
near-duplicates when the Hamming distance of their hashes is ``<= threshold`` bits; groups are the
connected components of that relation (single link). Memory stays ``O(n)`` plus one distance block.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from visrec.data._parallel import run_threads
from visrec.data.images import decode_file, to_rgb_array
from visrec.errors import BadImage, BadInput, DimensionMismatch
from visrec.types import ImageRecord, LabeledSet

HashKind = Literal["dhash", "phash"]
HASH_KINDS: tuple[str, ...] = ("dhash", "phash")
# Chosen by measurement (re-checked on real data by tests/unit/test_data_leakage.py): with pHash 16x16
# (256 bits) and <= 64 bits, the naruto_roboflow leak is found (20 of 30 test images, as the manifest's
# dup_group says) and no pair of different labels falls under the threshold on naruto_roboflow or
# cifar10_subset (nearest: 82 bits on both). dHash 16x16 finds the same leak but puts 4 cross-label CIFAR
# pairs under 60 bits (nearest 45) and moves more under noise / brightness (max 21 / 30 bits vs 8 / 14).
DEFAULT_HASH: HashKind = "phash"
DEFAULT_HASH_SIZE = 16
DEFAULT_THRESHOLD = 64
"""Near-duplicate threshold in bits of 256 (pHash 16x16): ``distance <= 64`` means near-duplicate."""

_BLOCK_BYTES = 32 * 2**20
_HASH_DRAFT = 128
_POPCOUNT_LUT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def image_hash(
    image: np.ndarray | Image.Image | str | Path, kind: str = DEFAULT_HASH, hash_size: int = DEFAULT_HASH_SIZE
) -> np.ndarray:
    """Perceptual hash of an image (RGB array, PIL image or path): packed bits ``(hash_size**2 // 8,)`` uint8.

    ``dhash``: signs of horizontal gradients on a ``(hash_size+1) x hash_size`` gray thumbnail (imagehash's
    definition); ``phash``: signs of low DCT frequencies against their median.
    """
    _check_hash(kind, hash_size)
    if isinstance(image, (str, Path)):
        # Files are decoded at a reduced JPEG scale: the hash only looks at a 64 px thumbnail anyway.
        pil = decode_file(image, draft_size=_HASH_DRAFT).image
    else:
        pil = Image.fromarray(to_rgb_array(image))
    return hash_rgb_image(pil, kind, hash_size)


def hash_rgb_image(image: Image.Image, kind: str = DEFAULT_HASH, hash_size: int = DEFAULT_HASH_SIZE) -> np.ndarray:
    """:func:`image_hash` of an upright RGB PIL image (as :func:`visrec.data.images.decode_file` gives), with
    no conversion or copy of the full-size pixels first.

    The same bits as imagehash's ``dhash`` / ``phash`` (LANCZOS gray thumbnail; pHash: the unnormalised
    DCT-II of a ``4 * hash_size`` square, as ``scipy.fftpack.dct`` computes it, here as two small matrix
    products), computed with numpy alone: importing imagehash and SciPy took longer than indexing one image.
    """
    _check_hash(kind, hash_size)
    if kind == "dhash":
        px = np.asarray(image.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS))
        bits = px[:, 1:] > px[:, :-1]
    else:
        side = 4 * hash_size
        px = np.asarray(image.convert("L").resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64)
        basis = _dct_basis(side, hash_size)
        low = basis @ px @ basis.T
        bits = low > np.median(low)
    return np.packbits(bits.ravel())


@functools.lru_cache(maxsize=8)
def _dct_basis(n: int, rows: int) -> np.ndarray:
    """The first ``rows`` rows of the unnormalised DCT-II matrix of size ``n``: ``2 cos(pi k (2j + 1) / 2n)``,
    ``(rows, n)`` float64 (``scipy.fftpack.dct(x, type=2)`` along an axis is this matrix times ``x``); read-only,
    computed once per size instead of once per image."""
    k = np.arange(rows, dtype=np.float64)[:, None]
    j = np.arange(n, dtype=np.float64)[None, :]
    basis = 2.0 * np.cos(np.pi * k * (2.0 * j + 1.0) / (2.0 * n))
    basis.setflags(write=False)
    return basis


def _check_hash(kind: str, hash_size: int) -> None:
    if kind not in HASH_KINDS:
        raise BadInput(f"unknown hash kind {kind!r}; expected one of {HASH_KINDS}")
    if hash_size < 4 or hash_size % 4:
        raise BadInput(f"hash_size must be a multiple of 4 (>= 4) so the bits pack into bytes, got {hash_size}")


@dataclass(frozen=True)
class DatasetHashes:
    """Hashes of a dataset's readable images: ``hashes[i]`` belongs to ``ids[i]``; ``bad`` lists the rest."""

    ids: tuple[str, ...]
    hashes: np.ndarray
    kind: str
    hash_size: int
    bad: tuple[BadImage, ...] = ()

    def __post_init__(self) -> None:
        if self.hashes.ndim != 2 or self.hashes.dtype != np.uint8 or len(self.hashes) != len(self.ids):
            raise DimensionMismatch(
                f"hashes must be (n, bytes) uint8 with one row per id: got {self.hashes.shape} "
                f"{self.hashes.dtype} for {len(self.ids)} ids"
            )

    def as_mapping(self) -> dict[str, np.ndarray]:
        """``{id: packed hash}``."""
        return dict(zip(self.ids, self.hashes, strict=True))


def hash_dataset(
    dataset: LabeledSet,
    *,
    kind: str = DEFAULT_HASH,
    hash_size: int = DEFAULT_HASH_SIZE,
    workers: int = 2,
    progress: bool = False,
) -> DatasetHashes:
    """Hash every image of ``dataset`` on ``workers`` threads; unreadable files go to ``bad`` (not raised)."""
    if workers < 1:
        raise BadInput(f"workers must be >= 1, got {workers}")

    def one(r: ImageRecord) -> np.ndarray | BadImage:
        try:
            return image_hash(dataset.abspath(r), kind, hash_size)
        except BadImage as bad:
            return bad

    results = run_threads(one, dataset.records, workers, progress, "hashing images")
    ids = tuple(r.id for r, h in zip(dataset.records, results, strict=True) if isinstance(h, np.ndarray))
    rows = [h for h in results if isinstance(h, np.ndarray)]
    nbytes = hash_size * hash_size // 8
    hashes = np.stack(rows) if rows else np.zeros((0, nbytes), np.uint8)
    bad = tuple(h for h in results if isinstance(h, BadImage))
    return DatasetHashes(ids, hashes, kind, hash_size, bad)


def _as_words(hashes: np.ndarray) -> np.ndarray:
    """Packed bits as uint64 words when the width allows (8x fewer ops), else the uint8 bytes."""
    h = np.ascontiguousarray(hashes, dtype=np.uint8)
    if h.ndim != 2:
        raise DimensionMismatch(f"hashes must be 2-D (n, bytes) packed bits, got shape {h.shape}")
    if h.shape[1] % 8 == 0 and h.shape[1] > 0:
        return h.view(np.uint64)
    return h


def _popcount_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Bits set per element of ``x`` (uint64 or uint8), written to ``out`` (uint8, same shape)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x, out=out)
    counts = _POPCOUNT_LUT[x.view(np.uint8)].reshape(*x.shape, x.itemsize).sum(axis=-1)
    out[...] = counts
    return out


def hamming_blocks(a: np.ndarray, b: np.ndarray | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(row0, col0, dist)`` blocks covering the Hamming distances between rows of ``a`` and ``b``.

    ``a``, ``b``: packed bits ``(n, bytes)`` uint8 of the same width; ``dist`` is ``(rows, cols)`` uint16
    for ``a[row0:row0+rows]`` against ``b[col0:]``. With ``b=None`` only pairs ``i < j`` of ``a`` are
    needed, so each block starts at its own diagonal (``col0 == row0``; mask ``j <= i`` yourself).
    Each block holds about 32 MiB of scratch whatever ``n``.
    """
    wa = _as_words(a)
    wb = wa if b is None else _as_words(b)
    if wa.shape[1] != wb.shape[1] or wa.dtype != wb.dtype:
        raise DimensionMismatch(f"hash widths differ: {wa.shape} vs {wb.shape} ({wa.dtype} words)")
    cols = np.ascontiguousarray(wb.T)  # word-major: one xor + popcount pass per word
    n, m = len(wa), len(wb)
    rows = max(1, _BLOCK_BYTES // max(1, m * 8))
    for r0 in range(0, n, rows):
        c0 = r0 if b is None else 0
        block = wa[r0 : r0 + rows]
        shape = (len(block), m - c0)
        scratch, counts = np.empty(shape, wa.dtype), np.empty(shape, np.uint8)
        dist = np.zeros(shape, np.uint16)
        for k in range(wa.shape[1]):
            np.bitwise_xor(block[:, k, None], cols[k, None, c0:], out=scratch)
            dist += _popcount_into(scratch, counts)
        yield r0, c0, dist


def hamming_pairs(
    a: np.ndarray, b: np.ndarray | None = None, *, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within ``max_distance`` bits: ``(i, j, dist)`` int64 arrays.

    With ``b`` given, ``i`` indexes ``a`` and ``j`` indexes ``b``; with ``b=None``, pairs ``i < j`` of ``a``.
    """
    parts_i, parts_j, parts_d = [], [], []
    for r0, c0, dist in hamming_blocks(a, b):
        hit = dist <= max_distance
        if b is None:
            hit &= np.arange(c0, c0 + dist.shape[1])[None, :] > np.arange(r0, r0 + dist.shape[0])[:, None]
        ii, jj = np.nonzero(hit)
        parts_i.append(ii + r0)
        parts_j.append(jj + c0)
        parts_d.append(dist[ii, jj].astype(np.int64))
    if not parts_i:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy()
    return (
        np.concatenate(parts_i).astype(np.int64),
        np.concatenate(parts_j).astype(np.int64),
        np.concatenate(parts_d),
    )


def nearest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: index of its nearest row of ``b`` and the distance (-1, -1 if b is empty)."""
    idx = np.full(len(a), -1, np.int64)
    dist = np.full(len(a), -1, np.int64)
    if len(b) == 0:
        return idx, dist
    for r0, _, block in hamming_blocks(a, b):
        rows = slice(r0, r0 + len(block))
        idx[rows] = block.argmin(axis=1)
        dist[rows] = block.min(axis=1)
    return idx, dist


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, int(self.parent[x])
        return root

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


def near_duplicate_groups(hashes: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    """Single-link near-duplicate groups: ``(n,)`` int64 group ids, numbered 0.. in order of first member.

    ``hashes``: ``(n, bytes)`` packed bits (e.g. ``DatasetHashes.hashes``). Images ``i`` and ``j`` share a
    group when a chain of pairs each within ``threshold`` bits links them. Pairs are consumed block by
    block, so memory stays ``O(n)`` beyond one distance block (50k hashes are fine).
    """
    if threshold < 0:
        raise BadInput(f"threshold must be >= 0 bits, got {threshold}")
    n = len(hashes)
    uf = _UnionFind(n)
    for r0, c0, dist in hamming_blocks(hashes):
        hit = dist <= threshold
        hit &= np.arange(c0, c0 + dist.shape[1])[None, :] > np.arange(r0, r0 + dist.shape[0])[:, None]
        for i, j in zip(*np.nonzero(hit), strict=True):
            uf.union(int(i) + r0, int(j) + c0)
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber groups by their first member's position
    return order[inverse].astype(np.int64)


def groups_around(hashes: np.ndarray, seeds: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    """:func:`near_duplicate_groups` for the rows that matter: every row in the near-duplicate group of a row of
    ``seeds`` gets that group's id, every other row a group of its own. ``(n,)`` int64, numbered in order of
    first member like :func:`near_duplicate_groups` (with every row a seed the two agree).

    Cost: the distances from each member of the seeds' groups to all rows (a breadth-first search, one block of
    members at a time), so linear in ``n`` when groups are small, where all pairs grow with ``n**2``. This is what
    a leave-one-group-out calibration needs: the groups of the (at most a few thousand) items it scores.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if threshold < 0:
        raise BadInput(f"threshold must be >= 0 bits, got {threshold}")
    n = len(hashes)
    seen = np.zeros(n, bool)
    frontier = np.unique(np.asarray(seeds, np.int64))
    seen[frontier] = True
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    while frontier.size:
        reached = []
        for r0, _, dist in hamming_blocks(hashes[frontier], hashes):
            i, j = np.nonzero(dist <= threshold)
            src.append(frontier[i + r0])
            dst.append(j.astype(np.int64))
            reached.append(j)
        new = np.unique(np.concatenate(reached)) if reached else np.zeros(0, np.int64)
        frontier = new[~seen[new]]
        seen[frontier] = True
    a = np.concatenate(src) if src else np.zeros(0, np.int64)
    b = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse].astype(np.int64)


def dataset_groups(
    hashes: DatasetHashes, threshold: int = DEFAULT_THRESHOLD, ids: Sequence[str] | None = None
) -> dict[str, str]:
    """``{id: group name}`` for a dataset's hashes; ids without a hash (unreadable) get their own group."""
    groups = near_duplicate_groups(hashes.hashes, threshold)
    out = {i: f"g{g}" for i, g in zip(hashes.ids, groups, strict=True)}
    for i in ids or ():
        out.setdefault(i, f"solo:{i}")
    return out
