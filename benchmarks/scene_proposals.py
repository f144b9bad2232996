"""Proposal recall of the ``gallery`` segmenter on generated scenes: how many objects have a candidate box.

Usage::

    python benchmarks/scene_proposals.py INDEX GEN/annotations.json [--limit 8] [--shape-seeds 0,16]

A scene's objects can only be found when some box the segmenter embeds reaches IoU 0.5 with them. For each
setting of ``GalleryConfig.shape_seeds`` (0: no boxes completed to the shape of their nearest indexed image),
the gallery segmenter is run on each generated scene (``visrec scene-gen``; the pasted images must not be in
INDEX) and every box it embeds is recorded with its source: ``boundary`` (closed outlines,
:mod:`visrec.segment.edges`), ``shaped`` (boundary boxes completed to an indexed image's shape,
:mod:`visrec.segment.shapes`), ``windows`` (the coarse grid and the local search around its best windows).
Prints, per setting, the share of objects with a box at IoU >= 0.5 (and >= 0.7) from each source and from all
of them, the boxes embedded per scene from each source, and the seconds per scene (segmentation only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SOURCES = {"e": "boundary", "s": "shaped", "c": "windows", "f": "windows"}


def recording_gallery(index: Any, config: Any) -> Any:
    """A gallery segmenter that keeps every box it embeds with its source (``_score``'s tag)."""
    from visrec.segment.gallery import GallerySegmenter

    class Recording(GallerySegmenter):
        boxes: dict[str, list[np.ndarray]]

        def set_image(self, image: np.ndarray) -> None:
            self.boxes = {name: [] for name in SOURCES.values()}
            super().set_image(image)

        def _score(self, image: np.ndarray, boxes: np.ndarray, tag: str) -> Any:
            self.boxes[SOURCES[tag]].append(np.asarray(boxes, np.float32).reshape(-1, 4))
            return super()._score(image, boxes, tag)

    return Recording(index, config)


def best_iou(truth: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """Best IoU ``(m,)`` of each truth box over the boxes of ``parts`` (0 when there are none)."""
    from visrec.segment.masks import box_iou

    boxes = np.concatenate(parts) if parts else np.zeros((0, 4), np.float32)
    return box_iou(truth, boxes).max(1) if len(boxes) and len(truth) else np.zeros(len(truth))


def run(index: Any, scenes: list[Any], shape_seeds: int) -> dict[str, Any]:
    from visrec.data.images import load_image
    from visrec.segment.gallery import GalleryConfig
    from visrec.segment.scene import downscale

    seg = recording_gallery(index, replace(GalleryConfig(), shape_seeds=shape_seeds))
    names = [*dict.fromkeys(SOURCES.values()), "all"]
    ious: dict[str, list[np.ndarray]] = {n: [] for n in names}
    counts: dict[str, list[int]] = {n: [] for n in names}
    secs = []
    for s in scenes:
        small, factor = downscale(load_image(s.path), 1024)
        t0 = time.perf_counter()
        seg.set_image(small)
        secs.append(time.perf_counter() - t0)
        truth = s.boxes / factor
        every = [b for parts in seg.boxes.values() for b in parts]
        for n in names:
            parts = every if n == "all" else seg.boxes[n]
            ious[n].append(best_iou(truth, parts))
            counts[n].append(sum(len(p) for p in parts))
    out: dict[str, Any] = {"seconds": round(float(np.mean(secs)), 3)}
    for n in names:
        v = np.concatenate(ious[n])
        out[n] = {"recall@0.5": round(float((v >= 0.5).mean()), 3), "recall@0.7": round(float((v >= 0.7).mean()), 3),
                  "boxes": round(float(np.mean(counts[n])), 1)}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("annotations")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--shape-seeds", default="0,16", help="comma-separated GalleryConfig.shape_seeds to compare")
    args = ap.parse_args()

    from visrec.index import Index
    from visrec.segment.box_eval import load_coco_scenes

    index = Index(args.index)
    scenes = load_coco_scenes(Path(args.annotations))[: args.limit or None]
    index.encoder.encode_images([np.zeros((64, 64, 3), np.uint8)])  # warm-up outside the timings
    report = {"objects": int(sum(len(s.boxes) for s in scenes)), "scenes": len(scenes), "settings": {}}
    for k in (int(v) for v in args.shape_seeds.split(",") if v):
        report["settings"][f"shape_seeds={k}"] = run(index, scenes, k)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
