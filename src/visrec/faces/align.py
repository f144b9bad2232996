"""Face alignment: a similarity transform from 5 landmarks to a canonical template, and the warp.

Pure numpy + PIL (no model, no OpenCV). Points are ``(x, y)`` pixels; images are RGB ``uint8``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from visrec.errors import BadInput

# ArcFace-style 5-point template for a 112x112 crop: left eye, right eye, nose tip, left and right mouth corner
# (left/right as seen in the image).
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking ``src`` to ``dst``.

    ``src``, ``dst``: ``(n, 2)`` float points, n >= 2, not all equal. Returns a ``(2, 3)`` float64 matrix ``M``
    with ``dst ~= src @ M[:, :2].T + M[:, 2]`` (Umeyama 1991, no reflection).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise BadInput(f"umeyama needs two (n, 2) point arrays with n >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s <= 1e-12:
        raise BadInput("umeyama: the source points are all the same; cannot estimate a transform")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / var_s)
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(n, 2)`` points mapped by a ``(2, 3)`` affine matrix."""
    pts = np.asarray(points, np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Crop ``image`` (RGB uint8 ``(h, w, 3)``) to a ``(size, size, 3)`` face in canonical pose.

    ``landmarks``: ``(5, 2)`` pixels in the order of :data:`TEMPLATE_112` (eyes, nose, mouth corners).
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2):
        raise BadInput(f"align_face needs (5, 2) landmarks (eyes, nose, mouth corners), got shape {lm.shape}")
    return warp_to_template(image, lm, TEMPLATE_112 * (size / 112.0), size)


def warp_to_template(image: np.ndarray, points: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """Crop ``image`` (RGB uint8 ``(h, w, 3)``) to ``(size, size, 3)`` so that ``points`` land on ``template``.

    ``points`` and ``template``: ``(n, 2)`` pixels in the same order (``template`` in the output crop's pixels);
    the map is the least-squares similarity transform (:func:`umeyama`), sampled bilinearly.
    """
    matrix = umeyama(points, template)
    # PIL wants the inverse map: output pixel -> input pixel.
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    im = Image.fromarray(np.ascontiguousarray(image))
    warped = im.transform((size, size), Image.Transform.AFFINE, tuple(inv.ravel()), Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.uint8)
