"""Image-level presence evaluation of scene analysis: which known labels were found in each scene.

Scored per class and micro-averaged over the classes of the index: a scene counts as a true positive for a
class when the class is both labelled and found. Byte-identical scene files are evaluated once (the first by
name), since duplicated scenes with conflicting labels would otherwise weigh several times.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visrec.errors import BadInput
from visrec.segment.scene import SceneAnalyzer


@dataclass(frozen=True)
class PresenceReport:
    """``per_class``: ``{label: {tp, fp, fn, precision, recall, f1}}``; ``micro``: the same summed over classes;
    ``scenes``: ``[{file, truth, found}]``; ``seconds``: mean analysis time per scene."""

    per_class: dict[str, dict[str, float]]
    micro: dict[str, float]
    scenes: list[dict[str, Any]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"micro": self.micro, "per_class": self.per_class, "scenes": self.scenes, "seconds": self.seconds}


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def presence_scores(
    truth: list[set[str]], found: list[set[str]], classes: list[str]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Per-class and micro precision/recall/F1 of multi-label presence (only ``classes`` are scored)."""
    per: dict[str, Any] = {}
    sums = [0, 0, 0]
    for c in classes:
        tp = sum(1 for t, f in zip(truth, found, strict=True) if c in t and c in f)
        fp = sum(1 for t, f in zip(truth, found, strict=True) if c not in t and c in f)
        fn = sum(1 for t, f in zip(truth, found, strict=True) if c in t and c not in f)
        per[c] = _prf(tp, fp, fn)
        sums = [sums[0] + tp, sums[1] + fp, sums[2] + fn]
    return per, _prf(*sums)


def load_labels(path: Path) -> dict[str, list[str]]:
    """``{file name: [labels]}`` from a JSON file like ``manual_labels.json``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f'{path}: cannot read the labels JSON ({e}); expected {{"image.jpg": ["Label", ...]}}') from e
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise BadInput(f'{path}: expected a JSON object {{"image.jpg": ["Label", ...]}}')
    return {str(k): [str(x) for x in v] for k, v in data.items()}


def evaluate_presence(
    analyzer: SceneAnalyzer, scenes_dir: Path, labels: dict[str, list[str]], min_score: float = 0.0, unique: bool = True
) -> PresenceReport:
    """Analyse every labelled scene found in ``scenes_dir`` and score image-level presence."""
    import time

    classes = sorted(analyzer.index.labels())
    seen: set[str] = set()
    truth, found, rows, secs = [], [], [], []
    for name in sorted(labels):
        path = next((p for p in (scenes_dir / name, scenes_dir / "images" / name) if p.is_file()), None)
        if path is None:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if unique and digest in seen:
            continue
        seen.add(digest)
        t0 = time.perf_counter()
        res = analyzer.analyze(path)
        secs.append(time.perf_counter() - t0)
        truth.append(set(labels[name]))
        found.append(res.present(min_score))
        rows.append({"file": name, "truth": sorted(truth[-1]), "found": sorted(found[-1])})
    if not rows:
        raise BadInput(f"{scenes_dir}: none of the {len(labels)} labelled files was found there (or in images/)")
    per, micro = presence_scores(truth, found, classes)
    return PresenceReport(per, micro, rows, round(sum(secs) / len(secs), 3))
