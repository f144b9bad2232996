"""Why scene analysis misses objects of generated scenes: localisation (no window on the object) or acceptance.

Usage::

    python benchmarks/scene_misses.py INDEX GEN/annotations.json [--limit 16] [--json] [--no-snap]

Runs the default pipeline (``SceneAnalyzer(index)``: the ``gallery`` segmenter and the default acceptance rule)
on each generated scene (``visrec scene-gen``, whose pasted images must not be in INDEX) and follows every
ground-truth object through the stages, at box IoU 0.5:

1. ``found``: a named region of the scene (its box snapped to edge lines, as the pipeline does) reaches IoU 0.5
   with the object and carries its label;
2. ``no window``: none of the boxes the gallery embedded (boundary boxes and windows) reaches IoU 0.5 with it;
3. ``pruned``: some box does, but the gallery's similarity NMS / cap dropped it;
4. ``wrong label``: kept regions at IoU >= 0.5 exist, none with the object's class as best class;
5. ``overlap``: one of those is named with the right label by the acceptance rule, but the overlap resolution
   removed it (or its snapped box moved off the object);
6. ``below raw minimum``: the confidence rule's open-set confidence accepts one, its raw minimum does not;
7. ``refused``: the acceptance rule names none of them.

Each object is counted at the first stage that loses it. Also prints the best window IoU per object (median and
quartiles) and the objects' sizes, to tell a window-grid limit from a scoring one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _recording_gallery(index: Any) -> Any:
    """A gallery segmenter that remembers every window it embeds (boxes in the analysed image's pixels)."""
    from visrec.segment.gallery import GallerySegmenter

    class Recording(GallerySegmenter):
        windows: list[np.ndarray]

        def set_image(self, image: np.ndarray) -> None:
            self.windows = []
            super().set_image(image)

        def _score(self, image: np.ndarray, boxes: np.ndarray, tag: str) -> Any:
            self.windows.append(np.asarray(boxes, np.float32))
            return super()._score(image, boxes, tag)

    return Recording(index)


def _best(truth: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU ``(m,)`` of each truth box over ``boxes`` and the row achieving it (-1 when none)."""
    from visrec.segment.masks import box_iou

    if len(boxes) == 0:
        return np.zeros(len(truth)), np.full(len(truth), -1)
    iou = box_iou(truth, boxes)
    return iou.max(1), iou.argmax(1)


def diagnose_scene(analyzer: Any, path: Path, truth: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """One record per ground-truth object: the stage that lost it and its best IoUs (truth: xyxy, input px)."""
    from visrec.data.images import load_image
    from visrec.segment.masks import box_iou
    from visrec.segment.scene import downscale

    rgb = load_image(path)
    result = analyzer.analyze(rgb)
    seg, cfg = analyzer.segmenter, analyzer.config
    small, factor = downscale(rgb, cfg.long_side)
    t_small = truth / factor
    regions = seg.regions()
    preds = analyzer._predict(small, regions)
    win_iou, _ = _best(t_small, np.concatenate(seg.windows) if seg.windows else np.zeros((0, 4), np.float32))
    kept_iou, kept_row = _best(t_small, regions.xyxy)
    out_iou, out_row = _best(truth, result.regions.xyxy)
    named, _ = analyzer.decide(preds)
    kept_all = box_iou(t_small, regions.xyxy) if len(regions) else np.zeros((len(truth), 0))
    records = []
    for j, lab in enumerate(labels):
        right = [i for i in np.flatnonzero(kept_all[j] >= 0.5) if preds[i].candidate == lab]
        if out_iou[j] >= 0.5 and result.labels[out_row[j]] == lab:
            stage = "found"
        elif win_iou[j] < 0.5:
            stage = "no window"
        elif kept_iou[j] < 0.5:
            stage = "pruned"
        elif not right:
            stage = "wrong label"
        elif any(named[i] == lab for i in right):
            stage = "overlap"
        elif cfg.accept == "confidence" and any(preds[i].calibrated >= cfg.min_confidence for i in right):
            stage = "below raw minimum"
        else:
            stage = "refused"
        score = float(preds[kept_row[j]].score) if kept_row[j] >= 0 and preds else 0.0
        side = float(max(t_small[j, 2] - t_small[j, 0], t_small[j, 3] - t_small[j, 1]))
        records.append(
            {"stage": stage, "window_iou": round(float(win_iou[j]), 3), "kept_iou": round(float(kept_iou[j]), 3),
             "score": round(score, 3), "side_px": round(side)}
        )  # fmt: skip
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("annotations")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-snap", action="store_true", help="leave named boxes where the segmenter put them")
    args = ap.parse_args()

    from visrec.index import Index
    from visrec.segment.scene import SceneAnalyzer, SceneConfig

    index = Index(args.index)
    analyzer = SceneAnalyzer(index, _recording_gallery(index), SceneConfig(snap=not args.no_snap))
    coco = json.loads(Path(args.annotations).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    root = Path(args.annotations).parent
    records: list[dict[str, Any]] = []
    for im in coco["images"][: args.limit or None]:
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        truth = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        labels = [names[a["category_id"]] for a in anns]
        records += diagnose_scene(analyzer, root / im["file_name"], truth.reshape(-1, 4), labels)
    stages = Counter(r["stage"] for r in records)
    w = np.array([r["window_iou"] for r in records])
    summary = {
        "objects": len(records),
        "stages": dict(stages.most_common()),
        "window_iou_quartiles": np.percentile(w, [25, 50, 75]).round(3).tolist() if len(w) else [],
        "objects_with_a_window_at_0.5": round(float((w >= 0.5).mean()), 3) if len(w) else 0.0,
        "below_raw_minimum_scores": sorted(r["score"] for r in records if r["stage"] == "below raw minimum"),
        "no_window_sides_px": sorted(r["side_px"] for r in records if r["stage"] == "no window"),
    }
    print(json.dumps({"summary": summary, "objects": records} if args.json else summary, indent=1))


if __name__ == "__main__":
    main()
