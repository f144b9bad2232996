"""Embed a dataset with Ray Data: a reading stage decodes images, a pool of model actors encodes them.

The same function runs on a Ray cluster (``address="ray://head:10001"`` or ``"auto"``) and, with no
address, on a local Ray started for the call and bound to 127.0.0.1 (dashboard off). The stages:

1. ``from_items`` of ``(id, absolute path)`` rows, one block per ``read_batch`` rows;
2. ``map_batches(_read_batch)``: tasks decode each file with :func:`visrec.data.load_image` at the
   encoder's ``input_size`` (JPEG draft mode), exactly as the single-process indexer does; an unreadable
   file becomes a row with an ``error`` (counted in :attr:`RayEmbedResult.skipped`, never dropped silently);
3. ``map_batches(_EncodeActor)``: ``num_actors`` actors, each holding one encoder built from its registry
   name and options, call ``encoder.encode_images`` on the decoded arrays.

When both stages ask for the same resources Ray fuses them (each actor decodes its own blocks, and no
pixels cross processes); otherwise the reading tasks need CPUs while the actors hold theirs, so by default
the pool leaves one CPU of the cluster free (a pool that takes every CPU stalls the read stage on 2 cores).
Paths must be readable from every Ray worker (a shared filesystem on a real cluster).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from visrec.errors import BadImage, BadInput, MissingExtra, VisrecError
from visrec.types import Embeddings, LabeledSet

if TYPE_CHECKING:
    from visrec.encoders.base import Encoder

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class RayConfig:
    """How the pipeline uses the cluster.

    ``num_actors``: encoder actors (default: cluster CPUs / ``cpus_per_actor`` minus one CPU's worth,
    at least 1). ``cpus_per_actor``: CPUs each actor reserves (fractions allowed). ``batch_size``: images per
    encoder call. ``read_batch``: images per reading task. ``local_cpus``: CPUs of a local Ray (default: all).
    """

    num_actors: int | None = None
    cpus_per_actor: float = 1.0
    batch_size: int = 32
    read_batch: int = 64
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "read_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BadInput(f"RayConfig.{name} must be a positive integer, got {v!r}")
        if self.num_actors is not None and (not isinstance(self.num_actors, int) or self.num_actors < 1):
            raise BadInput(f"RayConfig.num_actors must be a positive integer or None, got {self.num_actors!r}")
        if not self.cpus_per_actor > 0:
            raise BadInput(f"RayConfig.cpus_per_actor must be > 0, got {self.cpus_per_actor!r}")


@dataclass(frozen=True)
class RayEmbedResult:
    """Vectors of the readable images in dataset order, and ``(id, reason)`` of each skipped one."""

    embeddings: Embeddings
    skipped: tuple[tuple[str, str], ...]


def _ray() -> Any:
    try:
        import ray
        import ray.data  # the data extra must be there too
    except ImportError as e:
        raise MissingExtra("ray[data]", "ray", "The ray engine") from e
    return ray


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module connected to ``address``, or to a local Ray on 127.0.0.1 when None.

    A Ray already initialised in this process is used as is (and left running); a Ray started or joined
    here is shut down (disconnected) on exit. The local Ray has no dashboard and binds its node to the
    loopback address only; joining a cluster at a loopback address (``127.0.0.1:6379``) keeps this driver
    on loopback too, and both refuse to go on if a node is elsewhere.
    """
    local = is_loopback(address)
    if local:
        # Ray swaps 127.0.0.1 for the machine's address unless this is set; child processes inherit it
        os.environ[LOOPBACK_ENV] = "0"
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    if local:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read when Ray is imported, which may have come first
        ray.init(
            address=address or "local", num_cpus=num_cpus if address is None else None,
            _node_ip_address=LOOPBACK, include_dashboard=False if address is None else None,
            log_to_driver=False, configure_logging=False,
        )  # fmt: skip
        _check_loopback(ray)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (None: a new local Ray) names this machine's loopback interface."""
    if address is None:
        return True
    host = urlsplit(address if "://" in address else f"ray://{address}").hostname
    return host in ("127.0.0.1", "localhost", "::1")


def _check_loopback(ray: Any) -> None:
    """Shut Ray down (or disconnect) and raise unless every node of the cluster is on 127.0.0.1."""
    addresses = sorted({n["NodeManagerAddress"] for n in ray.nodes()})
    if addresses != [LOOPBACK]:
        ray.shutdown()
        raise VisrecError(
            f"the Ray nodes are at {addresses}, not only {LOOPBACK}; start Python with "
            f"{LOOPBACK_ENV}=0 in the environment or give the address of a Ray cluster"
        )


