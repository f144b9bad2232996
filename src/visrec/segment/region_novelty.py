"""Novelty scores of scene regions moved onto the whole-image scale, by the shift measured for their size.

An index's open-set decision (:mod:`visrec.classify.decision`) maps a novelty score to P(one of the indexed kinds
of object) with held-out *whole* images. A scene region is usually a small crop (a 40-100 px object) that the
encoder enlarges to its input size, and that alone makes it look unusual: the naruto index's own images, shrunk
to a longer side of 32-64 px and held out, score a median Mahalanobis novelty of 221 against 122 at full size,
beyond the median of held-out images of *other* characters (218), so the whole-image map calls most small known
objects novel.

:func:`fit_region_novelty` measures that shift on the index's own images treated as the scene pipeline treats a
region: a seeded sample of its labeled images, each resized so its longer side is a random size in one of the size
bands (log-uniform, :data:`BAND_SHARES` of the encoder's input side), encoded, and scored by the index's novelty
score refitted without the image's near-duplicate group (:func:`visrec.classify.openset_fit.held_out_novelty`, as
the index's own held-out known images were). Per band, the 5-95 % quantiles of these scores are matched to the same
quantiles of the held-out whole images' scores; a region's novelty is moved through that monotone map (beyond
its ends by the end's offset) and then given to the index's own map. Nothing is fitted to a score scale: both sides
of the match are the index's own scores.

A region whose longer side is below the first edge uses the first band; one at or above the last edge (the
encoder's input side: the encoder shrinks it as it shrinks a whole image) keeps its score, as does a band with
too few scored renders. Images whose stored path is gone or unreadable are skipped and counted. The shift depends
only on the index generation, so :func:`region_novelty` measures it once per generation and keeps it with it.

Tried first and not kept (docs/scene.md): a P(known) map per band fitted on small renders of known images
against small renders of held-out classes. Where small images of different classes look alike (Caltech-101 at
32-64 px: held-out known median 623, held-out classes 649) that map is flat near 0.5, which the novelty prior
turns into about 0.9 for background crops far beyond both.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visrec.classify.decision import OpenSetDecision
from visrec.errors import BadInput, VisrecError

BAND_SHARES = (1 / 7, 2 / 7, 4 / 7, 1.0)
"""Region sizes bounding the bands, as shares of the encoder's input side (32, 64, 128 and 224 px at 224): the
longer side of a region, in pixels of the analysed image."""
PER_BAND = 96
"""Images rendered per band (a seeded sample of the index's labeled images; fewer when it holds fewer)."""
MIN_RENDERS = 12
"""A band with fewer scored renders than this keeps region scores as they are."""
LEVELS = np.linspace(0.05, 0.95, 19)
"""Quantile levels matched between a band's renders and the held-out whole images."""


Match = tuple[np.ndarray, np.ndarray]
"""``(render quantiles (19,), whole-image quantiles (19,))`` float64 at :data:`LEVELS`."""


@dataclass(frozen=True)
class RegionNovelty:
    """Per-band quantile matches of novelty scores for longer sides in ``[edges[i], edges[i + 1])`` pixels
    (``novelty[i]``; None where scores are kept as they are).

    ``renders``: scored renders per band; ``skipped``: sampled images whose file was gone or unreadable;
    ``seconds``: time the fit took.
    """

    edges: tuple[int, ...]
    novelty: tuple[Match | None, ...]
    renders: tuple[int, ...]
    skipped: int
    seconds: float

    def whole_image_novelty(self, novelty: np.ndarray, sides: np.ndarray) -> np.ndarray:
        """``(q,)`` float64: novelty scores ``(q,)`` of regions with longer box sides ``sides`` ``(q,)`` (pixels)
        moved onto the whole-image scale of their index (see the module docstring)."""
        out = np.asarray(novelty, np.float64).copy()
        band = np.clip(np.searchsorted(self.edges, np.asarray(sides, np.float64), side="right") - 1, 0, None)
        for b, match in enumerate(self.novelty):
            rows = band == b
            if match is None or not rows.any():
                continue
            xs, ys = match
            x = out[rows]
            out[rows] = np.interp(x, xs, ys) + np.minimum(x - xs[0], 0.0) + np.maximum(x - xs[-1], 0.0)
        return out


def render(rgb: np.ndarray, side: float) -> np.ndarray:
    """``rgb`` ``(h, w, 3)`` uint8 resized (bilinear) so that its longer side is ``side`` pixels, aspect kept."""
    h, w = rgb.shape[:2]
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def band_edges(input_size: int, shares: tuple[float, ...] = BAND_SHARES) -> tuple[int, ...]:
    """Band edges in pixels for an encoder of input side ``input_size`` (at least 2 px, increasing)."""
    edges = sorted({max(2, round(input_size * s)) for s in shares})
    if len(edges) < 2:
        raise BadInput(f"region size bands need two distinct edges, got {edges} for input side {input_size}")
    return tuple(edges)


def band_sides(n: int, edges: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(band (n,) int, side (n,) float)``: ``n`` renders dealt to the bands in turn (seeded order), each with a
    log-uniform random side inside its band."""
    rng = np.random.default_rng(seed)
    band = rng.permutation(np.arange(n) % (len(edges) - 1))
    lo, hi = np.log(np.asarray(edges[:-1], np.float64)), np.log(np.asarray(edges[1:], np.float64))
    return band, np.exp(rng.uniform(lo[band], hi[band]))


def _image_file(meta: dict[str, Any], root: str | None) -> Path | None:
    path = Path(str(meta.get("path", "")))
    if not path.is_absolute():
        if not root or str(path).startswith("upload/"):
            return None
        path = Path(root) / path
    return path if path.is_file() else None


def _renders(snap: Any, ids: list[str], rows: np.ndarray, sides: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
    """The sampled images rendered small and the positions (into ``rows``) of those that could be read."""
    from visrec.data.images import load_image

    metas = snap.metadata_of([ids[r] for r in rows.tolist()])
    root = snap.manifest.extra.get("dataset_root")
    images, ok = [], []
    for j, r in enumerate(rows.tolist()):
        path = _image_file(metas.get(ids[r], {}), root)
        if path is None:
            continue
        try:
            rgb = load_image(path, draft_size=math.ceil(sides[j]))
        except (VisrecError, OSError):
            continue
        images.append(render(rgb, float(sides[j])))
        ok.append(j)
    return images, ok


def _held_out_scores(dec: OpenSetDecision, vecs: np.ndarray, labels: list[tuple[str, ...]],
                     groups: list[str | None], rows: np.ndarray, queries: np.ndarray) -> np.ndarray:  # fmt: skip
    """``(m,)`` novelty of ``queries`` (the renders of labeled ``rows``), each by a fit without its group."""
    from visrec.classify.novelty import create_novelty
    from visrec.classify.openset_fit import held_out_novelty

    labeled = np.flatnonzero([len(lab) > 0 for lab in labels])
    at = np.full(len(labels), -1, np.int64)
    at[labeled] = np.arange(labeled.size)
    raw = [f"item:{i}" if groups[i] is None else f"g:{groups[i]}" for i in labeled.tolist()]
    gid = np.unique(np.asarray(raw, dtype=object), return_inverse=True)[1].astype(np.int64).ravel()
    options = {} if dec.novelty_dims is None else {"dims": int(dec.novelty_dims)}
    known, _, _ = held_out_novelty(
        lambda: create_novelty(dec.novelty_name, **options), vecs[labeled],
        [labels[i][0] for i in labeled.tolist()], gid, at[rows], queries=queries, novel=False,
    )  # fmt: skip
    return known


def fit_region_novelty(index: Any, mode: str, per_band: int = PER_BAND, seed: int = 0) -> RegionNovelty | None:
    """Measure the per-band shifts for ``index`` (a :class:`visrec.index.Index`) and classifier ``mode`` (see the
    module docstring); None when its calibration has no open-set decision, no sampled image can be read, or it
    holds too few items to leave groups out."""
    from visrec.index.derived import sampled_items

    t0 = time.perf_counter()
    snap = index.snapshot()
    cal = index.calibration(mode, snap) if snap.calibration_data() else None
    dec = getattr(cal, "decision", None)
    if dec is None:
        return None
    edges = band_edges(int(getattr(index.encoder, "input_size", 224)))
    ids, vecs, labels, groups, rows = sampled_items(snap.store, per_band * (len(edges) - 1), seed)
    band, sides = band_sides(rows.size, edges, seed)
    images, ok = _renders(snap, ids, rows, sides)
    if not images:
        return None
    emb = index.encoder.encode_images(images, batch_size=32)
    try:
        known = _held_out_scores(dec, vecs, labels, groups, rows[ok], emb.vectors)
    except BadInput:  # too few classes or items to leave groups out: region scores stay as they are
        return None
    whole = np.quantile(dec.known.novelty, LEVELS)
    matches, counts = [], []
    for b in range(len(edges) - 1):
        k = known[(band[ok] == b) & np.isfinite(known)]
        counts.append(int(k.size))
        matches.append((np.quantile(k, LEVELS), whole) if k.size >= MIN_RENDERS else None)
    return RegionNovelty(tuple(edges), tuple(matches), tuple(counts), rows.size - len(ok), time.perf_counter() - t0)


def region_novelty(index: Any, mode: str) -> RegionNovelty | None:
    """:func:`fit_region_novelty` of ``index``'s newest generation, measured on first use and kept with it, and in
    the cache folder (a small JSON file per index generation and mode), so a later process (the next ``visrec
    scene`` call) reads it instead of measuring again."""
    snap = index.snapshot()
    key = f"region-novelty:{mode}"
    if key not in snap.parsed:
        path = _cache_file(index, snap, mode)
        found = _read_cached(path)
        if found is None:
            found = fit_region_novelty(index, mode)
            _write_cached(path, found)
        snap.parsed[key] = found
    result: RegionNovelty | None = snap.parsed[key]
    return result


_CACHE_VERSION = 1


def _cache_file(index: Any, snap: Any, mode: str) -> Path | None:
    """Where the measurement of this index generation is cached (None when the cache folder is unusable)."""
    import hashlib
    import json

    from visrec.encoders.cache import cache_dir

    m = snap.manifest
    ident = [str(Path(index.path).resolve()), m.created, m.updated, m.generation, m.encoder_fingerprint, mode,
             PER_BAND, list(BAND_SHARES), _CACHE_VERSION]  # fmt: skip
    digest = hashlib.sha1(json.dumps(ident).encode()).hexdigest()[:20]
    try:
        return cache_dir() / "region-novelty" / f"{digest}.json"
    except OSError:
        return None


def _read_cached(path: Path | None) -> RegionNovelty | None:
    import json

    if path is None or not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        novelty = tuple(None if m is None else (np.asarray(m[0], np.float64), np.asarray(m[1], np.float64))
                        for m in d["novelty"])  # fmt: skip
        return RegionNovelty(tuple(int(e) for e in d["edges"]), novelty, tuple(int(r) for r in d["renders"]),
                             int(d["skipped"]), float(d["seconds"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # unreadable or from another version: measured again


def _write_cached(path: Path | None, found: RegionNovelty | None) -> None:
    import json
    import os
    import tempfile

    if path is None or found is None:
        return
    data = {"edges": list(found.edges), "renders": list(found.renders), "skipped": found.skipped,
            "seconds": found.seconds,
            "novelty": [None if m is None else [m[0].tolist(), m[1].tolist()] for m in found.novelty]}  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        return  # a read-only cache folder only costs the next process the measurement
