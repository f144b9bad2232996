"""Style renderings that change how a picture is drawn but keep what it shows (Pillow + NumPy, no torch).

Used two ways: as training-time augmentations (:class:`StyleAugment`, a random style per image) so a fine-tuned
encoder stops relying on colour and texture, and to build a cross-domain proxy from photos
(``benchmarks/cross_domain.py``): photos rendered as edge sketches (:func:`sketch`) and as posterised cartoons
(:func:`cartoon`) are queried against a gallery of untouched photos. Every function takes and returns an RGB
``PIL.Image`` of the same size and never changes its input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from visrec.errors import BadInput


def _gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32)


def _edge_strength(image: Image.Image, smooth: float) -> np.ndarray:
    """``(h, w)`` float32 gradient magnitude (Sobel) of the smoothed grey image, scaled to 0..1 by its 98th centile."""
    g = np.asarray(image.convert("L").filter(ImageFilter.GaussianBlur(smooth)), dtype=np.float32)
    p = np.pad(g, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.hypot(gx, gy)
    scale = float(np.percentile(mag, 98)) or 1.0
    return np.clip(mag / scale, 0.0, 1.0)


def sketch(image: Image.Image, smooth: float = 1.0, threshold: float = 0.25) -> Image.Image:
    """An edge sketch: dark lines where the photo has edges, on white paper, no colour or texture left.

    ``smooth``: Gaussian radius (px at the image's size) before the gradient; ``threshold``: edge strength
    (0..1) below which the paper stays white. Line darkness grows with edge strength, like pencil pressure.
    """
    strength = _edge_strength(image.convert("RGB"), smooth)
    ink = np.clip((strength - threshold) / max(1.0 - threshold, 1e-6), 0.0, 1.0) ** 0.5
    paper = (255.0 * (1.0 - ink)).astype(np.uint8)
    return Image.fromarray(paper, "L").convert("RGB")


def posterize(image: Image.Image, colours: int = 6) -> Image.Image:
    """Flat colour regions: median-smoothed, then quantised to ``colours`` colours (median cut)."""
    if not 2 <= colours <= 256:
        raise BadInput(f"colours must be between 2 and 256, got {colours}")
    smoothed = image.convert("RGB").filter(ImageFilter.MedianFilter(5))
    return smoothed.quantize(colours, method=Image.Quantize.MEDIANCUT).convert("RGB")


def cartoon(image: Image.Image, colours: int = 6, threshold: float = 0.35) -> Image.Image:
    """A posterised cartoon: :func:`posterize` flat colours with dark outlines drawn over strong edges."""
    rgb = image.convert("RGB")
    flat = np.asarray(posterize(rgb, colours), dtype=np.float32)
    outline = _edge_strength(rgb, 1.5) > threshold
    flat[outline] *= 0.15
    return Image.fromarray(flat.astype(np.uint8), "RGB")


def greyscale(image: Image.Image) -> Image.Image:
    """Luminance only, as RGB."""
    return ImageOps.grayscale(image).convert("RGB")


def colour_jitter(image: Image.Image, rng: np.random.Generator, strength: float = 0.6) -> Image.Image:
    """Random hue rotation and saturation / brightness / contrast scaling (each up to ``strength``)."""
    hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.5, 0.5) * 255 * strength) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - strength, 1 + strength), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(1 - strength / 2, 1 + strength / 2), 0, 255)
    out = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    mean = float(_gray(out).mean())
    arr = np.asarray(out, dtype=np.float32)
    arr = (arr - mean) * rng.uniform(1 - strength / 2, 1 + strength / 2) + mean
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def random_crop(image: Image.Image, rng: np.random.Generator, min_area: float = 0.5) -> Image.Image:
    """A random crop of at least ``min_area`` of the image (aspect 3:4..4:3), resized back to the image's size."""
    w, h = image.size
    area = rng.uniform(min_area, 1.0) * w * h
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    cw = int(min(w, round(np.sqrt(area * aspect))))
    ch = int(min(h, round(np.sqrt(area / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return image.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR)


STYLES: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "none": lambda im, rng: im,
    "greyscale": lambda im, rng: greyscale(im),
    "sketch": lambda im, rng: sketch(im, smooth=float(rng.uniform(0.5, 1.5)), threshold=float(rng.uniform(0.15, 0.35))),
    "posterize": lambda im, rng: posterize(im, int(rng.integers(3, 9))),
    "cartoon": lambda im, rng: cartoon(im, int(rng.integers(4, 9))),
    "blur": lambda im, rng: im.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 3.0)))),
    "jitter": lambda im, rng: colour_jitter(im, rng),
}


@dataclass(frozen=True)
class StyleAugment:
    """Draw one style from ``styles`` (names of :data:`STYLES`) per image, after an optional random crop.

    ``p_crop``: probability of a :func:`random_crop` first. Call as ``augment(image, rng)`` -> RGB image of the
    same size. ``"none"`` in ``styles`` keeps some images as they are.
    """

    styles: Sequence[str] = ("none", "greyscale", "sketch", "posterize", "cartoon", "blur", "jitter")
    p_crop: float = 0.5

    def __post_init__(self) -> None:
        unknown = [s for s in self.styles if s not in STYLES]
        if unknown or not self.styles:
            raise BadInput(f"unknown style(s) {unknown or '(none given)'}; choose from {list(STYLES)}")
        if not 0.0 <= self.p_crop <= 1.0:
            raise BadInput(f"p_crop must be between 0 and 1, got {self.p_crop}")

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        rgb = image.convert("RGB")
        if rng.random() < self.p_crop:
            rgb = random_crop(rgb, rng)
        return STYLES[str(rng.choice(list(self.styles)))](rgb, rng)
