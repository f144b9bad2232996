"""Style renderings keep the picture's layout but change how it is drawn (synthetic images, no weights)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visrec.errors import BadInput
from visrec.train.styles import STYLES, StyleAugment, cartoon, posterize, sketch


def _square_photo() -> Image.Image:
    """A red square on a noisy blue-green background, 96 x 80."""
    rng = np.random.default_rng(0)
    arr = np.clip(rng.normal((40, 120, 160), 12, (80, 96, 3)), 0, 255)
    arr[20:60, 30:70] = (220, 30, 30)
    return Image.fromarray(arr.astype(np.uint8))


def test_sketch_draws_dark_lines_on_white_where_the_edges_are() -> None:
    photo = _square_photo()
    out = np.asarray(sketch(photo))
    assert out.shape == (80, 96, 3) and (out[..., 0] == out[..., 1]).all()  # grey paper, same size
    ink = out[..., 0] < 128
    assert ink[18:23, 30:70].mean() > 0.5 and ink[57:62, 30:70].mean() > 0.5  # top and bottom sides of the square
    assert ink[30:50, 40:60].mean() < 0.05 and (out[30:50, 40:60] > 200).all()  # flat inside: blank paper


def test_posterize_and_cartoon_flatten_the_colours() -> None:
    photo = _square_photo()
    assert len(np.unique(np.asarray(photo).reshape(-1, 3), axis=0)) > 1000
    flat = np.asarray(posterize(photo, 4)).reshape(-1, 3)
    assert len(np.unique(flat, axis=0)) <= 4
    toon = np.asarray(cartoon(photo, 4))
    assert toon[40, 50, 0] > 150 and toon[40, 50, 2] < 80  # the square stays red
    assert toon[20, 30:70].max(axis=1).mean() < 100  # with a dark outline
    with pytest.raises(BadInput, match="colours"):
        posterize(photo, 1)


def test_style_augment_keeps_size_and_input_and_is_seeded() -> None:
    photo = _square_photo()
    before = np.asarray(photo).copy()
    aug = StyleAugment()
    first = [np.asarray(aug(photo, np.random.default_rng(s))) for s in range(6)]
    again = [np.asarray(aug(photo, np.random.default_rng(s))) for s in range(6)]
    assert all(a.shape == (80, 96, 3) for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({a.tobytes() for a in first}) > 1
    np.testing.assert_array_equal(np.asarray(photo), before)
    for name in STYLES:
        assert StyleAugment(styles=(name,), p_crop=0.0)(photo, np.random.default_rng(0)).size == (96, 80)
    with pytest.raises(BadInput, match="unknown style"):
        StyleAugment(styles=("oil-paint",))
