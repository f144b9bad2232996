"""Decode image files into RGB ``uint8`` arrays, mapping every failure to a ``BadImage`` with a stable reason.

Reasons: ``"missing"``, ``"empty"``, ``"not-an-image"``, ``"truncated"``, ``"corrupt"``, ``"too-large"``,
``"unreadable"``.
Nothing here changes Pillow's global settings (``LOAD_TRUNCATED_IMAGES``, ``MAX_IMAGE_PIXELS``).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visrec.errors import BadImage, BadInput

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""Lower-case file suffixes (with the dot) that readers treat as images; matching is case-insensitive."""

UNDECODABLE_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".heic", ".heif", ".jxl", ".psd", ".svg", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf"}
)
"""Suffixes of image formats the reader cannot decode (HEIC, JPEG XL, camera raw...): dataset readers list such
files as skipped (reason ``"unsupported-format"``) instead of ignoring them like other non-image files."""

DEFAULT_MAX_PIXELS = 100_000_000
_OPEN_LOCK = threading.Lock()  # warnings filters are process-wide: one header parse changes them at a time

# Magic numbers of the formats above: a file that starts like an image but that Pillow cannot identify
# has a damaged header ("corrupt"), not the wrong content ("not-an-image").
_SIGNATURES: tuple[bytes, ...] = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
_EXIF_SWAPS_AXES = {5, 6, 7, 8}
_EXIF_TRANSPOSES = {2, 3, 4, 5, 6, 7, 8}


def is_image_file(path: str | Path) -> bool:
    """True when the name has an image suffix (case-insensitive) and is not hidden.

    Only the name is looked at (no disk access). Hidden names (``.foo.jpg``, macOS ``._foo.jpg`` resource
    forks) are rejected because they are never real images in a dataset folder.
    """
    name = os.fspath(path)
    name = name[name.rfind(os.sep) + 1 :] if os.sep in name else name
    if os.altsep and os.altsep in name:
        name = name[name.rfind(os.altsep) + 1 :]
    dot = name.rfind(".")
    return name[:1] != "." and dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise BadImage(str(path), "missing", "the file does not exist; check the path") from exc
    except IsADirectoryError as exc:
        raise BadImage(str(path), "unreadable", "this is a folder, not an image file") from exc
    except OSError as exc:
        raise BadImage(
            str(path), "unreadable", f"cannot read the file ({exc.strerror or exc}); check its permissions"
        ) from exc
    if not data:
        raise BadImage(str(path), "empty", "the file has zero bytes; re-export or re-download it")
    return data


def _looks_cut_short(data: bytes) -> bool:
    """True for a JPEG / PNG / GIF signature without the format's end marker (the file was cut)."""
    tail = data.rstrip(b"\x00")[-12:]
    if data.startswith(b"\xff\xd8\xff"):
        return not tail.endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"IEND" not in tail
    if data.startswith((b"GIF87a", b"GIF89a")):
        return not tail.endswith(b";")
    return False


def _bomb_detail(exc: BaseException) -> str:
    return (
        f"{exc} It was refused without decoding; if you trust the file, downscale it with another tool "
        f"(Pillow's own safety limit of {Image.MAX_IMAGE_PIXELS} pixels applies whatever the pixel limit)"
    )


def _open_header(data: bytes, path: Path, max_pixels: int) -> Image.Image:
    """Parse the header only (no pixel decoding) and refuse images over ``max_pixels``."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow only warns between its limit and twice it, then decodes anyway: refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(str(path), "too-large", _bomb_detail(exc)) from exc
    except UnidentifiedImageError as exc:
        if _looks_cut_short(data):
            raise BadImage(
                str(path), "truncated", "the file ends inside its header; re-download or re-export it"
            ) from exc
        if data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise BadImage(str(path), "corrupt", "the header of this image is damaged; re-export the file") from exc
        raise BadImage(
            str(path), "not-an-image", "the content is not an image format Pillow can read (wrong extension?)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if _is_truncation(exc) or _looks_cut_short(data):
            detail = f"the file ends inside its header ({exc}); re-download or re-export it"
            raise BadImage(str(path), "truncated", detail) from exc
        raise BadImage(str(path), "corrupt", f"the header is invalid ({exc}); re-export the file") from exc
    pixels = im.width * im.height
    if pixels > max_pixels:
        raise BadImage(
            str(path),
            "too-large",
            f"{im.width}x{im.height} = {pixels} pixels is over the limit of {max_pixels}; "
            "downscale it, or raise the pixel limit (max_pixels; visrec serve --max-megapixels) if you trust it",
        )
    return im


def _is_truncation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, EOFError) or "truncated" in text or "end of file" in text or "eof" in text


def _decode(im: Image.Image, path: Path, draft_size: int | None) -> Image.Image:
    """Decode the pixels (reduced-size DCT for JPEGs when ``draft_size`` is set) and apply EXIF rotation."""
    _load(im, path, draft_size)
    return _upright(im, path, _orientation(im, path))


def _orientation(im: Image.Image, path: Path) -> int:
    """The EXIF orientation tag (1 when absent or not a number), as Pillow's ``exif_transpose`` reads it."""
    try:
        value = im.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        raise BadImage(str(path), "corrupt", f"the EXIF block is invalid ({exc}); re-export the file") from exc
    return value if isinstance(value, int) else 1


