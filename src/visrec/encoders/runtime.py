"""Inference runtimes for the image backbones: OpenVINO when installed, ONNX Runtime as the fallback.

Both run the same cached ONNX file and return the same outputs within float32 rounding (EfficientNet-Lite0 on
391 real images: unit feature vectors differ by at most 4e-7, logits by 1.3e-6 relative, nearest neighbours
identical; ``tests/unit/test_speed_paths.py`` holds them to 1e-5), so the encoder fingerprint does not depend
on the runtime and an index built with one is searched with the other. ``VISREC_RUNTIME`` chooses:
``openvino`` or ``onnxruntime``; unset, OpenVINO is used when it can be imported. ONNX Runtime stays the
reference (exports are verified with it).
"""

from __future__ import annotations

import importlib.util
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from visrec.errors import BadInput, VisrecError

RUNTIMES = ("openvino", "onnxruntime")
ENV_VAR = "VISREC_RUNTIME"
_FIRST_RUN = threading.Lock()
_BINDINGS_READY = threading.Event()


class Session(Protocol):
    """What the encoders call: ONNX Runtime's ``run`` signature (``None`` = every output, in graph order)."""

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


def runtime_name(runtime: str | None = None) -> str:
    """The runtime to use: ``runtime``, else ``$VISREC_RUNTIME``, else ``openvino`` when importable."""
    name = (runtime or os.environ.get(ENV_VAR, "")).strip().lower()
    if not name:
        return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"
    if name not in RUNTIMES:
        raise BadInput(f"unknown inference runtime {name!r} (from {ENV_VAR} or runtime=); choose from {list(RUNTIMES)}")
    return name


class OpenVinoSession:
    """An OpenVINO CPU model with ONNX Runtime's ``run`` call; safe to call from several threads at once.

    ``threads``: CPU threads per inference (``None``: OpenVINO's choice for the lowest latency). ``streams``:
    inferences that may run at once, each on its own infer request (one per calling thread of
    ``parallel_batches``). ``static_batches``: batch sizes that also get a copy compiled for that fixed shape
    (a one-image query runs ~1 ms faster than on the dynamic-batch graph, whose shapes are resolved per call);
    every other batch size runs on the dynamic graph. Precision is pinned to float32 so results match
    ONNX Runtime's.
    """

    def __init__(
        self, path: Path, threads: int | None = None, streams: int = 1, static_batches: Sequence[int] = ()
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise VisrecError(
                f"{ENV_VAR}=openvino needs the openvino package, which is not installed: "
                f"pip install 'openvino>=2024.0' (or set {ENV_VAR}=onnxruntime)"
            ) from exc
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if streams > 1:
            config.update({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams})
        else:
            config["PERFORMANCE_HINT"] = "LATENCY"
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads * max(1, streams)
        core = ov.Core()
        self.path = path
        model = core.read_model(str(path))
        self.compiled = core.compile_model(model, "CPU", config)
        self.output_names = [out.get_any_name() for out in self.compiled.outputs]
        self._idle = self._requests(self.compiled, streams)
        self._static: dict[int, queue.SimpleQueue[Any]] = {}
        for batch in static_batches:
            fixed = model.clone()
            fixed.reshape({inp.get_any_name(): [batch, *inp.get_partial_shape()[1:]] for inp in model.inputs})
            self._static[batch] = self._requests(core.compile_model(fixed, "CPU", config), streams)

    @staticmethod
    def _requests(compiled: Any, count: int) -> queue.SimpleQueue[Any]:
        idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(max(1, count)):
            idle.put(compiled.create_infer_request())
        return idle

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs (all of them for ``None``) as new float arrays, in order."""
        wanted = list(output_names) if output_names is not None else self.output_names
        unknown = [n for n in wanted if n not in self.output_names]
        if unknown:
            raise BadInput(f"{self.path.name} has no output(s) {unknown}; it has {self.output_names}")
        batches = {len(a) for a in feeds.values()}
        idle = self._static.get(batches.pop(), self._idle) if len(batches) == 1 else self._idle
        request = idle.get()
        try:
            if _BINDINGS_READY.is_set():
                return self._infer(request, feeds, wanted)
            # The first NumPy conversion in OpenVINO's Python bindings initialises a static under a lock that is
            # not GIL-safe: two threads doing it at once deadlock (seen here: build_index with two decode and two
            # inference threads hung for good). The first call in the process runs alone.
            with _FIRST_RUN:
                out = self._infer(request, feeds, wanted)
                _BINDINGS_READY.set()
                return out
        finally:
            idle.put(request)

    @staticmethod
    def _infer(request: Any, feeds: Mapping[str, np.ndarray], wanted: list[str]) -> list[np.ndarray]:
        request.infer(dict(feeds))
        return [np.array(request.get_tensor(name).data, copy=True) for name in wanted]


def create_image_session(
    path: Path,
    threads: int | None = None,
    streams: int = 1,
    runtime: str | None = None,
    static_batches: Sequence[int] = (),
) -> Session:
    """A session over the ONNX file at ``path`` on the chosen runtime (see :func:`runtime_name`).

    ONNX Runtime: one session with ``threads`` intra-op threads, callable from many threads at once.
    OpenVINO: one compiled model with ``streams`` infer requests of ``threads`` threads each, plus fixed-shape
    copies for ``static_batches``.
    """
    if runtime_name(runtime) == "openvino":
        return OpenVinoSession(path, threads=threads, streams=streams, static_batches=static_batches)
    from visrec.encoders.onnx_export import create_session

    return create_session(path, threads=threads)
