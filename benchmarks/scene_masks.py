"""Segmentation smoke test: mask IoU of the best-matching region for every ground-truth object.

Usage::

    python benchmarks/scene_masks.py [ANNOTATIONS] [--segmenter proposals ...] [--index INDEX] [--json]

ANNOTATIONS defaults to ``../shared/data/voc_labelme_mini/annotations_coco.json`` (3 VOC photos, 12 objects with
polygon masks). Every segmenter that needs no index is run with masks on (``proposals`` by default), side by
side: one row per object with its best IoU per segmenter, then the mean best IoU, the share of objects found
at IoU >= 0.5 and the mean number of regions per image. Three photos give no score, only a sanity check.
``--index``: the index the ``gallery`` segmenter compares windows with (needed for ``--segmenter gallery``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DEFAULT = REPO.parent / "shared/data/voc_labelme_mini/annotations_coco.json"


def _options(name: str) -> dict[str, object]:
    return {"masks": True} if name == "proposals" else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("annotations", nargs="?", default=str(DEFAULT))
    ap.add_argument("--segmenter", action="append", help="registered segmenter (repeatable; default: proposals)")
    ap.add_argument("--index", help="index folder for the gallery segmenter")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from visrec.segment import create_segmenter
    from visrec.segment.mask_eval import evaluate_masks, load_coco_instances

    images = load_coco_instances(Path(args.annotations))
    names = args.segmenter or ["proposals"]
    index = None
    if args.index:
        from visrec.index import Index

        index = Index(args.index)

    def build(name: str) -> object:
        if name == "gallery":
            if index is None:
                raise SystemExit("--segmenter gallery needs --index INDEX")
            return create_segmenter(name, index=index)
        return create_segmenter(name, **_options(name))

    reports = [evaluate_masks(build(n), images, n) for n in names]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=1))
        return
    print(f"{'file':<18}{'object':<10}{'area':>8}" + "".join(f"{r.segmenter:>12}" for r in reports))
    for i, obj in enumerate(reports[0].objects):
        ious = "".join(f"{r.objects[i]['best_iou']:>12.3f}" for r in reports)
        print(f"{obj['file']:<18}{obj['category']:<10}{obj['area']:>8}{ious}")
    for key in ("mean_iou", "recall_50", "regions"):
        print(f"{key:<36}" + "".join(f"{getattr(r, key):>12}" for r in reports))


if __name__ == "__main__":
    main()
