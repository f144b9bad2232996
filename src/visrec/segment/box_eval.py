"""Box-level evaluation of scene analysis on scenes with boxed ground truth (COCO), e.g. generated scenes.

A found region matches a true object when their boxes overlap with IoU >= ``iou`` (0.5); matching is greedy,
most confident region first, each object matched once, whatever the labels (so that a box in the right place
with the wrong name counts against label accuracy, not against recall). Only named regions (known labels) are
scored. Reported, summed over scenes:

* ``recall``: objects matched by a region / objects; ``precision``: regions matching an object / regions;
* ``label_accuracy``: matched objects whose region carries the object's label / matched objects;
* ``correct_recall`` and ``correct_precision``: the same counting only matches with the right label (what a
  user sees as "found it"), and their F1, ``correct_f1``;
* ``presence``: image-level presence micro P / R / F1 over the same scenes (as ``scene-eval`` on labels), so
  generated scenes are scored like labelled real ones;
* ``strangers``: pasted things of classes the index does not hold (``strangers`` in the COCO file, written by
  ``visrec scene-gen --strangers``). They are not objects: recall never counts them. A named region (any label)
  that matches no object but lies on a stranger (box IoU >= ``iou``, or at least half of the region's box inside
  the stranger's: a part of it, such as a face) is a false region like any other, and is counted apart:
  ``stranger_regions`` such regions, ``strangers_named`` strangers with at least one, and
  ``strangers_named_share`` = strangers named / strangers. Presence truth holds the objects' labels only, so a
  stranger named after an indexed class is a false presence, as an unknown character is in a real scene.
"""

from __future__ import annotations

import json
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.segment.masks import box_iou


@dataclass(frozen=True)
class BoxCounts:
    """Counts of one or more scenes: true objects, named regions, matches, matches with the right label;
    strangers, those named by at least one region that matches no object, and such regions."""

    objects: int = 0
    regions: int = 0
    matched: int = 0
    correct: int = 0
    strangers: int = 0
    strangers_named: int = 0
    stranger_regions: int = 0

    def __add__(self, other: BoxCounts) -> BoxCounts:
        return BoxCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def metrics(self) -> dict[str, float]:
        """Recall, precision, label accuracy and the label-correct figures (0 when undefined)."""

        def div(a: int, b: int) -> float:
            return round(a / b, 4) if b else 0.0

        cr, cp = div(self.correct, self.objects), div(self.correct, self.regions)
        return {
            "recall": div(self.matched, self.objects),
            "precision": div(self.matched, self.regions),
            "label_accuracy": div(self.correct, self.matched),
            "correct_recall": cr,
            "correct_precision": cp,
            "correct_f1": round(2 * cr * cp / (cr + cp), 4) if cr + cp else 0.0,
            "objects": self.objects,
            "regions": self.regions,
            "strangers": self.strangers,
            "strangers_named": self.strangers_named,
            "strangers_named_share": div(self.strangers_named, self.strangers),
            "stranger_regions": self.stranger_regions,
        }


def match_boxes(
    boxes: np.ndarray,
    labels: list[str],
    scores: np.ndarray,
    truth: np.ndarray,
    truth_labels: list[str],
    iou: float,
    strangers: np.ndarray | None = None,
) -> BoxCounts:
    """Greedy matching of named regions ``boxes (n, 4)`` to true boxes ``truth (m, 4)`` (xyxy, one scene); the
    regions left over are then checked against the boxes of ``strangers (k, 4)`` (see the module docstring)."""
    far = np.zeros((0, 4), np.float32) if strangers is None else np.asarray(strangers, np.float32).reshape(-1, 4)
    n, m = len(boxes), len(truth)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    free = np.ones(m, bool)
    left, matched, correct = [], 0, 0
    ious = box_iou(boxes, np.asarray(truth).reshape(-1, 4)) if n and m else np.zeros((n, m))
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        cand = np.where(free, ious[i], -1.0)
        j = int(np.argmax(cand)) if m else -1
        if m and cand[j] >= iou:
            free[j] = False
            matched += 1
            correct += int(labels[i] == truth_labels[j])
        else:
            left.append(int(i))
    on = _on(boxes[left], far, iou) if left and len(far) else np.zeros((len(left), len(far)), bool)
    return BoxCounts(m, n, matched, correct, len(far), int(on.any(axis=0).sum()), int(on.any(axis=1).sum()))


