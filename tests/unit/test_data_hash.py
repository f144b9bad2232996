"""The numpy perceptual hashes give imagehash's bits (the reference definition) without importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.shared_data import SHARED_DATA
from visrec.data.dedup import hash_rgb_image

DATA = SHARED_DATA


def _reference(image: Image.Image, kind: str, size: int) -> np.ndarray:
    imagehash = pytest.importorskip("imagehash")
    fn = imagehash.phash if kind == "phash" else imagehash.dhash
    return np.packbits(np.asarray(fn(image, hash_size=size).hash, dtype=bool).ravel())


@pytest.mark.parametrize("kind", ["phash", "dhash"])
@pytest.mark.parametrize("size", [8, 16])
def test_same_bits_as_imagehash_on_synthetic_images(kind: str, size: int) -> None:
    rng = np.random.default_rng(3)
    for i in range(40):
        h, w = rng.integers(5, 200, 2)
        px = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i % 2:  # flat areas: many equal pixels, ties near the median
            px = (px // 64 * 64).astype(np.uint8)
        image = Image.fromarray(px)
        assert np.array_equal(hash_rgb_image(image, kind, size), _reference(image, kind, size)), (kind, size, i)


def test_same_bits_as_imagehash_on_real_photos() -> None:
    files = sorted((DATA / "caltech101_dev").rglob("*.jpg"))[:30]
    if not files:
        pytest.skip("shared data not present")
    for f in files:
        image = Image.open(f).convert("RGB")
        assert np.array_equal(hash_rgb_image(image), _reference(image, "phash", 16)), f


def test_hashing_imports_neither_imagehash_nor_scipy() -> None:
    code = (
        "import sys; from PIL import Image; from visrec.data.dedup import hash_rgb_image;"
        "hash_rgb_image(Image.new('RGB', (20, 20)));"
        "print(sorted(m for m in ('imagehash', 'scipy', 'pywt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
