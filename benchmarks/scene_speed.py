"""Seconds per scene of ``visrec scene`` with the default settings, per stage.

Usage::

    python benchmarks/scene_speed.py INDEX [IMAGE ...] [--repeat 3] [--segmenter gallery] [--long-side 1024]

With no IMAGE, every scene of ``../shared/data/naruto_scenes_dlp/images`` is used, each first resized so its
longer side is exactly ``--long-side`` (the budget is a 1024-pixel image in <= 3 s on a 2-core CPU). The first
analysis (model load) is timed apart as ``warmup``. Prints one JSON object: mean / max seconds per image, the
mean per stage, and the regions found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _images(paths: list[str], long_side: int) -> list[tuple[str, np.ndarray]]:
    from visrec.data.images import load_image

    files = [Path(p) for p in paths] or sorted((REPO.parent / "shared/data/naruto_scenes_dlp/images").glob("*.jpg"))
    out = []
    for f in files[:11]:
        rgb = load_image(f)
        h, w = rgb.shape[:2]
        s = long_side / max(h, w)
        out.append((f.name, np.asarray(Image.fromarray(rgb).resize((round(w * s), round(h * s))))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("images", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--segmenter", default="gallery")
    ap.add_argument("--long-side", type=int, default=1024)
    args = ap.parse_args()

    from visrec.index import Index
    from visrec.segment import create_segmenter
    from visrec.segment.scene import SceneAnalyzer, SceneConfig

    idx = Index(args.index)
    seg = create_segmenter(args.segmenter, **({"index": idx} if args.segmenter == "gallery" else {}))
    analyzer = SceneAnalyzer(idx, seg, SceneConfig(long_side=args.long_side))
    images = _images(args.images, args.long_side)
    t0 = time.perf_counter()
    analyzer.analyze(images[0][1])
    warmup = time.perf_counter() - t0
    secs, stages, found = [], [], {}
    for name, img in images:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = analyzer.analyze(img)
            secs.append(time.perf_counter() - t0)
            stages.append(res.timings)
        found[name] = {"size": list(img.shape[1::-1]), "labels": [lab for lab in res.labels]}
    mean_stage = {k: round(float(np.mean([s[k] for s in stages])), 3) for k in stages[0]}
    print(json.dumps({"warmup_s": round(warmup, 3), "mean_s": round(float(np.mean(secs)), 3),
                      "max_s": round(float(np.max(secs)), 3), "stages_s": mean_stage,
                      "segmenter": args.segmenter, "long_side": args.long_side, "found": found}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
