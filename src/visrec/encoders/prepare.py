"""Prepare models ahead of use: export them to ONNX into the model cache, with their sha256 sidecars.

Running a model needs only the exported file (ONNX Runtime / OpenVINO); creating it needs PyTorch. The default
install has no PyTorch: ``scripts/install.sh`` installs one in a throwaway environment, calls
:func:`prepare_models` there (``visrec prepare-models``) and deletes it, so the first real command finds the
default image encoder, the MiniLM text encoder and the bridge's class vectors ready. Later processes check a
file's sidecar and never import torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visrec.encoders.cache import is_intact, sha256_file, sidecar
from visrec.errors import BadInput

DEFAULT_MODELS = ("efficientnet-lite0",)
"""What the install script prepares: the default encoder (its text side, MiniLM, and the bridge come along)."""
TEXT_MODEL = "all-minilm-l6-v2"
"""The text encoder's name: it can be prepared on its own (in a second process, while the image encoder exports)."""


@dataclass(frozen=True)
class PreparedFile:
    """One cached file an encoder needs: ``path``, its size, sha256, and whether this call created it."""

    path: Path
    size_bytes: int
    sha256: str
    created: bool

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "size_bytes": self.size_bytes, "sha256": self.sha256, "created": self.created}


@dataclass(frozen=True)
class PreparedModel:
    """An encoder made ready: its name, the cached files it runs from, and the seconds it took."""

    name: str
    files: tuple[PreparedFile, ...]
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "seconds": round(self.seconds, 2), "files": [f.to_dict() for f in self.files]}


def _digest(path: Path) -> str:
    try:
        recorded = sidecar(path).read_text().strip()
    except OSError:
        recorded = ""
    return recorded or sha256_file(path)


def prepare_encoder(name: str, encoder: Any) -> PreparedModel:
    """Export and cache what ``encoder`` runs from (``encoder.warm_up()``), then report each of its
    ``model_files()``; a file that was already intact is not exported again (``created=False``)."""
    files = encoder.model_files()
    had = {p: is_intact(p) if p.suffix == ".onnx" else p.is_file() for p in files}
    start = time.perf_counter()
    encoder.warm_up()
    seconds = time.perf_counter() - start
    done = tuple(PreparedFile(p, p.stat().st_size, _digest(p), not had[p]) for p in files)
    return PreparedModel(name, done, seconds)


def prepare_models(names: Sequence[str] = DEFAULT_MODELS) -> list[PreparedModel]:
    """Export each named image encoder with its default options (and its text side), or the text encoder
    (:data:`TEXT_MODEL`), into the model cache.

    Needs the ``export`` extra (torch, onnxscript, the architecture packages) for every file not yet cached;
    otherwise raises :class:`~visrec.encoders.onnx_export.ExportUnavailable`. Raises ``BadInput`` for a name
    that is not an exportable encoder (``fake``, ``hf-clip`` ...: nothing to prepare).
    """
    from visrec.encoders import create_encoder, create_text_encoder

    out = []
    for name in names:
        encoder = create_text_encoder() if name == TEXT_MODEL else create_encoder(name)
        if not callable(getattr(encoder, "model_files", None)):
            raise BadInput(
                f"{name!r} has no exported model to prepare; name a single ONNX encoder such as efficientnet-lite0 "
                "(for an ensemble, name each member)"
            )
        out.append(prepare_encoder(name, encoder))
    return out
