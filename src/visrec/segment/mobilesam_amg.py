"""Which MobileSAM grid candidates become regions: the automatic mode's filters, free of any model.

The decoder is passed in as a callable, so the same selection runs on a live decoder
(:class:`visrec.segment.mobilesam.MobileSamSegmenter`) and on candidates decoded once and cached
(``benchmarks/mobilesam_filters.py`` tries many filter settings on the same decoder outputs).

Each grid point gives SAM's three candidate masks (low-resolution logits, 256 x 256) with their predicted IoU.
Points are decoded ``points_per_batch`` at a time in the order given (coarse to fine); a candidate passes when
its predicted IoU and its stability reach the thresholds and it is not empty; the passing candidates of a batch
are pruned by box NMS. With ``skip_covered``, a point that falls inside a mask already kept is not decoded. At
the end all kept candidates (with any prompted masks) are pruned by box NMS again and capped at ``max_regions``,
best predicted IoU first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from visrec.segment.masks import masks_to_boxes, nms
from visrec.segment.sam_amg import CandidateFilters, passing, stability_scores

Decode = Callable[[np.ndarray], "Candidates"]
"""Point rows ``(k,)`` int64 -> the :class:`Candidates` of those points."""


@dataclass(frozen=True)
class Candidates:
    """SAM's three candidate masks for each of ``k`` points: ``low (k, 3, 256, 256)`` logits, ``iou (k, 3)``
    predicted IoUs, ``stability (k, 3)`` and ``boxes (k, 3, 4)`` xyxy in low-resolution pixels (both measured
    inside the frame that covers the image; an empty mask has a ``[0, 0, 0, 0]`` box)."""

    low: np.ndarray
    iou: np.ndarray
    stability: np.ndarray
    boxes: np.ndarray


def describe(low: np.ndarray, iou: np.ndarray, frame: tuple[int, int], offset: float) -> Candidates:
    """:class:`Candidates` of logits ``low (k, 3, 256, 256)`` and predicted IoUs ``iou (k, 3)``, their stability
    (thresholds at +/- ``offset``) and boxes measured inside ``frame`` ``(rows, cols)``."""
    k = len(low)
    cand = low[:, :, : frame[0], : frame[1]].reshape(k * 3, frame[0], frame[1])
    stable = stability_scores(cand, 0.0, offset).reshape(k, 3)
    return Candidates(low, iou, stable, masks_to_boxes(cand > 0).reshape(k, 3, 4))


class GridOptions(CandidateFilters, Protocol):
    """The settings :func:`select_grid` reads (``MobileSamConfig`` has them): the filters of :func:`passing`
    (shared with the ``sam`` backend) and the batching."""

    @property
    def points_per_batch(self) -> int: ...
    @property
    def skip_covered(self) -> bool: ...


@dataclass(frozen=True)
class GridSelection:
    """Kept candidates: ``low (n, 256, 256)`` float32 logits, ``scores (n,)`` float32 predicted IoUs, ``ids (n,)``
    int64 candidate ids (point row * 3 + output 0..2), and ``decoded``: how many points were decoded."""

    low: np.ndarray
    scores: np.ndarray
    ids: np.ndarray
    decoded: int


def select_grid(
    decode: Decode, points: np.ndarray, hw: tuple[int, int], frame: tuple[int, int], cfg: GridOptions,
    cover: np.ndarray | None = None,
) -> GridSelection:  # fmt: skip
    """Decode the grid ``points (p, 2)`` (x, y in the image's ``hw`` pixels, in visiting order) batch by batch
    and keep the candidates that pass the filters. ``frame``: the ``(rows, cols)`` of the 256 x 256 logits that
    cover the image (the rest is padding); ``cover``: a ``frame``-shaped bool mask of what is already covered
    (prompted masks), whose points are skipped with ``skip_covered``."""
    ch, cw = frame
    covered = np.zeros((ch, cw), bool) if cover is None else cover.copy()
    low_out, iou_out, id_out, decoded = [], [], [], 0
    for s in range(0, len(points), cfg.points_per_batch):
        rows = np.arange(s, min(s + cfg.points_per_batch, len(points)))
        if cfg.skip_covered:
            r = np.minimum((points[rows, 1] * ch / hw[0]).astype(int), ch - 1)
            c = np.minimum((points[rows, 0] * cw / hw[1]).astype(int), cw - 1)
            rows = rows[~covered[r, c]]
        if len(rows) == 0:
            continue
        got = decode(rows)
        decoded += len(rows)
        sel = passing(got.iou.reshape(-1), got.stability.reshape(-1), got.boxes.reshape(-1, 4), cfg)
        low = got.low.reshape(-1, *got.low.shape[2:])[sel]
        low_out.append(low)
        iou_out.append(got.iou.reshape(-1)[sel])
        id_out.append((rows[:, None] * 3 + np.arange(3)).reshape(-1)[sel])
        covered |= (low[:, :ch, :cw] > 0).any(0)
    if not low_out:
        return GridSelection(np.zeros((0, 256, 256), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0)
    return GridSelection(
        np.concatenate(low_out), np.concatenate(iou_out).astype(np.float32), np.concatenate(id_out), decoded
    )


def final_keep(low: np.ndarray, scores: np.ndarray, frame: tuple[int, int], nms_iou: float, cap: int) -> np.ndarray:
    """Rows of ``low (n, 256, 256)`` to keep: non-empty masks (inside ``frame``) pruned by box NMS over all
    sources, best ``scores`` first, at most ``cap``."""
    masks = low[:, : frame[0], : frame[1]] > 0
    ok = np.nonzero(masks.any((1, 2)))[0]
    if len(ok) == 0:
        return ok
    return ok[nms(masks_to_boxes(masks[ok]), scores[ok], nms_iou)][:cap]