def _read_batch(batch: dict[str, np.ndarray], draft_size: int, max_pixels: int, facts: bool) -> dict[str, np.ndarray]:
    """Reading stage: decode the files of ``batch["path"]``; pixels as raw bytes with their shape.

    An unreadable file gets ``reason`` (the ``BadImage`` key) and ``error`` (``"reason: message"``). With
    ``facts``, also the perceptual hash of the decoded pixels (``phash``, hex) and, for rows whose
    ``need_size`` is set, the displayed ``width``/``height`` from the file header, as the indexer records them.
    """
    from visrec.data.dedup import hash_rgb_image
    from visrec.data.images import decode_file

    n = len(batch["id"])
    pixels, shape = np.empty(n, dtype=object), np.zeros((n, 3), np.int64)
    reason, errors = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    phash, size = np.full(n, "", dtype=object), np.zeros((n, 2), np.int64)
    for j, path in enumerate(batch["path"]):
        try:
            decoded = decode_file(str(path), draft_size=draft_size, max_pixels=max_pixels)
        except BadImage as bad:
            pixels[j], reason[j], errors[j] = b"", bad.reason, f"{bad.reason}: {bad}"
            continue
        image = decoded.image
        pixels[j], shape[j] = image.tobytes(), (image.height, image.width, 3)
        if facts:
            phash[j] = hash_rgb_image(image).tobytes().hex()
            if batch["need_size"][j]:
                size[j] = decoded.width, decoded.height
    out = {"id": batch["id"], "pixels": pixels, "shape": shape, "error": errors}
    if facts:
        out |= {"reason": reason, "phash": phash, "width": size[:, 0], "height": size[:, 1]}
    return out


class _EncodeActor:
    """Encoding stage: one encoder per actor, rebuilt from ``describe()`` (its fingerprint is checked)."""

    def __init__(self, info: Mapping[str, Any], batch_size: int) -> None:
        from visrec.encoders import encoder_from_info

        self.encoder = encoder_from_info(info)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = [j for j, e in enumerate(batch["error"]) if not e]
        images = [np.frombuffer(batch["pixels"][j], np.uint8).reshape(batch["shape"][j]) for j in ok]
        n, enc = len(batch["id"]), self.encoder
        out = {k: v for k, v in batch.items() if k not in ("pixels", "shape")}  # ids, errors, facts pass through
        out["vector"] = np.zeros((n, enc.dim), np.float32)
        if enc.joint_dim is not None:
            out["joint"] = np.zeros((n, enc.joint_dim), np.float32)
        if ok:
            emb = enc.encode_images(images, ids=[str(batch["id"][j]) for j in ok], batch_size=self.batch_size)
            out["vector"][ok] = emb.vectors
            if "joint" in out and emb.joint is not None:
                out["joint"][ok] = emb.joint
        return out


def dataset_rows(dataset: LabeledSet) -> list[dict[str, Any]]:
    """The ``(id, absolute path)`` rows of a dataset, the input of :func:`build_pipeline`."""
    return [{"id": r.id, "path": str(dataset.abspath(r).resolve())} for r in dataset.records]


