"""Pure box and mask helpers: no model, no I/O, tested against hand-computed cases.

Conventions: boxes are ``xyxy`` float pixels ``(n, 4)`` with ``x1 > x0`` and ``y1 > y0`` (the right and bottom
edges are exclusive, so a box ``[0, 0, 2, 2]`` covers 4 pixels); masks are ``bool`` ``(n, h, w)``; images are
RGB ``uint8`` ``(h, w, 3)``.
"""

from __future__ import annotations

import numpy as np

from visrec.errors import DimensionMismatch


def _boxes(b: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(b, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DimensionMismatch(f"{name} must be (n, 4) xyxy boxes, got shape {arr.shape}")
    return arr


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas ``(n,)`` float64 of ``(n, 4)`` xyxy boxes (0 for degenerate boxes)."""
    b = _boxes(boxes, "boxes")
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union ``(n, m)`` float64 of boxes ``a (n, 4)`` and ``b (m, 4)``."""
    a, b = _boxes(a, "a"), _boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_ioa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the area of the *smaller* box ``(n, m)`` (1.0 when one box holds the other)."""
    a, b = _boxes(a, "a"), _boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    small = np.minimum(box_area(a)[:, None], box_area(b)[None, :])
    return np.divide(inter, small, out=np.zeros_like(inter), where=small > 0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(n, m)`` float64 of boolean masks ``a (n, h, w)`` and ``b (m, h, w)`` (0 when both empty)."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise DimensionMismatch(f"masks must be (n, h, w) of one size, got {a.shape} and {b.shape}")
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices ``(k,)`` int64 of the kept boxes, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box is *greater* than ``iou_threshold``.
    Ties in score keep the lower index first.
    """
    b = _boxes(boxes, "boxes")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(b),):
        raise DimensionMismatch(f"scores must be ({len(b)},), got {s.shape}")
    order = np.argsort(-s, kind="stable")
    iou = box_iou(b, b)
    alive = np.ones(len(b), dtype=bool)
    keep: list[int] = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(int(i))
        alive &= iou[i] <= iou_threshold
    return np.asarray(keep, dtype=np.int64)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes ``(n, 4)`` float32 of boolean masks ``(n, h, w)``; an empty mask gives ``[0, 0, 0, 0]``."""
    if masks.ndim != 3:
        raise DimensionMismatch(f"masks must be (n, h, w), got shape {masks.shape}")
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        if len(ys):
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out


def box_to_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """A ``(height, width)`` bool mask that is True inside the (rounded, clipped) box."""
    x0, y0, x1, y1 = clip_box(box, height, width)
    m = np.zeros((height, width), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def clip_box(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds ``(x0, y0, x1, y1)`` of a box, rounded and clipped to an image of that size."""
    x0, y0, x1, y1 = (round(float(v)) for v in np.asarray(box).reshape(4))
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    return x0, y0, x1, y1


def crop(image: np.ndarray, box: np.ndarray, min_side: int = 1) -> np.ndarray:
    """The pixels of ``image (h, w, c)`` inside ``box`` (a copy); boxes smaller than ``min_side`` are grown
    around their centre so the crop is never empty."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = clip_box(box, h, w)
    if x1 - x0 < min_side:
        x0 = max(0, min((x0 + x1 - min_side) // 2, w - min_side))
        x1 = min(w, x0 + min_side)
    if y1 - y0 < min_side:
        y0 = max(0, min((y0 + y1 - min_side) // 2, h - min_side))
        y1 = min(h, y0 + min_side)
    return image[y0:y1, x0:x1].copy()


def masked_crop(image: np.ndarray, mask: np.ndarray, box: np.ndarray | None = None, fill: int = 255) -> np.ndarray:
    """Crop of ``image (h, w, 3)`` to ``box`` (default: the mask's tight box) with pixels outside ``mask (h, w)``
    set to ``fill`` (white by default), as the reference design does before embedding a segment."""
    if mask.shape != image.shape[:2]:
        raise DimensionMismatch(f"mask {mask.shape} must match the image's (h, w) {image.shape[:2]}")
    if box is None:
        box = masks_to_boxes(mask[None])[0]
    blanked = np.where(mask[..., None], image, np.asarray(fill, dtype=image.dtype))
    return crop(blanked, box)


def scale_boxes(boxes: np.ndarray, factor: float) -> np.ndarray:
    """Boxes ``(n, 4)`` multiplied by ``factor`` (float32), e.g. to map a downscaled image's boxes back."""
    return (_boxes(boxes, "boxes") * factor).astype(np.float32)


def remove_small_regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    """``mask (h, w)`` bool with its holes smaller than ``min_area`` pixels filled and its islands smaller
    than ``min_area`` removed (4-connectivity; the largest island is always kept, so a mask never empties
    unless it was empty). A new array; ``mask`` is not changed. Works inside the mask's box (plus one pixel),
    so its cost follows the mask's size, not the image's."""
    if mask.ndim != 2:
        raise DimensionMismatch(f"mask must be (h, w), got shape {mask.shape}")
    out = mask.copy()
    if min_area <= 0 or not mask.any():
        return out
    x0, y0, x1, y1 = (int(v) for v in masks_to_boxes(mask[None])[0])
    h, w = mask.shape
    y0, x0, y1, x1 = max(0, y0 - 1), max(0, x0 - 1), min(h, y1 + 1), min(w, x1 + 1)
    out[y0:y1, x0:x1] = _clean(np.pad(mask[y0:y1, x0:x1], 1), min_area)[1:-1, 1:-1]
    return out


def _clean(m: np.ndarray, min_area: int) -> np.ndarray:
    """Fill small holes and drop small islands of ``m``, whose border is background (padded)."""
    from scipy import ndimage

    holes, n = ndimage.label(~m)
    if n > 1:  # component 1 holds the padded border: it is the outside, never a hole
        sizes = np.bincount(holes.ravel())
        fill = np.nonzero(sizes < min_area)[0]
        m = m | np.isin(holes, fill[fill > 1])
    islands, n = ndimage.label(m)
    if n > 1:
        sizes = np.bincount(islands.ravel())
        sizes[0] = 0
        drop = np.nonzero((sizes < min_area) & (np.arange(len(sizes)) != np.argmax(sizes)))[0]
        m = m & ~np.isin(islands, drop[drop > 0])
    return m
