"""Score-level fusion: the face embedder's similarity and a general image encoder's similarity on the face crop,
combined by a logistic regression learned on labeled same/different pairs.

``P(same) = sigmoid(w . (s - mean) / std + b)`` over the score columns ``s`` (cosine similarities, higher =
more alike). Pure numpy; stored as JSON. :func:`face_crops` makes the crops a general encoder sees.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput, NotCalibrated
from visrec.faces.base import Faces

SCHEMA = 1


def _check_scores(scores: np.ndarray, n_features: int | None = None) -> np.ndarray:
    s = np.asarray(scores, np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or (n_features is not None and s.shape[1] != n_features):
        want = f"(n, {n_features})" if n_features else "(n, f)"
        raise BadInput(f"fusion scores must be {want}, one column per scorer; got shape {np.shape(scores)}")
    if not np.isfinite(s).all():
        raise BadInput("fusion scores contain NaN or inf; check the embeddings")
    return s


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, steps: int = 100) -> np.ndarray:
    """Weights ``(f + 1,)`` (last = bias) of a ridge-regularised logistic regression by Newton steps.

    ``x``: ``(n, f)`` standardised features; ``y``: ``(n,)`` 0/1. The ridge keeps separable data finite.
    """
    xb = np.c_[x, np.ones(len(x))]
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -500, 500)))
        grad = xb.T @ (p - y) + ridge * w
        hess = xb.T @ (xb * (p * (1 - p))[:, None]) + ridge * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


@dataclass(frozen=True)
class ScoreFusion:
    """A learned fusion of similarity scores; ``names`` says which scorer each column is."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_same: int
    n_different: int
    schema: int = SCHEMA

    def logit(self, scores: np.ndarray) -> np.ndarray:
        """``(n,)`` float64 fused log-odds of "same" for ``(n, f)`` similarity columns in ``names`` order."""
        s = _check_scores(scores, len(self.names))
        z = (s - np.array(self.mean)) / np.array(self.std)
        return z @ np.array(self.weights) + self.bias

    def probability(self, scores: np.ndarray) -> np.ndarray:
        """``(n,)`` float64 calibrated P(same person)."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(scores), -500, 500)))

    def distance(self, scores: np.ndarray) -> np.ndarray:
        """``1 - P(same)``: a distance (lower = same) usable with :func:`visrec.faces.calibrate`."""
        return 1.0 - self.probability(scores)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ScoreFusion:
        """Inverse of :meth:`to_dict`; raises ``NotCalibrated`` for another schema or missing keys."""
        if data.get("schema") != SCHEMA:
            raise NotCalibrated(f"fusion schema {data.get('schema')!r} is not {SCHEMA}; refit the fusion")
        try:
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            return ScoreFusion(**fields)
        except TypeError as e:
            raise NotCalibrated(f"fusion file is incomplete ({e}); refit the fusion") from None

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @staticmethod
    def load(path: str | Path) -> ScoreFusion:
        """Read a file written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise NotCalibrated(f"{p}: no fusion file; fit one with visrec.faces.fusion.fit_fusion on labeled pairs")
        return ScoreFusion.from_dict(json.loads(p.read_text()))


def fit_fusion(scores: np.ndarray, same: np.ndarray, names: Sequence[str]) -> ScoreFusion:
    """Learn the fusion from labeled pairs: ``scores (n, f)`` similarities (higher = alike), ``same (n,)`` bool."""
    s = _check_scores(scores, len(names))
    y = np.asarray(same).astype(bool).ravel()
    if len(y) != len(s):
        raise BadInput(f"{len(s)} score rows but {len(y)} same/different labels")
    if y.all() or not y.any():
        raise BadInput(f"need both same and different pairs to fit a fusion; got {int(y.sum())} same of {len(y)}")
    mean, std = s.mean(0), np.maximum(s.std(0), 1e-6)
    w = fit_logistic((s - mean) / std, y.astype(np.float64))
    return ScoreFusion(
        tuple(names), tuple(float(v) for v in w[:-1]), float(w[-1]), tuple(float(v) for v in mean),
        tuple(float(v) for v in std), int(y.sum()), int((~y).sum()),
    )  # fmt: skip


def face_crops(image: np.ndarray, faces: Faces, margin: float = 0.2) -> list[np.ndarray]:
    """Square RGB uint8 crops around each face box, enlarged by ``margin`` of its side on every side and clipped
    to the image (what a general image encoder is given)."""
    h, w = image.shape[:2]
    out = []
    for x0, y0, x1, y1 in faces.xyxy.astype(np.float64):
        side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        a0, b0 = int(max(0, round(cx - side / 2))), int(max(0, round(cy - side / 2)))
        a1, b1 = int(min(w, round(cx + side / 2))), int(min(h, round(cy + side / 2)))
        if a1 <= a0 or b1 <= b0:
            raise BadInput(f"face box {[x0, y0, x1, y1]} lies outside the {w}x{h} image")
        out.append(np.ascontiguousarray(image[b0:b1, a0:a1]))
    return out
