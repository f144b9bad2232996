"""Choose the scene pipeline's rule and window budget on generated scenes; compare with a sliding-window baseline.

Usage::

    python benchmarks/scene_generated.py KIND=INDEX:COCO [KIND=INDEX:COCO ...] [--limit 30] [--segmenters a,b]
        [--choose-among NAME=KIND,KIND ...]

Each KIND names generated scenes (``visrec scene-gen``, COCO ``annotations.json``) and the index to recognise
them with (built from *other* training images than the ones pasted, so that a pasted crop is never its own
nearest neighbour). For every segmenter configuration, each scene is segmented and its regions recognised
once; then every acceptance rule of the grid is applied to the same predictions and scored at box IoU 0.5
(:mod:`visrec.segment.box_eval`). The rule chosen is the one with the best mean label-correct F1 over the
kinds (one default must serve every kind). The baseline: one square window at the median true object size
(known from the ground truth: an oracle size), stride half a window, each window named by its best class,
class-agnostic NMS at IoU 0.3, top N per scene where N is the median number of objects per scene (oracle
too). Prints one JSON object: per kind and segmenter, windows embedded, seconds per scene, and the figures of
the chosen rule, of the shipped default (``default``, and ``default_beats_baseline``: whether its label-correct
F1 is at least the baseline's), of the baseline and of the oracle (``oracle``: the share of objects whose true box,
classified as a region, gets the right best class and is named by the default rule: what any box placement
could reach; with strangers, also the share of strangers whose true box the default rule names); the whole grid
under ``grid``. Scenes made with ``visrec scene-gen --strangers`` are scored with their strangers: a region
named on one is a false region, counted apart (``strangers_named``, ``stranger_regions``); every row carries
image-level presence P / R / F1 as well (the metric of labelled real scenes). ``--choose-among NAME=K1,K2``
(repeatable) also reports the best (segmenter, rule) over those kinds only (``chosen_among``), e.g. plain
against realistic kinds; ``best`` per kind is the best on that kind alone.
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

MODE = ["knn"]
"""The classifier mode the regions are recognised with (``--mode``)."""

RULES: list[dict[str, Any]] = (
    [{"accept": "calibrated", "merge_iou": m} for m in (0.1, 0.3, 0.5)]
    + [
        {"accept": "relative", "margin": mg, "floor": f, "merge_iou": 0.3}
        for mg in (0.02, 0.05, 0.1, 0.2)
        for f in (0.5, 0.6, 0.7, 0.76)
    ]
    + [{"accept": "absolute", "floor": f, "merge_iou": m} for f in (0.4, 0.5, 0.6, 0.7, 0.8) for m in (0.1, 0.3, 0.5)]
    + [{"accept": "absolute", "floor": f, "merge_iou": m} for f in (0.65, 0.75) for m in (0.1, 0.3)]
    + [
        {"accept": "confidence", "min_confidence": c, "known_quantile": q, "merge_iou": 0.1, "region_novelty": r}
        | {"snap": sn}
        for r in (False, True)
        for c in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
        for q in (0.0, 0.02, 0.05, 0.1)
        for sn in ((False, True) if (c, q, r) == (0.6, 0.05, True) else (True,))
    ]
)


def default_rule() -> dict[str, Any]:
    """The shipped default acceptance rule, as a grid entry."""
    from visrec.segment.scene import SceneConfig

    d = SceneConfig()
    rule: dict[str, Any] = {"accept": d.accept, "merge_iou": d.merge_iou, "box_order": d.box_order}
    if d.accept in ("absolute", "relative"):
        rule["floor"] = d.floor
    if d.accept == "confidence":
        rule["min_confidence"] = d.min_confidence
        rule["known_quantile"] = d.known_quantile
        rule["region_novelty"] = d.region_novelty
        rule["snap"] = d.snap
    if d.accept == "relative":
        rule["margin"] = d.margin
    return rule


def grid_rules() -> list[dict[str, Any]]:
    """:data:`RULES` (each with the default order of a label's boxes), then the shipped default rule and the same
    rule with the former order of a label's boxes (``box_order="tier"``), side by side."""
    return [*RULES, default_rule(), {**default_rule(), "box_order": "tier"}]


def segmenter_configs() -> dict[str, Any]:
    """The segmenters compared (name -> GalleryConfig for gallery backends, or a registered segmenter's name)."""
    from visrec.segment.gallery import GalleryConfig
    from visrec.segment.proposals import ProposalConfig

    def grid(scales: tuple[float, ...], components: bool = False) -> ProposalConfig:
        return ProposalConfig(scales=scales, components=components, min_area=0.002, nms_iou=1.0, max_regions=10_000)

    small = (0.1, 0.16, 0.25, 0.4, 0.6)
    return {
        "gallery": GalleryConfig(),  # the shipped default: boundary boxes, then windows
        "gallery-shape0": GalleryConfig(shape_seeds=0),  # no boxes completed to an indexed image's shape
        "gallery-shape32": GalleryConfig(shape_seeds=32),  # twice the boxes completed
        "gallery-shape32-w64": GalleryConfig(shape_seeds=32, max_windows=64, refine_seeds=5),  # fewer windows
        "gallery-windows": GalleryConfig(edges=None),  # windows only (the former default)
        "gallery-edges": GalleryConfig(max_windows=0, refine_seeds=0),  # boundary boxes only
        "gallery-0.1": GalleryConfig(proposals=grid(small)),
        "gallery-0.1-x2": GalleryConfig(proposals=grid(small), max_windows=192, refine_seeds=12, max_regions=40),
        "gallery-0.1-seg": GalleryConfig(proposals=grid(small, True), max_regions=40),
        "proposals": "proposals",
        "mobilesam": "mobilesam",
    }


def collect(index: Any, seg: Any, scenes: list[Any], long_side: int) -> tuple[list[Any], float, float, float]:
    """Per scene ``(regions, preds, region preds, factor, hw, edges, tiers)`` (region preds: confidences with the
    region novelty maps; edges: the map named boxes snap to; tiers: the segmenter's region tiers of that scene),
    mean seconds, mean windows embedded and mean seconds of the region maps per scene."""
    from visrec.data.images import load_image
    from visrec.segment.overlaps import scene_edges
    from visrec.segment.scene import SceneAnalyzer, SceneConfig, downscale, region_confidences, region_crops

    an = SceneAnalyzer(index, seg, SceneConfig(long_side=long_side, accept="calibrated", mode=MODE[0]))
    out, secs, wins, extra = [], [], [], []
    for s in scenes:
        rgb = load_image(s.path)
        t0 = time.perf_counter()
        small, factor = downscale(rgb, long_side)
        seg.set_image(small)
        regions = seg.regions()
        preds = an._predict(small, regions)
        secs.append(time.perf_counter() - t0)
        wins.append(getattr(seg, "embedded", len(regions)))
        t0 = time.perf_counter()
        emb = seg.cached_embeddings()
        if emb is None or regions.masks is not None:
            emb = index.encoder.encode_images(region_crops(small, regions, True), batch_size=32)
        region_preds = region_confidences(index, MODE[0], emb, preds, regions.xyxy) if preds else preds
        extra.append(time.perf_counter() - t0)
        tiers = getattr(seg, "region_tiers", lambda: None)()
        out.append((regions, preds, region_preds, factor, rgb.shape[:2], scene_edges(small), tiers))
    return out, float(np.mean(secs)), float(np.mean(wins)), float(np.mean(extra))


class _Stored:
    """One collected scene's region tiers, as its segmenter gave them (a segmenter holds only its last image's)."""

    name = "stored"

    def __init__(self, tiers: Any) -> None:
        self.tiers = tiers

    def region_tiers(self) -> Any:
        return self.tiers


def apply_rule(index: Any, collected: list[Any], rule: dict[str, Any]) -> list[Any]:
    from visrec.segment.scene import SceneAnalyzer, SceneConfig

    cfg = SceneConfig(**rule, mode=MODE[0])
    region = bool(rule.get("region_novelty"))
    return [
        SceneAnalyzer(index, _Stored(t), cfg)._result(r, rp if region else p, f, hw, {}, e)  # type: ignore[arg-type]
        for r, p, rp, f, hw, e, t in collected
    ]


def baseline(index: Any, scenes: list[Any], long_side: int) -> tuple[list[Any], float, float]:
    """The sliding-window baseline (see the module docstring): SceneResults, seconds and windows per scene."""
    from visrec.data.images import load_image
    from visrec.segment.masks import crop, nms, scale_boxes
    from visrec.segment.proposals import _starts
    from visrec.segment.scene import downscale
    from visrec.segment.types import Regions, SceneResult

    sides = np.concatenate([np.sqrt((s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1])) for s in scenes])
    top_n = max(1, round(float(np.median([len(s.boxes) for s in scenes]))))
    out, secs, wins = [], [], []
    for s in scenes:
        rgb = load_image(s.path)
        t0 = time.perf_counter()
        small, factor = downscale(rgb, long_side)
        h, w = small.shape[:2]
        side = max(8, round(float(np.median(sides)) / factor))
        step = max(1, side // 2)
        boxes = np.asarray(
            [(x, y, x + side, y + side) for y in _starts(h, side, step) for x in _starts(w, side, step)], np.float32
        )
        emb = index.encoder.encode_images([crop(small, b, 2) for b in boxes], batch_size=32)
        preds = index.classify(emb, "knn", calibrated=False)
        scores = np.asarray([p.score for p in preds], np.float32)
        keep = nms(boxes, scores, 0.3)[:top_n]
        secs.append(time.perf_counter() - t0)
        wins.append(len(boxes))
        regs = Regions(scale_boxes(boxes[keep], factor), scores[keep], None)
        labels = tuple(preds[i].candidate for i in keep)
        out.append(SceneResult(regs, labels, labels, scores[keep], rgb.shape[1], rgb.shape[0], {}))
    return out, float(np.mean(secs)), float(np.mean(wins))


def oracle(index: Any, scenes: list[Any], long_side: int) -> dict[str, Any]:
    """Recall if every object's true box were a region: the share whose best class is right (``top1``) and the
    share the shipped default rule names with the right label (``named``), from the crops of the true boxes; with
    strangers, the share of them the default rule names (any label) on their true boxes."""
    from visrec.data.images import load_image
    from visrec.segment.scene import SceneAnalyzer, SceneConfig, downscale
    from visrec.segment.types import Regions

    an = SceneAnalyzer(index, _Stored(None), SceneConfig(long_side=long_side, mode=MODE[0]))  # type: ignore[arg-type]
    top1 = named = total = strangers = strangers_named = 0
    for s in scenes:
        small, factor = downscale(load_image(s.path), long_side)
        boxes = np.concatenate([s.boxes, s.strangers]) / factor
        preds = an._predict(small, Regions(boxes.astype(np.float32), np.ones(len(boxes), np.float32), None))
        labels, _scores = an.decide(preds)
        m = len(s.labels)
        top1 += sum(p.candidate == t for p, t in zip(preds[:m], s.labels, strict=True))
        named += sum(lab == t for lab, t in zip(labels[:m], s.labels, strict=True))
        strangers_named += sum(lab is not None for lab in labels[m:])
        total, strangers = total + m, strangers + len(s.strangers)
    out = {"objects": total, "top1": round(top1 / max(total, 1), 3), "named": round(named / max(total, 1), 3)}
    if strangers:  # the share of strangers the default rule names (any label) on their own true boxes
        out |= {"strangers": strangers, "strangers_named": round(strangers_named / strangers, 3)}
    return out


class _Counting:
    """A segmenter that counts the windows it embeds (``embedded``; its regions when it embeds none itself)."""

    def __init__(self, seg: Any, index: Any) -> None:
        self.seg, self.embedded, self.name = seg, 0, seg.name
        enc = index.encoder
        original = enc.encode_images

        def counted(images: Any, **kw: Any) -> Any:
            self.embedded += len(images)
            return original(images, **kw)

        self._enc, self._counted = enc, counted

    def set_image(self, image: np.ndarray) -> None:
        self.embedded = 0
        self._enc.encode_images = self._counted
        try:
            self.seg.set_image(image)
        finally:
            del self._enc.encode_images
        if self.cached_embeddings() is None:
            self.embedded += len(self.seg.regions())

    def regions(self) -> Any:
        return self.seg.regions()

    def cached_embeddings(self) -> Any:
        return getattr(self.seg, "cached_embeddings", lambda: None)()

    def region_tiers(self) -> Any:
        return getattr(self.seg, "region_tiers", lambda: None)()


def run_kind(index_path: str, coco: str, limit: int, long_side: int, names: list[str]) -> dict[str, Any]:
    from visrec.index import Index
    from visrec.segment import create_segmenter
    from visrec.segment.box_eval import load_coco_scenes, score_results
    from visrec.segment.gallery import GallerySegmenter

    index = Index(index_path)
    classes = sorted(index.labels())
    scenes = load_coco_scenes(Path(coco))[: limit or None]
    report: dict[str, Any] = {"index": index_path, "coco": coco, "scenes": len(scenes), "segmenters": {}}
    index.encoder.encode_images([np.zeros((64, 64, 3), np.uint8)])  # warm-up outside the timings
    from visrec.segment.region_novelty import region_novelty

    maps = region_novelty(index, "knn")  # fitted once per index generation, before the first scene
    report["region_novelty"] = None if maps is None else {
        "seconds": round(maps.seconds, 2), "renders": list(maps.renders), "skipped": maps.skipped,
        "bands_fitted": [m is not None for m in maps.novelty]}  # fmt: skip
    for name, gcfg in segmenter_configs().items():
        if names and name not in names:
            continue
        seg = _Counting(create_segmenter(gcfg) if isinstance(gcfg, str) else GallerySegmenter(index, gcfg), index)
        collected, secs, wins, extra = collect(index, seg, scenes, long_side)
        grid = []
        for rule in grid_rules():
            rep = score_results(scenes, apply_rule(index, collected, rule), classes)
            presence = {f"presence_{k}": rep.presence[k] for k in ("precision", "recall", "f1")}
            grid.append({"rule": rule, **rep.metrics, **presence})
        report["segmenters"][name] = {"seconds": round(secs, 3), "windows": round(wins, 1),
                                      "region_novelty_seconds": round(extra, 4), "grid": grid}  # fmt: skip
        best = max(grid, key=lambda g: g["correct_f1"])
        print(f"{coco} {name}: {secs:.2f} s, {wins:.0f} windows, best {best}", file=sys.stderr, flush=True)
    report["oracle"] = oracle(index, scenes, long_side)
    res, secs, wins = baseline(index, scenes, long_side)
    rep = score_results(scenes, res, classes)
    report["baseline"] = {"seconds": round(secs, 3), "windows": round(wins, 1), **rep.metrics}
    report["baseline"]["presence_f1"] = rep.presence["f1"]
    return report


def choose(kinds: dict[str, Any]) -> dict[str, Any]:
    """The (segmenter, rule) whose mean label-correct F1 over the kinds is highest (the first of equals), with its
    mean presence F1 over the same kinds."""
    best: dict[str, Any] = {"mean_f1": -1.0}
    top = -1.0  # compared unrounded, so that the first of equal rules stays chosen
    first = next(iter(kinds.values()))
    for seg, entry in first["segmenters"].items():
        for i, row in enumerate(entry["grid"]):
            rows = [k["segmenters"][seg]["grid"][i] for k in kinds.values()]
            mean = float(np.mean([r["correct_f1"] for r in rows]))
            if mean > top:
                top = mean
                presence = round(float(np.mean([r["presence_f1"] for r in rows])), 4)
                best = {"mean_f1": round(mean, 4), "mean_presence_f1": presence, "segmenter": seg,
                        "rule": row["rule"], "index": i}  # fmt: skip
    return best


def choose_among(kinds: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    """``{NAME: choice}`` for each ``NAME=KIND,KIND`` of ``groups`` (see :func:`choose`), and the shipped default's
    mean figures over the same kinds (``default``)."""
    out: dict[str, Any] = {}
    for spec in groups:
        name, _, names = spec.partition("=")
        sub = {k: kinds[k] for k in names.split(",") if k}
        missing = [k for k in names.split(",") if k and k not in kinds]
        if missing or not sub:
            raise SystemExit(
                f"--choose-among {spec}: unknown kind(s) {missing or '(none given)'}; kinds: {list(kinds)}"
            )
        best = choose(sub)
        rows = [r for k in sub.values() for r in k["segmenters"].get("gallery", {}).get("grid", [])]
        default = [r for r in rows if r["rule"] == default_rule()]
        out[name] = {k: v for k, v in best.items() if k != "index"}
        if len(default) == len(sub):
            out[name]["default"] = {m: round(float(np.mean([r[m] for r in default])), 4)
                                    for m in ("correct_f1", "presence_f1")}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kinds", nargs="+", help="KIND=INDEX:COCO")
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--mode", default="knn", help="classifier mode of the index for the regions (knn | linear)")
    ap.add_argument("--long-side", type=int, default=1024)
    ap.add_argument("--segmenters", default="", help="comma-separated names (default: all)")
    ap.add_argument("--choose-among", action="append", default=[], help="NAME=KIND,KIND: also choose over these")
    args = ap.parse_args()
    MODE[0] = args.mode
    names = [n for n in args.segmenters.split(",") if n]
    kinds = {}
    for spec in args.kinds:
        kind, _, rest = spec.partition("=")
        index_path, _, coco = rest.partition(":")
        kinds[kind] = run_kind(index_path, coco, args.limit, args.long_side, names)
    best = choose(kinds)
    out: dict[str, Any] = {"chosen": {k: v for k, v in best.items() if k != "index"}, "kinds": {}}
    out["chosen_among"] = choose_among(kinds, args.choose_among)
    for kind, rep in kinds.items():
        summary = {"scenes": rep["scenes"], "baseline": rep["baseline"], "oracle": rep["oracle"], "segmenters": {}}
        summary["region_novelty"] = rep.get("region_novelty")
        for seg, entry in rep["segmenters"].items():
            row = entry["grid"][best["index"]]
            summary["segmenters"][seg] = {"seconds": entry["seconds"], "windows": entry["windows"], "chosen": row}
            summary["segmenters"][seg]["best"] = max(entry["grid"], key=lambda g: g["correct_f1"])
        shipped = rep["segmenters"].get("gallery", {}).get("grid", [])
        rows = [g for g in shipped if g["rule"] == default_rule()]
        if rows:  # the shipped default (gallery, default rule) against the baseline, label-correct F1
            summary["default"] = rows[0]
            summary["default_beats_baseline"] = rows[0]["correct_f1"] >= rep["baseline"]["correct_f1"]
        out["kinds"][kind] = summary
    out["grid"] = {k: v["segmenters"] for k, v in kinds.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
