"""Boundary boxes: class-agnostic boxes of the closed outlines in an image, for many small objects.

An object on a background (a pasted picture, a cell on a slide, a sticker on a wall) is usually bounded by an
outline of strong edges. The edges are found with Canny's method on the colour image (Gaussian smoothing, Sobel
gradients of the strongest channel, thin ridges by non-maximum suppression, hysteresis between two
thresholds), once as found and once dilated by one pixel so that small gaps in an outline close. Every
connected group of edge pixels gives the box around it; every group of non-edge pixels enclosed by edges (not
touching the image border) gives the box of what it encloses. Boxes outside a size range (the longer side as a
share of the image's short side), too elongated, or near-duplicates of a kept box are dropped. An extra, smoother
edge map (``EdgeBoxConfig.smooth``, off by default) closes outlines across the fine edges inside an object.

Unlike square sliding windows, these boxes follow the objects' own extents, so a box reaches IoU >= 0.5 with
an object of any size and aspect without a search over positions. They cost 0.1-0.5 s per 640x480 image on a
loaded 2-core CPU (numpy and scipy only) and come unscored: the ``gallery`` segmenter embeds them and keeps
those that look like the index's images. On busy photos many outlines are background; the count kept is
bounded (``max_boxes``, most contrasted first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from visrec.errors import BadInput
from visrec.segment.masks import box_area, nms
from visrec.segment.proposals import window_contrast

# (dy, dx) of the neighbour along the gradient for directions 0, 45, 90 and 135 degrees
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))


@dataclass(frozen=True)
class EdgeBoxConfig:
    """``thresholds``: Canny (low, high) pairs on the 0-255 gray scale's L1 Sobel gradient, one edge map each;
    ``smooth``: one more edge map, ``(sigma, low, high)`` at a larger Gaussian smoothing (e.g. ``(2.0, 30.0,
    90.0)``), whose outlines skip the fine edges inside an object; off by default, since on textured objects its
    outlines of texture blobs outscore the whole object (docs/scene.md); ``dilate``: also use each map dilated
    by one pixel (closes gaps in outlines); ``min_side`` / ``max_side``: the range of a box's longer side as a
    share of the image's short side; ``min_aspect``: the least shorter / longer side; ``dedupe_iou``: of two
    boxes overlapping more than this, one is kept; ``max_boxes``: the most boxes returned (highest gray-level
    contrast first)."""

    thresholds: tuple[tuple[float, float], ...] = ((50.0, 150.0), (80.0, 200.0))
    smooth: tuple[float, float, float] | None = None
    dilate: bool = True
    min_side: float = 1 / 16
    max_side: float = 0.6
    min_aspect: float = 0.3
    dedupe_iou: float = 0.8
    max_boxes: int = 128

    def __post_init__(self) -> None:
        if not self.thresholds or any(not 0 <= lo <= hi for lo, hi in self.thresholds):
            raise BadInput(f"thresholds must be (low, high) pairs with 0 <= low <= high, got {self.thresholds}")
        if self.smooth is not None and not (self.smooth[0] > 0 and 0 <= self.smooth[1] <= self.smooth[2]):
            raise BadInput(f"smooth must be (sigma > 0, low, high) with 0 <= low <= high, got {self.smooth}")
        if not 0.0 < self.min_side <= self.max_side or not 0.0 <= self.min_aspect <= 1.0 or self.max_boxes < 1:
            raise BadInput(
                "need 0 < min_side <= max_side, min_aspect in [0, 1] and max_boxes >= 1; got "
                f"{self.min_side}, {self.max_side}, {self.min_aspect}, {self.max_boxes}"
            )


def canny(image: np.ndarray, low: float, high: float, sigma: float = 0.8) -> np.ndarray:
    """Canny edges of a gray ``(h, w)`` or colour ``(h, w, c)`` image (0-255 scale): a bool ``(h, w)`` map of thin
    edge ridges whose L1 Sobel gradient is >= ``high``, or >= ``low`` and connected to such a pixel. In colour,
    each pixel takes the gradient of the channel where it is strongest, so an outline between two colours of
    equal brightness is still found."""
    img = image.astype(np.float32)
    img = img[..., None] if img.ndim == 2 else img
    g = ndimage.gaussian_filter(img, (sigma, sigma, 0))
    # per channel: a 3-D Sobel would also smooth across the channels
    gxs = np.stack([ndimage.sobel(g[..., c], 1) for c in range(g.shape[2])], axis=2)
    gys = np.stack([ndimage.sobel(g[..., c], 0) for c in range(g.shape[2])], axis=2)
    mags = np.abs(gxs) + np.abs(gys)
    pick = np.argmax(mags, axis=2)[..., None]
    gx, gy = np.take_along_axis(gxs, pick, 2)[..., 0], np.take_along_axis(gys, pick, 2)[..., 0]
    mag = np.take_along_axis(mags, pick, 2)[..., 0]
    direction = np.round(np.rad2deg(np.arctan2(gy, gx)) % 180 / 45).astype(np.int64) % 4
    h, w = mag.shape
    pad = np.pad(mag, 1)
    ridge = np.zeros((h, w), bool)
    for k, (dy, dx) in enumerate(_DIRECTIONS):
        ahead = pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        behind = pad[1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        ridge |= (direction == k) & (mag >= ahead) & (mag >= behind)
    weak = ridge & (mag >= low)
    labels, _n = ndimage.label(weak, np.ones((3, 3)))
    strong = np.unique(labels[weak & (mag >= high)])
    return np.isin(labels, strong[strong > 0])


def _component_boxes(mask: np.ndarray, structure: np.ndarray | None, inner: bool) -> list[tuple[int, ...]]:
    """Boxes (x0, y0, x1, y1) of the connected components of ``mask``; with ``inner``, only those not touching
    the border (regions enclosed by edges)."""
    labels, _n = ndimage.label(mask, structure)
    h, w = mask.shape
    out: list[tuple[int, ...]] = []
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        ys, xs = sl
        if inner and (ys.start == 0 or xs.start == 0 or ys.stop == h or xs.stop == w):
            continue
        out.append((xs.start, ys.start, xs.stop, ys.stop))
    return out


def edge_maps(image: np.ndarray, config: EdgeBoxConfig | None = None) -> list[np.ndarray]:
    """The Canny edge maps boundary boxes come from, bool ``(h, w)`` each: one per ``config.thresholds`` pair
    (sigma 0.8), then the ``smooth`` one when set."""
    cfg = config or EdgeBoxConfig()
    settings = [(0.8, low, high) for low, high in cfg.thresholds] + ([cfg.smooth] if cfg.smooth else [])
    return [canny(image[..., :3], low, high, sigma) for sigma, low, high in settings]


def edge_boxes(
    image: np.ndarray, config: EdgeBoxConfig | None = None, maps: list[np.ndarray] | None = None
) -> np.ndarray:
    """Boundary boxes of an RGB ``uint8`` ``(h, w, 3)`` image: ``(n, 4)`` float32 xyxy pixels, most contrasted
    first, at most ``config.max_boxes`` (see the module docstring). ``maps``: its :func:`edge_maps`, when the
    caller has them already."""
    cfg = config or EdgeBoxConfig()
    h, w = image.shape[:2]
    if min(h, w) < 8:
        return np.zeros((0, 4), np.float32)
    gray = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    boxes: list[tuple[int, ...]] = []
    for edges in edge_maps(image, cfg) if maps is None else maps:
        variants = [edges, ndimage.binary_dilation(edges)] if cfg.dilate else [edges]
        for m in variants:
            boxes += _component_boxes(m, np.ones((3, 3)), inner=False)
            boxes += _component_boxes(~m, None, inner=True)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    short = min(h, w)
    longer = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    shorter = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    ok = (longer >= cfg.min_side * short) & (longer <= cfg.max_side * short) & (shorter >= cfg.min_aspect * longer)
    b = b[ok]
    if len(b) == 0:
        return b
    b = b[nms(b, box_area(b).astype(np.float32), cfg.dedupe_iou)]
    contrast = window_contrast(gray, b)
    return b[np.argsort(-contrast, kind="stable")[: cfg.max_boxes]]
