"""Generated scenes for tuning scene analysis: labelled images pasted on backgrounds, with their boxes and masks.

Every threshold, budget and rule of the scene pipeline is chosen on scenes made here from the *training* images
of an index, never on the test scenes. Each scene is a background (a random crop of a photo from another set, or
a procedural texture when no photo is given) with ``objects`` labelled images pasted at random sizes and places.
An object may cover part of earlier ones, but only so much: a placement is retried when it would hide more
than ``1 - min_visible`` of any object or when its box overlaps an earlier box by more than ``max_overlap`` of
the smaller one. The ground truth is what stays visible: one mask per object (the pasted pixels that were not
covered later) and its tight box. Scenes are deterministic given ``seed``.

Two options make the scenes look more like real ones, where things are drawn in another style than the index's
images and things the index does not hold appear beside the ones it does:

* *strangers* (``stranger_share``): each pasted object is, with that probability, drawn from a second labelled
  source whose classes the recognising index does not hold (another data set, or classes left out of the index).
  A stranger occludes and is occluded like any object, but it is no object to find: it is written apart, under
  ``strangers``, never under ``annotations``, so recall never counts it and a region named on it is a false one.
* *styles* (``styles``): each pasted picture (object or stranger) is, with that probability, redrawn at its
  pasted size in one of ``style_names``, the renderings of :mod:`visrec.train.styles` (greyscale, edge sketch,
  posterised, cartoon, blur, strong colour jitter). The style applied is recorded per object (``"none"``
  otherwise).

With neither (the defaults) the random stream is the one of plain scenes: a seed gives the same scenes as before
these options existed.

The output folder holds ``images/scene_NNNN.png`` and ``annotations.json`` in COCO form (``bbox`` ``[x, y, w,
h]``, ``segmentation`` as COCO RLE ``{"size": [h, w], "counts": "..."}`` (:mod:`visrec.segment.rle`, as
pycocotools writes it), ``source``: the pasted file, ``style``: its rendering), plus ``strangers``: the pasted
strangers in the same form, with their own class under ``label``.
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
STYLE_NAMES = ("greyscale", "sketch", "posterize", "cartoon", "blur", "jitter")
"""The renderings of :data:`visrec.train.styles.STYLES` a pasted picture may get (all but ``none``)."""


@dataclass(frozen=True)
class SynthConfig:
    """``width``/``height``: scene size in pixels; ``objects``: inclusive range of objects per scene; ``side``:
    range of each object's longer side as a fraction of the scene's short side (aspect ratio kept);
    ``max_overlap``: the most a new box may overlap an earlier one, as a fraction of the smaller box;
    ``min_visible``: the least of each object's pasted area that must stay visible; ``shape``: ``rect`` (the
    whole image is pasted) or ``ellipse`` (the inscribed ellipse only); ``seed``: scenes are a function of it;
    ``stranger_share``: probability that a pasted object is a stranger (needs strangers to draw from);
    ``styles``: probability that a pasted picture is redrawn in one of ``style_names`` (drawn uniformly), names
    of :data:`visrec.train.styles.STYLES` (:data:`STYLE_NAMES`: all but ``none``)."""

    width: int = 1024
    height: int = 640
    objects: tuple[int, int] = (1, 5)
    side: tuple[float, float] = (0.12, 0.45)
    max_overlap: float = 0.3
    min_visible: float = 0.6
    shape: str = "rect"
    seed: int = 0
    stranger_share: float = 0.0
    styles: float = 0.0
    style_names: tuple[str, ...] = STYLE_NAMES

    def __post_init__(self) -> None:
        if min(self.width, self.height) < 16 or not 1 <= self.objects[0] <= self.objects[1]:
            raise BadInput(f"scenes need width, height >= 16 and 1 <= objects min <= max; got {self}")
        if not 0.0 < self.side[0] <= self.side[1] <= 1.0:
            raise BadInput(f"side must be fractions 0 < min <= max <= 1 of the short side, got {self.side}")
        if not 0.0 <= self.max_overlap <= 1.0 or not 0.0 < self.min_visible <= 1.0:
            raise BadInput(f"max_overlap must be in [0, 1], min_visible in (0, 1]; got {self}")
        if self.shape not in SHAPES:
            raise BadInput(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if not 0.0 <= self.stranger_share <= 1.0 or not 0.0 <= self.styles <= 1.0:
            raise BadInput(f"stranger_share and styles are probabilities in [0, 1]; got {self}")
        unknown = sorted(set(self.style_names) - set(STYLE_NAMES))
        if unknown or not self.style_names:
            raise BadInput(f"unknown style(s) {unknown or '(none given)'}; choose from {', '.join(STYLE_NAMES)}")


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
    rng: np.random.Generator,
    canvas: np.ndarray,
    source: np.ndarray,
    placed: list[dict[str, Any]],
    cfg: SynthConfig,
    style: str = "none",
) -> dict[str, Any] | None:
    """Paste ``source`` on ``canvas`` in place at a random fitting spot (30 tries), redrawn in ``style`` at its
    pasted size; its record or None."""
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
        pixels = _render(Image.fromarray(source).resize((ow, oh), Image.Resampling.BILINEAR), style, rng)
        region = canvas[y : y + oh, x : x + ow]
        region[full[y : y + oh, x : x + ow]] = pixels[full[y : y + oh, x : x + ow]]
        for p in placed:
            p["visible"] &= ~full
        return {"box": np.array([x, y, x + ow, y + oh], np.float64), "visible": full, "area": int(full.sum())}
    return None


def _render(image: Image.Image, style: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` redrawn in ``style`` (a name of :data:`visrec.train.styles.STYLES`) as ``(h, w, 3)`` uint8."""
    if style == "none":
        return np.asarray(image)
    from visrec.train.styles import STYLES

    return np.asarray(STYLES[style](image, rng).convert("RGB"))


