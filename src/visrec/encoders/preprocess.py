"""CPU preprocessing for CNN backbones: decode, square, resize, normalise into a preallocated batch.

JPEGs are decoded with Pillow's draft mode at about the input size (a 4000-px photo decodes at 1/8 scale),
resized once with Pillow, and written straight into a ``(n, 3, s, s)`` float32 batch that is normalised in
place -- no per-image float copies.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from visrec.encoders.base import ImageLike
from visrec.errors import BadInput

R = TypeVar("R")

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
CROPS = ("center", "none")


@dataclass(frozen=True)
class ImagePrep:
    """How images become model input.

    ``size``: side of the square input in pixels. ``crop``: ``"center"`` takes the largest centred square
    before resizing; ``"none"`` squashes the whole image to a square (keeps the borders, distorts the aspect
    ratio). ``resample``: Pillow filter, ``"bilinear"`` or ``"bicubic"``. ``mean``/``std``: per-channel RGB
    statistics on the 0..1 scale; the model sees ``(pixel / 255 - mean) / std``.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bilinear"
    crop: str = "center"

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE:
            raise BadInput(f"resample must be one of {sorted(RESAMPLE)}, got {self.resample!r}")
        if self.crop not in CROPS:
            raise BadInput(f"crop must be one of {list(CROPS)}, got {self.crop!r}")
        if not 32 <= self.size <= 1024 or self.size % 32:
            raise BadInput(f"input_size must be a multiple of 32 between 32 and 1024, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (part of the encoder fingerprint)."""
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resample": self.resample,
            "crop": self.crop,
        }

    def square(self, image: ImageLike) -> np.ndarray:
        """Any image input -> ``(size, size, 3)`` RGB uint8 (decoded in draft mode, cropped, resized)."""
        from visrec.data.images import decode_file, to_rgb_array

        if isinstance(image, (str, Path)):
            return self.square_decoded(decode_file(image, draft_size=self.size).image)
        rgb = to_rgb_array(image)
        if rgb.shape[:2] == (self.size, self.size):
            return rgb
        return self.square_decoded(Image.fromarray(rgb))

    def square_decoded(self, image: Image.Image) -> np.ndarray:
        """An upright RGB PIL image (:func:`visrec.data.images.decode_file`) -> ``(size, size, 3)`` uint8.

        Cropping and resizing run in Pillow with Python's lock released; only the small result is copied out.
        """
        w, h = image.size
        box: tuple[int, int, int, int] = (0, 0, w, h)
        if self.crop == "center" and h != w:
            side = min(h, w)
            left, top = (w - side) // 2, (h - side) // 2
            box = (left, top, left + side, top + side)
        if (w, h) != (self.size, self.size) or box != (0, 0, w, h):
            image = image.resize((self.size, self.size), RESAMPLE[self.resample], box=box)
        return np.asarray(image, dtype=np.uint8)

    def fill(self, images: Sequence[ImageLike], out: np.ndarray) -> np.ndarray:
        """Write ``images`` into the first rows of ``out`` (``(N, 3, size, size)`` float32), normalised.

        Returns the filled view ``out[:len(images)]`` (C-contiguous, ready for ONNX Runtime).
        """
        batch = out[: len(images)]
        for i, image in enumerate(images):
            np.copyto(batch[i], self.square(image).transpose(2, 0, 1))
        scale = (1.0 / (255.0 * np.asarray(self.std, np.float32))).reshape(3, 1, 1)
        offset = (-np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)).reshape(3, 1, 1)
        batch *= scale
        batch += offset
        return batch


def prefetched_batches(
    prep: ImagePrep, images: Sequence[ImageLike], batch_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, batch)`` for consecutive slices of ``images``, preparing the next batch in a
    background thread while the caller runs the model on the current one.

    Two preallocated buffers alternate, so a yielded batch stays valid until the next one is requested.
    Decoding errors (``BadImage``) surface in order, from the batch that holds the bad image.
    """
    shape = (batch_size, 3, prep.size, prep.size)
    buffers = (np.empty(shape, np.float32), np.empty(shape, np.float32))
    starts = list(range(0, len(images), batch_size))
    if not starts:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="visrec-prep") as pool:

        def submit(k: int) -> Future[np.ndarray]:
            s = starts[k]
            return pool.submit(prep.fill, images[s : s + batch_size], buffers[k % 2])

        pending = submit(0)
        for k, start in enumerate(starts):
            batch = pending.result()
            if k + 1 < len(starts):
                pending = submit(k + 1)
            yield start, batch


def parallel_batches(
    prep: ImagePrep,
    images: Sequence[ImageLike],
    batch_size: int,
    workers: int,
    run: Callable[[np.ndarray], R],
) -> Iterator[tuple[int, R]]:
    """Yield ``(start, run(batch))`` for consecutive slices of ``images``, in order, computed by ``workers``
    threads that each prepare a batch and then call ``run`` on it.

    Meant for a single-threaded ONNX Runtime session (``run`` releases the GIL): each core decodes and infers
    its own batches, so no core waits on a per-operator barrier and decoding overlaps inference. At most
    ``2 * workers`` batches are in flight (bounded memory). ``run``'s result must not alias the batch, whose
    buffer the thread reuses. ``BadImage`` surfaces in order; pending batches are then cancelled.
    """
    local = threading.local()
    shape = (batch_size, 3, prep.size, prep.size)

    def task(start: int) -> R:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty(shape, np.float32)
        return run(prep.fill(images[start : start + batch_size], buf))

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="visrec-encode")
    pending: deque[tuple[int, Future[R]]] = deque()
    try:
        for start in range(0, len(images), batch_size):
            pending.append((start, pool.submit(task, start)))
            if len(pending) > 2 * workers:
                first, fut = pending.popleft()
                yield first, fut.result()
        while pending:
            first, fut = pending.popleft()
            yield first, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
