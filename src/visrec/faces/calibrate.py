"""Threshold calibration for verification from labeled pairs: ROC, AUC, EER, TAR at a FAR, Platt probability.

Distances: lower means "same person" (cosine distance ``1 - cos`` or Euclidean). A pair is accepted as the same
person when ``distance <= threshold``. Everything here is pure numpy and stored as JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.errors import BadInput, NotCalibrated

if TYPE_CHECKING:
    from visrec.faces.openset import OpenSetCalibration

SCHEMA = 1


def _check(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, np.float64).ravel()
    s = np.asarray(same).astype(bool).ravel()
    if d.shape != s.shape:
        raise BadInput(f"distances ({d.shape[0]}) and same-labels ({s.shape[0]}) must have one entry per pair")
    if not np.isfinite(d).all():
        raise BadInput("distances contain NaN or inf; check the embeddings")
    if s.all() or not s.any():
        raise BadInput(f"need both same and different pairs to calibrate; got {int(s.sum())} same of {len(s)}")
    return d, s


def roc(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of the rule ``distance <= t``: ``(far, tar, thresholds)``, float64, one point per distinct distance.

    The first point is ``(0, 0)`` at ``t = -inf``; ``far`` and ``tar`` rise with ``t``.
    """
    d, s = _check(distances, same)
    order = np.argsort(d, kind="mergesort")
    d, s = d[order], s[order]
    last = np.r_[np.nonzero(np.diff(d))[0], len(d) - 1]  # last index of each distinct distance
    tar = np.cumsum(s)[last] / s.sum()
    far = np.cumsum(~s)[last] / (~s).sum()
    return np.r_[0.0, far], np.r_[0.0, tar], np.r_[-np.inf, d[last]]


def auc(distances: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC (probability a random same pair is closer than a random different pair; ties 1/2)."""
    far, tar, _ = roc(distances, same)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def eer(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: ``(eer, threshold)`` where FAR is closest to FRR = 1 - TAR."""
    far, tar, thr = roc(distances, same)
    frr = 1.0 - tar
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2.0), _midway(thr, i)


def _midway(thr: np.ndarray, i: int) -> float:
    """A threshold accepting exactly the ROC point ``i``'s pairs, midway between its distance and the next one.

    ``thr`` are the ROC's thresholds (``-inf`` first, then every distinct distance). Sitting between neighbouring
    distances, never on one, a distance recomputed a rounding error higher is decided the same way.
    """
    d = thr[1:]
    margin = max(1e-6, 1e-3 * float(np.abs(d).max()))
    if i + 1 >= len(thr):
        return float(thr[i] + margin)
    if not np.isfinite(thr[i]):  # nothing accepted: below the smallest distance
        return float(thr[i + 1] - margin)
    return float((thr[i] + thr[i + 1]) / 2.0)


def threshold_for_far(distances: np.ndarray, same: np.ndarray, target_far: float) -> tuple[float, float]:
    """The largest threshold whose FAR is <= ``target_far``, and the TAR there: ``(threshold, tar)``.

    The threshold lies midway between the last accepted distance and the next one. With too few different pairs to
    resolve ``target_far`` it is the strictest one (below every different pair's distance).
    """
    if not 0.0 <= target_far <= 1.0:
        raise BadInput(f"target FAR must be within [0, 1], got {target_far}")
    far, tar, thr = roc(distances, same)
    i = int(np.nonzero(far <= target_far)[0][-1])
    return _midway(thr, i), float(tar[i])


