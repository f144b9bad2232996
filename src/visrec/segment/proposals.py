"""``proposals``: a model-free segmenter that always works.

Two sources of candidates, both cheap on a CPU:

* multi-scale sliding windows (squares whose side is a fraction of the image's short side), scored by how
  much texture they hold (gray-level standard deviation relative to the whole image's);
* colour-segment proposals: the image is shrunk, its colours quantised, and every connected component of one
  colour whose area is within bounds becomes a region with a mask, scored by its compactness.

The candidates are pruned with NMS and capped at ``max_regions``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from visrec.errors import BadInput
from visrec.segment.base import ImageHolder
from visrec.segment.masks import box_to_mask, nms
from visrec.segment.types import Regions


@dataclass(frozen=True)
class ProposalConfig:
    """``scales``: window sides as fractions of the short side; ``stride``: step as a fraction of the side;
    ``components``: also propose colour segments; ``levels``: quantisation levels per channel;
    ``min_area``/``max_area``: segment area bounds as fractions of the image; ``nms_iou``: pruning IoU;
    ``max_regions``: cap; ``masks``: return masks (windows get box-shaped masks)."""

    scales: tuple[float, ...] = (0.35, 0.55, 0.8)
    stride: float = 0.6
    components: bool = True
    levels: int = 4
    min_area: float = 0.01
    max_area: float = 0.6
    nms_iou: float = 0.7
    max_regions: int = 60
    masks: bool = False

    def __post_init__(self) -> None:
        if not self.scales or any(not 0.0 < s <= 1.0 for s in self.scales):
            raise BadInput(f"scales must be fractions in (0, 1], got {self.scales}")
        if not 0.05 <= self.stride <= 1.0:
            raise BadInput(f"stride must be in [0.05, 1], got {self.stride}")
        if self.levels < 2 or self.max_regions < 1:
            raise BadInput(f"levels must be >= 2 and max_regions >= 1, got {self.levels}, {self.max_regions}")


def sliding_windows(height: int, width: int, scales: tuple[float, ...], stride: float) -> np.ndarray:
    """Square windows ``(n, 4)`` float32 covering the image at each scale, last row/column flush with the edge."""
    short = min(height, width)
    boxes: list[tuple[float, float, float, float]] = []
    for s in scales:
        side = max(8, round(short * s))
        step = max(1, round(side * stride))
        xs = _starts(width, side, step)
        ys = _starts(height, side, step)
        boxes += [(x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs]
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def fit_stride(height: int, width: int, scales: tuple[float, ...], stride: float, max_windows: int) -> float:
    """The smallest stride >= ``stride`` (raised in steps of 0.05, at most 1.0) that gives at most ``max_windows``
    sliding windows: a wide image gets a coarser grid instead of more windows, so the cost per image is bounded
    while the whole image stays covered."""
    s = stride
    while s < 1.0 and len(sliding_windows(height, width, scales, s)) > max_windows:
        s = min(1.0, round(s + 0.05, 2))
    return s


def jitter_windows(
    boxes: np.ndarray, height: int, width: int, shift: float = 0.25, scales: tuple[float, ...] = (0.7, 1.4)
) -> np.ndarray:
    """Neighbours of each box ``(n, 4)`` for a local search: the box moved by ``shift`` of its side left, right,
    up and down, then the box rescaled by each of ``scales`` about its centre. ``(n * (4 + len(scales)), 4)``
    float32, squares kept inside the image (moved back in, never cut)."""
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        side, cx, cy = max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
        d = shift * side
        variants = [(cx - d, cy, side), (cx + d, cy, side), (cx, cy - d, side), (cx, cy + d, side)]
        variants += [(cx, cy, side * f) for f in scales]
        for vx, vy, vs in variants:
            vs = min(vs, height, width)
            bx = min(max(vx - vs / 2, 0.0), width - vs)
            by = min(max(vy - vs / 2, 0.0), height - vs)
            out.append((bx, by, bx + vs, by + vs))
    return np.asarray(out, np.float32).reshape(-1, 4)


def _starts(length: int, side: int, step: int) -> list[int]:
    if side >= length:
        return [0]
    starts = list(range(0, length - side + 1, step))
    if starts[-1] != length - side:
        starts.append(length - side)
    return starts


def window_contrast(gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Gray-level standard deviation inside each box divided by the whole image's (float32 ``(n,)``, in [0, 1])."""
    g = gray.astype(np.float64)
    ii = np.pad(g, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    i2 = np.pad(g * g, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    b = boxes.astype(np.int64)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    s1 = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    s2 = i2[y1, x1] - i2[y0, x1] - i2[y1, x0] + i2[y0, x0]
    std = np.sqrt(np.clip(s2 / area - (s1 / area) ** 2, 0, None))
    return np.clip(std / max(float(g.std()), 1e-6), 0, 1).astype(np.float32)


def colour_segments(
    image: np.ndarray, levels: int, min_area: float, max_area: float, work_side: int = 128
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Connected components of quantised colour: boxes ``(n, 4)`` float32 in ``image`` pixels, compactness
    scores ``(n,)`` float32 and the low-resolution masks (one ``(hs, ws)`` bool array per component)."""
    h, w = image.shape[:2]
    f = min(1.0, work_side / max(h, w))
    hs, ws = max(1, round(h * f)), max(1, round(w * f))
    small = np.asarray(Image.fromarray(image).resize((ws, hs), Image.Resampling.BOX))
    q = (small.astype(np.int64) * levels) // 256
    codes = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    boxes, scores, masks = [], [], []
    total = hs * ws
    for code in np.unique(codes):
        lab, _n = ndimage.label(codes == code)
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            m = lab[sl] == k
            area = int(m.sum())
            if not min_area * total <= area <= max_area * total:
                continue
            ys, xs = sl
            boxes.append((xs.start / f, ys.start / f, xs.stop / f, ys.stop / f))
            scores.append(area / m.size)
            full = np.zeros((hs, ws), bool)
            full[sl] = m
            masks.append(full)
    arr = np.asarray(boxes, np.float32).reshape(-1, 4)
    arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0, w)
    arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0, h)
    return arr, np.asarray(scores, np.float32), masks


class ProposalSegmenter(ImageHolder):
    """See the module docstring. Options are the fields of :class:`ProposalConfig`."""

    name = "proposals"

    def __init__(self, config: ProposalConfig | None = None, **options: object) -> None:
        self.config = config or ProposalConfig(**options)  # type: ignore[arg-type]
        self._regions: Regions | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Compute and cache the pruned candidates of an RGB ``uint8`` ``(h, w, 3)`` image."""
        self._image = image
        self._regions = None

    def regions(self) -> Regions:
        """The candidates, best score first (an image smaller than 8 px on a side gives none)."""
        image = self._require_image()
        if self._regions is None:
            self._regions = self._compute(image)
        return self._regions

    def _compute(self, image: np.ndarray) -> Regions:
        cfg = self.config
        h, w = image.shape[:2]
        if min(h, w) < 8:
            return Regions.empty(h, w, cfg.masks)
        gray = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        boxes = sliding_windows(h, w, cfg.scales, cfg.stride)
        scores = window_contrast(gray, boxes)
        small: list[np.ndarray | None] = [None] * len(boxes)
        if cfg.components:
            cb, cs, cm = colour_segments(image, cfg.levels, cfg.min_area, cfg.max_area)
            boxes, scores = np.concatenate([boxes, cb]), np.concatenate([scores, cs])
            small += cm
        keep = nms(boxes, scores, cfg.nms_iou)[: cfg.max_regions]
        masks = None
        if cfg.masks:
            masks = np.stack([_full_mask(small[i], boxes[i], h, w) for i in keep]) if len(keep) else None
            masks = masks if masks is not None else np.zeros((0, h, w), bool)
        return Regions(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), masks)


def _full_mask(small: np.ndarray | None, box: np.ndarray, h: int, w: int) -> np.ndarray:
    if small is None:
        return box_to_mask(box, h, w)
    up = Image.fromarray(small.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)
    return np.asarray(up) > 127
