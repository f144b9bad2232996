"""Scene analysis: segment an image, recognise every region against an index, keep a consistent set.

Pipeline (timed per stage): load and downscale to ``long_side`` -> ``segmenter.set_image`` -> crops (or
masked crops with the background blanked) -> one batched encode (skipped when the segmenter cached it) ->
``index.classify(..., "knn")`` -> accept or reject each region -> resolve overlaps -> snap the kept boxes to
edge lines and resolve again -> boxes mapped back to the input image's pixels.

Four acceptance rules (``SceneConfig.accept``):

* ``"confidence"`` (default): each region is judged on its own: named after its best class when the index's
  open-set confidence (``Prediction.calibrated``: P(an indexed kind of object | novelty score) x P(its best class
  is right | raw score), both fitted on the index's own images held out, :mod:`visrec.classify.decision`) is at
  least ``min_confidence`` (0.6), and its raw score is at least the ``known_quantile`` (0.05) of the raw scores
  of the index's own correctly recognised held-out images. Both are on the index's own scale, so one setting
  serves indexes whose raw scores run on different scales (anime face crops score their own kind 0.85-0.95,
  CIFAR-10 thumbnails 0.45-0.85); both were chosen on generated scenes of four kinds
  (``benchmarks/scene_generated.py``, docs/scene.md). A region's novelty score is first moved onto the scale
  of whole images by the shift measured for its size on the index's own images shrunk
  (``SceneConfig.region_novelty``, :func:`region_confidences`). The second part is for small, clean indexes: when
  their held-out known and novel items lie far apart, the confidence is interpolated across the gap and a
  background crop scoring below every known image can still reach 0.9; there the minimum moves a quarter of
  the way into the gap (:func:`known_floor`; set on the unit tests' synthetic scenes, since the generated
  scenes' indexes have no gap). No cap on how many regions a scene
  may name; of overlapping regions of one label, equal confidences (saturated at 1) go by raw score. An index
  without an open-set decision (built with ``--no-calibrate``, calibrated by an older version, or of fewer
  than three classes) falls back to the raw ``floor``.
* ``"calibrated"``: each region is judged on its own by the index's open-set decision at its stored operating
  point ``tau`` (the lowest confidence at which the held-out stream reaches the target precision). When the
  held-out known and novel items are fully apart (a small, clean index), ``tau`` sits on the known items' own
  confidence (1 - 1e-7), so a plainly visible known object a little less typical than every held-out one is
  called novel; the ``confidence`` rule's fixed minimum does not have that edge.
* ``"absolute"``: its best class when its raw classifier score (kNN vote share x similarity) is at least
  ``floor`` (0.8). A raw floor fits one index's score scale: on generated scenes of indexes whose scores run
  lower (Caltech-101, CIFAR-10 thumbnails) 0.8 names few objects.
* ``"relative"``: a region keeps its best class when its raw score is within ``margin`` of the best region of
  the same scene and at least ``floor``: the ranking inside a scene carries the signal, but a scene names
  only its few best regions.

Overlaps are then resolved per label, a label's box regions in the order of their *box quality*
(:mod:`visrec.segment.box_quality`: P(the box is an object's box) from its tier, confidence and raw score compared
with the same-label boxes overlapping it, a model fitted on generated scenes; ``box_order="tier"``: the former
order, the segmenter's lower region tiers first, the ``gallery`` segmenter's boundary boxes and the boxes completed
to an indexed image's shape, then the boxes completed from, then its windows, then by score): of two same-label box
regions (boxes, windows) overlapping with IoU > ``merge_iou``, or one inside the other, the later is dropped (NMS;
boxes are never grown into unions, so distinct touching objects stay distinct); same-label *mask* regions
overlapping that much are fragments of one object and join (union mask and box). Then, by score alone (box quality
or tiers order boxes of one label, not names), a kept region overlapping a kept region of another label with a
stronger claim (the best score among that region and the same-label regions it stood for) by more than
``suppress_ioa`` of the smaller box is dropped. Box regions inside a same-label region at least ``1 / piece_share``
(10) times their area are dropped first, as pieces of it (:func:`visrec.segment.overlaps.pieces`).

Last, the sides of each kept box region are snapped to nearby straight edge lines of the image
(``SceneConfig.snap``, :mod:`visrec.segment.snap`) and overlaps resolved once more among them: a box placed on two
touching objects' shared outline, or on a strong outline inside an object, moves onto the object's own border
where that border is straight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from visrec.classify.base import NO_CANDIDATE
from visrec.encoders.base import ImageLike
from visrec.errors import BadInput
from visrec.segment.base import Segmenter
from visrec.segment.masks import crop, masked_crop, scale_boxes
from visrec.segment.overlaps import PIECE_SHARE, resolve_overlaps, snap_named
from visrec.segment.types import Regions, SceneResult
from visrec.types import Embeddings, Prediction

ACCEPT_RULES = ("relative", "calibrated", "absolute", "confidence")
BOX_ORDERS = ("quality", "tier")
GAP_SHARE = 0.25
"""Share of the gap between an index's held-out novel and known raw scores that the confidence rule's raw
minimum moves down into (:func:`known_floor`); indexes whose two score sets overlap are not moved at all."""


@dataclass(frozen=True)
class SceneConfig:
    """``long_side``: the image is shrunk so its longer side is at most this (0: never); ``mode``: classifier
    mode of the index; ``masked``: embed masked crops when the segmenter gives masks; ``merge_iou``: of two
    regions of one label overlapping with IoU above this, the weaker is dropped; ``suppress_ioa``: a region
    that overlaps a region of another label with a stronger claim by more than this (of the smaller box) is dropped
    (:func:`visrec.segment.overlaps.cross_label`);
    ``keep_unknown``: keep regions recognised as nobody; ``min_score``: drop labelled regions below it;
    ``accept``: ``"confidence"``, ``"calibrated"``, ``"absolute"`` or ``"relative"`` (see the module docstring);
    ``margin``: the relative rule's distance to the scene's best raw score; ``floor``: the lowest raw score that
    names a region under the absolute and relative rules (and the others on an index without an open-set
    decision); ``min_confidence``: the confidence rule's minimum open-set confidence; ``known_quantile``: the
    confidence rule's raw-score minimum, as a quantile of the index's correctly recognised held-out images;
    ``context``: with masked crops, also embed each region's box grown by this share of its size per side,
    background kept (a context crop, in the same batch), and recognise the mean of the two views' embeddings
    (0: masked crop only); ``region_novelty``: under the confidence rule, P(known) of a region comes from novelty
    maps fitted on the index's own images rendered at region sizes (:mod:`visrec.segment.region_novelty`)
    instead of the index's whole-image map; ``snap``: with a segmenter that keeps an edge map of the image (the
    gallery), the sides of named box regions move onto nearby straight edge lines, then overlaps among them are
    resolved again (:mod:`visrec.segment.snap`);
    ``piece_share``: a named box region inside a same-label region at least ``1 / piece_share`` times its area is
    a piece of it and is dropped (:func:`visrec.segment.overlaps.pieces`); ``box_order``: which of a label's
    overlapping box regions the overlap resolution keeps first, ``"quality"`` (the box-quality model of
    :mod:`visrec.segment.box_quality`) or ``"tier"`` (the segmenter's tier, then confidence, then raw score)."""

    long_side: int = 1024
    mode: str = "knn"
    masked: bool = True
    merge_iou: float = 0.1
    suppress_ioa: float = 0.5
    keep_unknown: bool = False
    min_score: float = 0.0
    batch_size: int = 32
    accept: str = "confidence"
    margin: float = 0.02
    floor: float = 0.8
    min_confidence: float = 0.6
    known_quantile: float = 0.05
    context: float = 0.0
    region_novelty: bool = True
    snap: bool = True
    piece_share: float = PIECE_SHARE
    box_order: str = "quality"

    def __post_init__(self) -> None:
        if self.box_order not in BOX_ORDERS:
            raise BadInput(f"box_order must be one of {', '.join(BOX_ORDERS)}, got {self.box_order!r}")
        if self.long_side < 0 or self.batch_size < 1:
            raise BadInput(f"long_side must be >= 0 and batch_size >= 1, got {self.long_side}, {self.batch_size}")
        if self.accept not in ACCEPT_RULES:
            raise BadInput(f"accept must be one of {', '.join(ACCEPT_RULES)}, got {self.accept!r}")
        if not 0.0 <= self.known_quantile <= 1.0:
            raise BadInput(f"known_quantile must be in [0, 1], got {self.known_quantile}")
        if not 0.0 <= self.piece_share <= 1.0:
            raise BadInput(f"piece_share must be in [0, 1], got {self.piece_share}")
        if self.margin < 0 or self.context < 0:
            raise BadInput(f"margin and context must be >= 0, got {self.margin}, {self.context}")


def downscale(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so that ``max(h, w) <= long_side`` and the factor that maps its pixels back (>= 1)."""
    h, w = image.shape[:2]
    if long_side <= 0 or max(h, w) <= long_side:
        return image, 1.0
    f = long_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), max(h, w) / long_side


def region_crops(image: np.ndarray, regions: Regions, masked: bool) -> list[np.ndarray]:
    """One RGB crop per region; with ``masked`` and masks, pixels outside the mask are blanked to white."""
    if masked and regions.masks is not None:
        return [masked_crop(image, m, b) for m, b in zip(regions.masks, regions.xyxy, strict=True)]
    return [crop(image, b, min_side=2) for b in regions.xyxy]


def context_crops(image: np.ndarray, regions: Regions, context: float) -> list[np.ndarray]:
    """One unmasked crop per region: its box grown by ``context`` of its width / height on each side."""
    b = regions.xyxy.astype(np.float64)
    grow = np.repeat(b[:, 2:] - b[:, :2], 2, axis=0).reshape(-1, 4) * context
    grown = b + np.concatenate([-grow[:, :2], grow[:, 2:]], 1)
    return [crop(image, g, min_side=2) for g in grown]


def fuse_views(emb: Embeddings, n: int) -> Embeddings:
    """The mean of two views per region (rows ``i`` and ``n + i`` of ``emb``), re-normalised to unit length."""

    def mean(v: np.ndarray) -> np.ndarray:
        m = v[:n] + v[n:]
        return (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    joint = None if emb.joint is None else mean(emb.joint)
    return Embeddings(mean(emb.vectors), emb.ids[:n], emb.encoder_id, joint)


def confidence(pred: Prediction) -> float:
    """The calibrated probability when there is one, else the raw score."""
    return pred.score if np.isnan(pred.calibrated) else pred.calibrated


def relative_labels(preds: list[Prediction], margin: float, floor: float) -> list[str | None]:
    """The scene-relative decision: each region's best class when its raw score is >= ``floor`` and within
    ``margin`` of the best raw score among ``preds`` (the regions of one scene), else None (unknown)."""
    if not preds:
        return []
    cut = max(floor, max(p.score for p in preds) - margin)
    return [p.candidate if p.score >= cut else None for p in preds]


def known_floor(known: np.ndarray, novel: np.ndarray, quantile: float, share: float = GAP_SHARE) -> float:
    """The lowest raw score the confidence rule names: the ``quantile`` of ``known`` (``(n,)`` raw scores of an
    index's correctly recognised held-out images); when the ``1 - quantile`` of ``novel`` (``(m,)`` raw scores of
    its held-out images of removed classes) lies below that, a gap separates the two, and the floor moves down
    by ``share`` of the gap. Scene crops score a little below clean images, so a floor on the lowest known
    images alone would drop the objects of an index whose own images all score alike; a region deep in the
    gap is still refused, since the confidence there is interpolated between held-out points far apart.
    ``-inf`` when ``known`` is empty."""
    known = np.asarray(known, np.float64)
    novel = np.asarray(novel, np.float64)
    novel = novel[np.isfinite(novel)]
    if known.size == 0:
        return float("-inf")
    low = float(np.quantile(known, quantile))
    gap = low - float(np.quantile(novel, 1.0 - quantile)) if novel.size else 0.0
    return low - share * max(0.0, gap)


def region_confidences(
    index: Any, mode: str, emb: Embeddings, preds: list[Prediction], boxes: np.ndarray
) -> list[Prediction]:
    """``preds`` with ``calibrated`` recomputed as P(known | novelty moved onto the whole-image scale for the
    region's size) x P(right | raw score), both maps the index's own; the shift per size is measured once per
    index generation (:mod:`visrec.segment.region_novelty`). ``emb``: the regions' embeddings; ``boxes``:
    ``(n, 4)`` xyxy pixels of the image the crops were taken from. Unchanged when the shift cannot be measured."""
    from visrec.segment.region_novelty import region_novelty

    shift = region_novelty(index, mode)
    if shift is None or not preds:
        return preds
    cal = index.calibration(mode)
    dec = cal.decision
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    nov = shift.whole_image_novelty(index.novelty_scores(emb.vectors, dec.novelty_name), sides)
    scores = np.asarray([p.score for p in preds], np.float64)
    conf = dec.p_known(nov, cal.novelty_prior) * dec.p_class(scores, [p.candidate for p in preds])
    return [p if p.candidate == NO_CANDIDATE or np.isnan(p.calibrated) else replace(p, calibrated=float(c))
            for p, c in zip(preds, conf, strict=True)]  # fmt: skip


class SceneAnalyzer:
    """Recognise the regions of scenes against ``index`` (a :class:`visrec.index.Index`).

    ``segmenter``: any :class:`Segmenter` (default: the ``gallery`` backend over this index).
    """

    def __init__(self, index: Any, segmenter: Segmenter | None = None, config: SceneConfig | None = None) -> None:
        self.index = index
        self.config = config or SceneConfig()
        if segmenter is None:
            from visrec.segment.gallery import GallerySegmenter

            segmenter = GallerySegmenter(index)
        self.segmenter = segmenter

    def analyze(self, image: ImageLike) -> SceneResult:
        """Find and recognise the regions of one image (an empty result when nothing is found)."""
        from visrec.data.images import to_rgb_array

        t: dict[str, float] = {}
        t0 = time.perf_counter()
        rgb = to_rgb_array(image)
        small, factor = downscale(rgb, self.config.long_side)
        t["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.segmenter.set_image(small)
        regions = self.segmenter.regions()
        t["segment"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        preds = self._predict(small, regions)
        t["recognise"] = time.perf_counter() - t0
        edges = None
        # Only segmenters that keep an edge map of the image (the gallery: its boundary-box edges) snap: the rule
        # was measured on their boxes; a detector's boxes (faces, NanoDet) have their own geometry.
        edge_map = getattr(self.segmenter, "edge_map", None)
        if self.config.snap and regions.masks is None and len(regions) and callable(edge_map):
            t0 = time.perf_counter()
            edges = edge_map()
            edges = None if edges is None or edges.shape != small.shape[:2] else edges
            t["snap"] = time.perf_counter() - t0
        return self._result(regions, preds, factor, rgb.shape[:2], t, edges)

    def _predict(self, image: np.ndarray, regions: Regions) -> list[Prediction]:
        if len(regions) == 0:
            return []
        cached = getattr(self.segmenter, "cached_embeddings", lambda: None)()
        use_cache = isinstance(cached, Embeddings) and not (self.config.masked and regions.masks is not None)
        emb: Embeddings
        if isinstance(cached, Embeddings) and use_cache:
            emb = cached
        else:
            crops = region_crops(image, regions, self.config.masked)
            views = self.config.context > 0 and self.config.masked and regions.masks is not None
            if views:  # masked and context crops of every region in one batch
                crops += context_crops(image, regions, self.config.context)
            emb = self.index.encoder.encode_images(crops, batch_size=self.config.batch_size)
            if views:
                emb = fuse_views(emb, len(regions))
        calibrated = self.config.accept in ("calibrated", "confidence") and bool(self.index.calibration_data())
        preds = list(self.index.classify(emb, self.config.mode, calibrated=calibrated))
        if self.config.accept == "confidence" and self.config.region_novelty and self._has_decision():
            return region_confidences(self.index, self.config.mode, emb, preds, regions.xyxy)
        return preds

    def decide(self, preds: list[Prediction]) -> tuple[list[str | None], np.ndarray]:
        """The acceptance rule (``config.accept``) on one scene's region predictions: per region its label or None
        (unknown), and the ``(n,)`` float32 scores that order the overlap resolution."""
        cfg = self.config
        if cfg.accept == "relative":
            return relative_labels(preds, cfg.margin, cfg.floor), np.asarray([p.score for p in preds], np.float32)
        if cfg.accept == "confidence" and self._has_decision():
            scores = np.asarray([p.calibrated for p in preds], np.float32)
            low = self._known_floor()
            labels = [p.candidate if c >= cfg.min_confidence and p.score >= low else None
                      for p, c in zip(preds, scores, strict=True)]  # fmt: skip
            return labels, scores
        if cfg.accept == "calibrated" and self.index.calibration_data():  # raw thresholds on an older one
            return [p.label for p in preds], np.asarray([confidence(p) for p in preds], np.float32)
        # absolute, or an index without calibration (without an open-set decision for confidence)
        return [p.candidate if p.score >= cfg.floor else None for p in preds], np.asarray(
            [p.score for p in preds], np.float32
        )

    def _result(
        self,
        regions: Regions,
        preds: list[Prediction],
        factor: float,
        hw: tuple[int, ...],
        t: dict[str, float],
        edges: np.ndarray | None = None,
    ) -> SceneResult:
        """Accepted regions after overlap resolution, boxes in the input image's pixels; with ``edges`` (the
        segmenter's edge map of the analysed image, :func:`~visrec.segment.overlaps.scene_edges`) and
        ``config.snap``, named box regions first snap to its lines."""
        cfg = self.config
        labels, scores = self.decide(preds)
        ok = [
            i
            for i, lab in enumerate(labels)
            if (lab is None and cfg.keep_unknown) or (lab and scores[i] >= cfg.min_score)
        ]
        boxes = regions.xyxy[ok].copy()  # mask fragments of one label join: their boxes grow in place
        joined: dict[int, list[int]] | None = None if regions.masks is None else {}
        tiers = self._tiers(len(regions))
        raw = np.asarray([p.score for p in preds], np.float64)[ok]
        sub = resolve_overlaps(boxes, [labels[i] for i in ok], scores[ok], cfg, joined, tiers[ok], raw) if ok else []
        if edges is not None and cfg.snap and regions.masks is None and sub:
            sub = self._snap_kept(edges, boxes, [labels[i] for i in ok], scores[ok], tiers[ok], raw, sub)
        keep = [ok[j] for j in sub]
        masks = None
        if regions.masks is not None:  # joined regions of one label: the union of their masks
            parts = joined or {}
            union = [np.logical_or.reduce(regions.masks[[ok[m] for m in [j, *parts.get(j, [])]]]) for j in sub]
            masks = _upscale_masks(np.stack(union) if union else regions.masks[:0], hw)
        out = Regions(scale_boxes(boxes[sub].reshape(-1, 4), factor), regions.scores[keep], masks)
        return SceneResult(
            out,
            tuple(labels[i] for i in keep),
            tuple(preds[i].candidate for i in keep),
            scores[keep].reshape(-1).astype(np.float32),
            int(hw[1]),
            int(hw[0]),
            t,
        )

    def _snap_kept(
        self,
        edges: np.ndarray,
        boxes: np.ndarray,
        labels: list[str | None],
        scores: np.ndarray,
        tiers: np.ndarray,
        raw: np.ndarray,
        kept: list[int],
    ) -> list[int]:
        """The kept regions' boxes (rows ``kept`` of ``boxes``, changed in place) snapped to ``edges``, then
        overlaps resolved once more among them (two boxes that snapped onto one object become one); returns the
        rows still kept."""
        lab = [labels[j] for j in kept]
        boxes[kept] = snap_named(edges, boxes[kept], lab)
        again = resolve_overlaps(boxes[kept].copy(), lab, scores[kept], self.config, None, tiers[kept], raw[kept])
        return [kept[j] for j in again]

    def _tiers(self, n: int) -> np.ndarray:
        """The segmenter's region tiers ``(n,)`` int64 when it has them (``region_tiers()``), else all 0."""
        tiers = getattr(self.segmenter, "region_tiers", None)
        out = None if tiers is None else np.asarray(tiers(), np.int64)
        return out if out is not None and out.shape == (n,) else np.zeros(n, np.int64)

    def _known_floor(self) -> float:
        """The confidence rule's raw minimum from the index's held-out scores (:func:`known_floor`)."""
        dec = self.index.calibration(self.config.mode).decision
        return known_floor(dec.known.score[dec.known.correct], dec.novel.score, self.config.known_quantile)

    def _has_decision(self) -> bool:
        """Whether the index's calibration of the classifier mode has an open-set decision."""
        cal = self.index.calibration(self.config.mode) if self.index.calibration_data() else None
        return getattr(cal, "decision", None) is not None


def _upscale_masks(masks: np.ndarray, hw: tuple[int, ...]) -> np.ndarray:
    h, w = int(hw[0]), int(hw[1])
    if masks.shape[1:] == (h, w):
        return masks
    up = [Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST) for m in masks]
    return np.stack([np.asarray(u) > 127 for u in up]) if up else np.zeros((0, h, w), bool)
