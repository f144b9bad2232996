"""Which of a label's overlapping boxes is the object's box: a box-quality score learnt on generated scenes.

Several named boxes often lie on one object: its whole box, a part of it (a face inside a character's picture), a
box on it and a neighbour of the same label, a window shifted off it. The scene keeps one of them per object
(per-label NMS in :func:`visrec.segment.overlaps.resolve_overlaps`), so the order in which they are considered
decides whether the object is found. Neither the confidence (saturated near 1 for all of them) nor the raw score
(higher for the part in some scenes, for the box on two objects in others) orders them well, nor does the region
tier (a boundary box is often a part); measured in docs/scene.md (the tenth and eleventh looks).

:func:`box_quality` gives each named box P(it is an object's box at IoU >= 0.5 | its features), a logistic model
over features that compare the box with the same-label boxes overlapping it in the scene: its tier, its
confidence, how far its confidence and raw score are below the best of those boxes, how many there are, whether one
of them is nested with it (one inside the other) and how far the best raw score of those is above its own, its area
against the median same-label box of the scene, and its elongation. Every raw-score feature is a difference within
one scene of one index, and the confidence is the index's calibrated probability, so one model serves indexes whose
raw scores run on different scales. The coefficients were fitted by ``benchmarks/box_quality_fit.py`` on generated
scenes of seeds 1 and 3 (naruto scenes of 1-5 objects and crowded ones, Caltech-101 and CIFAR-10 crowded ones), and
checked on seed 4 and on realistic generated scenes before seed 2 was measured once.
"""

from __future__ import annotations

import numpy as np

from visrec.segment.masks import box_area, box_ioa, box_iou

FEATURES = (
    "boundary box",
    "completed-from box",
    "window",
    "confidence",
    "confidence below the best overlapping",
    "raw score below the best overlapping",
    "log(1 + overlapping boxes)",
    "nested with an overlapping box (either inside the other)",
    "raw score below the best box nested with it",
    "log area / median same-label area",
    "|log width / height|",
)
"""The features of a named box, in the order of :data:`COEF` (same-label boxes overlapping it: IoU > 0.1, or
90 % of either inside the other)."""

# Fitted by ``python benchmarks/box_quality_fit.py --fit`` on 2316 named boxes of generated scenes (seeds 1 and 3;
# 49.3% of them an object's box; docs/scene.md): feature means and standard deviations, then the standardised
# logistic regression's weights and intercept.
MEAN = np.array(
    [0.746114, 0.103627, 0.150259, 0.855946, 0.072909, 0.051914, 1.496088, 0.772884, 0.029568, -0.037013, 0.143090]
)
SCALE = np.array(
    [0.435233, 0.304776, 0.357325, 0.121561, 0.119670, 0.089820, 0.759085, 0.418968, 0.087372, 0.743258, 0.204345]
)
COEF = np.array(
    [0.145778, 0.220305, -0.365468, 1.088356, 0.207207, -0.582533, -0.442442, 0.416732, 0.237636, 0.256270, -0.044429]
)
INTERCEPT = -0.084232


def box_features(
    boxes: np.ndarray, labels: list[str], confidence: np.ndarray, tiers: np.ndarray, raw: np.ndarray
) -> np.ndarray:
    """``(n, len(FEATURES))`` float64 features of ``n`` named boxes of one scene (``boxes`` ``(n, 4)`` xyxy,
    their labels, confidences, region tiers and raw scores; see :data:`FEATURES`)."""
    n = len(labels)
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    conf, raw, tiers = (np.asarray(a, np.float64).ravel() for a in (confidence, raw, tiers))
    nested = box_ioa(b, b) > 0.9  # one of the two boxes (the smaller) at least 90 % inside the other
    same = np.array([[a == c for c in labels] for a in labels])
    area = box_area(b)
    group = same & ((box_iou(b, b) > 0.1) | nested)
    np.fill_diagonal(group, False)
    for i in range(n):
        g = np.flatnonzero(group[i])
        inner = g[nested[i, g]]
        out[i, int(np.clip(tiers[i], 0, 2))] = 1.0
        out[i, 3] = conf[i]
        out[i, 4] = conf[g].max() - conf[i] if g.size else 0.0
        out[i, 5] = raw[g].max() - raw[i] if g.size else 0.0
        out[i, 6] = np.log1p(g.size)
        out[i, 7] = float(inner.size > 0)
        out[i, 8] = raw[inner].max() - raw[i] if inner.size else 0.0
        out[i, 9] = np.log(max(area[i], 1e-9) / max(float(np.median(area[same[i]])), 1e-9))
    wh = np.maximum(b[:, 2:] - b[:, :2], 1.0)
    out[:, 10] = np.abs(np.log(wh[:, 0] / wh[:, 1]))
    return out


def box_quality(
    boxes: np.ndarray, labels: list[str], confidence: np.ndarray, tiers: np.ndarray, raw: np.ndarray
) -> np.ndarray:
    """``(n,)`` float64 P(an object's box) of ``n`` named boxes of one scene (arguments as :func:`box_features`)."""
    z = (box_features(boxes, labels, confidence, tiers, raw) - MEAN) / SCALE @ COEF + INTERCEPT
    return 1.0 / (1.0 + np.exp(-z))