def _on(regions: np.ndarray, strangers: np.ndarray, iou: float) -> np.ndarray:
    """``(n, k)`` bool: region ``i`` lies on stranger ``j`` (box IoU >= ``iou``, or at least half of the region's
    box inside the stranger's)."""
    lo = np.maximum(regions[:, None, :2], strangers[None, :, :2])
    hi = np.minimum(regions[:, None, 2:], strangers[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = np.prod(np.clip(regions[:, 2:] - regions[:, :2], 0, None), axis=1)[:, None]
    return np.asarray((box_iou(regions, strangers) >= iou) | (2 * inter >= np.maximum(area, 1e-9)), bool)


@dataclass(frozen=True)
class CocoScene:
    """One scene of a COCO file: its image path, true boxes ``(m, 4)`` xyxy float32 and their labels, and the
    boxes ``(k, 4)`` of its strangers (things of classes the index does not hold; none by default)."""

    path: Path
    boxes: np.ndarray
    labels: list[str]
    strangers: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


def load_coco_scenes(path: Path) -> list[CocoScene]:
    """The scenes of a COCO annotation file (image paths resolved against the file's folder)."""
    try:
        data = json.loads(Path(path).read_text())
        names = {c["id"]: str(c["name"]) for c in data["categories"]}
        per: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in data["images"]}
        far: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in data["images"]}
        for a in data["annotations"]:
            per[a["image_id"]].append(a)
        for a in data.get("strangers", []):
            far[a["image_id"]].append(a)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a readable COCO annotation file ({e}); make one with: visrec scene-gen") from e
    out = []
    for im in data["images"]:
        anns = per[im["id"]]
        labels = [names[a["category_id"]] for a in anns]
        out.append(CocoScene(Path(path).parent / im["file_name"], _xyxy(anns), labels, _xyxy(far[im["id"]])))
    return out


def _xyxy(anns: list[dict[str, Any]]) -> np.ndarray:
    """``(n, 4)`` float32 xyxy boxes of COCO records (``bbox`` ``[x, y, w, h]``)."""
    xywh = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


@dataclass(frozen=True)
class BoxReport:
    """``metrics``: see the module docstring; ``presence``: micro P / R / F1; ``seconds``: mean per scene."""

    metrics: dict[str, float]
    presence: dict[str, float]
    scenes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "presence": self.presence, "scenes": self.scenes, "seconds": self.seconds}


def score_results(scenes: list[CocoScene], results: list[Any], classes: list[str], iou: float = 0.5) -> BoxReport:
    """Box and presence figures of ``results`` (one :class:`SceneResult` per scene, in order)."""
    from visrec.segment.evaluate import presence_scores

    total = BoxCounts()
    for s, r in zip(scenes, results, strict=True):
        named = [i for i, lab in enumerate(r.labels) if lab is not None]
        labels = [str(r.labels[i]) for i in named]
        boxes, scores = r.regions.xyxy[named], r.scores[named]
        total = total + match_boxes(boxes, labels, scores, s.boxes, s.labels, iou, s.strangers)
    truth = [set(s.labels) for s in scenes]
    found = [r.present() for r in results]
    _, micro = presence_scores(truth, found, classes)
    return BoxReport(total.metrics(), micro, len(scenes), 0.0)


def evaluate_boxes(analyzer: Any, coco: Path, iou: float = 0.5, limit: int = 0) -> BoxReport:
    """Analyse every scene of a COCO file (the first ``limit`` when > 0) and score boxes and presence."""
    scenes = load_coco_scenes(coco)[: limit or None]
    if not scenes:
        raise BadInput(f"{coco}: holds no image")
    results, secs = [], []
    for s in scenes:
        t0 = time.perf_counter()
        results.append(analyzer.analyze(s.path))
        secs.append(time.perf_counter() - t0)
    rep = score_results(scenes, results, sorted(analyzer.index.labels()), iou)
    return BoxReport(rep.metrics, rep.presence, rep.scenes, round(float(np.mean(secs)), 3))
