"""Fit the scene pipeline's box-quality model on generated scenes and check it on others.

Usage::

    python benchmarks/box_quality_fit.py --fit KIND=INDEX:COCO[:LIMIT] [...] --check KIND=INDEX:COCO[:LIMIT] [...]

Each KIND names generated scenes (``visrec scene-gen``, COCO ``annotations.json``) and the index to recognise them
with (built from other images than the ones pasted). Every scene is segmented and recognised once
(``benchmarks/scene_generated.py``'s ``collect``); the named box regions that reach the overlap resolution under
the default rule become rows (:func:`visrec.segment.box_quality.box_features`), labelled by whether the box
matches a true object of its label at IoU >= 0.5. A standardised logistic regression (C = 1) is fitted on the rows
of the ``--fit`` kinds and printed as the constants of :mod:`visrec.segment.box_quality`. Then every kind is scored
(right-label recall / precision / F1 at IoU 0.5, default rule) with the former order of same-label boxes
(``box_order="tier"``), with the shipped model and with the model just fitted, side by side. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def load_kind(spec: str) -> tuple[str, Any, list[str], list[Any], list[Any]]:
    """``(kind, index, classes, scenes, collected)`` of ``KIND=INDEX:COCO[:LIMIT]``."""
    import scene_generated as sg

    from visrec.index import Index
    from visrec.segment.box_eval import load_coco_scenes
    from visrec.segment.gallery import GallerySegmenter

    kind, rest = spec.split("=", 1)
    parts = rest.split(":")
    index = Index(parts[0])
    scenes = load_coco_scenes(Path(parts[1]))[: int(parts[2]) if len(parts) > 2 else None]
    collected, *_ = sg.collect(index, GallerySegmenter(index), scenes, 1024)
    print(f"collected {kind}: {len(scenes)} scenes", file=sys.stderr, flush=True)
    return kind, index, sorted(index.labels()), scenes, collected


def rows(index: Any, scenes: list[Any], collected: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels (a true object's box of its label at IoU >= 0.5) of the named boxes of ``scenes``."""
    import scene_generated as sg

    from visrec.segment.box_quality import FEATURES, box_features
    from visrec.segment.masks import box_iou
    from visrec.segment.scene import SceneAnalyzer, SceneConfig

    xs, ys = [np.zeros((0, len(FEATURES)))], [np.zeros(0, bool)]
    for scene, (regions, _p, rp, factor, _hw, _e, tiers) in zip(scenes, collected, strict=True):
        an = SceneAnalyzer(index, sg._Stored(tiers), SceneConfig())
        labels, scores = an.decide(rp)
        ok = [i for i, lab in enumerate(labels) if lab]
        if not ok:
            continue
        raw = np.asarray([p.score for p in rp], np.float64)
        named = [str(labels[i]) for i in ok]
        xs.append(box_features(regions.xyxy[ok], named, scores[ok], an._tiers(len(regions))[ok], raw[ok]))
        truth = np.asarray(scene.boxes, np.float64).reshape(-1, 4) / factor
        iou = box_iou(regions.xyxy[ok].astype(np.float64), truth) if len(truth) else np.zeros((len(ok), 0))
        right = np.asarray([[t == lab for t in scene.labels] for lab in named], bool).reshape(len(ok), -1)
        ys.append(((iou >= 0.5) & right).any(axis=1))
    return np.concatenate(xs), np.concatenate(ys)


def fit(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    return {"MEAN": mean, "SCALE": scale, "COEF": lr.coef_[0], "INTERCEPT": float(lr.intercept_[0])}


def score(kind: tuple[str, Any, list[str], list[Any], list[Any]], order: str) -> dict[str, float]:
    import scene_generated as sg

    from visrec.segment.box_eval import score_results

    _, index, classes, scenes, collected = kind
    rule = sg.default_rule() | {"box_order": order}
    m = score_results(scenes, sg.apply_rule(index, collected, rule), classes).metrics
    return {k: m[k] for k in ("correct_recall", "correct_precision", "correct_f1", "recall", "label_accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", nargs="+", required=True)
    ap.add_argument("--check", nargs="*", default=[])
    args = ap.parse_args()

    import visrec.segment.box_quality as bq

    kinds = {spec: load_kind(spec) for spec in [*args.fit, *args.check]}
    x, y = zip(*(rows(*kinds[s][1:2], *kinds[s][3:]) for s in args.fit), strict=True)
    fitted = fit(np.concatenate(x), np.concatenate(y))
    shipped = {k: getattr(bq, k) for k in fitted}
    report: dict[str, Any] = {"rows": int(sum(len(v) for v in y)), "good": round(float(np.concatenate(y).mean()), 3)}
    report["fitted"] = {k: np.round(v, 6).tolist() if isinstance(v, np.ndarray) else round(v, 6)
                        for k, v in fitted.items()}  # fmt: skip
    for spec, kind in kinds.items():
        row = {"set": "fit" if spec in args.fit else "check", "tier": score(kind, "tier")}
        row["shipped"] = score(kind, "quality")
        for k, v in fitted.items():
            setattr(bq, k, v)
        row["fitted"] = score(kind, "quality")
        for k, v in shipped.items():
            setattr(bq, k, v)
        report[kind[0]] = row
        print(kind[0], {k: v if isinstance(v, str) else v["correct_f1"] for k, v in row.items()}, file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
