"""dlib face backends: HOG / MMOD-CNN detectors with 5-point landmarks, and the ResNet 128-d embedder.

Weights come from the ``face-recognition-models`` package (CC0 for the files used here); the package is located
without importing it (its ``__init__`` needs ``pkg_resources``, gone from setuptools >= 81). The runtime is
``dlib-bin`` (a prebuilt wheel). Install: ``pip install 'dlib-bin>=19.24' 'face-recognition-models>=0.3.0'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visrec.errors import BadInput, MissingExtra, MissingWeights
from visrec.faces.base import Faces

INSTALL = "pip install 'dlib-bin>=19.24' 'face-recognition-models>=0.3.0'"


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise MissingExtra("dlib-bin", "faces", "the dlib face backends") from None
    return dlib


def model_file(name: str) -> Path:
    """Path of a ``.dat`` file shipped by ``face-recognition-models`` (found without importing the package)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeights(f"dlib face weights not found (package face-recognition-models); install: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise MissingWeights(f"{path} is missing; reinstall face-recognition-models: {INSTALL}")
    return path


def _shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image scaled so its longer side is at most ``max_side``, and the factor applied."""
    h, w = image.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    if factor >= 1.0:
        return np.ascontiguousarray(image), 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), factor


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = getattr(image, "shape", type(image).__name__)
        raise BadInput(f"faces need an RGB uint8 (h, w, 3) array; got {got}; use visrec.data.load_image(path)")
    return image


class DlibDetector:
    """dlib HOG (``cnn=False``) or MMOD-CNN detector, then the 5-point shape predictor.

    ``max_side``: images are shrunk to this longer side before detection (boxes are returned in original pixels);
    ``upsample``: dlib's pyramid upsampling count (1 finds faces down to ~40 px at ``max_side``).
    """

    scheme = "dlib5"

    def __init__(self, cnn: bool = False, max_side: int = 1280, upsample: int = 1, min_score: float = 0.0) -> None:
        dlib = _dlib()
        self.name = "dlib-cnn" if cnn else "dlib-hog"
        self.cnn, self.max_side, self.upsample, self.min_score = cnn, max_side, upsample, min_score
        if cnn:
            self._det = dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
        else:
            self._det = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))

    def describe(self) -> dict[str, Any]:
        """Facts recorded with anything built from these detections."""
        return {"name": self.name, "max_side": self.max_side, "upsample": self.upsample, "min_score": self.min_score}

    def _rects(self, small: np.ndarray) -> tuple[list[Any], list[float]]:
        if self.cnn:
            found = self._det(small, self.upsample)
            return [d.rect for d in found], [float(d.confidence) for d in found]
        rects, scores, _ = self._det.run(small, self.upsample, self.min_score)
        return list(rects), [float(s) for s in scores]

    def detect(self, image: np.ndarray) -> Faces:
        """Faces in an RGB uint8 image; boxes/landmarks in its pixels, largest first. No face -> empty."""
        image = _check_rgb(image)
        small, factor = _shrink(image, self.max_side)
        rects, scores = self._rects(small)
        size = (int(image.shape[0]), int(image.shape[1]))
        if not rects:
            return Faces.empty(size)
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32) / factor
        points = [[(p.x, p.y) for p in self._shape(small, r).parts()] for r in rects]
        faces = Faces(boxes, np.array(points, np.float32) / factor, np.array(scores, np.float32), size)
        return faces.take(np.argsort(-faces.areas, kind="stable"))


class DlibResNetEmbedder:
    """dlib's ResNet face descriptor (128-d) on a 150 px chip aligned by dlib from the 5 landmarks."""

    name = "dlib-resnet"
    dim = 128

    def __init__(self, jitters: int = 0, padding: float = 0.25) -> None:
        self._dlib = _dlib()
        self.jitters, self.padding = jitters, padding
        self._net = self._dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def describe(self) -> dict[str, Any]:
        """Facts recorded with anything built from these embeddings."""
        return {"name": self.name, "dim": self.dim, "jitters": self.jitters, "padding": self.padding}

    def embed(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        """``(len(faces), 128)`` float32 L2-normalised descriptors.

        dlib's documented same-person rule, Euclidean distance <= 0.6 on the raw descriptors (norm ~1.5), is a
        cosine distance of about 0.086 on these (median over the 21 deepface_celebs photo pairs with raw distance
        0.55-0.65: ``benchmarks/faces_eval.py --dlib-scale``); the uncalibrated default 0.07 is stricter.
        """
        out = self.embed_raw(image, faces)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed_raw(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        """``(len(faces), 128)`` float32 descriptors as dlib returns them (not normalised)."""
        image = _check_rgb(image)
        if faces.scheme != "dlib5":
            raise BadInput(f"dlib-resnet needs dlib5 landmarks, got {faces.scheme!r}; use blazeface or dlib-hog")
        dlib = self._dlib
        out = np.zeros((len(faces), self.dim), np.float32)
        for i in range(len(faces)):
            x0, y0, x1, y1 = (round(float(v)) for v in faces.xyxy[i])
            pts = dlib.points([dlib.point(round(float(x)), round(float(y))) for x, y in faces.landmarks[i]])
            shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1 - 1, y1 - 1), pts)
            chip = dlib.get_face_chip(image, shape, size=150, padding=self.padding)
            out[i] = np.asarray(self._net.compute_face_descriptor(chip, self.jitters), np.float32)
        return out


def create_hog(**options: Any) -> DlibDetector:
    """The ``dlib-hog`` detector."""
    return DlibDetector(cnn=False, **options)


def create_cnn(**options: Any) -> DlibDetector:
    """The ``dlib-cnn`` detector."""
    return DlibDetector(cnn=True, **options)


def create_resnet(**options: Any) -> DlibResNetEmbedder:
    """The ``dlib-resnet`` embedder."""
    return DlibResNetEmbedder(**options)
