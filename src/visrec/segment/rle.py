"""COCO run-length encoding of binary masks, byte-compatible with pycocotools (``mask.encode`` /
``mask.decode``), in pure NumPy.

A mask ``(h, w)`` is read in column-major order (down each column, then the next) as alternating runs of
0s and 1s, starting with 0s (a run may be empty). The counts are written as COCO's compressed string: each
count (from the fourth on, minus the count two places before it) in signed 5-bit groups, least significant
first, each group + 48 as one ASCII character, bit 0x20 meaning "more groups follow". The result,
``{"size": [h, w], "counts": str}``, is what COCO tools expect in an annotation's ``segmentation``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visrec.errors import BadInput, DimensionMismatch


def run_lengths(mask: np.ndarray) -> list[int]:
    """Alternating run lengths of ``mask (h, w)`` in column-major order, starting with a run of 0s."""
    if mask.ndim != 2:
        raise DimensionMismatch(f"an RLE mask must be (h, w), got shape {mask.shape}")
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def encode_counts(counts: list[int]) -> str:
    """COCO's compressed string of run lengths (pycocotools ``rleToString``)."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def decode_counts(text: str) -> list[int]:
    """Run lengths from COCO's compressed string (pycocotools ``rleFrString``)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise BadInput(f"truncated COCO RLE string at character {p}")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """``{"size": [h, w], "counts": str}`` of a boolean ``(h, w)`` mask."""
    h, w = mask.shape[:2]
    return {"size": [int(h), int(w)], "counts": encode_counts(run_lengths(mask))}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """The boolean ``(h, w)`` mask of a COCO RLE (compressed string or a list of counts)."""
    try:
        h, w = (int(v) for v in rle["size"])
        raw = rle["counts"]
        counts = decode_counts(raw) if isinstance(raw, str) else [int(c) for c in raw]
    except (KeyError, TypeError, ValueError) as e:
        raise BadInput(f"not a COCO RLE (needs 'size': [h, w] and 'counts'): {e}") from e
    if sum(counts) != h * w or min(counts, default=0) < 0:
        raise BadInput(f"COCO RLE counts cover {sum(counts)} pixels, but size {h}x{w} has {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")
