"""The fair PyTorch baseline of ``indexing_speed.py``: the loop a competent PyTorch user writes to embed a folder.

Same model (the torch module the encoder's ONNX graph is exported from) and the same preprocessing as the naive
loop (centre square, bilinear resize, -1..1), but:

- batched (``batch`` images per forward) under ``torch.inference_mode()``, ``torch.set_num_threads(threads)``;
- JPEGs decoded at a reduced scale with Pillow's ``draft`` (DCT scaling) when they are larger than the input;
- a ``torch.utils.data.DataLoader`` decoding in ``workers`` processes while the model runs (0: in the loop);
- glibc's allocator tuned for the process (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``: large batch
  buffers are kept and reused instead of being mapped and returned to the system on every batch, which left the
  plain loop spending about half its time in system calls);
- bfloat16 autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``) tried beside float32, the faster counts:
  visrec runs bfloat16 where the CPU computes it natively, and a PyTorch user can do the same.

:func:`fair_env` is the environment the baseline's process is started with; :func:`embed_folder` runs the loop
and reports the settings it ran under, read back from torch and the environment.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit (larger values are ignored): a batch of 16 224-px images
# (9.6 MB) and most activations stay on the heap; the trim threshold keeps freed memory for the next batch.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024)}


@dataclass(frozen=True)
class FairBaseline:
    """Settings of the fair baseline (see the module docstring)."""

    batch: int = 16
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    workers: tuple[int, ...] = (0, 1)  # DataLoader decode processes tried; the faster counts
    draft: bool = True
    precisions: tuple[str, ...] = ("f32", "bf16")  # tried; the faster counts (bf16: CPU autocast)
    malloc: dict[str, str] = field(default_factory=lambda: dict(MALLOC_ENV))


def fair_env(config: FairBaseline, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to start the baseline's process with (glibc reads ``MALLOC_*`` at process start)."""
    return {**(os.environ if base is None else base), **config.malloc}


def load_input(path: Path, size: int, draft: bool) -> np.ndarray:
    """``(3, size, size)`` float32 in -1..1: decode (JPEG DCT-scaled to >= ``size`` when ``draft``), centre
    square, bilinear resize."""
    from PIL import Image

    with Image.open(path) as im:
        if draft and im.format == "JPEG":
            im.draft("RGB", (size, size))
        rgb = im.convert("RGB")
    w, h = rgb.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    arr = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR, box=box), np.float32)
    return ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy()


class _Files:
    """A map-style dataset of image files for the DataLoader."""

    def __init__(self, files: list[Path], size: int, draft: bool) -> None:
        self.files, self.size, self.draft = files, size, draft

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.from_numpy(load_input(self.files[i], self.size, self.draft))


def applied(config: FairBaseline) -> dict[str, Any]:
    """The settings in force right now, read back: torch threads, inference mode, autocast, the allocator."""
    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "autocast_bf16": torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16,
        "malloc": {k: os.environ.get(k) for k in config.malloc},
    }


def _autocast(precision: str) -> Any:
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def embed_folder(
    model: Any, files: list[Path], size: int, config: FairBaseline, workers: int, precision: str = "f32"
) -> dict[str, Any]:
    """Embed ``files`` with ``model`` the fair way: features ``(n, d)`` float32, images/s, the settings applied."""
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(config.threads)
    loader = DataLoader(_Files(files, size, config.draft), batch_size=config.batch, num_workers=workers)
    feats, batches = [], []
    t0 = time.perf_counter()
    with torch.inference_mode(), _autocast(precision):
        settings = applied(config)
        for x in loader:
            batches.append(int(x.shape[0]))
            feats.append(model(x)[0].float().numpy())  # the exported module returns (features, ...)
    took = time.perf_counter() - t0
    return {
        "features": np.concatenate(feats), "img_s": len(files) / took, "workers": workers, "batches": batches,
        "precision": precision, "settings": settings | {"batch": config.batch, "draft": config.draft},
    }  # fmt: skip


def model_only(model: Any, size: int, config: FairBaseline, seconds: float = 1.5, precision: str = "f32") -> float:
    """Images/s of the torch model alone on a ready-made batch (the baseline's inference ceiling)."""
    import torch

    torch.set_num_threads(config.threads)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (config.batch, 3, size, size)).astype(np.float32))
    with torch.inference_mode(), _autocast(precision):
        model(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model(x)
            n += config.batch
    return n / (time.perf_counter() - t0)


def asjson(config: FairBaseline) -> dict[str, Any]:
    """The settings as a JSON-ready dict."""
    return asdict(config)
