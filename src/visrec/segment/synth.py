"""Generated scenes for tuning scene analysis: labelled images pasted on backgrounds, with their boxes and masks.

Every threshold, budget and rule of the scene pipeline is chosen on scenes made here from the *training* images
of an index, never on the test scenes. Each scene is a background (a random crop of a photo from another set, or
a procedural texture when no photo is given) with ``objects`` labelled images pasted at random sizes and places.
An object may cover part of earlier ones, but only so much: a placement is retried when it would hide more
than ``1 - min_visible`` of any object or when its box overlaps an earlier box by more than ``max_overlap`` of
the smaller one. The ground truth is what stays visible: one mask per object (the pasted pixels that were not
covered later) and its tight box. Scenes are deterministic given ``seed``.

The output folder holds ``images/scene_NNNN.png`` and ``annotations.json`` in COCO form (``bbox`` ``[x, y, w,
h]``, ``segmentation`` as COCO RLE ``{"size": [h, w], "counts": "..."}`` (:mod:`visrec.segment.rle`, as
pycocotools writes it), and ``source``: the pasted file).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visrec.errors import BadInput
from visrec.segment.masks import masks_to_boxes
from visrec.segment.rle import mask_to_rle

SHAPES = ("rect", "ellipse")


@dataclass(frozen=True)
class SynthConfig:
    """``width``/``height``: scene size in pixels; ``objects``: inclusive range of objects per scene; ``side``:
    range of each object's longer side as a fraction of the scene's short side (aspect ratio kept);
    ``max_overlap``: the most a new box may overlap an earlier one, as a fraction of the smaller box;
    ``min_visible``: the least of each object's pasted area that must stay visible; ``shape``: ``rect`` (the
    whole image is pasted) or ``ellipse`` (the inscribed ellipse only); ``seed``: scenes are a function of it."""

    width: int = 1024
    height: int = 640
    objects: tuple[int, int] = (1, 5)
    side: tuple[float, float] = (0.12, 0.45)
    max_overlap: float = 0.3
    min_visible: float = 0.6
    shape: str = "rect"
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.width, self.height) < 16 or not 1 <= self.objects[0] <= self.objects[1]:
            raise BadInput(f"scenes need width, height >= 16 and 1 <= objects min <= max; got {self}")
        if not 0.0 < self.side[0] <= self.side[1] <= 1.0:
            raise BadInput(f"side must be fractions 0 < min <= max <= 1 of the short side, got {self.side}")
        if not 0.0 <= self.max_overlap <= 1.0 or not 0.0 < self.min_visible <= 1.0:
            raise BadInput(f"max_overlap must be in [0, 1], min_visible in (0, 1]; got {self}")
        if self.shape not in SHAPES:
            raise BadInput(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")


# Many small objects: 10-18 objects of 40-100 px on a 640x480 scene.
CROWDED = SynthConfig(width=640, height=480, objects=(10, 18), side=(40 / 480, 100 / 480), max_overlap=0.15)


def procedural_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random texture ``(h, w, 3)`` uint8: smooth colour noise at two scales plus a few flat shapes."""
    out = np.zeros((height, width, 3), np.float64)
    for cells, weight in ((4, 0.6), (24, 0.4)):
        grid = rng.uniform(0, 255, (cells, max(2, round(cells * width / height)), 3)).astype(np.uint8)
        out += weight * np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC))
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.03, 0.2) * min(width, height)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (x - r, y - r * rng.uniform(0.3, 1.0), x + r, y + r)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return np.array(img)


def photo_background(rng: np.random.Generator, photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """A random crop of ``photo`` with the scene's aspect ratio, at least half its short side, resized."""
    ph, pw = photo.shape[:2]
    scale = min(ph / height, pw / width) * rng.uniform(0.5, 1.0)
    ch, cw = max(1, round(height * scale)), max(1, round(width * scale))
    y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = Image.fromarray(photo[y : y + ch, x : x + cw])
    return np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR))