def _upright(im: Image.Image, path: Path, orientation: int) -> Image.Image:
    """``im`` rotated/flipped as its EXIF ``orientation`` says; an upright image is returned as is (Pillow's
    ``exif_transpose`` would copy it)."""
    if orientation not in _EXIF_TRANSPOSES:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        raise BadImage(str(path), "corrupt", f"the EXIF block is invalid ({exc}); re-export the file") from exc


def _load(im: Image.Image, path: Path, draft_size: int | None) -> None:
    try:
        if draft_size is not None and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))
        im.load()
    except Image.DecompressionBombError as exc:
        raise BadImage(str(path), "too-large", _bomb_detail(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, IndexError) as exc:
        if _is_truncation(exc):
            raise BadImage(
                str(path), "truncated", f"the file is cut short ({exc}); re-download or re-export it"
            ) from exc
        raise BadImage(str(path), "corrupt", f"the decoder failed ({exc}); re-export the file or remove it") from exc


def _stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map the real value range of a high-bit-depth gray array onto 0..255 (no clipping)."""
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        # Constant image: keep its brightness relative to the full 16-bit scale.
        level = int(np.clip(round(lo * 255.0 / 65535.0), 0, 255)) if lo > 255 else int(np.clip(lo, 0, 255))
        return np.full(arr.shape, level, np.uint8)
    out = (np.nan_to_num(a, nan=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``(h, w, 4)`` uint8 RGBA (straight alpha) -> ``(h, w, 3)`` uint8 RGB over a white background."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _lab_to_rgb(im: Image.Image) -> Image.Image:
    from PIL import ImageCms

    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    converted = ImageCms.applyTransform(im, transform)
    return im.convert("RGB") if converted is None else converted


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Convert a (loaded) PIL image of any mode to an RGB ``uint8`` array ``(h, w, 3)``.

    16/32-bit and float gray is stretched from its real min..max to 0..255; alpha (RGBA, LA, PA, palette
    transparency) is composited on white; CMYK, YCbCr, LAB, 1-bit and gray are converted to RGB.
    """
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode.startswith("I") or mode == "F":
        gray = _stretch_to_uint8(np.asarray(im))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode == "LAB":
        im = _lab_to_rgb(im)
    elif mode in ("L", "1") and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        return _composite_on_white(np.asarray(im, dtype=np.uint8))
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_image(path: str | Path, *, draft_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to an RGB ``uint8`` array of shape ``(h, w, 3)``, EXIF orientation applied.

    ``draft_size``: when given, JPEGs are decoded at a reduced DCT scale (1/2, 1/4 or 1/8) such that both
    sides stay >= ``draft_size`` -- much faster for models that resize anyway; other formats decode at
    full size. ``max_pixels``: images whose header claims more pixels are refused before decoding.

    Raises ``BadImage`` with reason ``"empty"``, ``"not-an-image"``, ``"truncated"``, ``"corrupt"``,
    ``"too-large"`` or ``"unreadable"``; the detail says what to do.
    """
    decoded = decode_file(path, draft_size=draft_size, max_pixels=max_pixels).image
    return np.array(decoded, dtype=np.uint8)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image file: ``image`` is a loaded, upright (EXIF orientation applied) PIL image of mode
    ``"RGB"`` (reduced in JPEG draft mode when asked); ``width`` x ``height`` is the file's full displayed size."""

    image: Image.Image
    width: int
    height: int


def load_readable(
    paths: list[Path], *, draft_size: int | None = None
) -> tuple[list[np.ndarray], list[int], list[BadImage]]:
    """:func:`load_image` over ``paths``, leaving out what cannot be decoded: ``(arrays, positions of the decoded
    paths, one BadImage per path left out)``, so that one broken file does not stop a batch."""
    arrays, kept, bad = [], [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(load_image(path, draft_size=draft_size))
            kept.append(i)
        except BadImage as e:
            bad.append(e)
    return arrays, kept, bad


def decode_file(
    path: str | Path, *, draft_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode an image file once into an RGB PIL image plus its displayed size (see :func:`load_image` for
    ``draft_size``, ``max_pixels`` and the ``BadImage`` reasons).

    The pixels stay in Pillow (no NumPy copy) and an upright RGB JPEG is not copied at all, so the work
    after this call (hashing, resizing) runs in Pillow's C code with Python's lock released: several
    threads decoding at once scale with the cores.
    """
    p = Path(path)
    return decode_bytes(_read_bytes(p), p, draft_size=draft_size, max_pixels=max_pixels)


def header_size(data: bytes, name: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of encoded image bytes from the header only (no pixel decoding, EXIF not applied);
    raises ``BadImage`` like :func:`decode_bytes` (``"too-large"`` over ``max_pixels``), naming ``name``."""
    if not data:
        raise BadImage(str(name), "empty", "the file has zero bytes; re-export or re-download it")
    im = _open_header(data, Path(name), max_pixels)
    return im.width, im.height


def decode_bytes(
    data: bytes, name: str | Path, *, draft_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """:func:`decode_file` for the bytes of a file already read (an upload): ``name`` is only used in the
    ``BadImage`` errors, so they name the file the user knows instead of a temporary path."""
    p = Path(name)
    if not data:
        raise BadImage(str(p), "empty", "the file has zero bytes; re-export or re-download it")
    im = _open_header(data, p, max_pixels)
    width, height = im.size
    _load(im, p, draft_size)
    orientation = _orientation(im, p)
    decoded = _upright(im, p, orientation)
    if orientation in _EXIF_SWAPS_AXES:
        width, height = height, width
    if decoded.mode != "RGB":
        try:
            decoded = Image.fromarray(pil_to_rgb(decoded))
        except (OSError, ValueError) as exc:
            raise BadImage(str(p), "corrupt", f"cannot convert mode {decoded.mode} to RGB ({exc})") from exc
    return DecodedImage(decoded, width, height)


def to_rgb_array(image: np.ndarray | Image.Image | str | Path, *, draft_size: int | None = None) -> np.ndarray:
    """Return any supported image input as an RGB ``uint8`` array ``(h, w, 3)``.

    Paths go through :func:`load_image` (``draft_size`` applies to paths only); PIL images are converted
    like decoded files; arrays must be ``uint8`` ``(h, w, 3)`` (returned as is, not copied), ``(h, w)`` or
    ``(h, w, 1)`` gray (expanded), or ``(h, w, 4)`` RGBA (composited on white). Else ``BadInput``.
    """
    if isinstance(image, (str, Path)):
        return load_image(image, draft_size=draft_size)
    if isinstance(image, Image.Image):
        name = str(getattr(image, "filename", "") or "<PIL image>")
        return pil_to_rgb(_decode(image, Path(name), draft_size=None))
    if isinstance(image, np.ndarray):
        return _validate_array(image)
    raise BadInput(
        f"expected an RGB uint8 array, a PIL image or a path, got {type(image).__name__}; "
        "load the image with visrec.data.load_image first"
    )


def _validate_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        hint = " (scale floats in 0..1 with (a * 255).round().astype(np.uint8))" if arr.dtype.kind == "f" else ""
        raise BadInput(f"image arrays must be uint8 RGB (h, w, 3), got dtype {arr.dtype}{hint}")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        gray = arr.reshape(arr.shape[0], arr.shape[1])
        return np.repeat(gray[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return _composite_on_white(arr)
    raise BadInput(f"image arrays must have shape (h, w, 3) RGB, (h, w) gray or (h, w, 4) RGBA, got {arr.shape}")


def file_facts(path: str | Path, *, verify: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Return ``(sha256 hex of the file bytes, width, height)``, size as displayed (after EXIF rotation).

    With ``verify`` (the default) the pixels are decoded too (JPEGs at 1/8 scale, which still reads every
    byte), so truncated and corrupt files raise ``BadImage`` here rather than at encoding time.
    """
    p = Path(path)
    data = _read_bytes(p)
    im = _open_header(data, p, max_pixels)
    width, height = im.size
    if verify:
        _load(im, p, draft_size=8)
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        orientation = 1  # unreadable EXIF block: Pillow's exif_transpose ignores it the same way
    if orientation in _EXIF_SWAPS_AXES:
        width, height = height, width
    return hashlib.sha256(data).hexdigest(), width, height
