"""Seconds per scene of ``visrec scene`` with the default settings, per stage, beside no snapping and no bound.

Usage::

    python benchmarks/scene_speed.py INDEX [IMAGE ...] [--repeat 3] [--long-side 1024]

With no IMAGE, every scene of ``../shared/data/naruto_scenes_dlp/images`` is used, each first resized so its
longer side is exactly ``--long-side`` (the budget is a 1024-pixel image in <= 3 s on a 2-core CPU). Four
``gallery`` configurations run interleaved on the same images: ``default`` (at most ``max_windows`` windows in
two rounds, flat ones dropped, one batch per core), ``no_snap`` (the same without snapping named boxes to edge
lines), ``no_shapes`` (the same without boundary boxes completed to the shape of their nearest indexed image,
``GalleryConfig(shape_seeds=0)``) and ``unbounded`` (every window of the finest grid in one round, batches of
32: the design before the bound). The first analysis of each (model load) is timed apart as ``warmup``. Prints
one JSON object: mean / max seconds per image and windows embedded per image for each, the mean per stage, the
ratios, and the labels found by the default.
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


class _Counting:
    """Wraps an encoder to count the images it embeds."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.count = encoder, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_images(self, images: Any, **kw: Any) -> Any:
        self.count += len(images)
        return self.encoder.encode_images(images, **kw)


class _Index:
    def __init__(self, index: Any, encoder: _Counting) -> None:
        self.index, self.encoder = index, encoder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.index, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("images", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--long-side", type=int, default=1024)
    args = ap.parse_args()

    from visrec.index import Index
    from visrec.segment.gallery import GalleryConfig, GallerySegmenter
    from visrec.segment.scene import SceneAnalyzer, SceneConfig

    base = Index(args.index)
    idx = _Index(base, _Counting(base.encoder))
    unbounded = GalleryConfig(max_windows=10_000, refine_seeds=0, min_contrast=0.0, batch_size=32)
    cfg = SceneConfig(long_side=args.long_side)
    configs = {
        "default": (GalleryConfig(), cfg),
        "no_snap": (GalleryConfig(), replace(cfg, snap=False)),
        "no_shapes": (GalleryConfig(shape_seeds=0), cfg),
        "unbounded": (unbounded, cfg),
    }
    analyzers = {k: SceneAnalyzer(idx, GallerySegmenter(idx, g), c) for k, (g, c) in configs.items()}
    images = _images(args.images, args.long_side)
    report: dict[str, Any] = {}
    for name, an in analyzers.items():
        t0 = time.perf_counter()
        an.analyze(images[0][1])
        report[name] = {"warmup_s": round(time.perf_counter() - t0, 3), "secs": [], "stages": [], "windows": []}
    found = {}
    for file, img in images:
        for _ in range(args.repeat):
            for name, an in analyzers.items():
                before = idx.encoder.count
                t0 = time.perf_counter()
                res = an.analyze(img)
                report[name]["secs"].append(time.perf_counter() - t0)
                report[name]["stages"].append(res.timings)
                report[name]["windows"].append(idx.encoder.count - before)
                if name == "default":
                    found[file] = {"size": list(img.shape[1::-1]), "labels": sorted({str(x) for x in res.labels})}
    out: dict[str, Any] = {"long_side": args.long_side, "images": len(images), "repeat": args.repeat}
    for name, r in report.items():
        out[name] = {
            "warmup_s": r["warmup_s"],
            "mean_s": round(float(np.mean(r["secs"])), 3),
            "max_s": round(float(np.max(r["secs"])), 3),
            "windows_mean": round(float(np.mean(r["windows"])), 1),
            "windows_max": int(np.max(r["windows"])),
            "stages_s": {k: round(float(np.mean([s.get(k, 0.0) for s in r["stages"]])), 3) for k in r["stages"][0]},
        }
    out["ratio_mean"] = round(out["default"]["mean_s"] / out["unbounded"]["mean_s"], 3)
    out["ratio_max"] = round(out["default"]["max_s"] / out["unbounded"]["max_s"], 3)
    out["ratio_mean_to_no_snap"] = round(out["default"]["mean_s"] / out["no_snap"]["mean_s"], 3)
    out["ratio_mean_to_no_shapes"] = round(out["default"]["mean_s"] / out["no_shapes"]["mean_s"], 3)
    out["ratio_max_to_no_shapes"] = round(out["default"]["max_s"] / out["no_shapes"]["max_s"], 3)
    out["found"] = found
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
