"""Style views for head fine-tuning: each labeled image rendered in other drawing styles, encoded once.

The head methods train on an index's cached vectors, which only ever show the images as they were indexed. With
``style_views = N`` each train and val image is also rendered in ``N`` styles of :data:`visrec.train.styles.STYLES`
(edge sketches, posterised cartoons, greyscale, blur, colour jitter...; a random mirror and crop first) and the
renderings are encoded with the index's own frozen encoder, through its normal batch path. The head then trains on
them as extra views of the same item (same label, same side of the split), so it learns to map a sketch or a
cartoon of a thing near the photos of it.

Each image gets ``N`` *different* styles when ``N <= len(styles)`` (a seeded permutation per image, cycled when
``N`` is larger). A view's rendering depends only on the seed, the item id, the style and the round, so the same
options give the same views whatever the order of the index.
"""

from __future__ import annotations

import resource
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from visrec.errors import BadInput
from visrec.train.styles import STYLES, random_crop

HEAD_STYLES = ("greyscale", "sketch", "posterize", "cartoon", "blur", "jitter")
"""Default styles of the head methods' views: every rendering of :data:`STYLES` that changes the picture."""
MAX_VIEWS = 32
CHUNK = 64
"""Images rendered (and their views encoded) at a time: bounds the memory held by renderings."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class StyleViews:
    """Encoded style renderings of some rows of an :class:`~visrec.train.data.EmbeddingSplit`.

    ``vectors``: ``(m, d)`` float32 unit rows; ``item``: ``(m,)`` int64, the split row each view renders (its
    label and side are that row's); ``style``: ``(m,)`` str, the style of each view. ``skipped``: images whose
    file was missing (no views); ``seconds``: rendering + encoding time; ``peak_rss_mb``: the process's peak
    memory after encoding.
    """

    vectors: np.ndarray
    item: np.ndarray
    style: np.ndarray
    skipped: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    def __post_init__(self) -> None:
        m = len(self.item)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != m or len(self.style) != m:
            raise BadInput(f"style views disagree: vectors {self.vectors.shape}, {m} items, {len(self.style)} styles")

    def rows_of(self, side: np.ndarray, *sides: str) -> np.ndarray:
        """Positions of the views whose item is on one of ``sides`` (``side``: the split's ``(n,)`` sides)."""
        return np.flatnonzero(np.isin(side[self.item], list(sides)))

    def to_dict(self) -> dict[str, Any]:
        return {"views": len(self.item), "images": len(set(self.item.tolist())), "skipped": self.skipped,
                "seconds": round(self.seconds, 2), "megabytes": round(self.vectors.nbytes / 2**20, 2),
                "peak_rss_mb": round(self.peak_rss_mb, 1)}  # fmt: skip


def check_styles(styles: Sequence[str], views: int) -> None:
    """``BadInput`` naming the fix for an unknown style or a view count outside ``0..MAX_VIEWS``."""
    if not 0 <= views <= MAX_VIEWS:
        raise BadInput(f"style views must be between 0 and {MAX_VIEWS} per image, got {views}")
    unknown = [s for s in styles if s not in STYLES or s == "none"]
    if unknown or not styles:
        choices = ", ".join(s for s in STYLES if s != "none")
        raise BadInput(f"unknown style(s) {unknown or '(none given)'}; choose from {choices}")


def style_plan(ids: Sequence[str], styles: Sequence[str], views: int, seed: int) -> list[list[tuple[str, int]]]:
    """Per item, ``views`` pairs ``(style, round)``: a seeded permutation of ``styles`` (cycled; ``round`` counts
    the cycles), so an image gets ``views`` different styles when there are enough."""
    out = []
    for i in ids:
        perm = np.random.default_rng([seed, _code(i)]).permutation(len(styles))
        out.append([(styles[int(perm[v % len(styles)])], v // len(styles)) for v in range(views)])
    return out


def _code(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def render_view(image: Image.Image, item_id: str, style: str, round_: int, seed: int) -> Image.Image:
    """One view of ``image`` (RGB PIL): a random mirror and (half the time) a random crop, then ``style``.
    Seeded by ``(seed, item_id, style, round_)``; the input is not changed."""
    rng = np.random.default_rng([seed, _code(item_id), _code(style), round_])
    rgb = ImageOps.mirror(image) if rng.random() < 0.5 else image
    if rng.random() < 0.5:
        rgb = random_crop(rgb, rng)
    return STYLES[style](rgb, rng)


def working_copy(path: str | Path, size: int) -> Image.Image:
    """The image at ``path`` as RGB with its shorter side brought down to about ``1.15 * size`` (the encoder
    resizes to ``size`` anyway; rendering the full-size file would only cost time)."""
    from visrec.data.images import decode_file

    image = decode_file(path, draft_size=size).image.convert("RGB")
    short = round(1.15 * size)
    w, h = image.size
    if min(w, h) > short:
        scale = short / min(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    return image


def encode_style_views(
    encoder: Any, files: Sequence[Path | None], ids: Sequence[str], rows: np.ndarray,
    styles: Sequence[str], views: int, seed: int, progress: Progress | None = None,
) -> StyleViews:  # fmt: skip
    """Render and encode ``views`` style views of each of ``rows`` (positions into ``files`` / ``ids``; a None or
    missing file is skipped and counted). ``encoder``: the index's image encoder (``encode_images``)."""
    check_styles(styles, views)
    t0 = time.perf_counter()
    have = [int(r) for r in rows if files[int(r)] is not None and Path(str(files[int(r)])).is_file()]
    plan = style_plan([ids[r] for r in have], styles, views, seed)
    vecs: list[np.ndarray] = []
    item: list[int] = []
    style: list[str] = []
    for start in range(0, len(have), CHUNK):
        shown: list[Image.Image] = []
        for r, todo in zip(have[start : start + CHUNK], plan[start : start + CHUNK], strict=True):
            base = working_copy(str(files[r]), int(encoder.input_size))
            shown += [render_view(base, ids[r], s, k, seed) for s, k in todo]
            item += [r] * len(todo)
            style += [s for s, _ in todo]
        if shown:
            vecs.append(np.asarray(encoder.encode_images(shown).vectors, np.float32))
        if progress is not None:
            progress("style views", min(start + CHUNK, len(have)), len(have))
    dim = int(encoder.dim)
    return StyleViews(
        vectors=np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32),
        item=np.array(item, np.int64),
        style=np.array(style, dtype=str),
        skipped=len(rows) - len(have),
        seconds=time.perf_counter() - t0,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
