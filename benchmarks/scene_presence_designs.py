"""Presence P / R / F1 on labelled scenes for the scene pipeline's designs, side by side in one run.

Usage::

    python benchmarks/scene_presence_designs.py INDEX [SCENES] [--rule NAME=JSON ...] [--designs default,NAME]

SCENES defaults to ``../shared/data/naruto_scenes_dlp`` (a folder with ``manual_labels.json``). Seven designs run
on the same scenes with the same index: the default (``gallery`` with boundary boxes, boxes completed to the shape of
their nearest indexed image and windows, the ``confidence`` rule with region novelty moved for the region's size,
kept boxes snapped to edge lines), the same without the completed boxes (``shape_seeds=0``), the same without snapping
and with pieces at a quarter of a region (the former default), the same rule on the whole-image novelty scale,
boundary boxes + windows with ``absolute`` 0.8, with ``calibrated``, and windows only with ``absolute`` 0.8 (the
default before boundary boxes); all but the first without the completed boxes. ``--rule NAME=JSON``
(repeatable) adds a design NAME: the default segmenter with those :class:`SceneConfig` fields (e.g. a rule of
``benchmarks/scene_generated.py``'s grid, ``'absolute_0.6={"accept": "absolute", "floor": 0.6}'``);
``--designs`` runs only the named ones. These are test scenes: the numbers are reported, never used to choose a
setting. Prints one JSON object: per design micro precision / recall / F1, counts and seconds per scene.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def designs() -> dict[str, tuple[Any, dict[str, Any]]]:
    """Name -> (GalleryConfig, SceneConfig fields)."""
    from visrec.segment.gallery import GalleryConfig

    former = GalleryConfig(shape_seeds=0)  # the designs before boxes completed to an indexed image's shape
    return {
        "default": (GalleryConfig(), {}),
        "no_shapes": (GalleryConfig(shape_seeds=0), {}),
        "no_snap_pieces_quarter": (former, {"snap": False, "piece_share": 0.25}),
        "confidence_whole_image_novelty": (former, {"region_novelty": False}),
        "boxes_and_windows_absolute_0.8": (former, {"accept": "absolute", "floor": 0.8}),
        "boxes_and_windows_calibrated": (former, {"accept": "calibrated"}),
        "windows_absolute_0.8": (GalleryConfig(edges=None), {"accept": "absolute", "floor": 0.8}),
    }


def main() -> None:
    from visrec.index import Index
    from visrec.segment.evaluate import evaluate_presence, load_labels
    from visrec.segment.gallery import GallerySegmenter
    from visrec.segment.scene import SceneAnalyzer, SceneConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("scenes", nargs="?", default=str(REPO.parent / "shared" / "data" / "naruto_scenes_dlp"))
    ap.add_argument("--rule", action="append", default=[], help="NAME=JSON: SceneConfig fields of an extra design")
    ap.add_argument("--designs", default="", help="comma-separated names to run (default: all)")
    args = ap.parse_args()
    index, scenes = Index(args.index), Path(args.scenes)
    labels = load_labels(scenes / "manual_labels.json")
    todo = designs()
    for spec in args.rule:
        name, _, fields = spec.partition("=")
        todo[name] = (todo["default"][0], json.loads(fields))
    names = [n for n in args.designs.split(",") if n] or list(todo)
    unknown = sorted(set(names) - set(todo))
    if unknown:
        raise SystemExit(f"unknown design(s) {unknown}; choose from {list(todo)} (or add one with --rule NAME=JSON)")
    out: dict[str, Any] = {}
    for name, (gallery, rule) in ((n, todo[n]) for n in names):
        analyzer = SceneAnalyzer(index, GallerySegmenter(index, gallery), SceneConfig(**rule))
        rep = evaluate_presence(analyzer, scenes, labels, 0.0, True)
        out[name] = {**rep.micro, "seconds_per_scene": round(rep.seconds, 3)}
        print(f"{name}: {out[name]}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
