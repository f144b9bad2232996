"""The shared machinery of the ImageNet CNN encoders (EfficientNet-Lite0, MobileNetV2).

A :class:`BackboneSpec` says where the weights are, how to build the torch trunk (only ever imported to
export), the normalisation and the width of each stage. A :class:`BackboneEncoder` turns a spec plus
:class:`BackboneOptions` into an ``Encoder``: one ONNX graph, exported once and cached under a name derived
from the weights hash and the graph options, returns both the retrieval features and the ImageNet logits,
so a single forward pass gives ``Embeddings.vectors`` and (through the :mod:`~visrec.encoders.bridge`)
``Embeddings.joint``.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.blas import usable_cores
from visrec.encoders.base import ImageLike
from visrec.encoders.cache import cache_dir, fingerprint, weights_sha256
from visrec.encoders.common import (
    check_batch_size,
    check_images,
    l2_normalize,
    options_from,
    progress_bar,
    resolve_ids,
)
from visrec.encoders.onnx_export import cached_onnx, export_module, verify_export
from visrec.encoders.preprocess import ImagePrep, parallel_batches, prefetched_batches
from visrec.encoders.runtime import PRECISIONS, Session, create_image_session, precision_name, runtime_name
from visrec.encoders.weights import PackagedWeights
from visrec.errors import BadInput, MissingWeights, VisrecError
from visrec.types import Embeddings

if TYPE_CHECKING:
    from visrec.encoders.bridge import LabelBridge

POOLINGS = ("gem", "avg")
GRAPH_VERSION = 1  # bump when the exported graph's code changes: cached exports and fingerprints then renew
# Images per single-threaded inference on the one-inference-per-core path: small batches keep a core's
# activations in its cache (EfficientNet-Lite0 on 2 cores, ready-made batches: 4 per call runs 10-35 % faster
# than 32, OpenVINO and ONNX Runtime alike; see benchmarks/indexing_speed.py).
PER_CORE_BATCH = 4


@dataclass(frozen=True)
class BackboneOptions:
    """Options of a CNN encoder; every one except ``batch_size`` is part of the fingerprint.

    Image: ``input_size`` (px), ``crop`` (``"center"`` | ``"none"``), ``resample`` (``"bilinear"`` |
    ``"bicubic"``). Features: ``stages`` (pooled blocks, concatenated), ``pooling`` (``"gem"`` | ``"avg"``),
    ``gem_p``, ``flip`` (average with the mirrored image). Text side: ``bridge`` (False gives an image-only
    encoder with ``joint_dim=None``), ``bridge_temperature``, ``bridge_top_k``, ``bridge_class_text``, ``bridge_space``,
    ``bridge_text_temperature`` (see :class:`visrec.encoders.bridge.LabelBridge`). ``precision``: unset
    (``"auto"`` here: ``$VISREC_PRECISION``, else float32), ``"auto"`` via the variable (bfloat16 on OpenVINO
    where the CPU computes it natively), ``"f32"`` or ``"bf16"``;
    the fingerprint holds the resolved one when it is bf16 (see :mod:`visrec.encoders.runtime`). ``batch_size``:
    images per forward pass (at most ``PER_CORE_BATCH`` when many images run one single-threaded inference per
    core).
    """

    input_size: int = 224
    crop: str = "center"
    resample: str = "bilinear"
    stages: tuple[str, ...] = ("head", "stage6")
    pooling: str = "gem"
    gem_p: float = 3.0
    flip: bool = False
    bridge: bool = True
    # The bridge's defaults were chosen on the train splits of caltech101_dev and cifar10_subset
    # (benchmarks/bridge_eval.py): zero-shot top-1 on the test splits 43.7 / 43.3 % (class names, T=3) -> 46.5 /
    # 44.6 % (names + WordNet glosses, T=2). bridge_space="classes" (with T=1, top_k=0, bridge_text_temperature=0.12)
    # reaches 53.1 / 52.9 % in zero-shot but ranks images for a single text worse (a text's class distribution is
    # flat, so spread-out images score high): it is an option, not the default. Zero-shot classification does not
    # use these joint vectors: it scores the logits by concepts (56.3 / 55.2 %, visrec.classify.zeroshot).
    bridge_temperature: float = 2.0
    bridge_top_k: int = 5
    bridge_class_text: str = "gloss"
    bridge_space: str = "text"
    bridge_text_temperature: float = 0.12
    precision: str = "auto"
    batch_size: int = 32

    def graph_config(self) -> dict[str, Any]:
        """The options baked into the ONNX graph."""
        cfg: dict[str, Any] = {"version": GRAPH_VERSION, "size": self.input_size, "stages": list(self.stages)}
        cfg["pooling"] = self.pooling
        if self.pooling == "gem":
            cfg["gem_p"] = self.gem_p
        cfg["flip"] = self.flip
        return cfg


@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained ImageNet CNN: weights, normalisation, stage widths and its trunk builder.

    ``trunk``: ``"module:function"``, called as ``function(weights_path, input_size)`` and returning a
    :class:`visrec.encoders.graph.Trunk` (imported only to export). ``stages`` maps each stage name the
    trunk can return to its channel count. ``defaults`` overrides :class:`BackboneOptions` defaults.
    """

    name: str
    weights: PackagedWeights
    trunk: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stages: Mapping[str, int]
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def options(self, given: Mapping[str, Any]) -> BackboneOptions:
        """Validated options: the spec's defaults overridden by ``given``."""
        if "bridge_top_k" in given and "bridge_space" not in given:
            # Recorded by an index built before the class-space bridge: rebuild that encoder exactly.
            given = {"bridge_space": "text", "bridge_class_text": "name", **given}
        if "bridge_top_k" in given and "precision" not in given:
            given = {"precision": "f32", **given}  # recorded before precisions were: every one ran float32
        opts = options_from(BackboneOptions, {**self.defaults, **given}, self.name)
        bad = [s for s in opts.stages if s not in self.stages]
        if not opts.stages or bad:
            raise BadInput(f"{self.name}: unknown stage(s) {bad or '(none given)'}; choose from {list(self.stages)}")
        if opts.pooling not in POOLINGS:
            raise BadInput(f"pooling must be one of {list(POOLINGS)}, got {opts.pooling!r}")
        if opts.precision not in ("auto", *PRECISIONS):
            raise BadInput(f"precision must be one of {['auto', *PRECISIONS]}, got {opts.precision!r}")
        if not 1.0 <= opts.gem_p <= 10.0:
            raise BadInput(f"gem_p must be between 1 and 10, got {opts.gem_p}")
        return opts


