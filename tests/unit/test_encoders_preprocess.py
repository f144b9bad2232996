"""CNN preprocessing: cropping, resizing, in-place normalisation, prefetched batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visrec.encoders.preprocess import ImagePrep, prefetched_batches
from visrec.errors import BadImage, BadInput

HALF = (0.5, 0.5, 0.5)


def _wide() -> np.ndarray:
    """64 x 128: left quarter red, middle half green, right quarter blue."""
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :32, 0] = 255
    img[:, 32:96, 1] = 255
    img[:, 96:, 2] = 255
    return img


def test_center_crop_keeps_the_middle_and_none_keeps_everything() -> None:
    cropped = ImagePrep(32, HALF, HALF, crop="center").square(_wide())
    squashed = ImagePrep(32, HALF, HALF, crop="none").square(_wide())
    assert cropped.shape == squashed.shape == (32, 32, 3) and cropped.dtype == np.uint8
    # Only the green middle (Pillow's box resize may blend the outermost column with its neighbours).
    assert cropped[:, 1:-1, 1].min() == 255 and cropped[:, 1:-1, 0].max() == 0
    assert squashed[:, 2, 0].min() > 200 and squashed[:, -3, 2].min() > 200  # red and blue borders kept


def test_normalisation_matches_the_formula() -> None:
    prep = ImagePrep(32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    image = np.full((32, 32, 3), (255, 0, 128), np.uint8)
    out = prep.fill([image], np.empty((4, 3, 32, 32), np.float32))
    assert out.shape == (1, 3, 32, 32) and out.flags.c_contiguous
    expected = (np.array([255, 0, 128]) / 255.0 - np.array(prep.mean)) / np.array(prep.std)
    np.testing.assert_allclose(out[0, :, 5, 7], expected, rtol=1e-5)


def test_gray_and_rgba_inputs_become_rgb() -> None:
    prep = ImagePrep(32, HALF, HALF)
    gray = prep.square(np.full((40, 50), 77, np.uint8))
    assert gray.shape == (32, 32, 3) and (gray == 77).all()
    rgba = Image.new("RGBA", (40, 40), (10, 20, 30, 255))
    assert (prep.square(rgba) == (10, 20, 30)).all()


def test_prefetched_batches_cover_every_image_in_order() -> None:
    prep = ImagePrep(32, HALF, HALF)
    images = [np.full((20, 30, 3), v, np.uint8) for v in range(0, 250, 25)]  # 10 images
    seen = []
    for start, batch in prefetched_batches(prep, images, batch_size=4):
        seen.append((start, len(batch)))
        levels = (batch[:, 0, 0, 0] * 0.5 + 0.5) * 255
        np.testing.assert_allclose(levels, [v for v in range(0, 250, 25)][start : start + len(batch)], atol=1e-3)
    assert seen == [(0, 4), (4, 4), (8, 2)]
    assert list(prefetched_batches(prep, [], batch_size=4)) == []


def test_a_bad_file_raises_bad_image_from_its_batch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    prep = ImagePrep(32, HALF, HALF)
    with pytest.raises(BadImage):
        list(prefetched_batches(prep, [np.zeros((8, 8, 3), np.uint8), bad], batch_size=1))


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 100}, {"size": 16}, {"size": 224, "crop": "left"}, {"size": 224, "resample": "nearest"}],
)
def test_invalid_options_are_refused(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadInput):
        ImagePrep(mean=HALF, std=HALF, **kwargs)