def _draw(
    rng: np.random.Generator, items: list[tuple[str, str]], strangers: list[tuple[str, str]], cfg: SynthConfig
) -> tuple[str, str, bool, str]:
    """The next picture to paste: ``(path, label, is a stranger, style)``; no random draw for an option that is
    off, so plain scenes keep their random stream."""
    stranger = bool(strangers) and cfg.stranger_share > 0 and rng.random() < cfg.stranger_share
    pool = strangers if stranger else items
    path, label = pool[int(rng.integers(len(pool)))]
    style = "none"
    if cfg.styles > 0 and rng.random() < cfg.styles:
        style = str(cfg.style_names[int(rng.integers(len(cfg.style_names)))])
    return path, label, stranger, style


def make_scene(
    rng: np.random.Generator,
    items: list[tuple[str, str]],
    load: Any,
    backgrounds: list[np.ndarray],
    cfg: SynthConfig,
    strangers: list[tuple[str, str]] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One scene: the image ``(h, w, 3)`` uint8 and one ``{label, source, mask, box, stranger, style}`` per
    visible pasted picture (``stranger``: drawn from ``strangers``, not an object to find).

    ``items``: ``(path, label)`` pairs to draw from; ``load(path)`` gives an RGB array; ``backgrounds``: photos
    to crop (procedural textures when empty); ``strangers``: ``(path, label)`` pairs of classes the index does
    not hold, drawn with probability ``cfg.stranger_share``. ``box`` is the tight ``[x0, y0, x1, y1]`` of the
    visible mask.
    """
    h, w = cfg.height, cfg.width
    if backgrounds:
        canvas = photo_background(rng, backgrounds[int(rng.integers(len(backgrounds)))], h, w).copy()
    else:
        canvas = procedural_background(rng, h, w)
    placed: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))):
        path, label, stranger, style = _draw(rng, items, strangers or [], cfg)
        rec = _place(rng, canvas, load(path), placed, cfg, style)
        if rec is not None:
            placed.append(rec | {"label": label, "source": path, "stranger": stranger, "style": style})
    objs = []
    for p in placed:
        box = masks_to_boxes(p["visible"][None])[0]
        keep = {k: p[k] for k in ("label", "source", "stranger", "style")}
        objs.append(keep | {"mask": p["visible"], "box": box})
    return canvas, objs


def _check_sources(items: list[tuple[str, str]], strangers: list[tuple[str, str]], cfg: SynthConfig) -> None:
    if not items:
        raise BadInput("no labelled image to paste: the index or dataset has no labelled item")
    if cfg.stranger_share > 0 and not strangers:
        raise BadInput(f"stranger_share {cfg.stranger_share} needs strangers to paste: give a labelled source")
    if strangers and cfg.stranger_share == 0:
        raise BadInput("strangers were given but stranger_share is 0: set it above 0 (e.g. 0.3)")
    shared = sorted({lab for _, lab in items} & {lab for _, lab in strangers})
    if shared:
        raise BadInput(
            f"the strangers share the label(s) {', '.join(shared[:5])} with the objects to find; a stranger must be "
            "of a class the index does not hold: filter one of the two sources (e.g. --strangers-where)"
        )


def _annotation(o: dict[str, Any], ann_id: int, image_id: int, category: int | None) -> dict[str, Any]:
    """One COCO record of a pasted picture: an object (with ``category_id``) or a stranger (with ``label``)."""
    x0, y0, x1, y1 = (float(v) for v in o["box"])
    rec: dict[str, Any] = {"id": ann_id, "image_id": image_id}
    rec |= {"category_id": category} if category is not None else {"label": o["label"]}
    return rec | {
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": int(o["mask"].sum()),
        "segmentation": mask_to_rle(o["mask"]),
        "iscrowd": 0,
        "source": o["source"],
        "style": o["style"],
    }


def generate(
    items: list[tuple[str, str]],
    out: Path,
    n: int,
    cfg: SynthConfig,
    backgrounds: list[np.ndarray] | None = None,
    strangers: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Write ``n`` scenes to ``out/images`` and their COCO ground truth to ``out/annotations.json``; returns it.

    ``items``: ``(image path, label)`` pairs, the training images to paste; ``strangers``: ``(image path,
    label)`` pairs of classes the recognising index does not hold, pasted with probability
    ``cfg.stranger_share`` and written under ``strangers``, never under ``annotations``.
    """
    from visrec.data.images import load_image

    _check_sources(items, strangers or [], cfg)
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
    info = {"generator": "visrec.segment.synth", "config": asdict(cfg)}
    info["stranger_labels"] = sorted({lab for _, lab in strangers or []})
    coco: dict[str, Any] = {"info": info, "images": [], "annotations": [], "strangers": []}
    coco["categories"] = [{"id": cat[lab], "name": lab} for lab in labels]
    for i in range(n):
        rng = np.random.default_rng([cfg.seed, i])
        image, objs = make_scene(rng, items, load, backgrounds or [], cfg, strangers)
        name = f"scene_{i:04d}.png"
        Image.fromarray(image).save(out / "images" / name)
        coco["images"].append({"id": i + 1, "file_name": f"images/{name}", "width": cfg.width, "height": cfg.height})
        for o in objs:
            dest = coco["strangers"] if o["stranger"] else coco["annotations"]
            dest.append(_annotation(o, len(dest) + 1, i + 1, None if o["stranger"] else cat[o["label"]]))
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
