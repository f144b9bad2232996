"""A face pipeline = a registered detector + a registered embedder; what it used is recorded by ``describe()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.faces.base import FACE_DETECTORS, FACE_EMBEDDERS, FaceDetector, FaceEmbedder, Faces

# BlazeFace (+ dlib's 5 points on its boxes) finds the faces cut by the border or partly hidden that dlib's HOG
# misses (7 of 7 vs 4 in deepface_celebs' group selfie) at equal verification accuracy: benchmarks/faces_eval.py.
DEFAULT_DETECTOR = "blazeface"
DEFAULT_EMBEDDER = "dlib-resnet"
# Cosine distance used when nothing was calibrated: dlib's documented Euclidean 0.6 on its raw descriptors,
# measured on deepface_celebs as cosine distance of the normalised ones (see benchmarks/faces_eval.py).
# FaceNet: halfway between the largest same-person (0.372) and the smallest different-person (0.454) distance there.
DEFAULT_THRESHOLDS = {"dlib-resnet": 0.07, "facenet-512": 0.41}


@dataclass
class FacePipeline:
    """Detect then embed. ``largest_only`` keeps one face per image (the largest)."""

    detector: FaceDetector
    embedder: FaceEmbedder

    def find(self, image: np.ndarray, largest_only: bool = False) -> tuple[Faces, np.ndarray]:
        """Faces of an RGB uint8 image and their ``(n, dim)`` float32 unit embeddings (n may be 0)."""
        faces = self.detector.detect(image)
        if largest_only:
            faces = faces.largest()
        if len(faces) == 0:
            return faces, np.zeros((0, self.embedder.dim), np.float32)
        return faces, self.embedder.embed(image, faces)

    def describe(self) -> dict[str, Any]:
        """``{"detector": {...}, "embedder": {...}}``, stored in every face index."""
        return {"detector": self.detector.describe(), "embedder": self.embedder.describe()}

    @property
    def default_threshold(self) -> float:
        """The uncalibrated cosine-distance threshold for this embedder."""
        return DEFAULT_THRESHOLDS.get(self.embedder.name, 0.3)


def create_face_pipeline(
    detector: str = DEFAULT_DETECTOR, embedder: str = DEFAULT_EMBEDDER, **detector_options: Any
) -> FacePipeline:
    """Build a pipeline from registry names (``visrec.faces.FACE_DETECTORS`` / ``FACE_EMBEDDERS``)."""
    return FacePipeline(FACE_DETECTORS.create(detector, **detector_options), FACE_EMBEDDERS.create(embedder))
