"""Int8 static quantisation of an exported CNN graph with ONNX Runtime (QDQ, per-channel weights).

The calibration images are crops of the two photos scikit-learn ships (a temple and a flower), so the result
depends on no user data and is the same on every machine. ``benchmarks/quantize_agreement.py`` measures how
often the int8 graph gives the same kNN answer as the fp32 one. Measured for efficientnet-lite0: about 1.9x the
fp32 speed on an AVX512-VNNI CPU, 100 % top-1 agreement on naruto_roboflow but only ~81 % on cifar10_subset
(feature cosine to fp32 0.94..1.0), under the 99 % gate, so no encoder uses it: it is a measured, not a
shipped, path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from visrec.encoders.cache import cache_dir
from visrec.encoders.onnx_export import cached_onnx
from visrec.encoders.preprocess import ImagePrep

CALIBRATION_CROPS = 64
CALIBRATION_BATCH = 8


def calibration_images(n: int = CALIBRATION_CROPS, seed: int = 0) -> list[np.ndarray]:
    """``n`` deterministic RGB uint8 crops ``(s, s, 3)`` (s in 120..426 px) of scikit-learn's sample photos."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    crops = []
    for k in range(n):
        im = photos[k % len(photos)]
        h, w = im.shape[:2]
        side = int(rng.integers(120, min(h, w)))
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        crop = im[y : y + side, x : x + side]
        crops.append(np.ascontiguousarray(crop[:, ::-1] if k % 4 == 1 else crop))
    return crops


def _batches(prep: ImagePrep, images: list[np.ndarray], input_name: str) -> Iterator[dict[str, np.ndarray]]:
    buf = np.empty((CALIBRATION_BATCH, 3, prep.size, prep.size), np.float32)
    for start in range(0, len(images), CALIBRATION_BATCH):
        chunk = images[start : start + CALIBRATION_BATCH]
        yield {input_name: prep.fill(chunk, buf).copy()}


def quantize_int8(src: Path, dst: Path, prep: ImagePrep, input_name: str = "image") -> None:
    """Write the int8 (QDQ: uint8 activations, per-channel int8 weights) version of ``src`` to ``dst``.

    Activation ranges are calibrated (min/max) on :func:`calibration_images` prepared with ``prep``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = _batches(prep, calibration_images(), input_name)

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(batches, None)

    pre = dst.with_name(dst.name + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        pre.unlink(missing_ok=True)


def quantized_model(fp32_path: Path, prep: ImagePrep, graph_id: str) -> Path:
    """The int8 version of the exported graph ``fp32_path`` (named ``<graph_id>-int8.onnx`` in the visrec cache),
    quantised on first use and verified by its sha256 sidecar afterwards."""
    path = cache_dir() / f"{graph_id}-int8.onnx"
    return cached_onnx(path, lambda tmp: quantize_int8(fp32_path, tmp, prep), needs=("onnx",))
