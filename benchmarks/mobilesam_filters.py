"""Choose MobileSAM's automatic-mask filters and candidate budget on generated scenes, then evaluate the choice.

Usage::

    python benchmarks/mobilesam_filters.py GEN/annotations.json [GEN2/annotations.json ...] --limit 6 \\
        --cache /tmp/msam [--evaluate ../shared/data/voc_labelme_mini/annotations_coco.json] [--json]

Each image is embedded once and every point of a 16 x 16 grid is decoded once; the candidates (SAM's three
masks per point: their sign at 256 x 256, predicted IoU, stability, box) and the IoU of each candidate with
each ground-truth object (upsampled to the image's pixels, without the small-region cleanup) are cached per
image in ``--cache``. Every setting then replays the automatic mode's selection
(:mod:`visrec.segment.mobilesam_amg`, the segmenter's own code) on the cached candidates: the filters act on
decoder outputs, so the grid of settings costs no model call. The candidate budget is the number of points of
the 16 x 16 grid visited coarse to fine (16: its 4 x 4 sub-grid, 64: its 8 x 8 sub-grid, 256: all) and
``max_regions``, the most masks kept.

Per setting, over the images of the tuning files (``--limit`` scenes from each):

* ``best_iou``: mean over objects of the best mask IoU among the kept masks;
* ``recall``: share of objects whose best IoU is >= 0.5;
* ``masks``: masks kept per image; ``precision``: share of kept masks that match some object at IoU >= 0.5
  (a generated scene's background photo holds unannotated things, so it is a lower bound); ``f1`` of the two;
* ``decoded``: points decoded per image (the decoder is about 0.1-0.2 CPU-s per point; the encoder about 2).

**The criterion, fixed before any measurement:** the highest mean ``best_iou`` among the settings that keep at
most ``--max-masks`` (32) masks per image on average (scene analysis embeds every kept mask, about 20 ms each;
the former default kept 14 per photo); among the settings within 0.005 of that best, the one that decodes the
fewest points, then the highest precision. ``--evaluate`` then scores the former default and the chosen
setting once on another annotation file (the test scenes), with the same replay.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

GRID = 16
BUDGETS = (16, 64, 256)
PRED_IOU = (0.0, 0.5, 0.7, 0.8, 0.88)
STABILITY = (0.0, 0.8, 0.9, 0.95)
NMS_IOU = (0.5, 0.7, 0.85)
CAPS = (8, 16, 24, 32, 48, 100)


@dataclass(frozen=True)
class Setting:
    """One automatic-mode setting (the fields :func:`visrec.segment.mobilesam_amg.select_grid` reads)."""

    budget: int = 64
    skip_covered: bool = True
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    nms_iou: float = 0.7
    max_regions: int = 100
    stability_offset: float = 1.0
    points_per_batch: int = 16


FORMER = Setting()  # the former default: 8 x 8 points, SAM's published filters (here its 8 x 8 sub-grid of 16 x 16)


def grid_points(hw: tuple[int, int]) -> np.ndarray:
    """The ``(256, 2)`` points of the 16 x 16 grid in visiting order, in the image's pixels."""
    from visrec.segment.mobilesam import coarse_to_fine
    from visrec.segment.sam_amg import point_grid

    return point_grid(GRID)[coarse_to_fine(GRID)] * [hw[1], hw[0]]