class BackboneEncoder:
    """An ``Encoder`` over an ImageNet CNN run with OpenVINO or ONNX Runtime (see the module docstring)."""

    def __init__(self, spec: BackboneSpec, **options: Any) -> None:
        self.spec = spec
        self.options = spec.options(options)
        opts = self.options
        self.name = spec.name
        self.weights_path = spec.weights.locate(f"The {spec.name} image encoder")
        self.weights_sha = weights_sha256(self.weights_path)
        self.prep = ImagePrep(opts.input_size, spec.mean, spec.std, opts.resample, opts.crop)
        self.input_size = opts.input_size
        self.dim = sum(spec.stages[s] for s in opts.stages)
        self.bridge: LabelBridge | None = None
        if opts.bridge:
            from visrec.encoders.bridge import LabelBridge

            try:
                self.bridge = LabelBridge(
                    temperature=opts.bridge_temperature,
                    top_k=opts.bridge_top_k,
                    class_text=opts.bridge_class_text,
                    space=opts.bridge_space,
                    text_temperature=opts.bridge_text_temperature,
                )
            except MissingWeights as exc:
                raise MissingWeights(f"{exc} (or create the encoder with bridge=False: no text side)") from exc
        self.joint_dim = self.bridge.dim if self.bridge is not None else None
        # "openvino" | "onnxruntime" ($VISREC_RUNTIME, see visrec.encoders.runtime). Not in the fingerprint:
        # both run the same graph and agree within float32 rounding, so indexes stay compatible.
        self.runtime = runtime_name()
        # "f32" | "bf16": bf16 vectors are not interchangeable with float32 ones (cosine down to 0.988), so a
        # bf16 encoder has its own fingerprint; float32 keeps the one it always had.
        self.precision = precision_name(self.runtime, None if opts.precision == "auto" else opts.precision)
        self.graph_id = fingerprint(spec.name, self.weights_sha, opts.graph_config())
        self.fingerprint = fingerprint(spec.name, self.weights_sha, self._fingerprint_config())
        self._session: Session | None = None
        self._single: Session | None = None
        self._lock = threading.Lock()

    def _fingerprint_config(self) -> dict[str, Any]:
        cfg = {
            "graph": self.options.graph_config(),
            "preprocess": self.prep.to_dict(),
            "bridge": None if self.bridge is None else self.bridge.config(),
        }
        return cfg | ({"precision": self.precision} if self.precision != "f32" else {})

    @property
    def onnx_path(self) -> Path:
        """Where the exported graph is cached (named by the weights hash and the graph options)."""
        return cache_dir() / f"{self.graph_id}.onnx"

    def session(self) -> Session:
        """The multi-threaded session (lowest latency), exporting the graph first if the cache lacks it."""
        with self._lock:
            if self._session is None:
                path = cached_onnx(self.onnx_path, self._export)
                # a query is one image: OpenVINO also compiles that fixed shape (faster than the dynamic one)
                self._session = create_image_session(
                    path, runtime=self.runtime, static_batches=(1,), precision=self.precision
                )
            return self._session

    def warm_up(self) -> None:
        """Export (first use only) and open both sessions and the bridge's class vectors now, so the first encode
        call is not the slow one."""
        self.session()
        self.batch_session()
        if self.bridge is not None:
            self.bridge.class_vectors()

    def model_files(self) -> list[Path]:
        """The cached files this encoder runs from: its ONNX graph, and with the bridge the MiniLM graph and the
        class vectors (``visrec prepare-models`` creates them ahead of use)."""
        files = [self.onnx_path]
        if self.bridge is not None:
            files += [self.bridge.text.onnx_path, self.bridge.class_vectors_path()]
        return files

    def batch_session(self) -> Session:
        """Single-threaded inferences over the same graph, one per core at once (OpenVINO: one stream per core).

        OpenVINO also compiles the graph for a fixed batch of ``PER_CORE_BATCH`` images, the size nearly every
        call of the per-core path has: it skips resolving shapes per call (EfficientNet-Lite0, one core: 8-14 %
        less time per image at float32 and bfloat16) and returns the bits the dynamic-batch graph returns
        (``tests/unit/test_speed_paths.py``), so the vectors do not depend on which one ran.
        """
        with self._lock:
            if self._single is None:
                path = cached_onnx(self.onnx_path, self._export)
                self._single = create_image_session(
                    path,
                    threads=1,
                    streams=usable_cores(),
                    runtime=self.runtime,
                    static_batches=(PER_CORE_BATCH,),
                    precision=self.precision,
                )
            return self._single

    def _outputs(self, images: Sequence[ImageLike], size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """``(start, [features, logits])`` per batch, in order.

        Several batches: one per core, each a single-threaded inference (decoding overlaps inference and no
        core idles at a per-operator barrier: ~1.3x the throughput of one two-thread session on two busy
        cores). One batch (a query): the multi-threaded session, for the lowest latency.
        """
        cores = usable_cores()
        if len(images) > size and cores > 1:
            single = self.batch_session()
            per_core = min(size, PER_CORE_BATCH)
            yield from parallel_batches(self.prep, images, per_core, cores, lambda b: single.run(None, {"image": b}))
            return
        session = self.session()
        for start, batch in prefetched_batches(self.prep, images, size):
            yield start, session.run(None, {"image": batch})

    def encode_images(
        self,
        images: Sequence[ImageLike],
        ids: Sequence[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Embeddings:
        """Encode RGB images (arrays ``(h, w, 3)`` uint8, gray arrays, PIL images or paths), in order.

        ``vectors``: ``(n, dim)`` float32 unit rows; ``joint``: ``(n, joint_dim)`` bridge vectors and ``logits``:
        ``(n, 1000)`` ImageNet logits (both None without the bridge). Raises ``BadImage`` for a file that cannot
        be decoded.
        """
        check_images(images)
        id_tuple = resolve_ids(len(images), ids)
        size = check_batch_size(batch_size, self.options.batch_size)
        n = len(images)
        if n == 0:
            return Embeddings.concat([], self.fingerprint, self.dim, self.joint_dim)
        vectors = np.empty((n, self.dim), np.float32)
        logits = np.empty((n, 1000), np.float32) if self.bridge is not None else None
        with progress_bar(n, progress, f"encoding with {self.name}") as advance:
            for start, (feats, lg) in self._outputs(images, size):
                vectors[start : start + len(feats)] = feats
                if logits is not None:
                    logits[start : start + len(feats)] = lg
                advance(len(feats))
        joint = self.bridge.project(logits) if self.bridge is not None and logits is not None else None
        return Embeddings(l2_normalize(vectors), id_tuple, self.fingerprint, joint, logits)

    def encode_logits(self, images: Sequence[ImageLike], batch_size: int | None = None) -> np.ndarray:
        """``(n, 1000)`` float32 ImageNet-1k logits, classes in the order of ``imagenet_class_names()``."""
        check_images(images)
        size = check_batch_size(batch_size, self.options.batch_size)
        out = np.empty((len(images), 1000), np.float32)
        session = self.session() if len(images) else None
        for start, batch in prefetched_batches(self.prep, images, size):
            out[start : start + len(batch)] = session.run(["logits"], {"image": batch})[0]  # type: ignore[union-attr]
        return out

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, joint_dim)`` float32 unit text vectors, comparable with ``Embeddings.joint``."""
        if self.bridge is None:
            raise VisrecError(
                f"{self.name} was created with bridge=False and has no text side; create it with bridge=True"
            )
        return self.bridge.encode_texts(texts)

    def describe(self) -> dict[str, Any]:
        """JSON facts for an index manifest; ``encoder_from_info`` rebuilds the encoder from them."""
        options = dataclasses.asdict(self.options)
        options["stages"] = list(self.options.stages)
        options["precision"] = self.precision  # resolved: the index is reopened at the precision it was built with
        options.pop("batch_size")
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "options": options,
            "dim": self.dim,
            "joint_dim": self.joint_dim,
            "input_size": self.input_size,
            "normalization": "l2",
            "weights": {
                "package": self.spec.weights.distribution,
                "file": self.spec.weights.relpath,
                "sha256": self.weights_sha,
                "licence": self.spec.weights.licence,
            },
            "preprocess": self.prep.to_dict(),
            "bridge": None if self.bridge is None else self.bridge.config(),
            "description": self.spec.description,
        }

    def build_torch(self) -> Any:
        """The torch module the ONNX graph is exported from (imports torch; for export and tests)."""
        from visrec.encoders.graph import RetrievalGraph

        module, _, attr = self.spec.trunk.partition(":")
        trunk = getattr(importlib.import_module(module), attr)(self.weights_path, self.input_size)
        o = self.options
        return RetrievalGraph(trunk, o.stages, o.pooling, o.gem_p, o.flip).eval()

    def _export(self, path: Path) -> None:
        import torch

        model = self.build_torch()
        s = self.input_size
        gen = torch.Generator().manual_seed(0)
        example = [torch.rand(2, 3, s, s, generator=gen) * 4 - 2]
        export_module(model, example, path, ["image"], ["features", "logits"], {"image": {0: "batch"}})
        checks = [[(torch.rand(b, 3, s, s, generator=gen) * 4 - 2).numpy()] for b in (1, 3)]
        verify_export(model, path, checks, ["image"], atol=1e-4)
