"""Export a torch module to ONNX once, verify it against torch, cache it, and open ONNX Runtime sessions.

A cache hit touches ONNX Runtime only: torch is imported inside the export path, never at the top of a
module, so a process that finds the exported file never pays for importing torch. The default install has
no torch at all: ``scripts/install.sh`` exports the default models with a temporary one
(:mod:`visrec.encoders.prepare`), and a missing export without torch is an :class:`ExportUnavailable` that
says how to get it.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.blas import usable_cores
from visrec.encoders.cache import cache_lock, is_intact, publish, temp_path_for
from visrec.errors import MissingExtra, VisrecError

if TYPE_CHECKING:
    import onnxruntime
    import torch

OPSET = 18
log = logging.getLogger(__name__)


EXPORT_PACKAGES = ("torch", "onnxscript")
"""What exporting a torch module needs (the ``export`` extra); running the exported file needs neither."""


class ExportError(VisrecError):
    """An ONNX export does not reproduce its torch module within tolerance."""


class ExportUnavailable(MissingExtra):
    """A model is not in the cache yet and the packages that export it (the ``export`` extra) are absent."""

    def __init__(self, path: Path, package: str) -> None:
        self.package = package
        self.extra = "export"
        VisrecError.__init__(
            self,
            f"the model file {path.name} is not in the model cache ({path.parent}), and creating it needs "
            f"the package {package!r}, which is not installed (the default install only runs exported models). "
            "Fix: for the default models, re-run `bash scripts/install.sh` (it exports them once with a temporary "
            "PyTorch; keep VISREC_CACHE_DIR as it is now); for any model, add the export extra "
            "(`bash scripts/install.sh --extras export`) and re-run this command or `visrec prepare-models`.",
        )


def missing_export_package(needs: Sequence[str] = EXPORT_PACKAGES) -> str | None:
    """The first of ``needs`` that cannot be imported, or None when exporting is possible."""
    for name in needs:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # a blocked or half-installed package
            return name
    return None


def cached_onnx(path: Path, export: Callable[[Path], None], needs: Sequence[str] = EXPORT_PACKAGES) -> Path:
    """Return ``path`` once it holds an intact export, calling ``export(tmp_path)`` when it does not.

    The sha256 sidecar is checked on every call, so a truncated or overwritten file is exported again.
    ``export`` writes (and verifies) a model at the temporary path it is given; it is then published
    atomically. A file lock stops two processes exporting the same file at once. Raises
    :class:`ExportUnavailable` when the file is missing and a package ``export`` needs (``needs``: import names,
    by default torch and onnxscript; converters that use neither pass their own) is not installed.
    """
    if is_intact(path):
        return path
    missing = missing_export_package(needs)
    if missing is not None:
        raise ExportUnavailable(path, missing)
    with cache_lock(path.name):
        if is_intact(path):  # another process finished while we waited
            return path
        tmp = temp_path_for(path)
        log.info(
            "preparing a model once (ONNX export of %s, about a minute on a small CPU); later runs reuse it from %s",
            path.stem.rsplit("-", 1)[0],
            path.parent,
        )
        try:
            export(tmp)
            publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def export_module(
    module: torch.nn.Module,
    example: Sequence[torch.Tensor],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic: Mapping[str, Mapping[int, str]],
) -> None:
    """Export ``module`` (in eval mode) to a single-file ONNX model at ``path``.

    ``dynamic`` maps each input name to ``{axis: symbolic name}`` for its variable-size axes (batch,
    sequence length). The torch.export-based exporter is used, quietly (no console output).
    """
    import torch

    module.eval()
    dims: dict[str, Any] = {}
    shapes = []
    for name in input_names:
        axes = dynamic.get(name, {})
        shapes.append({ax: dims.setdefault(sym, torch.export.Dim(sym)) for ax, sym in axes.items()})
    exporter_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about torchvision ops, which we never use
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(example),
                str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=tuple(shapes),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(old_level)


def verify_export(
    module: torch.nn.Module,
    path: Path,
    inputs: Sequence[Sequence[np.ndarray]],
    input_names: Sequence[str],
    atol: float,
) -> float:
    """Run the torch module and the ONNX file on each input tuple; raise ``ExportError`` when they differ.

    The difference of each output is measured relative to ``max(1, max |torch output|)`` so logits (tens)
    and unit vectors are held to the same standard. Returns the largest difference seen.
    """
    import torch

    session = create_session(path, threads=1)
    worst = 0.0
    for arrays in inputs:
        with torch.no_grad():
            expected = module(*(torch.from_numpy(a) for a in arrays))
        if isinstance(expected, torch.Tensor):
            expected = (expected,)
        got = session.run(None, dict(zip(input_names, arrays, strict=True)))
        for exp, out in zip(expected, got, strict=True):
            ref = exp.numpy()
            scale = max(1.0, float(np.abs(ref).max()))
            worst = max(worst, float(np.abs(ref - out).max()) / scale)
    if worst > atol:
        raise ExportError(
            f"the ONNX export {path.name} differs from torch by {worst:.2e} (tolerance {atol:.0e}); "
            "this is a bug in the exporter or the model code, please report it with your torch/onnx versions"
        )
    return worst


def create_session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session: all graph optimisations, sequential execution, one intra-op thread
    per core (or ``threads``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or usable_cores()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
