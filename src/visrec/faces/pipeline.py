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
# Cosine distance used when nothing was calibrated. dlib: somewhat stricter than its documented Euclidean 0.6 on
# raw descriptors, which is cosine ~0.086 on the normalised ones (benchmarks/faces_eval.py --dlib-scale).
# FaceNet: halfway between the largest same-person (0.372) and the smallest different-person (0.454) distance there.
DEFAULT_THRESHOLDS = {"dlib-resnet": 0.07, "facenet-512": 0.41}
# BlazeFace misses faces that fill the frame of a tight crop and finds chins and borders instead, so labeled
# photos are also detected inside a flat border of PAD_SHARE of their longer side (a frame-filling face then
# spans 2/3 of the frame at most) and the detection with the larger main face is used.
PAD_SHARE = 0.25
# Detections whose side is under this share of the main face's are not people of that photo (false faces on
# chins and borders of tight crops measured 12-40 px next to ~150 px faces); `faces index` drops them.
SMALL_SHARE = 0.5
# Faces within this share of the largest one's side count as equally large; the most central of them is the main.
NEAR_LARGEST = 0.8


@dataclass(frozen=True)
class PhotoFaces:
    """The faces kept of one labeled photo: ``faces`` / ``vectors`` (``(n, dim)`` float32), and ``dropped``, the
    number of other detections not kept (false faces far smaller than the main face, or every other face)."""

    faces: Faces
    vectors: np.ndarray
    dropped: int


def main_face(faces: Faces) -> int:
    """Row of the photo's main face: the most central of those about as large as the largest (needs >= 1 face)."""
    side = np.sqrt(faces.areas)
    near = np.nonzero(side >= NEAR_LARGEST * side.max())[0]
    h, w = faces.image_size
    centre = (faces.xyxy[near, :2] + faces.xyxy[near, 2:]) / 2.0
    off = np.hypot((centre[:, 0] - w / 2.0) / w, (centre[:, 1] - h / 2.0) / h)
    return int(near[int(np.argmin(off))])


def detect_padded(detector: FaceDetector, image: np.ndarray) -> Faces:
    """Faces of an RGB uint8 photo, detected as it is and inside a flat black border (see ``PAD_SHARE``); the
    detection whose main face is larger wins (the plain one on ties). Boxes and landmarks are in the photo's pixels
    (a box may reach past its border)."""
    faces = detector.detect(image)
    h, w = image.shape[:2]
    m = round(PAD_SHARE * max(h, w))
    again = detector.detect(np.pad(image, ((m, m), (m, m), (0, 0))))
    if len(again) == 0 or (len(faces) and again.areas[main_face(again)] <= faces.areas[main_face(faces)]):
        return faces
    return Faces(again.xyxy - m, again.landmarks - m, again.scores, (h, w), again.scheme)


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

    def find_labeled(self, image: np.ndarray, all_faces: bool = False) -> PhotoFaces:
        """The faces to index of a photo labeled with one person (RGB uint8).

        Tight crops are padded before detection. By default only the main face is kept (:func:`main_face`);
        with ``all_faces`` every face at least ``SMALL_SHARE`` of the main face's side. The rest count as dropped.
        """
        faces = detect_padded(self.detector, image)
        if len(faces) == 0:
            return PhotoFaces(faces, np.zeros((0, self.embedder.dim), np.float32), 0)
        main = main_face(faces)
        if all_faces:
            side = np.sqrt(faces.areas)
            keep = [main] + [i for i in range(len(faces)) if i != main and side[i] >= SMALL_SHARE * side[main]]
        else:
            keep = [main]
        kept = faces.take(keep)
        return PhotoFaces(kept, self.embedder.embed(image, kept), len(faces) - len(keep))

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
