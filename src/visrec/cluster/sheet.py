"""Contact sheets: a grid of thumbnails per cluster, returned as an image (never shown, never drawn in place)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps


def contact_sheet(images: Sequence[np.ndarray], thumb: int = 96, columns: int = 8, pad: int = 2) -> Image.Image:
    """A white-backed RGB grid of up to ``len(images)`` thumbnails (each RGB uint8 ``(h, w, 3)``) fitted into
    ``thumb`` x ``thumb`` cells."""
    n = max(1, len(images))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    sheet = Image.new("RGB", (cols * (thumb + pad) + pad, rows * (thumb + pad) + pad), (255, 255, 255))
    for i, arr in enumerate(images):
        im = ImageOps.contain(Image.fromarray(np.ascontiguousarray(arr)), (thumb, thumb))
        r, c = divmod(i, cols)
        x = pad + c * (thumb + pad) + (thumb - im.width) // 2
        y = pad + r * (thumb + pad) + (thumb - im.height) // 2
        sheet.paste(im, (x, y))
    return sheet
