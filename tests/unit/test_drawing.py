"""Captions on scene and face drawings stay readable on large photos: scaled text on a filled background."""

from __future__ import annotations

import numpy as np
import pytest

from visrec.drawing import draw_box, pen_for, text_colour
from visrec.faces.gallery import FaceMatch
from visrec.faces.ops import draw_matches
from visrec.segment.draw import annotate, label_colour
from visrec.segment.types import Regions, SceneResult


def _scene(w: int, h: int, box: tuple[float, float, float, float]) -> SceneResult:
    regions = Regions(np.array([box], np.float32), np.array([0.9], np.float32))
    return SceneResult(regions, ("Sakura",), ("Sakura",), np.array([0.87], np.float32), w, h, {})


def _rows_of(colour: tuple[int, int, int], img: np.ndarray, x: int) -> int:
    """Rows in which column ``x`` (the caption's left padding) is ``colour``: the height of its background."""
    return int((img[:, x] == colour).all(axis=1).sum())


@pytest.mark.parametrize(("w", "h"), [(512, 384), (2732, 2048)])
def test_scene_caption_height_scales_with_the_image(w: int, h: int) -> None:
    box = (0.3 * w, 0.4 * h, 0.6 * w, 0.8 * h)
    out = np.asarray(annotate(np.full((h, w, 3), 255, np.uint8), _scene(w, h, box)))
    colour = label_colour("Sakura")
    filled = _rows_of(colour, out[: int(box[1])], int(box[0]) + 1)  # the caption sits above the box
    assert 0.02 <= filled / max(w, h) <= 0.06, filled  # ~10 px on 2732 px was unreadable
    assert (out[: int(box[1]) - filled - 2] == 255).all()  # nothing drawn above the caption


def test_face_caption_is_large_and_on_a_background() -> None:
    w, h = 2732, 1800
    img = np.full((h, w, 3), 255, np.uint8)
    m = FaceMatch((1000.0, 900.0, 1400.0, 1400.0), "Angelina Jolie", "Angelina Jolie", 0.31, 0.99)
    out = np.asarray(draw_matches(img, [m]))
    assert _rows_of((0, 200, 0), out[:900], 1001) >= 0.02 * w
    assert (img == 255).all()  # the caller's array is untouched


def test_caption_stays_inside_the_picture_and_text_contrasts() -> None:
    from PIL import Image

    im = Image.new("RGB", (300, 200), (255, 255, 255))
    x0, y0, x1, y1 = draw_box(im, (280.0, 0.0, 300.0, 40.0), "a long caption", (0, 0, 255), pen_for(im.size))
    assert x0 >= 0 and x1 <= 300 and y0 >= 0 and y1 <= 200  # no room above: inside the top edge, shifted left
    assert text_colour((0, 0, 255)) == (255, 255, 255) and text_colour((255, 230, 0)) == (0, 0, 0)
