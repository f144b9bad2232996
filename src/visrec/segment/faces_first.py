"""``faces``: detector-first regions. A registered face detector runs once per image; each face box is a region.

The regions are the detector's boxes grown by ``margin`` (a share of the box side, on every side) so that they
are cut like the images of the index they are recognised against. The margin default (0.1) was measured on
``naruto_roboflow``, an index of face crops: BlazeFace finds a face in 351 of its 391 images, and the crop is
1.08x the face box's width and 1.17x its height at the median (so 0.04-0.09 per side). BlazeFace's box spans
brows to chin; a margin adds the hair and ears that the indexed crops show.

The detector is any name of :data:`visrec.faces.FACE_DETECTORS` (default ``blazeface``, the faces pipeline's
default). Landmarks are not needed here, so BlazeFace runs without dlib's landmark step. The backend needs the
``faces`` extra (``pip install 'visrec[faces]'`` plus BlazeFace's model files, see :mod:`visrec.faces.blazeface`);
without it, building the segmenter raises :class:`visrec.errors.MissingExtra` naming the extra. An image
without faces gives no region (not an error). Regions carry no masks (``masks=None``): a face box is the region.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.errors import BadInput, MissingExtra
from visrec.faces.base import FACE_DETECTORS, FaceDetector, Faces
from visrec.segment.base import ImageHolder
from visrec.segment.types import Regions

# Detector name -> (the module it imports, the pip package providing it); checked before anything loads, so that a
# missing runtime is reported as the missing ``faces`` extra rather than as missing weights.
RUNTIMES = {
    "blazeface": ("ai_edge_litert", "ai-edge-litert"),
    "blazeface-short": ("ai_edge_litert", "ai-edge-litert"),
    "dlib-hog": ("dlib", "dlib-bin"),
    "dlib-cnn": ("dlib", "dlib-bin"),
}
# Detector options that skip work a box-only consumer does not need (dlib's 5 landmarks after BlazeFace).
BOX_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    "blazeface": {"landmarks": "blaze6"},
    "blazeface-short": {"landmarks": "blaze6"},
}


@dataclass(frozen=True)
class FaceRegionConfig:
    """``detector``: a name of ``visrec.faces.FACE_DETECTORS``; ``margin``: each face box grows by this share of
    its width (left and right) and height (top and bottom), then is clipped to the image; ``min_score``: faces
    scoring below it are dropped (on top of the detector's own threshold); ``max_regions``: the most confident
    faces kept."""

    detector: str = "blazeface"
    margin: float = 0.1
    min_score: float = 0.0
    max_regions: int = 50

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 2.0:
            raise BadInput(f"margin is a share of the face box side in [0, 2], got {self.margin}")
        if self.max_regions < 1:
            raise BadInput(f"max_regions must be >= 1, got {self.max_regions}")


def expand_boxes(xyxy: np.ndarray, margin: float, height: int, width: int) -> np.ndarray:
    """``(n, 4)`` xyxy pixel boxes grown by ``margin`` x their width / height on each side, clipped to a
    ``height`` x ``width`` image; returns ``(n, 4)`` float32."""
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    grown = np.concatenate([boxes[:, :2] - margin * wh, boxes[:, 2:] + margin * wh], axis=1)
    return np.clip(grown, 0, np.array([width, height, width, height], np.float32)).astype(np.float32)


def faces_to_regions(faces: Faces, margin: float, min_score: float = 0.0, max_regions: int = 50) -> Regions:
    """The detections as :class:`Regions`, most confident first: boxes grown by ``margin`` and clipped to
    ``faces.image_size``, ``scores`` the detector's; faces under ``min_score`` or left under one pixel wide or
    high after clipping are dropped. ``masks`` is None."""
    h, w = faces.image_size
    boxes = expand_boxes(faces.xyxy, margin, h, w)
    scores = np.asarray(faces.scores, np.float32).reshape(-1)
    ok = (scores >= min_score) & np.all(boxes[:, 2:] - boxes[:, :2] >= 1.0, axis=1)
    idx = np.nonzero(ok)[0]
    idx = idx[np.argsort(-scores[idx], kind="stable")][:max_regions]
    return Regions(boxes[idx], scores[idx], None)


def create_detector(name: str) -> FaceDetector:
    """The registered face detector ``name``, set up for boxes only where that saves work; raises
    :class:`MissingExtra` (extra ``faces``) when its runtime is not installed."""
    module, package = RUNTIMES.get(name, ("", ""))
    if module and importlib.util.find_spec(module) is None:
        raise MissingExtra(package, "faces", f"the faces segmenter (face detector {name!r})")
    return FACE_DETECTORS.create(name, **BOX_ONLY_OPTIONS.get(name, {}))


class FaceRegionSegmenter(ImageHolder):
    """See the module docstring. Options are the fields of :class:`FaceRegionConfig`; ``detector_instance``
    injects a ready :class:`visrec.faces.FaceDetector` (its name then wins over ``config.detector``)."""

    name = "faces"

    def __init__(
        self,
        config: FaceRegionConfig | None = None,
        detector_instance: FaceDetector | None = None,
        **options: Any,
    ) -> None:
        self.config = config or FaceRegionConfig(**options)
        self.detector = detector_instance or create_detector(self.config.detector)
        self._regions: Regions | None = None
        self._faces: Faces | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Detect the faces of an RGB ``uint8`` ``(h, w, 3)`` image once (BlazeFace: ~40-80 ms at 1024 px)."""
        self._image = image
        faces = self.detector.detect(image)
        cfg = self.config
        self._faces = faces
        self._regions = faces_to_regions(faces, cfg.margin, cfg.min_score, cfg.max_regions)

    def regions(self) -> Regions:
        """One region per face, most confident first (boxes in the image's pixels; empty when no face)."""
        self._require_image()
        return self._regions if self._regions is not None else Regions.empty()

    def faces(self) -> Faces:
        """The detector's raw output for the current image (tight boxes, landmarks), in its own order."""
        image = self._require_image()
        return self._faces if self._faces is not None else Faces.empty((image.shape[0], image.shape[1]))
