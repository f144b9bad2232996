"""Inference runtimes for the image backbones: OpenVINO when installed, ONNX Runtime as the fallback.

At float32, both run the same cached ONNX file and return the same outputs within float32 rounding
(EfficientNet-Lite0 on 391 real images: unit feature vectors differ by at most 4e-7, logits by 1.3e-6 relative,
nearest neighbours identical; ``tests/unit/test_speed_paths.py`` holds them to 1e-5), so the encoder fingerprint
does not depend on the runtime and an index built with one is searched with the other. ``VISREC_RUNTIME``
chooses: ``openvino`` or ``onnxruntime``; unset, OpenVINO is used when it can be imported. ONNX Runtime stays
the reference (exports are verified with it).

Precision (``VISREC_PRECISION``: ``f32`` (default) | ``auto`` | ``bf16``): with ``auto`` OpenVINO runs the graph in
bfloat16 where the CPU computes it natively (AVX512_BF16 or AMX), float32 elsewhere and on ONNX Runtime. ``bf16``
must pass the gate in :data:`BF16_GATE` (measured by ``benchmarks/precision_accuracy.py``) to be offered; its vectors
are close to float32 ones but not interchangeable (one image's cosine went down to 0.988, under
``INTERCHANGEABLE_COSINE``), so a bf16 encoder has its own fingerprint: an index records the precision it was
built at and is reopened at it (refused, with the fix, where bf16 cannot run).
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
PRECISIONS = ("f32", "bf16")
PRECISION_VAR = "VISREC_PRECISION"
BF16_GATE = 0.005
"""bfloat16 is offered only while kNN top-1 (1-NN and 5-NN vote) on naruto_roboflow's grouped split,
cifar10_subset and caltech101_dev loses at most this (0.5 points) against float32 on every set. Measured
(naruto / cifar / caltech): k=1 +0.0 / -0.5 / +0.14 points, k=5 +0.0 / +1.0 / -0.14."""
INTERCHANGEABLE_COSINE = 0.99
"""Vectors of one image at two precisions at least this similar (every image measured) could share an encoder
identity; bf16 vs f32 reached 0.988 on cifar10_subset, so they do not."""
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


def cpu_has_bf16() -> bool:
    """Whether OpenVINO lists native bfloat16 for this CPU (False when OpenVINO is not installed)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def precision_name(runtime: str, precision: str | None = None) -> str:
    """The inference precision for ``runtime``: ``precision``, else ``$VISREC_PRECISION``, else ``f32``.

    ``f32`` is the default so that an index opens on any machine (bf16 vectors are another encoder identity, and
    an index built at bf16 is refused where bf16 cannot run). ``auto``: ``bf16`` on OpenVINO when the CPU computes
    it natively, ``f32`` otherwise. Raises ``BadInput`` for
    an unknown name, or for ``bf16`` where it cannot run (ONNX Runtime; a CPU without native bfloat16, where
    OpenVINO would quietly run float32 and give vectors of another encoder identity).
    """
    name = (precision or os.environ.get(PRECISION_VAR, "") or "f32").strip().lower()
    if name == "auto":
        return "bf16" if runtime == "openvino" and cpu_has_bf16() else "f32"
    if name not in PRECISIONS:
        raise BadInput(f"unknown precision {name!r} (from {PRECISION_VAR}); choose from {['auto', *PRECISIONS]}")
    if name == "bf16" and (runtime != "openvino" or not cpu_has_bf16()):
        where = "ONNX Runtime runs float32 only" if runtime != "openvino" else "this CPU has no native bfloat16"
        raise BadInput(
            f"the encoder runs in bfloat16 (an index built with it records precision bf16), but {where}: use "
            f"{ENV_VAR}=openvino on a CPU with AVX512_BF16 or AMX, or rebuild the index with {PRECISION_VAR}=f32"
        )
    return name


def recorded_precision(describe: Mapping[str, Any]) -> str:
    """The precision an encoder's ``describe()`` facts (an index manifest's record) say it ran at: ``"f32"`` or
    ``"bf16"``; an ensemble's members joined with ``+`` where they differ (``"bf16+f32"``). Encoders without the
    option (CLIP, the fake one, indexes recorded before precisions existed) ran float32."""
    members = describe.get("members")
    if isinstance(members, list) and members:
        return "+".join(sorted({recorded_precision(m) for m in members if isinstance(m, Mapping)}))
    options = describe.get("options")
    precision = options.get("precision") if isinstance(options, Mapping) else None
    return precision if precision in PRECISIONS else "f32"


class OpenVinoSession:
    """An OpenVINO CPU model with ONNX Runtime's ``run`` call; safe to call from several threads at once.

    ``threads``: CPU threads per inference (``None``: OpenVINO's choice for the lowest latency). ``streams``:
    inferences that may run at once, each on its own infer request (one per calling thread of
    ``parallel_batches``). ``static_batches``: batch sizes that also get a copy compiled for that fixed shape
    (a one-image query runs ~1 ms faster than on the dynamic-batch graph, whose shapes are resolved per call);
    every other batch size runs on the dynamic graph. ``precision``: ``"f32"`` (results match ONNX Runtime's)
    or ``"bf16"`` (see the module docstring).
    """

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        streams: int = 1,
        static_batches: Sequence[int] = (),
        precision: str = "f32",
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise VisrecError(
                f"{ENV_VAR}=openvino needs the openvino package, which is not installed: "
                f"pip install 'openvino>=2024.0' (or set {ENV_VAR}=onnxruntime)"
            ) from exc
        if precision not in PRECISIONS:
            raise BadInput(f"unknown precision {precision!r}; choose from {list(PRECISIONS)}")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
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
        # read back from the compiled model: the precision OpenVINO actually runs ("f32" | "bf16")
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
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
        # share_inputs: the request reads the caller's array in place (no copy of the batch); the caller keeps it
        # unchanged until ``run`` returns, which is all ``parallel_batches`` and ``prefetched_batches`` need
        request.infer(dict(feeds), share_inputs=True)
        return [np.array(request.get_tensor(name).data, copy=True) for name in wanted]


def create_image_session(
    path: Path,
    threads: int | None = None,
    streams: int = 1,
    runtime: str | None = None,
    static_batches: Sequence[int] = (),
    precision: str = "f32",
) -> Session:
    """A session over the ONNX file at ``path`` on the chosen runtime (see :func:`runtime_name`).

    ONNX Runtime: one session with ``threads`` intra-op threads, callable from many threads at once (float32).
    OpenVINO: one compiled model with ``streams`` infer requests of ``threads`` threads each, plus fixed-shape
    copies for ``static_batches``, at ``precision`` (see :func:`precision_name`).
    """
    name = runtime_name(runtime)
    if name == "openvino":
        return OpenVinoSession(path, threads, streams, static_batches, precision)
    if precision != "f32":
        raise BadInput(f"ONNX Runtime runs float32 only, got precision {precision!r}")
    from visrec.encoders.onnx_export import create_session

    return create_session(path, threads=threads)
