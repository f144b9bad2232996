"""Boxes completed to the shape of the indexed image they resemble (pure numpy, no model).

A boundary box (:mod:`visrec.segment.edges`) follows a closed outline, and an object's outline is not always
closed: where a pasted picture, a card or a face meets a background of its own colour, the outline has a gap, and
the box that is found holds a part of the object (the hair above a face, the face below its hair). Two touching
objects give the opposite: one outline, one box around both. Either way the box's shape differs from the shape
of the object, and the index knows that shape: its images are the things to find, and the nearest indexed image
of a part of a face is (mostly) a face of that character, with its own width / height.

:func:`complete_boxes` turns a box whose aspect (width / height) is off from its reference aspect by more than
``min_ratio`` into the four boxes of that aspect sharing one of its sides with it: a box too wide for its
reference keeps its width and grows down from its top or up from its bottom (a part cut off below or above),
and keeps its height and shrinks to its left or right end (one of two objects side by side); a box too tall,
the same turned by 90 degrees. No box is added for boxes of about the right shape.
"""

from __future__ import annotations

import numpy as np

from visrec.errors import BadInput


def box_aspects(boxes: np.ndarray) -> np.ndarray:
    """Width / height of ``(n, 4)`` xyxy boxes, ``(n,)`` float64 (sides floored at one pixel)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], 1.0) / np.maximum(b[:, 3] - b[:, 1], 1.0)


def complete_boxes(
    boxes: np.ndarray, aspects: np.ndarray, height: int, width: int, min_ratio: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the reference ``aspects`` (``(n,)`` width / height, > 0) sharing a side with each of ``boxes``
    (``(n, 4)`` xyxy pixels of an image ``height`` x ``width``) whose own aspect is off by more than ``min_ratio``
    (either way): ``(m, 4)`` float32 boxes clipped to the image, four per such box (see the module docstring), and
    ``(m,)`` int64 the row of ``boxes`` each came from."""
    if min_ratio < 1.0:
        raise BadInput(f"min_ratio must be >= 1 (a ratio of aspects), got {min_ratio}")
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    a = np.asarray(aspects, np.float64).reshape(-1)
    if a.shape != (len(b),) or (a <= 0).any():
        raise BadInput(f"need one aspect > 0 per box: {len(b)} boxes, aspects of shape {a.shape}")
    ratio = box_aspects(b) / a
    rows = np.flatnonzero((ratio > min_ratio) | (ratio < 1.0 / min_ratio))
    if len(rows) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    x0, y0, x1, y1 = b[rows].T
    w, h, ref = x1 - x0, y1 - y0, a[rows]
    tall, wide = w / ref, h * ref  # the height that fits the width, the width that fits the height
    out = np.stack(
        [
            np.stack([x0, y0, x1, y0 + tall], 1),  # keeps its top side
            np.stack([x0, y1 - tall, x1, y1], 1),  # keeps its bottom side
            np.stack([x0, y0, x0 + wide, y1], 1),  # keeps its left side
            np.stack([x1 - wide, y0, x1, y1], 1),  # keeps its right side
        ],
        1,
    ).reshape(-1, 4)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out.astype(np.float32), np.repeat(rows, 4).astype(np.int64)
