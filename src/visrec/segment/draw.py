"""Draw a :class:`SceneResult` on a copy of its image: boxes (and mask outlines), label and confidence."""

from __future__ import annotations

import colorsys
import hashlib

import numpy as np
from PIL import Image

from visrec.drawing import draw_box, pen_for
from visrec.errors import DimensionMismatch
from visrec.segment.types import SceneResult

UNKNOWN_COLOUR = (160, 160, 160)


def label_colour(label: str | None) -> tuple[int, int, int]:
    """A stable, saturated colour per label (gray for unknown)."""
    if label is None:
        return UNKNOWN_COLOUR
    hue = int(hashlib.sha256(label.encode("utf-8", "surrogateescape")).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def annotate(image: np.ndarray, result: SceneResult) -> Image.Image:
    """A new RGB PIL image of ``image (h, w, 3) uint8`` with every region drawn; ``image`` is not changed."""
    if image.shape[:2] != (result.height, result.width):
        raise DimensionMismatch(
            f"the image is {image.shape[1]}x{image.shape[0]} but the result is for "
            f"{result.width}x{result.height}; draw on the image that was analysed"
        )
    canvas = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("RGB")
    if result.regions.masks is not None:
        canvas = _outline_masks(canvas, result)
    pen = pen_for(canvas.size)
    for i in range(len(result)):
        box = tuple(float(v) for v in result.regions.xyxy[i])
        text = f"{result.labels[i] or 'unknown'} {float(result.scores[i]):.2f}"
        draw_box(canvas, box, text, label_colour(result.labels[i]), pen)  # type: ignore[arg-type]
    return canvas


def _outline_masks(canvas: Image.Image, result: SceneResult) -> Image.Image:
    arr = np.array(canvas)
    assert result.regions.masks is not None
    for m, lab in zip(result.regions.masks, result.labels, strict=True):
        inner = m.copy()
        inner[1:-1, 1:-1] = m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        colour = np.asarray(label_colour(lab), np.uint16)
        arr[m] = ((arr[m].astype(np.uint16) * 3 + colour) // 4).astype(np.uint8)  # a light tint of the mask
        arr[m & ~inner] = label_colour(lab)
    return Image.fromarray(arr)
