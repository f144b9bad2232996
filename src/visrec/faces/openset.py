"""Open-set identification calibration: how often a stranger is named at all (FPIR) and a known person missed (FNIR).

Identification compares a probe with every face of the index and names the nearest person when that distance is
at most the threshold. A per-pair false-accept rate does not bound how often a stranger gets a name: with ``n``
gallery faces a stranger has ``n`` chances. So the identification threshold is fitted on the index itself by
leaving identities out: each photo of person ``p`` is a stranger to the index without ``p`` (its distance to the
nearest face of another person), and a mated search against the index without that photo (its nearest face; a hit
when it is the right person). ``FPIR(t)``: share of strangers whose nearest face is within ``t``;
``FNIR(t)``: share of mated searches not named correctly within ``t``. Pure numpy; stored as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.faces.calibrate import distance_matrix

DEFAULT_FPIR = 1e-2
CHUNK = 1024  # probe rows per distance block: memory stays (CHUNK, n) float64


@dataclass(frozen=True)
class OpenSetScores:
    """Leave-identities-out searches of an index against itself (float64 distances).

    ``stranger``: ``(n,)`` distance of each face to the nearest face of another person. ``mated``: ``(m,)``
    distance of each face (of people with >= 2 faces) to its nearest other face; ``hit``: ``(m,)`` bool, that face
    is the same person.
    """

    stranger: np.ndarray
    mated: np.ndarray
    hit: np.ndarray


def open_set_scores(vectors: np.ndarray, labels: list[str], metric: str = "cosine") -> OpenSetScores:
    """Stranger and mated search distances of ``(n, d)`` labeled vectors (see :class:`OpenSetScores`)."""
    v = np.asarray(vectors, np.float64)
    lab = np.asarray(labels, dtype=object)
    if v.ndim != 2 or len(v) != len(lab):
        raise BadInput(f"need (n, d) vectors and one label each; got {v.shape} and {len(lab)} labels")
    if len(set(labels)) < 2:
        raise BadInput(f"open-set calibration needs at least 2 people, got {len(set(labels))}")
    stranger, mated, hit = np.empty(len(v)), [], []
    for lo in range(0, len(v), CHUNK):
        d = distance_matrix(v[lo : lo + CHUNK], v, metric)
        own = lab[lo : lo + CHUNK, None] == lab[None, :]
        stranger[lo : lo + CHUNK] = np.where(own, np.inf, d).min(1)
        rows = np.arange(len(d))
        d[rows, lo + rows] = np.inf  # a photo never finds itself
        has_twin = own.sum(1) > 1
        j = d.argmin(1)
        mated.append(d[rows, j][has_twin])
        hit.append((lab[j] == lab[lo : lo + CHUNK])[has_twin])
    return OpenSetScores(stranger, np.concatenate(mated), np.concatenate(hit).astype(bool))


def between(lo: float, hi: float) -> float:
    """A threshold strictly between two neighbouring distances: their midpoint (a tie never sits on a boundary)."""
    return float((lo + hi) / 2.0)


def threshold_for_fpir(scores: OpenSetScores, target_fpir: float) -> float:
    """The largest threshold naming at most ``target_fpir`` of the strangers, midway between neighbouring scores.

    With fewer strangers than ``1 / target_fpir`` that is below the nearest stranger (no stranger named).
    """
    if not 0.0 <= target_fpir < 1.0:
        raise BadInput(f"target FPIR must be within [0, 1), got {target_fpir}")
    s = np.sort(scores.stranger)
    allowed = int(np.floor(target_fpir * len(s) + 1e-9))  # strangers that may be named
    upper = s[allowed]  # the first stranger that must stay unknown
    below = np.r_[s[:allowed], scores.mated]
    below = below[below < upper]
    lower = float(below.max()) if len(below) else upper - max(1e-6, 1e-3 * abs(upper))
    return between(lower, float(upper))


@dataclass(frozen=True)
class OpenSetCalibration:
    """The identification rule of a face index: name the nearest person when its distance <= ``threshold``.

    ``fpir``: share of strangers (photos of people left out of the index) named at that threshold, measured by
    leaving identities out; ``fnir``: share of the index's own photos (searched without themselves) not named
    correctly; ``strangers`` / ``mated``: how many searches each rate rests on; ``resolution``: the smallest FPIR
    those strangers can show (``1 / strangers``).
    """

    target_fpir: float
    threshold: float
    fpir: float
    fnir: float
    strangers: int
    mated: int
    people: int
    resolution: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> OpenSetCalibration:
        """Inverse of :meth:`to_dict`."""
        return OpenSetCalibration(**data)


def calibrate_open_set(
    vectors: np.ndarray, labels: list[str], target_fpir: float = DEFAULT_FPIR, metric: str = "cosine"
) -> OpenSetCalibration:
    """Fit the identification threshold of ``(n, d)`` labeled vectors for ``target_fpir`` (leave-identities-out)."""
    scores = open_set_scores(vectors, labels, metric)
    thr = threshold_for_fpir(scores, target_fpir)
    named = scores.hit & (scores.mated <= thr)
    return OpenSetCalibration(
        target_fpir=target_fpir, threshold=thr, fpir=float((scores.stranger <= thr).mean()),
        fnir=float(1.0 - named.mean()) if len(named) else 1.0, strangers=len(scores.stranger),
        mated=len(scores.mated), people=len(set(labels)), resolution=1.0 / len(scores.stranger),
    )  # fmt: skip


__all__ = ["DEFAULT_FPIR", "OpenSetCalibration", "OpenSetScores", "between", "calibrate_open_set",
           "open_set_scores", "threshold_for_fpir"]  # fmt: skip
