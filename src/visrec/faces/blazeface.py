"""MediaPipe BlazeFace detectors (full and short range) run from their TFLite files, optionally with dlib landmarks.

Weights: the ``.tflite`` files inside ``mediapipe==0.10.21`` (Apache-2.0; later releases ship no models), located
without importing the package. Runtime: ``ai-edge-litert`` (Google's TFLite interpreter). Install:
``pip install ai-edge-litert`` and ``pip install --no-deps mediapipe==0.10.21`` (its own dependencies pin
``numpy<2`` and ``protobuf<5``; only its model files are used).

Finding every visible face: faces cut by the image border are missed by BlazeFace on the plain image, so the
image is mirror-padded (a half face plus its reflection looks like a face) and, besides the whole padded image,
overlapping windows are scanned so small or partly hidden faces are seen larger; all detections are merged
with MediaPipe's weighted NMS and those centred outside the image (mirror copies) are dropped.

Landmarks: with dlib installed, dlib's 5-point shape predictor runs on a dlib-like box derived from each
BlazeFace box (``scheme="dlib5"``), so the dlib ResNet embedder and the 5-point alignment work unchanged.
Without it the faces carry BlazeFace's own 6 keypoints (``scheme="blaze6"``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput, MissingExtra, MissingWeights
from visrec.faces import ssd
from visrec.faces.base import Faces
from visrec.faces.dlib_backend import _check_rgb, _shrink

INSTALL = "pip install ai-edge-litert && pip install --no-deps mediapipe==0.10.21"
MODELS = {
    "full": ("face_detection_full_range_sparse.tflite", ssd.FULL_RANGE),
    "short": ("face_detection_short_range.tflite", ssd.SHORT_RANGE),
}
# BlazeFace box -> the box dlib's shape predictor was trained on: centre shift (in box widths/heights) and size
# factor, fitted on deepface_celebs faces both detectors found (see benchmarks/faces_eval.py --fit-box).
DLIB_BOX = (0.0, 0.03, 0.93)


@dataclass(frozen=True)
class BlazeFaceConfig:
    """Options of :class:`BlazeFaceDetector`.

    ``model``: ``"full"`` (faces up to ~5 m, 192 px input) or ``"short"`` (selfie distance, 128 px).
    ``min_score``: detection confidence kept (MediaPipe's default 0.5). ``nms``: IoU merged by weighted NMS.
    ``pad``: mirror padding on every side, as a share of the longer image side. ``window``: side of the extra
    scanning windows as a share of the longer side (0 = only the whole image); ``overlap`` between windows.
    ``max_side``: images are shrunk to this longer side first (boxes come back in original pixels).
    ``landmarks``: ``"dlib5"`` (needs dlib) or ``"blaze6"``.
    """

    model: str = "full"
    min_score: float = 0.5
    nms: float = 0.3
    pad: float = 0.25
    window: float = 0.75
    overlap: float = 0.5
    max_side: int = 1024
    landmarks: str = "dlib5"
    threads: int = 2

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise BadInput(f"unknown BlazeFace model {self.model!r}; use one of {', '.join(MODELS)}")
        if self.landmarks not in ("dlib5", "blaze6"):
            raise BadInput(f"landmarks must be 'dlib5' or 'blaze6', got {self.landmarks!r}")
        if not 0.0 <= self.pad <= 1.0 or not 0.0 <= self.window <= 1.0:
            raise BadInput(f"pad and window are shares of the image side in [0, 1], got {self.pad}, {self.window}")


def model_file(name: str) -> Path:
    """Path of a BlazeFace ``.tflite`` file shipped by ``mediapipe`` (found without importing the package)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeights(f"BlazeFace weights not found (package mediapipe==0.10.21); install: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "modules" / "face_detection" / name
    if not path.is_file():
        raise MissingWeights(f"{path} is missing (later mediapipe releases ship no models); install: {INSTALL}")
    return path


def _interpreter(path: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingExtra("ai-edge-litert", "faces", "the BlazeFace face detector") from None
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    return it


def dlib_box(xyxy: np.ndarray) -> np.ndarray:
    """``(n, 4)`` BlazeFace boxes mapped to the boxes dlib's landmark predictor expects (see ``DLIB_BOX``)."""
    dx, dy, size = DLIB_BOX
    wh = xyxy[:, 2:] - xyxy[:, :2]
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2.0 + wh * np.array([dx, dy], np.float32)
    half = wh.mean(axis=1, keepdims=True) * size / 2.0
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


class BlazeFaceDetector:
    """BlazeFace on the mirror-padded image plus overlapping windows; see the module docstring."""

    def __init__(self, config: BlazeFaceConfig | None = None) -> None:
        self.config = cfg = config or BlazeFaceConfig()
        self.name = "blazeface" if cfg.model == "full" else "blazeface-short"
        file, self.spec = MODELS[cfg.model]
        self.path = model_file(file)
        self._digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        self._it = _interpreter(self.path, cfg.threads)
        self._in = self._it.get_input_details()[0]["index"]
        # The model emits regressors (n, 16) and scores (n, 1); tell them apart by shape, not by name.
        outs = sorted(self._it.get_output_details(), key=lambda o: -int(o["shape"][-1]))
        self._reg, self._cls = outs[0]["index"], outs[1]["index"]
        self._centres = ssd.anchors(self.spec)
        self._shape: Any = None
        self.scheme = cfg.landmarks
        if cfg.landmarks == "dlib5":
            from visrec.faces.dlib_backend import _dlib
            from visrec.faces.dlib_backend import model_file as dlib_file

            self._dlib = _dlib()
            self._shape = self._dlib.shape_predictor(str(dlib_file("shape_predictor_5_face_landmarks.dat")))

    def describe(self) -> dict[str, Any]:
        """Facts recorded with anything built from these detections (options and the weights' hash)."""
        return {"name": self.name, "weights": self.path.name, "sha256": self._digest} | asdict(self.config)

    def _run(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detections in one window, in its pixels: boxes, 6 keypoints, scores."""
        x, box = ssd.letterbox(window, self.spec.input_size)
        self._it.set_tensor(self._in, x[None])
        self._it.invoke()
        reg, cls = self._it.get_tensor(self._reg)[0], self._it.get_tensor(self._cls)[0]
        b, p, s = ssd.decode(reg, cls, self._centres, self.spec.scale, self.config.min_score)
        return ssd.unletterbox(b.reshape(-1, 2, 2), box).reshape(-1, 4), ssd.unletterbox(p, box), s

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BlazeFace alone on an RGB uint8 image: ``xyxy (n, 4)``, 6 keypoints ``(n, 6, 2)`` (right eye, left eye,
        nose tip, mouth, right ear, left ear of the person) and scores ``(n,)``, in the image's pixels."""
        cfg = self.config
        h, w = image.shape[:2]
        m = max(0, min(round(cfg.pad * max(h, w)), min(h, w) - 1))  # reflect padding must be < the side
        padded = np.pad(image, ((m, m), (m, m), (0, 0)), mode="reflect")
        wins = [(0, 0, padded.shape[1], padded.shape[0])]
        if cfg.window > 0:
            wins += ssd.tiles(padded.shape[0], padded.shape[1], max(16, round(cfg.window * max(h, w))), cfg.overlap)
        found = [self._run(np.ascontiguousarray(padded[y0:y1, x0:x1])) for x0, y0, x1, y1 in wins]
        shift = [np.array([x0 - m, y0 - m], np.float32) for x0, y0, _, _ in wins]
        b = np.concatenate([f[0] + np.tile(s, 2) for f, s in zip(found, shift, strict=True)])
        p = np.concatenate([f[1] + s for f, s in zip(found, shift, strict=True)])
        b, p, s = ssd.weighted_nms(b, p, np.concatenate([f[2] for f in found]), cfg.nms)
        c = (b[:, :2] + b[:, 2:]) / 2.0
        inside = (c[:, 0] >= 0) & (c[:, 0] < w) & (c[:, 1] >= 0) & (c[:, 1] < h)
        return b[inside], p[inside], s[inside]

    def detect(self, image: np.ndarray) -> Faces:
        """Faces in an RGB uint8 image; boxes/landmarks in its pixels, largest first. No face -> empty."""
        image = _check_rgb(image)
        small, factor = _shrink(image, self.config.max_side)
        boxes, points, scores = self.raw(small)
        size = (int(image.shape[0]), int(image.shape[1]))
        if not len(boxes):
            return Faces.empty(size, 5 if self.scheme == "dlib5" else 6, self.scheme)
        if self._shape is not None:
            points = self._landmarks(small, boxes)
        faces = Faces(boxes / factor, points / factor, scores, size, self.scheme)
        return faces.take(np.argsort(-faces.areas, kind="stable"))

    def _landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """dlib's 5 points for each BlazeFace box: ``(n, 5, 2)`` float32."""
        rects = [self._dlib.rectangle(*(round(float(v)) for v in r)) for r in dlib_box(boxes)]
        return np.array([[(q.x, q.y) for q in self._shape(image, r).parts()] for r in rects], np.float32)


def create_full(**options: Any) -> BlazeFaceDetector:
    """The ``blazeface`` detector (full range)."""
    return BlazeFaceDetector(BlazeFaceConfig(model="full", **options))


def create_short(**options: Any) -> BlazeFaceDetector:
    """The ``blazeface-short`` detector (short range, selfie distance)."""
    return BlazeFaceDetector(BlazeFaceConfig(model="short", **options))
