"""``gallery``: windows scored by how much they look like the index's own examples.

The index's images are what the user wants found (the Naruto index is made of face crops, so windows that look
like an indexed face are the regions wanted). Each window is embedded with the index's encoder and scored by
its cosine similarity to its nearest indexed image; windows below ``min_similarity`` are dropped, the rest
pruned by NMS. The embeddings of the kept windows are cached, so recognition does not encode them again.

Embedding windows is the whole cost (~15-25 ms each on two CPU cores), so at most ``max_windows`` are embedded
per image, in two rounds:

1. a coarse grid from :mod:`visrec.segment.proposals`, its stride raised for wide images so that it leaves
   room for round 2 (:func:`fit_stride`); flat windows (gray-level contrast below ``min_contrast`` of the
   image's) are dropped, since they cannot hold a character;
2. a local search around the ``refine_seeds`` best distinct windows of round 1: each moved by a quarter of its
   side and rescaled (:func:`jitter_windows`). A fixed grid rarely centres a face; whether a scene's
   character is found then depends on where the grid happens to fall, and the search removes most of that.

Ranking windows by contrast to keep the "best" few was measured and rejected: it drops the faces (flat-shaded
skin) before the busy background.

Windows are squares on a grid of a few scales: they seldom fit small objects of other shapes closely enough for
IoU 0.5, and a scene of many small objects needs hundreds of them. So the segmenter also embeds the image's
*boundary boxes* (:mod:`visrec.segment.edges`: boxes of closed edge outlines, from 1/16 to 0.6 of the short
side, at most 128), which follow objects of any size and aspect. They are tier 0, the windows tier 2
(:meth:`GallerySegmenter.region_tiers`); the scene's overlap resolution weighs a box's tier with its scores and
overlaps (:mod:`visrec.segment.box_quality`; with ``SceneConfig(box_order="tier")`` boundary boxes simply go
before any window, so a window only names what no boundary box of that label covers).

An outline with a gap (an object meeting a background of its own colour) gives a box on a part of the object, and
two touching objects share one outline; either box has another shape than the object. The index knows the
object's shape: its nearest indexed image's width / height. So the ``shape_seeds`` (16) most similar boundary
boxes whose shape is off from their nearest image's by more than ``shape_ratio`` are completed to that shape, four
boxes each sharing one side with them (:mod:`visrec.segment.shapes`), and embedded too. In the overlap resolution
they compete with the boundary boxes by confidence, and the boxes they were completed from come after both
(:data:`BOUNDARY`, :data:`COMPLETED`, then :data:`WINDOW`). A box inside a larger boundary box of about the right
shape is not completed: it is a part of an object already boxed whole (a block of a busy picture), and its
completions, parts too, could outscore the whole. Measured on generated scenes in docs/scene.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.segment.base import ImageHolder
from visrec.segment.edges import EdgeBoxConfig, edge_boxes, edge_maps
from visrec.segment.masks import box_area, box_iou, crop, nms
from visrec.segment.proposals import ProposalConfig, ProposalSegmenter, fit_stride, jitter_windows
from visrec.segment.shapes import box_aspects, complete_boxes
from visrec.segment.types import Regions
from visrec.types import Embeddings

JITTERS = 6  # windows per seed made by jitter_windows with its defaults (4 moves, 2 scales)
# Region tiers (GallerySegmenter.region_tiers), a feature of the scene's box-quality order and the whole order with
# SceneConfig(box_order="tier"): boundary boxes and the boxes completed to their nearest indexed image's shape, then
# the boundary boxes those were completed from (a part of an object, or two objects in one outline), then windows.
BOUNDARY, COMPLETED, WINDOW = 0, 1, 2
_Part = tuple[np.ndarray, np.ndarray, Embeddings, np.ndarray]  # boxes, similarities, embeddings, tiers


@dataclass(frozen=True)
class GalleryConfig:
    """``proposals``: the coarse grid (its ``stride`` is the finest used); ``max_windows``: the most windows
    embedded per image, both rounds together (0: none, boundary boxes only); ``refine_seeds``: windows searched
    around in round 2 (0: none);
    ``min_contrast``: windows flatter than this are not embedded; ``min_similarity``: cosine floor to the
    nearest indexed image; ``nms_iou``: pruning IoU; ``max_regions``: cap on windows kept; ``batch_size``: encoder
    batch (0: the windows split evenly over the CPU cores, so that no core runs one batch more than another);
    ``edges``: boundary boxes embedded besides the windows (None: windows only); ``shape_seeds``: the most
    boundary boxes (most similar first) completed to the shape of their nearest indexed image when their own
    shape is off from it by more than ``shape_ratio`` (:mod:`visrec.segment.shapes`; 0: none)."""

    proposals: ProposalConfig = field(
        default_factory=lambda: ProposalConfig(
            scales=(0.25, 0.4, 0.6), components=False, nms_iou=1.0, max_regions=10_000
        )
    )
    max_windows: int = 96
    refine_seeds: int = 6
    min_contrast: float = 0.1
    min_similarity: float = 0.0
    nms_iou: float = 0.3
    max_regions: int = 20
    batch_size: int = 0
    edges: EdgeBoxConfig | None = field(default_factory=EdgeBoxConfig)
    shape_seeds: int = 16
    shape_ratio: float = 1.25

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0 or self.max_regions < 1 or self.max_windows < 0:
            raise BadInput(
                "min_similarity must be in [-1, 1], max_regions >= 1 and max_windows >= 0; got "
                f"{self.min_similarity}, {self.max_regions}, {self.max_windows}"
            )
        if self.shape_seeds < 0 or self.shape_ratio < 1.0:
            raise BadInput(f"shape_seeds must be >= 0 and shape_ratio >= 1, got {self.shape_seeds}, {self.shape_ratio}")
        if self.max_windows == 0 and self.edges is None:
            raise BadInput("max_windows=0 (no windows) needs boundary boxes (edges)")
        if self.batch_size < 0 or self.refine_seeds < 0 or self.refine_seeds * JITTERS >= max(1, self.max_windows):
            raise BadInput(
                f"batch_size and refine_seeds must be >= 0 and refine_seeds * {JITTERS} < max_windows; got "
                f"{self.batch_size}, {self.refine_seeds}, {self.max_windows}"
            )


def balanced_batch(n: int, cores: int | None = None) -> int:
    """The batch size that splits ``n`` images into one equal batch per core (at most 64 images a batch).

    The encoder runs one batch per core at a time: 96 windows in batches of 32 make one core run two batches
    while the other runs one; two batches of 48 finish a third sooner.
    """
    from visrec.blas import usable_cores

    cores = cores or usable_cores()
    per_core = -(-n // cores)
    return max(1, -(-per_core // -(-per_core // 64)))


class GallerySegmenter(ImageHolder):
    """See the module docstring. ``index``: a :class:`visrec.index.Index` (its encoder and store are used)."""

    name = "gallery"

    def __init__(self, index: Any = None, config: GalleryConfig | None = None, **options: Any) -> None:
        if index is None:
            raise BadInput("the gallery segmenter needs the index to compare windows with: pass index=Index(path)")
        self.index = index
        self.config = config or GalleryConfig(**options)
        self._regions: Regions | None = None
        self._emb: Embeddings | None = None
        self._tiers = np.zeros(0, np.int64)
        self._edges: np.ndarray | None = None
        self._aspect: dict[str, float] = {}  # width / height of the indexed images met so far, by id
        self._aspect_gen: Any = None  # the index generation those were read from

    def set_image(self, image: np.ndarray) -> None:
        """Embed and score the boundary boxes and windows of an RGB ``uint8`` ``(h, w, 3)`` image (the slow part)."""
        self._image = image
        self._edges = None
        parts = [p for p in (self._boundary(image), self._windows(image)) if p is not None]
        if not parts:
            self._regions, self._emb, self._tiers = Regions.empty(), None, np.zeros(0, np.int64)
            return
        self._regions = Regions(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), None)
        self._emb = parts[0][2] if len(parts) == 1 else _concat([p[2] for p in parts])
        self._tiers = np.concatenate([p[3] for p in parts])

    def _boundary(self, image: np.ndarray) -> _Part | None:
        """Boundary boxes (and the boxes completed from them) whose similarity is at least ``min_similarity``:
        boxes, similarities, embeddings, tiers (:data:`BOUNDARY`, or :data:`COMPLETED` for a box completed from)."""
        if self.config.edges is None:
            return None
        maps = edge_maps(image, self.config.edges)
        self._edges = maps[0]
        boxes = edge_boxes(image, self.config.edges, maps)
        if len(boxes) == 0:
            return None
        emb, sims, nearest = self._score(image, boxes, "e")
        tiers = np.full(len(boxes), BOUNDARY, np.int64)
        shaped = self._shaped(image, boxes, sims, nearest)
        if shaped is not None:
            new, new_sims, new_emb, sources = shaped
            tiers[sources] = COMPLETED  # a box whose shape is off gives way to the boxes completed from it
            boxes, sims = np.concatenate([boxes, new]), np.concatenate([sims, new_sims])
            emb, tiers = _concat([emb, new_emb]), np.concatenate([tiers, np.full(len(new), BOUNDARY, np.int64)])
        ok = np.nonzero(sims >= self.config.min_similarity)[0]
        return boxes[ok], sims[ok], emb.take(ok), tiers[ok]

    def _shaped(
        self, image: np.ndarray, boxes: np.ndarray, sims: np.ndarray, nearest: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, Embeddings, np.ndarray] | None:
        """Boundary boxes completed to the shape of their nearest indexed image (:func:`complete_boxes`), for the
        ``shape_seeds`` most similar boxes whose shape is off; near-duplicates of a boundary box are left out.
        Returns the new boxes, their similarities and embeddings, and the rows of ``boxes`` they came from."""
        cfg = self.config
        if cfg.shape_seeds == 0:
            return None
        ref = self._aspects(nearest)
        known = np.isfinite(ref)
        off = np.zeros(len(boxes), bool)
        off[known] = np.abs(np.log(box_aspects(boxes[known]) / ref[known])) > np.log(cfg.shape_ratio)
        seeds = _not_within(boxes, np.flatnonzero(off), np.flatnonzero(known & ~off))
        seeds = seeds[np.argsort(-sims[seeds], kind="stable")[: cfg.shape_seeds]]
        h, w = image.shape[:2]
        new, rows = complete_boxes(boxes[seeds], ref[seeds], h, w, cfg.shape_ratio)
        dedupe = cfg.edges.dedupe_iou if cfg.edges is not None else 0.8
        if len(new):
            fresh = np.flatnonzero(box_iou(new, boxes).max(1) <= dedupe)
            fresh = fresh[nms(new[fresh], box_area(new[fresh]).astype(np.float32), dedupe)]
            new, rows = new[fresh], rows[fresh]
        if len(new) == 0:
            return None
        emb, s, _ids = self._score(image, new, "s")
        return new, s, emb, np.unique(seeds[rows])

    def _aspects(self, ids: np.ndarray) -> np.ndarray:
        """Width / height of the indexed images ``ids`` (``(n,)`` float64; NaN where the index has no size); read
        again when the index has moved to another generation (an id's image may have changed)."""
        gen = getattr(self.index, "gen", None)
        if gen != self._aspect_gen:
            self._aspect.clear()
            self._aspect_gen = gen
        missing = [str(i) for i in set(ids.tolist()) if str(i) not in self._aspect and i != ""]
        found = self.index.metadata_of(missing) if missing else {}
        for key in missing:  # ids without a recorded size are remembered too, as NaN
            w, h = found.get(key, {}).get("width"), found.get(key, {}).get("height")
            self._aspect[key] = float(w) / float(h) if w and h else float("nan")
        return np.asarray([self._aspect.get(str(i), float("nan")) for i in ids], np.float64)

    def _windows(self, image: np.ndarray) -> _Part | None:
        """The two rounds of windows (see the module docstring), pruned by NMS and capped at ``max_regions``."""
        cfg = self.config
        if cfg.max_windows == 0:
            return None
        h, w = image.shape[:2]
        coarse_budget = cfg.max_windows - cfg.refine_seeds * JITTERS
        stride = fit_stride(h, w, cfg.proposals.scales, cfg.proposals.stride, coarse_budget)
        proposals = ProposalSegmenter(replace(cfg.proposals, stride=stride))
        proposals.set_image(image)
        cand = proposals.regions()
        boxes = cand.xyxy[np.nonzero(cand.scores >= cfg.min_contrast)[0][:coarse_budget]]
        if len(boxes) == 0:
            return None
        emb, sims, _ids = self._score(image, boxes, "c")
        if cfg.refine_seeds:
            seeds = boxes[nms(boxes, sims, cfg.nms_iou)[: cfg.refine_seeds]]
            fine = jitter_windows(seeds, h, w)
            emb2, sims2, _ids = self._score(image, fine, "f")
            boxes, sims = np.concatenate([boxes, fine]), np.concatenate([sims, sims2])
            emb = _concat([emb, emb2])
        ok = np.nonzero(sims >= cfg.min_similarity)[0]
        keep = ok[nms(boxes[ok], sims[ok], cfg.nms_iou)][: cfg.max_regions]
        return boxes[keep].astype(np.float32), sims[keep], emb.take(keep), np.full(len(keep), WINDOW, np.int64)

    def _score(self, image: np.ndarray, boxes: np.ndarray, tag: str) -> tuple[Embeddings, np.ndarray, np.ndarray]:
        """Embeddings of the windows' crops, each one's cosine to its nearest indexed image (float32) and that
        image's id (object array, ``""`` when the index is empty)."""
        crops = [crop(image, b, min_side=2) for b in boxes]
        ids = [f"{tag}{i}" for i in range(len(crops))]
        batch = self.config.batch_size or balanced_batch(len(crops))
        emb = self.index.encoder.encode_images(crops, ids=ids, batch_size=batch)
        hits = self.index.store.search(emb.vectors, 1)
        sims = hits.scores[:, 0].astype(np.float32)
        return emb, np.where(np.isfinite(sims), sims, np.float32(-1.0)), hits.ids[:, 0]

    def regions(self) -> Regions:
        """The kept windows, most gallery-like first; ``scores`` are cosine similarities to the nearest image."""
        self._require_image()
        return self._regions if self._regions is not None else Regions.empty()

    def cached_embeddings(self) -> Embeddings | None:
        self._require_image()
        return self._emb

    def edge_map(self) -> np.ndarray | None:
        """The bool ``(h, w)`` Canny map of the image's boundary boxes (their first thresholds), or None without
        boundary boxes: the scene pipeline snaps named boxes to it instead of finding edges again."""
        self._require_image()
        return self._edges

    def region_tiers(self) -> np.ndarray:
        """Per region, ``(n,)`` int64, the order in which the scene resolves overlaps (lower first):
        :data:`BOUNDARY` (0) for a boundary box or a box completed to an indexed image's shape, :data:`COMPLETED` (1)
        for a boundary box such boxes were completed from, :data:`WINDOW` (2) for a window."""
        self._require_image()
        return self._tiers


def _not_within(boxes: np.ndarray, seeds: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """The ``seeds`` (rows of ``boxes``) not lying inside (90 % of their area) a larger box of ``whole`` (rows of
    boxes of about their nearest image's shape): such a seed is a part of an object already boxed whole (a block of a
    busy picture), and completing it gives boxes on more parts of that object, which can outscore the whole."""
    if len(seeds) == 0 or len(whole) == 0:
        return seeds
    a, b = boxes[seeds], boxes[whole]
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    inside = (inter > 0.9 * box_area(a)[:, None]) & (box_area(b)[None, :] > box_area(a)[:, None])
    return seeds[~inside.any(axis=1)]


def _concat(parts: list[Embeddings]) -> Embeddings:
    first = parts[0]
    joint = None if first.joint is None else int(first.joint.shape[1])
    return Embeddings.concat(parts, first.encoder_id, first.vectors.shape[1], joint)
