"""Segmentation smoke test: mask IoU of the best-matching region for every ground-truth object, and the
seconds each segmenter takes per 1024-px scene.

Usage::

    python benchmarks/scene_masks.py [ANNOTATIONS] [--segmenter proposals ...] [--index INDEX] [--json]

ANNOTATIONS defaults to ``../shared/data/voc_labelme_mini/annotations_coco.json`` (3 VOC photos, 12 objects with
polygon masks). Every segmenter that needs no index is run with masks on (``proposals`` by default), side by
side: one row per object with its best IoU per segmenter, then the mean best IoU, the share of objects found
at IoU >= 0.5, the mean number of regions per image, and the mean wall-clock and CPU seconds of
``set_image`` + ``regions`` on each photo resized to a 1024-px longer side (one untimed warm-up call first).
Besides the registered names, ``mobilesam+nanodet`` (MobileSAM masks from NanoDet's boxes only) and
``mobilesam+nanodet+grid`` (those plus the automatic grid) are accepted, and ``mobilesam-former`` /
``mobilesam+nanodet+grid-former``: the same with the automatic mode's former settings (8 x 8 grid, covered points
skipped, NMS 0.7, up to 100 masks). Three photos give no score, only a
sanity check; CPU seconds are the process's (all threads), less sensitive to other jobs than wall-clock time.
``--index``: the index the ``gallery`` segmenter compares windows with (needed for ``--segmenter gallery``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DEFAULT = REPO.parent / "shared/data/voc_labelme_mini/annotations_coco.json"
# MobileSAM's automatic mode before its filters were chosen on generated scenes (benchmarks/mobilesam_filters.py)
FORMER: dict[str, object] = {"points_per_side": 8, "skip_covered": True, "nms_iou": 0.7, "max_regions": 100}
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "proposals": ("proposals", {"masks": True}),
    "mobilesam+nanodet": ("mobilesam", {"prompter": "nanodet", "points_per_side": 0}),
    "mobilesam+nanodet+grid": ("mobilesam", {"prompter": "nanodet"}),
    "mobilesam-former": ("mobilesam", FORMER),
    "mobilesam+nanodet+grid-former": ("mobilesam", {"prompter": "nanodet", **FORMER}),
}


def _create(spec: str, index: Any = None) -> Any:
    from visrec.segment import create_segmenter

    if spec == "gallery":
        return create_segmenter(spec, index=index)
    name, options = VARIANTS.get(spec, (spec, {}))
    return create_segmenter(name, **options)


def _seconds(segmenter: Any, paths: list[Path]) -> tuple[float, float]:
    """Mean wall-clock and CPU seconds of set_image + regions on each image at a 1024-px longer side."""
    from PIL import Image

    from visrec.data.images import load_image

    images = []
    for p in paths:
        rgb = load_image(p)
        f = 1024 / max(rgb.shape[:2])
        size = (round(rgb.shape[1] * f), round(rgb.shape[0] * f))
        images.append(np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)))
    segmenter.set_image(images[0])
    segmenter.regions()  # warm-up: first-call allocations are not part of a scene's cost
    wall, cpu = [], []
    for img in images:
        w0, c0 = time.perf_counter(), time.process_time()
        segmenter.set_image(img)
        segmenter.regions()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return round(float(np.mean(wall)), 2), round(float(np.mean(cpu)), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("annotations", nargs="?", default=str(DEFAULT))
    ap.add_argument("--segmenter", action="append", help="registered segmenter or variant (repeatable)")
    ap.add_argument("--no-timing", action="store_true", help="skip the 1024-px timing pass")
    ap.add_argument("--index", help="index folder for the gallery segmenter")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from visrec.segment.mask_eval import evaluate_masks, load_coco_instances

    images = load_coco_instances(Path(args.annotations))
    names = args.segmenter or ["proposals"]
    index = None
    if args.index:
        from visrec.index import Index

        index = Index(args.index)
    if "gallery" in names and index is None:
        raise SystemExit("--segmenter gallery needs --index INDEX")
    segmenters = [_create(n, index) for n in names]
    reports = [evaluate_masks(s, images, n) for s, n in zip(segmenters, names, strict=True)]
    timing = [(0.0, 0.0) if args.no_timing else _seconds(s, [i.path for i in images]) for s in segmenters]
    if args.json:
        rows = [r.to_dict() | {"wall_s": t[0], "cpu_s": t[1]} for r, t in zip(reports, timing, strict=True)]
        print(json.dumps(rows, indent=1))
        return
    width = max(12, *(len(n) + 2 for n in names))
    print(f"{'file':<18}{'object':<10}{'area':>8}" + "".join(f"{r.segmenter:>{width}}" for r in reports))
    for i, obj in enumerate(reports[0].objects):
        ious = "".join(f"{r.objects[i]['best_iou']:>{width}.3f}" for r in reports)
        print(f"{obj['file']:<18}{obj['category']:<10}{obj['area']:>8}{ious}")
    for key in ("mean_iou", "recall_50", "regions"):
        print(f"{key:<36}" + "".join(f"{getattr(r, key):>{width}}" for r in reports))
    if not args.no_timing:
        print(f"{'s per 1024-px scene (wall)':<36}" + "".join(f"{t[0]:>{width}}" for t in timing))
        print(f"{'CPU-s per 1024-px scene':<36}" + "".join(f"{t[1]:>{width}}" for t in timing))


if __name__ == "__main__":
    main()