def build_pipeline(
    ray: Any,
    rows: list[dict[str, Any]],
    info: Mapping[str, Any],
    config: RayConfig,
    *,
    max_pixels: int | None = None,
    facts: bool = False,
) -> Any:
    """The lazy Ray Dataset of ``(id, vector, error[, joint])`` rows for the encoder described by ``info``.

    ``rows``: dicts with ``id`` and an absolute ``path`` (and ``need_size`` with ``facts``, see
    :func:`_read_batch`). Files are decoded at ``info["input_size"]`` (JPEG draft mode), as the indexer does.
    """
    from visrec.data.images import DEFAULT_MAX_PIXELS

    blocks = max(1, -(-len(rows) // config.read_batch))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    read_kwargs = {"draft_size": int(info["input_size"]), "max_pixels": max_pixels or DEFAULT_MAX_PIXELS,
                   "facts": facts}  # fmt: skip
    ds = ds.map_batches(_read_batch, batch_size=config.read_batch, fn_kwargs=read_kwargs, num_cpus=1)
    return ds.map_batches(
        _EncodeActor, fn_constructor_kwargs={"info": dict(info), "batch_size": config.batch_size},
        batch_size=config.batch_size, compute=ray.data.ActorPoolStrategy(size=_pool_size(ray, config)),
        num_cpus=config.cpus_per_actor,
    )  # fmt: skip


def _pool_size(ray: Any, config: RayConfig) -> int:
    """``config.num_actors``, or as many actors as fit while one CPU stays free for reading."""
    if config.num_actors is not None:
        return config.num_actors
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, int((cpus - 1) // config.cpus_per_actor))


def embed_with_ray(
    dataset: LabeledSet,
    encoder_name: str,
    encoder_options: Mapping[str, Any] | None = None,
    address: str | None = None,
    config: RayConfig | None = None,
) -> RayEmbedResult:
    """Embed every image of ``dataset`` on Ray; vectors ``(n, dim)`` float32 come back in dataset order.

    ``encoder_name`` / ``encoder_options``: as for :func:`visrec.encoders.create_encoder` (each actor
    builds its own). ``address``: a Ray cluster, or None for a local Ray on 127.0.0.1. Unreadable images are
    listed in ``skipped`` with their reason. The vectors equal ``encoder.encode_images`` on the same files.
    """
    from visrec.encoders import create_encoder

    encoder = create_encoder(encoder_name, **dict(encoder_options or {}))
    return embed_encoder_with_ray(dataset, encoder, address, config)


def embed_encoder_with_ray(
    dataset: LabeledSet, encoder: Encoder, address: str | None = None, config: RayConfig | None = None
) -> RayEmbedResult:
    """:func:`embed_with_ray` for an encoder already built here (actors rebuild it from ``describe()``)."""
    config = config or RayConfig()
    info = encoder.describe()
    with ray_session(address, num_cpus=config.local_cpus) as ray:
        rows: dict[str, dict[str, Any]] = {}
        for b in build_pipeline(ray, dataset_rows(dataset), info, config).iter_batches(batch_format="numpy"):
            for j, i in enumerate(b["id"]):
                rows[str(i)] = {key: col[j] for key, col in b.items()}
    order = [r.id for r in dataset.records]
    missing = [i for i in order if i not in rows]
    if missing:
        raise BadInput(f"the Ray pipeline returned no row for {len(missing)} image(s), e.g. {missing[:3]}")
    kept = [i for i in order if not rows[i]["error"]]
    skipped = tuple((i, str(rows[i]["error"])) for i in order if rows[i]["error"])
    return RayEmbedResult(_embeddings(rows, kept, encoder), skipped)


def _embeddings(rows: Mapping[str, Mapping[str, Any]], kept: list[str], encoder: Encoder) -> Embeddings:
    def stack(key: str, dim: int) -> np.ndarray:
        if not kept:
            return np.zeros((0, dim), np.float32)
        return np.ascontiguousarray(np.stack([rows[i][key] for i in kept]), np.float32)

    joint = None if encoder.joint_dim is None else stack("joint", encoder.joint_dim)
    return Embeddings(stack("vector", encoder.dim), tuple(kept), encoder.fingerprint, joint)


def embed_to_parquet(
    dataset: LabeledSet,
    encoder_name: str,
    out_dir: str | Path,
    encoder_options: Mapping[str, Any] | None = None,
    address: str | None = None,
    config: RayConfig | None = None,
) -> Path:
    """Embed on Ray and write Parquet files (``id``, ``vector``, ``error``) into ``out_dir`` from the workers.

    Nothing passes through the driver: use this when the vectors do not fit in one machine's memory.
    Read them back with :func:`read_embeddings_parquet`.
    """
    from visrec.encoders import create_encoder

    config = config or RayConfig()
    out = Path(out_dir).resolve()
    info = create_encoder(encoder_name, **dict(encoder_options or {})).describe()
    with ray_session(address, num_cpus=config.local_cpus) as ray:
        build_pipeline(ray, dataset_rows(dataset), info, config).write_parquet(str(out))
    return out


def read_embeddings_parquet(folder: str | Path, encoder_id: str) -> RayEmbedResult:
    """The vectors written by :func:`embed_to_parquet` (rows in file order), tagged with ``encoder_id``."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(folder), columns=["id", "vector", "error"])
    ids, errors = table.column("id").to_pylist(), table.column("error").to_pylist()
    vec_col = table.column("vector").combine_chunks()
    flat = np.asarray(vec_col.flatten() if hasattr(vec_col, "flatten") else vec_col.storage.flatten(), np.float32)
    vectors = flat.reshape(len(ids), -1) if ids else np.zeros((0, 0), np.float32)
    keep = [j for j, e in enumerate(errors) if not e]
    emb = Embeddings(np.ascontiguousarray(vectors[keep]), tuple(ids[j] for j in keep), encoder_id)
    return RayEmbedResult(emb, tuple((ids[j], errors[j]) for j in range(len(ids)) if errors[j]))
