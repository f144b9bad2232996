"""The face contract: ``Faces`` (boxes, landmarks, scores), detector and embedder protocols, and registries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from visrec.errors import DimensionMismatch
from visrec.registry import Registry


@dataclass(frozen=True)
class Faces:
    """Faces found in one RGB image.

    ``xyxy``: ``(n, 4)`` float32 pixel boxes; ``landmarks``: ``(n, k, 2)`` float32 pixel points in the detector's
    ``scheme`` (e.g. ``"dlib5"``: two corners per eye, then the nose base); ``scores``: ``(n,)`` float32
    detector confidences; ``image_size``: ``(height, width)`` of the image they were found in.
    """

    xyxy: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]
    scheme: str = "dlib5"

    def __post_init__(self) -> None:
        n = self.xyxy.shape[0]
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise DimensionMismatch(f"Faces.xyxy must be (n, 4), got {self.xyxy.shape}")
        if self.landmarks.ndim != 3 or self.landmarks.shape[0] != n or self.landmarks.shape[2] != 2:
            raise DimensionMismatch(f"Faces.landmarks must be ({n}, k, 2), got {self.landmarks.shape}")
        if self.scores.shape != (n,):
            raise DimensionMismatch(f"Faces.scores must be ({n},), got {self.scores.shape}")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def areas(self) -> np.ndarray:
        """``(n,)`` float32 box areas in pixels."""
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return (wh[:, 0] * wh[:, 1]).astype(np.float32)

    def take(self, rows: list[int] | np.ndarray) -> Faces:
        """The given faces, in order."""
        idx = np.asarray(rows, np.int64)
        return Faces(self.xyxy[idx], self.landmarks[idx], self.scores[idx], self.image_size, self.scheme)

    def largest(self) -> Faces:
        """Only the largest face (empty when there is none)."""
        return self.take([int(np.argmax(self.areas))] if len(self) else [])

    @staticmethod
    def empty(image_size: tuple[int, int], points: int = 5, scheme: str = "dlib5") -> Faces:
        """No face."""
        z = np.zeros
        return Faces(z((0, 4), np.float32), z((0, points, 2), np.float32), z((0,), np.float32), image_size, scheme)


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces and their landmarks in an RGB ``uint8`` ``(h, w, 3)`` image."""

    name: str

    def detect(self, image: np.ndarray) -> Faces: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class FaceEmbedder(Protocol):
    """Embeds detected faces: ``(n, dim)`` float32 L2-normalised rows, one per face, in order."""

    name: str
    dim: int

    def embed(self, image: np.ndarray, faces: Faces) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


FACE_DETECTORS: Registry[FaceDetector] = Registry("face detector")
FACE_EMBEDDERS: Registry[FaceEmbedder] = Registry("face embedder")
FACE_DETECTORS.register("dlib-hog", "visrec.faces.dlib_backend:create_hog", help="dlib HOG + 5-point landmarks (fast)")
FACE_DETECTORS.register("dlib-cnn", "visrec.faces.dlib_backend:create_cnn", help="dlib MMOD CNN (slow, ~8 s/image)")
FACE_DETECTORS.register(
    "blazeface", "visrec.faces.blazeface:create_full", help="MediaPipe BlazeFace full range + dlib 5 points (default)"
)
FACE_DETECTORS.register(
    "blazeface-short", "visrec.faces.blazeface:create_short", help="MediaPipe BlazeFace short range (selfie distance)"
)
FACE_EMBEDDERS.register("dlib-resnet", "visrec.faces.dlib_backend:create_resnet", help="dlib ResNet 128-d")
FACE_EMBEDDERS.register(
    "facenet-512", "visrec.faces.facenet_backend:create_facenet", help="FaceNet InceptionResNetV1 (CASIA-WebFace) 512-d"
)
