"""Synthetic image files for tests: good odd formats, every kind of bad file, labeled trees, Roboflow exports.

Everything is generated into a folder the caller gives (usually pytest's ``tmp_path``) from a fixed seed, so
tests never need the network or the real data. Import with ``from tests.fixtures_images import ...`` (the repo
root is on ``sys.path`` under pytest) or ``from fixtures_images import ...``.
"""

from __future__ import annotations

import colorsys
import csv
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "class_colour",
    "make_16bit_png",
    "make_bad_images",
    "make_cmyk_jpeg",
    "make_corrupt_png",
    "make_decompression_bomb",
    "make_exif_rotated_jpeg",
    "make_flat_items",
    "make_labeled_tree",
    "make_near_duplicate",
    "make_odd_images",
    "make_palette_png",
    "make_rgba_png",
    "make_roboflow_export",
    "make_text_as_jpg",
    "make_truncated_jpeg",
    "noise_image",
]


def noise_image(size: int | tuple[int, int], seed: int = 0, base: tuple[int, int, int] | None = None) -> np.ndarray:
    """An RGB uint8 ``(h, w, 3)`` array: smooth random blobs (compress like photos), optionally tinted.

    ``size`` is ``side`` or ``(w, h)``. Different seeds give visually unrelated images (useful for hashing).
    """
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64)
    if base is not None:
        img = 0.35 * img + 0.65 * np.asarray(base, dtype=np.float64)
    img += rng.normal(0.0, 6.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def class_colour(index: int, n_classes: int) -> tuple[int, int, int]:
    """A saturated RGB colour per class, evenly spaced around the hue wheel."""
    r, g, b = colorsys.hsv_to_rgb(index / max(1, n_classes), 0.85, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


# --------------------------------------------------------------------------------------------- bad files


def make_truncated_jpeg(path: Path, keep: float = 0.6) -> Path:
    """A valid 96x96 JPEG cut after ``keep`` of its bytes (header intact, scan data missing)."""
    full = path.with_suffix(".full.tmp")
    Image.fromarray(noise_image(96, seed=1)).save(full, format="JPEG", quality=92)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_corrupt_png(path: Path) -> Path:
    """A PNG with a valid header whose compressed pixel data (IDAT) is garbage, CRCs valid (decoder error)."""
    ihdr = struct.pack(">IIBBBBB", 48, 48, 8, 2, 0, 0, 0)
    garbage = np.random.default_rng(2).integers(0, 256, 400, dtype=np.uint8).tobytes()
    path.write_bytes(_png_bytes(ihdr, b"\x78\x9c" + garbage))
    return path


def make_text_as_jpg(path: Path) -> Path:
    """A text file named like an image."""
    path.write_text("this is not an image, just a note saved with the wrong extension\n")
    return path


def make_decompression_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG (< 100 bytes) whose header claims ``width x height`` gray pixels (10^10 by default).

    Decoding it would allocate ``width * height`` bytes; readers must refuse it from the header alone.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(_png_bytes(ihdr, zlib.compress(b"\x00" * 64)))
    return path


def make_bad_images(folder: Path) -> dict[str, Path]:
    """Create one file per ``BadImage`` reason in ``folder``; returns ``{reason: path}``.

    Reasons: ``empty`` (0 bytes), ``not-an-image`` (text named .jpg), ``truncated`` (JPEG cut short),
    ``corrupt`` (PNG with garbage pixel data), ``too-large`` (decompression-bomb PNG header),
    ``missing`` (a symlink to a file that does not exist).
    """
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    missing = folder / "dangling.jpg"
    missing.symlink_to(folder / "does-not-exist.jpg")
    return {
        "empty": empty,
        "not-an-image": make_text_as_jpg(folder / "notes.jpg"),
        "truncated": make_truncated_jpeg(folder / "truncated.jpg"),
        "corrupt": make_corrupt_png(folder / "corrupt.png"),
        "too-large": make_decompression_bomb(folder / "bomb.png"),
        "missing": missing,
    }


def _png_bytes(ihdr: bytes, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------ good but odd files


def make_cmyk_jpeg(path: Path, rgb: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """A 32x24 CMYK JPEG of one flat colour (``rgb`` before conversion to CMYK)."""
    Image.new("RGB", (32, 24), rgb).convert("CMYK").save(path, format="JPEG", quality=95)
    return path


def make_16bit_png(path: Path, low: int = 1000, high: int = 5000) -> Path:
    """A 64x16 16-bit grayscale PNG: a left-to-right ramp from ``low`` to ``high`` (of 65535).

    A correct reader stretches the real range: column 0 -> 0, last column -> 255 (clipping gives all 255).
    """
    ramp = np.linspace(low, high, 64).round().astype(np.uint16)
    arr = np.tile(ramp, (16, 1))
    Image.fromarray(arr).save(path, format="PNG")
    return path


def make_flat_items(folder: Path, colours: dict[str, tuple[int, int, int]]) -> list[tuple[str, str]]:
    """``(path, label)`` of one flat, pure-coloured PNG per label in ``colours`` under ``folder``; the k-th is
    ``40 + 10 k`` px tall and 50 wide, so that aspect ratios differ."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, (name, rgb) in enumerate(colours.items()):
        path = folder / f"{name}.png"
        Image.fromarray(np.full((40 + 10 * k, 50, 3), rgb, np.uint8)).save(path)
        out.append((str(path), name))
    return out


def make_palette_png(path: Path, transparent: bool = True) -> Path:
    """A 20x20 palette PNG: left half red, right half palette index 1 (transparent when asked, else blue)."""
    im = Image.new("P", (20, 20), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    im.paste(1, (10, 0, 20, 20))
    if transparent:
        im.save(path, format="PNG", transparency=1)
    else:
        im.save(path, format="PNG")
    return path


def make_rgba_png(path: Path) -> Path:
    """A 16x16 RGBA PNG: opaque green top half, fully transparent black bottom half (-> white)."""
    arr = np.zeros((16, 16, 4), np.uint8)
    arr[:8] = (0, 255, 0, 255)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def make_exif_rotated_jpeg(path: Path) -> Path:
    """A 40x20 (w x h) stored JPEG with EXIF orientation 6 (display rotated 90 degrees clockwise).

    Stored: red left half, blue right half. Displayed (after exif_transpose): 20 wide x 40 high with red on
    the top half and blue on the bottom half.
    """
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def make_odd_images(folder: Path) -> dict[str, Path]:
    """Valid images in every awkward mode; returns ``{kind: path}``.

    Kinds: cmyk, png16, palette_transparent, palette, rgba, exif6, gray, bilevel, la, gif, webp, bmp, tiff16.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "cmyk": make_cmyk_jpeg(folder / "cmyk.jpg"),
        "png16": make_16bit_png(folder / "gray16.png"),
        "palette_transparent": make_palette_png(folder / "palette_t.png", transparent=True),
        "palette": make_palette_png(folder / "palette.png", transparent=False),
        "rgba": make_rgba_png(folder / "rgba.png"),
        "exif6": make_exif_rotated_jpeg(folder / "exif6.jpg"),
    }
    gray = noise_image(24, seed=3)[..., 0]
    Image.fromarray(gray).save(out.setdefault("gray", folder / "gray.jpg"))
    Image.fromarray(gray > 128).save(out.setdefault("bilevel", folder / "bilevel.png"))
    la = np.stack([gray, np.full_like(gray, 255)], axis=2)
    Image.fromarray(la, mode="LA").save(out.setdefault("la", folder / "la.png"))
    rgb = noise_image(24, seed=4)
    Image.fromarray(rgb).save(out.setdefault("gif", folder / "anim.GIF"))
    Image.fromarray(rgb).save(out.setdefault("webp", folder / "img.webp"))
    Image.fromarray(rgb).save(out.setdefault("bmp", folder / "img.bmp"))
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(out.setdefault("tiff16", folder / "g16.tiff"))
    return out


# ------------------------------------------------------------------------------------- datasets


def make_labeled_tree(
    root: Path,
    classes: Sequence[str] = ("cat", "dog", "fox"),
    per_class: int = 4,
    size: int = 32,
    *,
    seed: int = 0,
    ext: str = ".jpg",
) -> dict[str, list[Path]]:
    """Create ``root/<class>/<class>_<i><ext>`` images; returns ``{class: [paths]}``.

    Each class has its own saturated colour (``class_colour``) plus per-image blob noise, so a colour-based
    encoder separates the classes while no two images are identical.
    """
    out: dict[str, list[Path]] = {}
    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = class_colour(ci, len(classes))
        out[name] = []
        for i in range(per_class):
            path = folder / f"{name}_{i}{ext}"
            Image.fromarray(noise_image(size, seed=seed * 100_003 + ci * 1000 + i, base=colour)).save(path)
            out[name].append(path)
    return out


def make_near_duplicate(src: Path, dst: Path, *, noise: float = 4.0, quality: int = 80, seed: int = 0) -> Path:
    """Re-encode ``src`` as JPEG at ``dst`` with Gaussian pixel noise (sigma ``noise``): a near-duplicate."""
    arr = np.asarray(Image.open(src).convert("RGB"), dtype=np.float64)
    arr += np.random.default_rng(seed).normal(0.0, noise, arr.shape)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(dst, format="JPEG", quality=quality)
    return dst


def make_roboflow_export(
    root: Path, classes: Sequence[str] = ("Gara", "Naruto", "Sakura"), per_class: int = 2, size: int = 24
) -> dict[str, object]:
    """A Roboflow multi-class export: ``root/{train,valid,test}/_classes.csv`` plus images beside each CSV.

    Header is ``filename, <class>, ..., Unlabeled`` with a leading space on each class name (as Roboflow
    writes it). Besides ``per_class`` single-label rows per class and split, the train split holds one
    multi-label row (first two classes), one row with no class set, one row with ``Unlabeled`` set and one
    row whose file is missing. Returns ``{"classes", "counts": {split: rows with a file}, "multi",
    "unlabeled": [filenames], "missing": "train/<name>"}``.
    """
    header = ["filename", *[f" {c}" for c in classes], " Unlabeled"]
    counts: dict[str, int] = {}
    for si, split in enumerate(("train", "valid", "test")):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        rows: list[list[str]] = []
        for ci, name in enumerate(classes):
            for i in range(per_class):
                fname = f"{name.lower()}_{i}_jpg.rf.{si}{ci}{i}.jpg"
                seed = si * 10_000 + ci * 100 + i
                img = noise_image(size, seed=seed, base=class_colour(ci, len(classes)))
                Image.fromarray(img).save(folder / fname)
                rows.append([fname, *["1" if k == ci else "0" for k in range(len(classes))], "0"])
        if split == "train":
            extras = (
                ("multi.jpg", [1, 1] + [0] * (len(classes) - 2) + [0]),
                ("none.jpg", [0] * (len(classes) + 1)),
                ("unl.jpg", [0] * len(classes) + [1]),
            )
            for k, (fname, onehot) in enumerate(extras):
                Image.fromarray(noise_image(size, seed=90_000 + k)).save(folder / fname)
                rows.append([fname, *map(str, onehot)])
            rows.append(["gone.jpg", "1", *["0"] * len(classes)])
        with (folder / "_classes.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        counts[split] = len(rows) - (1 if split == "train" else 0)
    return {
        "classes": tuple(classes),
        "counts": counts,
        "multi": "train/multi.jpg",
        "unlabeled": ["train/none.jpg", "train/unl.jpg"],
        "missing": "train/gone.jpg",
    }
