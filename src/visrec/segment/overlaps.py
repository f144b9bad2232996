"""Overlap resolution of a scene's named regions, and the snapping of their boxes to edge lines.

Pure numpy on boxes, labels and scores (no model): :func:`resolve_overlaps` keeps a consistent set (per-label NMS,
pieces of an object dropped first, mask fragments of one object joined), :func:`snap_named` moves named boxes
onto nearby straight edge lines (:mod:`visrec.segment.snap`) of the map :func:`scene_edges` finds. The scene
pipeline (:mod:`visrec.segment.scene`) runs them in that order and resolves once more after snapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from visrec.segment.masks import box_area, box_ioa, box_iou

if TYPE_CHECKING:
    from visrec.segment.scene import SceneConfig

PIECE_SHARE = 0.1
"""A named box region lying inside a same-label region at least ``1 / PIECE_SHARE`` times its area is a piece of
that region (:func:`pieces`). At a quarter (the former share), a small object inside a loose same-label box of it
and its surroundings (4-5x its area) was dropped as a piece of that box; chosen on generated scenes of seed 1
(docs/scene.md)."""


def resolve_overlaps(
    boxes: np.ndarray,
    labels: list[str | None],
    scores: np.ndarray,
    cfg: SceneConfig,
    joined: dict[int, list[int]] | None = None,
    tiers: np.ndarray | None = None,
    ties: np.ndarray | None = None,
) -> list[int]:
    """Indices of the regions to keep, in the order considered: known before unknown, then, with
    ``cfg.box_order == "quality"`` and box regions (no ``joined``), the named boxes by their box quality
    (:func:`named_box_quality`: P(an object's box) from their tiers, scores, raw ``ties`` and overlaps), else lower
    ``tiers`` first (``(n,)`` ints, e.g. boundary boxes before windows; default all 0), then most confident first,
    equal ``scores`` (a probability saturated at 1) ordered by ``ties`` (``(n,)``, e.g. raw scores; default none).

    Same label and IoU > ``merge_iou`` (or one box inside the other): without ``joined`` (box regions such as
    windows) the weaker is dropped, per-label NMS, and ``boxes`` is not changed, so distinct touching objects
    stay distinct; with ``joined`` (mask regions, fragments of one object) the weaker joins the stronger,
    whose box grows to their union in ``boxes``, and ``joined`` receives ``{kept index: [joined indices]}``.
    Box regions that are pieces of a same-label region (:func:`pieces`) are dropped first, whatever their scores.

    Then, among the regions kept so far, different labels and overlap > ``suppress_ioa`` (of the smaller box): the
    one with the weaker claim is dropped (:func:`cross_label`), a kept region's claim being the best score among
    itself and the same-label regions it dropped. Tiers order only regions of one label: a tier says which of two
    boxes of one object fits it better (a boundary box before a window), not which name is right. Unknown regions
    never suppress known ones.
    """
    tier = np.zeros(len(labels), np.int64) if tiers is None else np.asarray(tiers)
    tie = np.zeros(len(labels)) if ties is None else np.asarray(ties)
    if joined is None and cfg.box_order == "quality":
        quality = named_box_quality(boxes, labels, scores, tier, tie)
        order = sorted(range(len(labels)), key=lambda i: (labels[i] is None, -quality[i]))
    else:
        order = sorted(range(len(labels)), key=lambda i: (labels[i] is None, int(tier[i]), -float(scores[i]), -tie[i]))
    if joined is None:
        piece = pieces(boxes, labels, cfg.piece_share)
        order = [i for i in order if not piece[i]]
    kept: list[int] = []
    claim = np.asarray(scores, np.float64).copy()  # a kept region's claim: the best score of the regions it stood for
    for i in order:
        if kept:
            iou = box_iou(boxes[i : i + 1], boxes[kept])[0]
            ioa = box_ioa(boxes[i : i + 1], boxes[kept])[0]
            same = np.array([labels[k] == labels[i] for k in kept])
            merge = same & ((iou > cfg.merge_iou) | (ioa > 0.9))
            for k in np.asarray(kept)[merge]:
                claim[k] = max(claim[k], claim[i])
            if labels[i] is not None and merge.any() and joined is not None:
                k = kept[int(np.argmax(merge))]
                joined.setdefault(k, []).append(i)
                boxes[k, :2] = np.minimum(boxes[k, :2], boxes[i, :2])
                boxes[k, 2:] = np.maximum(boxes[k, 2:], boxes[i, 2:])
                continue
            if merge.any():
                continue
        kept.append(i)
    return cross_label(boxes, labels, claim, kept, cfg.suppress_ioa, tie)


def named_box_quality(
    boxes: np.ndarray, labels: list[str | None], scores: np.ndarray, tiers: np.ndarray, ties: np.ndarray
) -> np.ndarray:
    """``(n,)`` :func:`visrec.segment.box_quality.box_quality` of the named regions (0 for unknown ones)."""
    from visrec.segment.box_quality import box_quality

    out = np.zeros(len(labels))
    named = [i for i, lab in enumerate(labels) if lab is not None]
    if named:
        sub = [str(labels[i]) for i in named]
        out[named] = box_quality(boxes[named], sub, np.asarray(scores)[named], tiers[named], ties[named])
    return out


def cross_label(
    boxes: np.ndarray, labels: list[str | None], scores: np.ndarray, kept: list[int], most: float, ties: np.ndarray
) -> list[int]:
    """The rows ``kept`` (in their order) without those overlapping a region of another label with a higher score
    (``scores``, ``(n,)``) by more than ``most`` of the smaller box; known regions go before unknown ones, then by
    ``scores``, then ``ties``.

    By score alone, not by tier: when a boundary box names one character and windows on the same face name
    another more confidently, the better-placed box is no better evidence of the name (the tier order let a less
    confident name hide a more confident one; measured on generated scenes in docs/scene.md)."""
    order = sorted(kept, key=lambda i: (labels[i] is None, -float(scores[i]), -float(ties[i])))
    out: list[int] = []
    for i in order:
        if out:
            ioa = box_ioa(boxes[i : i + 1], boxes[out])[0]
            other = np.array([labels[k] != labels[i] for k in out])
            if (other & (ioa > most)).any():
                continue
        out.append(i)
    survivors = set(out)
    return [i for i in kept if i in survivors]


def pieces(boxes: np.ndarray, labels: list[str | None], share: float = PIECE_SHARE) -> np.ndarray:
    """``(n,)`` bool: the named box regions lying inside a region of the same label at least ``1 / share`` times
    their area: a part of that object (an eye of a face, a patch of a picture's outline), which may look even
    more like the index's images than the whole. Two objects side by side are never nested; a box around two
    touching objects holds each at about half its area, which is kept to the score order."""
    n = len(labels)
    if n < 2:
        return np.zeros(n, bool)
    named = np.array([lab is not None for lab in labels])
    same = np.array([[a == b for b in labels] for a in labels]) & named[:, None] & named[None, :]
    area = box_area(boxes)
    inside = (box_ioa(boxes, boxes) > 0.9) & (area[:, None] < share * area[None, :])
    return (inside & same).any(axis=1)


def scene_edges(image: np.ndarray) -> np.ndarray:
    """The bool ``(h, w)`` edge map of an RGB ``image`` that named boxes snap to: the boundary boxes' first Canny
    thresholds (:class:`visrec.segment.edges.EdgeBoxConfig`)."""
    from visrec.segment.edges import EdgeBoxConfig, canny

    return canny(image[..., :3], *EdgeBoxConfig().thresholds[0])


def snap_named(edges: np.ndarray, boxes: np.ndarray, labels: list[str | None]) -> np.ndarray:
    """``boxes`` ``(n, 4)`` xyxy pixels, the named ones (label not None) snapped to the lines of the bool
    ``(h, w)`` ``edges`` (:func:`scene_edges`) by :func:`visrec.segment.snap.snap_boxes`; a new array."""
    from visrec.segment.snap import snap_boxes

    named = np.array([lab is not None for lab in labels])
    out = boxes.copy()
    if named.any():
        out[named] = snap_boxes(edges, boxes[named])
    return out
