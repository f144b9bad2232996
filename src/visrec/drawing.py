"""Boxes with readable captions on pictures of any size (scenes, faces): pure Pillow, no models.

Text and lines scale with the picture's long side, so a caption on a 2732-px photo is as legible as on a
512-px one once both are shown at the same size, and every caption sits on a filled background in the box's
colour, with black or white text, whichever contrasts more.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

TEXT_FRACTION = 0.025
"""Caption text height as a fraction of the picture's long side (about 26 px on a 1024-px image)."""
MIN_TEXT_PX = 12


@dataclass(frozen=True)
class Pen:
    """Line width and font for one picture size (see :func:`pen_for`)."""

    width: int
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    pad: int


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def pen_for(size: tuple[int, int]) -> Pen:
    """The pen for a ``(width, height)`` picture: text ~2.5 % of the long side (at least 12 px), lines ~0.25 %."""
    long_side = max(size)
    text = max(MIN_TEXT_PX, round(long_side * TEXT_FRACTION))
    return Pen(width=max(2, round(long_side / 400)), font=_font(text), pad=max(2, text // 6))


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (relative luminance, sRGB weights)."""
    r, g, b = background
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


def draw_box(
    image: Image.Image, xyxy: tuple[float, float, float, float], caption: str, colour: tuple[int, int, int], pen: Pen
) -> tuple[float, float, float, float]:
    """Draw a box (xyxy pixels) and its caption on ``image`` in place; returns the caption background's xyxy.

    The caption sits above the box when there is room, else inside its top edge, and is shifted left to
    stay within the picture.
    """
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = xyxy
    draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=pen.width)
    left, top, right, bottom = draw.textbbox((0, 0), caption, font=pen.font)
    w, h = right - left + 2 * pen.pad, bottom - top + 2 * pen.pad
    bx = min(max(0.0, x0), max(0.0, image.width - w))
    by = y0 - h if y0 >= h else max(0.0, y0)
    draw.rectangle((bx, by, bx + w - 1, by + h - 1), fill=colour)
    draw.text((bx + pen.pad - left, by + pen.pad - top), caption, fill=text_colour(colour), font=pen.font)
    return bx, by, bx + w, by + h