def _shape_mask(h: int, w: int, shape: str) -> np.ndarray:
    if shape == "rect":
        return np.ones((h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1.0


def _fits(box: np.ndarray, full: np.ndarray, placed: list[dict[str, Any]], cfg: SynthConfig) -> bool:
    """Whether an object with box ``box`` and scene-sized mask ``full`` may go on top of ``placed``."""
    from visrec.segment.masks import box_ioa

    for p in placed:
        if box_ioa(box[None], p["box"][None])[0, 0] > cfg.max_overlap:
            return False
        if (p["visible"] & ~full).sum() < cfg.min_visible * p["area"]:
            return False
    return True


def _place(
    rng: np.random.Generator, canvas: np.ndarray, source: np.ndarray, placed: list[dict[str, Any]], cfg: SynthConfig
) -> dict[str, Any] | None:
    """Paste ``source`` on ``canvas`` in place at a random fitting spot (30 tries); its record or None."""
    h, w = canvas.shape[:2]
    sh, sw = source.shape[:2]
    for _ in range(30):
        side = rng.uniform(*cfg.side) * min(h, w)
        f = side / max(sh, sw)
        oh, ow = max(4, round(sh * f)), max(4, round(sw * f))
        if oh > h or ow > w:
            continue
        y, x = int(rng.integers(0, h - oh + 1)), int(rng.integers(0, w - ow + 1))
        full = np.zeros((h, w), bool)
        full[y : y + oh, x : x + ow] = _shape_mask(oh, ow, cfg.shape)
        if not _fits(np.array([x, y, x + ow, y + oh], np.float64), full, placed, cfg):
            continue
        pixels = np.asarray(Image.fromarray(source).resize((ow, oh), Image.Resampling.BILINEAR))
        region = canvas[y : y + oh, x : x + ow]
        region[full[y : y + oh, x : x + ow]] = pixels[full[y : y + oh, x : x + ow]]
        for p in placed:
            p["visible"] &= ~full
        return {"box": np.array([x, y, x + ow, y + oh], np.float64), "visible": full, "area": int(full.sum())}
    return None


def make_scene(
    rng: np.random.Generator,
    items: list[tuple[str, str]],
    load: Any,
    backgrounds: list[np.ndarray],
    cfg: SynthConfig,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One scene: the image ``(h, w, 3)`` uint8 and one ``{label, source, mask, box}`` per visible object.

    ``items``: ``(path, label)`` pairs to draw from; ``load(path)`` gives an RGB array; ``backgrounds``: photos
    to crop (procedural textures when empty). ``box`` is the tight ``[x0, y0, x1, y1]`` of the visible mask.
    """
    h, w = cfg.height, cfg.width
    if backgrounds:
        canvas = photo_background(rng, backgrounds[int(rng.integers(len(backgrounds)))], h, w).copy()
    else:
        canvas = procedural_background(rng, h, w)
    placed: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))):
        path, label = items[int(rng.integers(len(items)))]
        rec = _place(rng, canvas, load(path), placed, cfg)
        if rec is not None:
            placed.append(rec | {"label": label, "source": path})
    objs = []
    for p in placed:
        box = masks_to_boxes(p["visible"][None])[0]
        objs.append({"label": p["label"], "source": p["source"], "mask": p["visible"], "box": box})
    return canvas, objs


def generate(
    items: list[tuple[str, str]], out: Path, n: int, cfg: SynthConfig, backgrounds: list[np.ndarray] | None = None
) -> dict[str, Any]:
    """Write ``n`` scenes to ``out/images`` and their COCO ground truth to ``out/annotations.json``; returns it.

    ``items``: ``(image path, label)`` pairs, the training images to paste.
    """
    from visrec.data.images import load_image

    if not items:
        raise BadInput("no labelled image to paste: the index or dataset has no labelled item")
    if n < 1:
        raise BadInput(f"n must be >= 1, got {n}")
    labels = sorted({lab for _, lab in items})
    cat = {lab: i + 1 for i, lab in enumerate(labels)}
    cache: dict[str, np.ndarray] = {}

    def load(path: str) -> np.ndarray:
        if path not in cache:
            cache[path] = load_image(path)
        return cache[path]

    (out / "images").mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {"info": {"generator": "visrec.segment.synth", "config": asdict(cfg)}, "images": []}
    coco |= {"categories": [{"id": cat[lab], "name": lab} for lab in labels], "annotations": []}
    for i in range(n):
        rng = np.random.default_rng([cfg.seed, i])
        image, objs = make_scene(rng, items, load, backgrounds or [], cfg)
        name = f"scene_{i:04d}.png"
        Image.fromarray(image).save(out / "images" / name)
        coco["images"].append({"id": i + 1, "file_name": f"images/{name}", "width": cfg.width, "height": cfg.height})
        for o in objs:
            x0, y0, x1, y1 = (float(v) for v in o["box"])
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": cat[o["label"]],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": int(o["mask"].sum()),
                    "segmentation": mask_to_rle(o["mask"]),
                    "iscrowd": 0,
                    "source": o["source"],
                }
            )
    (out / "annotations.json").write_text(json.dumps(coco))
    return coco


def index_items(index: Any) -> list[tuple[str, str]]:
    """``(file, label)`` of every single-label item of an index whose file is still where it was indexed."""
    from visrec.types import Hit

    out = []
    for item_id, meta in sorted(index.metadata().items()):
        labels = meta.get("labels") or []
        if len(labels) != 1:
            continue
        path = index.file_of(Hit(item_id, 0.0, str(meta.get("path", ""))))
        if path is not None:
            out.append((str(path), str(labels[0])))
    return out


def dataset_items(dataset: Any) -> list[tuple[str, str]]:
    """``(file, label)`` of every single-label record of a :class:`visrec.types.LabeledSet`."""
    return [(str(dataset.abspath(r)), r.labels[0]) for r in dataset.records if len(r.labels) == 1]