def best_accuracy(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest pair accuracy: ``(accuracy, threshold)`` (midpoint between distances)."""
    d, s = _check(distances, same)
    cand = np.unique(d)
    mids = np.r_[cand[0] - 1e-6, (cand[1:] + cand[:-1]) / 2.0, cand[-1] + 1e-6]
    acc = ((d[None, :] <= mids[:, None]) == s[None, :]).mean(1)
    i = int(np.argmax(acc))
    return float(acc[i]), float(mids[i])


def fit_platt(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Logistic fit ``P(same) = 1 / (1 + exp(a * d + b))`` by Newton steps; returns ``(a, b)``."""
    d, s = _check(distances, same)
    y = s.astype(np.float64)
    scale = max(float(d.std()), 1e-6)
    x = np.c_[(d - d.mean()) / scale, np.ones_like(d)]
    w = np.zeros(2)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + 1e-3 * w  # tiny ridge keeps a separable set finite
        hess = x.T @ (x * (p * (1 - p))[:, None]) + 1e-3 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    a = -w[0] / scale
    return float(a), float(-(w[1] - w[0] * d.mean() / scale))


@dataclass(frozen=True)
class Calibration:
    """A calibrated verification rule, stored as JSON (``to_dict`` / ``from_dict``).

    ``threshold`` decides whether two photos show the same person (bounds false accepts per pair at
    ``target_far``). ``identification``, when present, is the rule for naming a face against a whole index
    (bounds the share of strangers named at all); :attr:`identify_threshold` picks it.
    """

    metric: str
    threshold: float
    target_far: float
    tar_at_threshold: float
    auc: float
    eer: float
    eer_threshold: float
    accuracy: float
    accuracy_threshold: float
    platt: tuple[float, float]
    n_same: int
    n_different: int
    tar_at_far: dict[str, float] = field(default_factory=dict)
    schema: int = SCHEMA
    identification: OpenSetCalibration | None = None

    @property
    def identify_threshold(self) -> float:
        """The distance up to which identification names the nearest person (open-set rule when calibrated)."""
        return self.identification.threshold if self.identification is not None else self.threshold

    def probability(self, distance: float | np.ndarray) -> np.ndarray:
        """Calibrated P(same person) for distances (float64 array of the same shape)."""
        a, b = self.platt
        z = np.clip(a * np.asarray(distance, np.float64) + b, -500, 500)
        return 1.0 / (1.0 + np.exp(z))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["platt"] = list(self.platt)
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; raises ``NotCalibrated`` for another schema or missing keys."""
        if data.get("schema") != SCHEMA:
            raise NotCalibrated(f"calibration schema {data.get('schema')!r} is not {SCHEMA}; recalibrate")
        from visrec.faces.openset import OpenSetCalibration

        ident = data.get("identification")
        try:
            ident = OpenSetCalibration.from_dict(ident) if ident is not None else None
            return Calibration(**{**data, "platt": tuple(data["platt"]), "identification": ident})
        except (KeyError, TypeError) as e:
            raise NotCalibrated(f"calibration file is incomplete ({e}); recalibrate") from None

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @staticmethod
    def load(path: str | Path) -> Calibration:
        """Read a file written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise NotCalibrated(f"{p}: no calibration; run `visrec faces index` on labeled faces first")
        return Calibration.from_dict(json.loads(p.read_text()))


def calibrate(distances: np.ndarray, same: np.ndarray, target_far: float = 1e-2, metric: str = "cosine") -> Calibration:
    """Calibrate from labeled pair distances; the decision threshold is the one for ``target_far``."""
    d, s = _check(distances, same)
    thr, tar = threshold_for_far(d, s, target_far)
    e, e_thr = eer(d, s)
    acc, acc_thr = best_accuracy(d, s)
    tars = {f"{f:g}": threshold_for_far(d, s, f)[1] for f in (1e-1, 1e-2, 1e-3)}
    return Calibration(
        metric=metric, threshold=thr, target_far=target_far, tar_at_threshold=tar, auc=auc(d, s), eer=e,
        eer_threshold=e_thr, accuracy=acc, accuracy_threshold=acc_thr, platt=fit_platt(d, s),
        n_same=int(s.sum()), n_different=int((~s).sum()), tar_at_far=tars,
    )  # fmt: skip


def pair_distances(vectors: np.ndarray, labels: list[str], metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` of ``(n, d)`` vectors: ``(distances (m,), same (m,) bool)``."""
    v = np.asarray(vectors, np.float64)
    if len(v) != len(labels):
        raise BadInput(f"{len(v)} vectors but {len(labels)} labels")
    iu = np.triu_indices(len(v), k=1)
    dist = distance_matrix(v, v, metric)[iu]
    lab = np.asarray(labels, dtype=object)
    return dist, lab[iu[0]] == lab[iu[1]]


def distance_matrix(a: np.ndarray, b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """``(n, m)`` float64 distances between rows: ``cosine`` (1 - cos) or ``euclidean``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return 1.0 - an @ bn.T
    if metric == "euclidean":
        sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
        return np.sqrt(np.maximum(sq, 0.0))
    raise BadInput(f"unknown metric {metric!r}; use cosine or euclidean")


__all__ = [
    "Calibration", "auc", "best_accuracy", "calibrate", "distance_matrix", "eer", "fit_platt",
    "pair_distances", "roc", "threshold_for_far",
]  # fmt: skip
