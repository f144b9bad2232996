"""Segmentation quality against ground-truth instance masks: for every annotated object, the mask IoU of the
best-matching region a segmenter proposes (its "best overlap", the recall measure of proposal methods).

Ground truth is read from a COCO instances file with polygon segmentations (e.g. labelme's export) or COCO RLE
masks (``visrec scene-gen``'s generated scenes); regions without masks (box-only backends) are compared as
filled boxes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from visrec.errors import BadInput
from visrec.segment.base import Segmenter
from visrec.segment.masks import box_to_mask, mask_iou
from visrec.segment.rle import rle_to_mask


@dataclass(frozen=True)
class InstanceImage:
    """One annotated image: its file, ``masks (n, h, w)`` bool (one per object) and the objects' category names."""

    path: Path
    masks: np.ndarray
    categories: tuple[str, ...]


@dataclass(frozen=True)
class MaskReport:
    """``objects``: ``[{file, category, area, best_iou, regions}]`` (one per ground-truth object); ``mean_iou``:
    mean best IoU; ``recall_50``: share of objects whose best IoU is >= 0.5; ``regions``: mean regions per image."""

    segmenter: str
    objects: list[dict[str, Any]]
    mean_iou: float
    recall_50: float
    regions: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "segmenter": self.segmenter,
            "mean_iou": self.mean_iou,
            "recall_50": self.recall_50,
            "regions_per_image": self.regions,
            "objects": self.objects,
        }


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixel coordinates) into one ``(h, w)`` bool mask."""
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        if len(poly) >= 6:
            draw.polygon([(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)], fill=1)
    return np.asarray(canvas, dtype=bool)


def _find_image(root: Path, file_name: str) -> Path:
    for cand in (root / file_name, root / "images" / Path(file_name).name, root / Path(file_name).name):
        if cand.is_file():
            return cand
    raise BadInput(f"{root}: the annotated image {file_name} is neither there nor under images/")


def _object_mask(ann: dict[str, Any], source: Path, height: int, width: int) -> np.ndarray:
    """The ``(height, width)`` bool mask of one annotation: COCO polygons or COCO RLE (``scene-gen`` writes RLE)."""
    seg = ann.get("segmentation")
    seg = json.loads(seg) if isinstance(seg, str) else seg  # labelme writes every field as a string
    if isinstance(seg, dict):
        try:
            mask = rle_to_mask(seg)
        except BadInput as e:
            raise BadInput(f"{source}: annotation {ann.get('id')}: {e}") from e
        if mask.shape != (height, width):
            raise BadInput(
                f"{source}: annotation {ann.get('id')} has an RLE mask of {mask.shape[1]}x{mask.shape[0]} "
                f"on an image of {width}x{height}"
            )
        return mask
    if not isinstance(seg, list):
        raise BadInput(f"{source}: annotation {ann.get('id')} has no segmentation (polygons or COCO RLE)")
    return polygons_to_mask([[float(v) for v in poly] for poly in seg], height, width)


def load_coco_instances(path: Path, images_root: Path | None = None) -> list[InstanceImage]:
    """Read a COCO instances JSON with polygon or RLE masks; images are looked up beside it (or in ``images/``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        images, anns, cats = data["images"], data["annotations"], data["categories"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a COCO instances file with images/annotations/categories ({e})") from e
    root = images_root or path.parent
    names = {str(c["id"]): str(c["name"]) for c in cats}
    out = []
    for im in images:
        h, w = int(im["height"]), int(im["width"])
        mine = [a for a in anns if str(a["image_id"]) == str(im["id"])]
        masks = [_object_mask(a, path, h, w) for a in mine]
        out.append(
            InstanceImage(
                _find_image(root, str(im["file_name"])),
                np.stack(masks) if masks else np.zeros((0, h, w), bool),
                tuple(names.get(str(a["category_id"]), str(a["category_id"])) for a in mine),
            )
        )
    return out


def region_masks(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    """The masks ``(n, h, w)`` bool of ``segmenter``'s regions of ``image`` (filled boxes for box-only regions)."""
    segmenter.set_image(image)
    regs = segmenter.regions()
    h, w = image.shape[:2]
    if regs.masks is not None:
        return regs.masks
    return np.stack([box_to_mask(b, h, w) for b in regs.xyxy]) if len(regs) else np.zeros((0, h, w), bool)


def best_overlaps(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each ground-truth mask ``truth (m, h, w)``, the best IoU over ``predicted (n, h, w)``: ``(m,)`` float64."""
    if len(truth) == 0:
        return np.zeros(0)
    if len(predicted) == 0:
        return np.zeros(len(truth))
    return mask_iou(truth, predicted).max(axis=1)


def evaluate_masks(segmenter: Segmenter, images: list[InstanceImage], name: str = "") -> MaskReport:
    """Best-overlap mask IoU of ``segmenter`` on every object of ``images``."""
    from visrec.data.images import load_image

    objects: list[dict[str, Any]] = []
    counts = []
    for item in images:
        rgb = load_image(item.path)
        if rgb.shape[:2] != item.masks.shape[1:]:
            raise BadInput(
                f"{item.path}: the image is {rgb.shape[1]}x{rgb.shape[0]} but its annotation is "
                f"{item.masks.shape[2]}x{item.masks.shape[1]}"
            )
        pred = region_masks(segmenter, rgb)
        counts.append(len(pred))
        for cat, m, iou in zip(item.categories, item.masks, best_overlaps(pred, item.masks), strict=True):
            objects.append(
                {"file": item.path.name, "category": cat, "area": int(m.sum()), "best_iou": round(float(iou), 4)}
            )
    ious = np.array([o["best_iou"] for o in objects]) if objects else np.zeros(0)
    return MaskReport(
        name or getattr(segmenter, "name", type(segmenter).__name__),
        objects,
        round(float(ious.mean()), 4) if len(ious) else 0.0,
        round(float((ious >= 0.5).mean()), 4) if len(ious) else 0.0,
        round(float(np.mean(counts)), 1) if counts else 0.0,
    )
