"""Pure SSD helpers for BlazeFace-style detectors: anchors, box decoding, letterboxing, weighted NMS.

No model and no runtime here, so every step is tested with synthetic tensors. Coordinates are normalised to the
square model input (``0..1``) until :func:`unletterbox` maps them back to image pixels; boxes are ``xyxy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from visrec.errors import BadInput


@dataclass(frozen=True)
class AnchorSpec:
    """MediaPipe's ``SsdAnchorsCalculator`` options for one model (fixed anchor size, aspect ratio 1).

    ``strides``: one entry per layer; consecutive layers with the same stride share a grid. ``interpolated``:
    whether each layer adds a second anchor (MediaPipe's ``interpolated_scale_aspect_ratio: 1.0``).
    """

    input_size: int
    strides: tuple[int, ...]
    interpolated: bool
    scale: float  # the raw regressors are in input pixels: divide by this to get anchor units


FULL_RANGE = AnchorSpec(input_size=192, strides=(4,), interpolated=False, scale=192.0)
SHORT_RANGE = AnchorSpec(input_size=128, strides=(8, 16, 16, 16), interpolated=True, scale=128.0)


def anchors(spec: AnchorSpec) -> np.ndarray:
    """``(n, 2)`` float32 anchor centres ``(x, y)`` in ``0..1``, in the order the model emits its boxes."""
    out: list[np.ndarray] = []
    i = 0
    while i < len(spec.strides):
        stride, per_cell = spec.strides[i], 0
        while i < len(spec.strides) and spec.strides[i] == stride:
            per_cell += 2 if spec.interpolated else 1
            i += 1
        side = int(np.ceil(spec.input_size / stride))
        ys, xs = np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode(
    regressors: np.ndarray, logits: np.ndarray, centres: np.ndarray, scale: float, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode raw outputs: ``regressors (n, 4 + 2k)``, ``logits (n,)`` or ``(n, 1)``, ``centres (n, 2)``.

    Returns the boxes scoring at least ``min_score``: ``xyxy (m, 4)``, ``keypoints (m, k, 2)`` (normalised) and
    ``scores (m,)`` (sigmoid of the logits clipped to +-100, as MediaPipe does).
    """
    reg = np.asarray(regressors, np.float32)
    if reg.ndim != 2 or reg.shape[0] != len(centres) or reg.shape[1] < 4 or reg.shape[1] % 2:
        raise BadInput(f"regressors must be ({len(centres)}, 4 + 2k), got {reg.shape}")
    z = np.clip(np.asarray(logits, np.float64).reshape(-1), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-z))
    keep = np.nonzero(scores >= min_score)[0]
    reg, c = reg[keep] / scale, centres[keep]
    cx, cy = reg[:, 0] + c[:, 0], reg[:, 1] + c[:, 1]
    half_w, half_h = reg[:, 2] / 2.0, reg[:, 3] / 2.0
    xyxy = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    points = reg[:, 4:].reshape(len(keep), (reg.shape[1] - 4) // 2, 2) + c[:, None, :]
    return xyxy.astype(np.float32), points.astype(np.float32), scores[keep].astype(np.float32)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``xyxy`` box with ``(n, 4)`` boxes: ``(n,)`` float32."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return (inter / np.maximum(area + areas - inter, 1e-12)).astype(np.float32)


def weighted_nms(
    xyxy: np.ndarray, points: np.ndarray, scores: np.ndarray, threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: each kept face is the score-weighted mean of the boxes (and
    keypoints) overlapping the best remaining one by more than ``threshold`` IoU; its score is the best one's.
    """
    order = np.argsort(-scores, kind="stable")
    boxes_out, points_out, scores_out = [], [], []
    while len(order):
        overlap = iou(xyxy[order[0]], xyxy[order])
        group = order[overlap > threshold]
        w = scores[group][:, None]
        boxes_out.append((xyxy[group] * w).sum(0) / w.sum())
        points_out.append((points[group] * w[:, :, None]).sum(0) / w.sum())
        scores_out.append(scores[order[0]])
        order = order[overlap <= threshold]
    k = points.shape[1] if points.ndim == 3 else 0
    if not boxes_out:
        return np.zeros((0, 4), np.float32), np.zeros((0, k, 2), np.float32), np.zeros((0,), np.float32)
    return np.array(boxes_out, np.float32), np.array(points_out, np.float32), np.array(scores_out, np.float32)


@dataclass(frozen=True)
class Letterbox:
    """Where an image sits inside the square model input: scale (input px per image px) and padding (input px)."""

    scale: float
    pad_x: float
    pad_y: float
    size: int


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The RGB uint8 image fitted (aspect kept) and centred in a ``(size, size, 3)`` float32 tensor in ``[-1, 1]``
    padded with zeros, and the :class:`Letterbox` that maps boxes back."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR), np.float32)
    out = np.zeros((size, size, 3), np.float32)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py : py + nh, px : px + nw] = small / 127.5 - 1.0
    return out, Letterbox(s, float(px), float(py), size)


def unletterbox(points: np.ndarray, box: Letterbox) -> np.ndarray:
    """Normalised input coordinates ``(..., 2)`` (``(x, y)`` pairs) to image pixels."""
    p = np.asarray(points, np.float32) * box.size
    return ((p - np.array([box.pad_x, box.pad_y], np.float32)) / box.scale).astype(np.float32)


def tiles(height: int, width: int, tile: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """Square ``(x0, y0, x1, y1)`` windows of side ``tile`` covering the image with ``overlap`` between neighbours
    (one window, the whole image, when it already fits)."""
    if tile <= 0 or not 0.0 <= overlap < 1.0:
        raise BadInput(f"tile must be > 0 and overlap within [0, 1), got {tile} and {overlap}")

    def starts(n: int) -> Sequence[int]:
        if n <= tile:
            return [0]
        step = max(1, int(tile * (1.0 - overlap)))
        return sorted({*range(0, n - tile, step), n - tile})

    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in starts(height) for x in starts(width)]