def decode_image(seg: Any, rgb: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Embed ``rgb`` and decode every grid point: the arrays cached for one image."""
    from visrec.segment.mobilesam import upsample_logits
    from visrec.segment.mobilesam_amg import describe

    hw = (int(rgb.shape[0]), int(rgb.shape[1]))
    seg.set_image(rgb)
    frame = seg._frame()
    points = grid_points(hw)
    coords = np.concatenate([points[:, None], np.zeros((len(points), 1, 2))], 1).astype(np.float32)
    low, iou = seg._decode(coords, np.tile(np.array([[1, -1]], np.float32), (len(points), 1)), hw)
    cand = describe(low[:, 1:], iou[:, 1:], frame, 1.0)
    flat = low[:, 1:].reshape(-1, *low.shape[2:])
    gt_iou = np.zeros((len(flat), len(truth)), np.float32)
    area = truth.reshape(len(truth), -1).sum(1)
    for s in range(0, len(flat), 32):
        up = upsample_logits(flat[s : s + 32], seg._covered, hw) > 0
        for j, t in enumerate(truth):
            inter = (up & t).sum((1, 2))
            gt_iou[s : s + 32, j] = inter / np.maximum(up.sum((1, 2)) + area[j] - inter, 1)
    return {
        "sign": low[:, 1:, : frame[0], : frame[1]] > 0,
        "iou": cand.iou,
        "stability": cand.stability,
        "boxes": cand.boxes,
        "gt_iou": gt_iou,
        "hw": np.array(hw),
    }


def cached(cache: Path, tag: str, items: list[Any], seg_factory: Any) -> list[dict[str, np.ndarray]]:
    """Decoded candidates of every image of ``items``, from ``cache`` or computed (and saved) now."""
    from visrec.data.images import load_image

    out, seg = [], None
    for k, item in enumerate(items):
        path = cache / f"{tag}_{k:03d}_{item.path.stem}.npz"
        if not path.is_file():
            seg = seg or seg_factory()
            t0 = time.perf_counter()
            arrays = decode_image(seg, load_image(item.path), item.masks)
            np.savez(path, **arrays)
            print(f"decoded {item.path.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        with np.load(path, allow_pickle=False) as z:
            out.append({key: z[key] for key in z.files})
    return out


def replay(img: dict[str, np.ndarray], s: Setting) -> tuple[np.ndarray, int]:
    """The kept candidates' ids (best first, at most ``s.max_regions``) and the points decoded, as the
    segmenter would select them from this image's cached candidates."""
    from visrec.segment.mobilesam_amg import Candidates, final_keep, select_grid

    hw = (int(img["hw"][0]), int(img["hw"][1]))
    sign = img["sign"]
    frame = (int(sign.shape[2]), int(sign.shape[3]))

    def decode(rows: np.ndarray) -> Candidates:
        low = np.where(sign[rows], np.float32(1), np.float32(-1))
        return Candidates(low, img["iou"][rows], img["stability"][rows], img["boxes"][rows])

    sel = select_grid(decode, grid_points(hw)[: s.budget], hw, frame, s)
    keep = final_keep(sel.low, sel.scores, frame, s.nms_iou, s.max_regions)
    return sel.ids[keep], sel.decoded


def scores(images: list[dict[str, np.ndarray]], kept: list[np.ndarray], decoded: list[int]) -> dict[str, float]:
    """Mean best IoU and recall over objects, masks per image, precision over masks, F1, points decoded."""
    best, matched, n_masks = [], 0, 0
    for img, ids in zip(images, kept, strict=True):
        g = img["gt_iou"][ids]
        best.append(g.max(0) if len(ids) else np.zeros(g.shape[1]))
        matched += int((g.max(1) >= 0.5).sum()) if g.shape[1] else 0
        n_masks += len(ids)
    b = np.concatenate(best)
    rec, prec = float((b >= 0.5).mean()), matched / max(n_masks, 1)
    return {
        "best_iou": round(float(b.mean()), 4),
        "recall": round(rec, 4),
        "masks": round(n_masks / len(images), 1),
        "precision": round(prec, 4),
        "f1": round(2 * rec * prec / max(rec + prec, 1e-9), 4),
        "decoded": round(float(np.mean(decoded)), 1),
    }


def sweep(images: list[dict[str, np.ndarray]]) -> list[tuple[Setting, dict[str, float]]]:
    """Every setting of the grid (caps applied to one replay each) with its scores."""
    rows = []
    for budget, skip, piou, stab, nms_iou in itertools.product(BUDGETS, (True, False), PRED_IOU, STABILITY, NMS_IOU):
        base = Setting(budget, skip, piou, stab, nms_iou, max(CAPS))
        runs = [replay(img, base) for img in images]
        for cap in CAPS:
            kept = [ids[:cap] for ids, _ in runs]
            rows.append((replace(base, max_regions=cap), scores(images, kept, [d for _, d in runs])))
    return rows


def choose(rows: list[tuple[Setting, dict[str, float]]], max_masks: float) -> tuple[Setting, dict[str, float]]:
    """The criterion of the module docstring."""
    ok = [r for r in rows if r[1]["masks"] <= max_masks]
    top = max(r[1]["best_iou"] for r in ok)
    near = [r for r in ok if r[1]["best_iou"] >= top - 0.005]
    return min(near, key=lambda r: (r[1]["decoded"], -r[1]["precision"], -r[1]["best_iou"]))


def evaluate(images: list[dict[str, np.ndarray]], s: Setting) -> dict[str, float]:
    runs = [replay(img, s) for img in images]
    return scores(images, [ids for ids, _ in runs], [d for _, d in runs])


EVERYTHING = Setting(256, False, -1.0, 0.0, 1.0, 768)  # every candidate of the 16 x 16 grid: the ceiling


def _line(name: str, s: Setting, sc: dict[str, float]) -> str:
    knobs = f"{s.budget:>4} {'y' if s.skip_covered else 'n':>4} {s.pred_iou_thresh:>5} {s.stability_thresh:>5}"
    knobs += f" {s.nms_iou:>5} {s.max_regions:>4}"
    return f"{name:<22}{knobs}" + "".join(f"{sc[k]:>10}" for k in sc)


def report(
    tuning: list[dict[str, np.ndarray]], test: list[dict[str, np.ndarray]], max_masks: float, as_json: bool
) -> None:
    t0 = time.perf_counter()
    rows = sweep(tuning)
    chosen, sc = choose(rows, max_masks)
    out: dict[str, Any] = {"settings": len(rows), "images": len(tuning), "sweep_s": round(time.perf_counter() - t0, 1)}
    named = [("former default", FORMER), ("chosen", chosen), ("every candidate", EVERYTHING)]
    for b in BUDGETS:
        best_b = choose([r for r in rows if r[0].budget == b], max_masks)
        named.append((f"best at {b} points", best_b[0]))
    out["tuning"] = [(n, s, evaluate(tuning, s)) for n, s in named]
    out["test"] = [(n, s, evaluate(test, s)) for n, s in named[:3] + named[4:5]] if test else []
    if as_json:
        print(json.dumps({k: v if k not in ("tuning", "test") else [(n, s.__dict__, x) for n, s, x in v]
                          for k, v in out.items()}, indent=1))  # fmt: skip
        return
    head = f"{'':<22}{'pts':>4} {'skip':>4} {'piou':>5} {'stab':>5} {'nms':>5} {'cap':>4}"
    head += "".join(f"{k:>10}" for k in sc)
    print(f"{out['settings']} settings on {out['images']} tuning images ({out['sweep_s']} s)")
    for part in ("tuning", "test"):
        if out[part]:
            print(f"\n{part}\n{head}")
            for n, s, x in out[part]:
                print(_line(n, s, x))


def load_sets(files: list[str], limit: int) -> list[tuple[str, list[Any]]]:
    """``(tag, the first `limit` annotated images)`` of each COCO file."""
    from visrec.segment.mask_eval import load_coco_instances

    return [(Path(f).parent.name, load_coco_instances(Path(f))[: limit or None]) for f in files]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("annotations", nargs="+", help="COCO files of generated scenes (visrec scene-gen) to tune on")
    ap.add_argument("--limit", type=int, default=6, help="scenes used from each file (0: all)")
    ap.add_argument("--cache", required=True, help="folder for the decoded candidates (about 40 MB per image)")
    ap.add_argument("--evaluate", help="COCO file scored once with the former and the chosen setting")
    ap.add_argument("--max-masks", type=float, default=32.0, help="most masks per image a chosen setting keeps")
    ap.add_argument("--decode-only", action="store_true", help="fill the cache and stop")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from visrec.segment.mobilesam import MobileSamConfig, MobileSamSegmenter

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    factory = lambda: MobileSamSegmenter(MobileSamConfig())  # noqa: E731
    tuning = [
        img for tag, items in load_sets(args.annotations, args.limit) for img in cached(cache, tag, items, factory)
    ]
    test = cached(cache, "evaluate", load_sets([args.evaluate], 0)[0][1], factory) if args.evaluate else []
    if args.decode_only:
        return
    report(tuning, test, args.max_masks, args.json)


if __name__ == "__main__":
    main()
