"""The data that flows out of segmenters and scene analysis, validated on construction.

``Regions`` belongs with the shared types of ``visrec.types``; it lives here until it is moved there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.errors import DimensionMismatch


@dataclass(frozen=True)
class Regions:
    """Candidate regions of one image.

    ``xyxy``: ``(n, 4)`` float32 pixel boxes; ``scores``: ``(n,)`` float32 (the backend's own confidence,
    higher is better); ``masks``: ``(n, h, w)`` bool or None when the backend gives boxes only.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4 or self.xyxy.dtype != np.float32:
            raise DimensionMismatch(f"Regions.xyxy must be (n, 4) float32, got {self.xyxy.shape} {self.xyxy.dtype}")
        n = len(self.xyxy)
        if self.scores.shape != (n,) or self.scores.dtype != np.float32:
            raise DimensionMismatch(
                f"Regions.scores must be ({n},) float32, got {self.scores.shape} {self.scores.dtype}"
            )
        if self.masks is not None and (self.masks.ndim != 3 or len(self.masks) != n or self.masks.dtype != bool):
            raise DimensionMismatch(
                f"Regions.masks must be ({n}, h, w) bool, got {self.masks.shape} {self.masks.dtype}"
            )
        if n and bool(np.any(self.xyxy[:, 2:] < self.xyxy[:, :2])):
            raise DimensionMismatch("Regions.xyxy holds a box with x1 < x0 or y1 < y0; boxes are (x0, y0, x1, y1)")

    def __len__(self) -> int:
        return len(self.xyxy)

    @staticmethod
    def empty(height: int = 0, width: int = 0, with_masks: bool = False) -> Regions:
        """No region (masks ``(0, height, width)`` when ``with_masks``)."""
        masks = np.zeros((0, height, width), bool) if with_masks else None
        return Regions(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), masks)

    def take(self, rows: np.ndarray | list[int]) -> Regions:
        """The given rows, in the given order."""
        idx = np.asarray(rows, dtype=np.int64)
        masks = None if self.masks is None else self.masks[idx]
        return Regions(self.xyxy[idx], self.scores[idx], masks)


@dataclass(frozen=True)
class SceneResult:
    """What scene analysis found in one image, in the *input* image's pixel coordinates.

    ``regions``: the kept regions (their ``scores`` are the segmenter's); ``labels``: one per region, None for
    unknown; ``candidates``: the best class before the unknown decision; ``scores``: ``(n,)`` float32 confidence
    of each label (the raw classifier score under the absolute and relative rules, the calibrated probability under
    the calibrated rule when the index is calibrated);
    ``width``/``height``: the input image's size; ``timings``: seconds per stage.
    """

    regions: Regions
    labels: tuple[str | None, ...]
    candidates: tuple[str, ...]
    scores: np.ndarray
    width: int
    height: int
    timings: dict[str, float]

    def __post_init__(self) -> None:
        n = len(self.regions)
        if len(self.labels) != n or len(self.candidates) != n or self.scores.shape != (n,):
            raise DimensionMismatch(
                f"SceneResult needs one label, candidate and score per region ({n}), got "
                f"{len(self.labels)}, {len(self.candidates)}, {self.scores.shape}"
            )

    def __len__(self) -> int:
        return len(self.regions)

    def present(self, min_score: float = 0.0) -> set[str]:
        """Known labels found at least once with a score >= ``min_score`` (image-level presence)."""
        return {lab for lab, s in zip(self.labels, self.scores, strict=True) if lab is not None and s >= min_score}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: image size, timings and one entry per region."""
        items = []
        for i in range(len(self)):
            x0, y0, x1, y1 = (round(float(v), 1) for v in self.regions.xyxy[i])
            items.append(
                {
                    "box": [x0, y0, x1, y1],
                    "label": self.labels[i],
                    "candidate": self.candidates[i],
                    "score": round(float(self.scores[i]), 4),
                    "region_score": round(float(self.regions.scores[i]), 4),
                }
            )
        return {
            "width": self.width,
            "height": self.height,
            "regions": items,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def to_coco(self, file_name: str = "image", image_id: int = 1) -> dict[str, Any]:
        """COCO-style detections: ``images``, ``categories`` (known labels found, plus ``unknown``) and
        ``annotations`` with ``bbox`` as ``[x, y, w, h]``, ``area``, ``score`` and ``category_id``; when the
        regions have masks, each annotation's ``segmentation`` is the mask as COCO's compressed RLE
        (pycocotools-compatible) and ``area`` its pixel count."""
        from visrec.segment.rle import mask_to_rle

        names = [*sorted({lab for lab in self.labels if lab is not None}), "unknown"]
        cat = {n: i + 1 for i, n in enumerate(names)}
        anns = []
        for i in range(len(self)):
            x0, y0, x1, y1 = (float(v) for v in self.regions.xyxy[i])
            lab = self.labels[i]
            ann: dict[str, Any] = {
                "id": i + 1,
                "image_id": image_id,
                "category_id": cat[lab if lab is not None else "unknown"],
                "bbox": [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)],
                "area": round((x1 - x0) * (y1 - y0), 1),
                "score": round(float(self.scores[i]), 4),
                "iscrowd": 0,
            }
            if self.regions.masks is not None:
                ann["segmentation"] = mask_to_rle(self.regions.masks[i])
                ann["area"] = int(self.regions.masks[i].sum())
            anns.append(ann)
        return {
            "images": [{"id": image_id, "file_name": file_name, "width": self.width, "height": self.height}],
            "categories": [{"id": cat[n], "name": n} for n in names],
            "annotations": anns,
        }
