"""Build or update an index folder from a dataset: incremental, resumable, crash-safe.

The pipeline has four stages, each timed: *scan* (stat and hash files, decide what changed), *embed* (decode in
worker threads while the encoder runs on the previous batch; finished batches are written to resumable shards in
the index's ``work/`` folder), *store* (old generation minus removed/changed items plus new vectors) and *commit*
(a new generation switched in atomically). A kill at any point leaves the previous generation readable; the next
run reuses every shard already written.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from visrec.encoders.base import Encoder
from visrec.errors import BadImage, BadInput
from visrec.npyio import load_npy
from visrec.types import Embeddings, ImageRecord

if TYPE_CHECKING:
    from PIL import Image

T = TypeVar("T")
U = TypeVar("U")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances (the CLI draws a bar from it)."""
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class IndexConfig:
    """Options of :func:`build_index`.

    ``store``: a backend name (``faiss``, ``exact``, ``milvus``) or a Milvus URI (``milvus://host:19530/coll``,
    ``milvus-lite:///path.db``), used when the index is created (an existing index keeps its backend).
    ``engine``: where images are embedded, ``local`` (decoding threads, this process) or ``ray`` (Ray Data at
    ``ray_address``, or a local Ray on 127.0.0.1 when None). ``rehash``: hash every file, even those whose
    size, modification time and inode match what is stored (a full check; otherwise only changed files are read).
    ``compress``: ``fp16`` or ``sq8`` keeps the codes of the FAISS store's IVF / HNSW indexes at float16 or 8 bits
    (see :mod:`visrec.stores.faiss_store`); set when the index is created, kept by its later updates.
    ``knn_metric``: the kNN metric the calibration uses, ``cosine`` or ``whitened`` (:mod:`visrec.classify.knn`);
    None keeps the index's current one (cosine for a new index).
    """

    store: str = "faiss"
    batch_size: int = 32
    workers: int = 2
    shard_size: int = 256
    max_pixels: int = 100_000_000
    calibrate: bool = True
    target_precision: float = 0.95
    engine: str = "local"
    ray_address: str | None = None
    rehash: bool = False
    compress: str | None = None
    knn_metric: str | None = None

    def __post_init__(self) -> None:
        if self.knn_metric not in (None, "cosine", "whitened"):
            raise BadInput(f"unknown kNN metric {self.knn_metric!r}; choose cosine or whitened")
        if self.compress not in (None, "fp16", "sq8"):
            raise BadInput(f"unknown compression {self.compress!r}; choose fp16 or sq8 (or none)")
        if self.engine not in ENGINES:
            raise BadInput(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.ray_address is not None and self.engine != "ray":
            raise BadInput(f"a Ray address ({self.ray_address!r}) needs the ray engine; add --engine ray")


@dataclass
class IndexingReport:
    """What one indexing run did. ``skipped`` maps a reason (``"corrupt"``, ``"truncated"``…) to file paths."""

    path: str
    count: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    metadata_updated: int = 0
    resumed: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    embedded_per_second: float = 0.0
    calibration: dict[str, Any] | None = None
    segments: int = 0
    merged_segments: int = 0

    def skip(self, bad: BadImage) -> None:
        self.skipped.setdefault(bad.reason, []).append(bad.path)

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_skipped"] = self.n_skipped
        return d


@dataclass(frozen=True)
class _Item:
    record: ImageRecord
    abspath: Path
    meta: dict[str, Any]


def record_metadata(record: ImageRecord, stat: os.stat_result | None = None) -> dict[str, Any]:
    """The metadata dict a store keeps for a record (see ``visrec.stores.base.Metadata``)."""
    extra = dict(record.extra)
    if stat is not None:
        extra["size"] = str(stat.st_size)
        extra["mtime_ns"] = str(stat.st_mtime_ns)
        extra["inode"] = str(stat.st_ino)
    return {
        "path": record.path,
        "labels": list(record.labels),
        "split": record.split,
        "sha256": record.sha256,
        "width": record.width,
        "height": record.height,
        "group": record.group,
        "extra": extra,
    }


class ShardWriter:
    """Resumable embedding shards in an index's ``work/`` folder.

    A shard is ``shard-NNNNNN.npy`` (vectors), optional ``.joint.npy``, and ``.json`` (encoder fingerprint, ids,
    metadata) written last, so a shard without its JSON is incomplete and ignored.
    """

    def __init__(self, work_dir: Path, fingerprint: str) -> None:
        self.dir = work_dir
        self.fingerprint = fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seq = 1 + max((int(p.stem.split("-")[1]) for p in self.dir.glob("shard-*.json")), default=0)

    def completed(self) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray | None]]:
        """Every complete shard written with this fingerprint: (json, vectors, joint or None)."""
        for js in sorted(self.dir.glob("shard-*.json")):
            try:
                info = json.loads(js.read_text())
                if info.get("fingerprint") != self.fingerprint:
                    continue
                vec = load_npy(js.with_suffix(".npy"))
                jp = js.with_name(js.stem + ".joint.npy")
                joint = load_npy(jp) if jp.exists() else None
            except (OSError, ValueError):
                continue  # a shard cut short by a kill: its images are embedded again
            if len(vec) == len(info["ids"]):
                yield info, vec, joint

    def write(self, emb: Embeddings, metas: Sequence[dict[str, Any]]) -> None:
        stem = self.dir / f"shard-{self._seq:06d}"
        self._seq += 1
        np.save(stem.with_suffix(".npy"), emb.vectors, allow_pickle=False)
        if emb.joint is not None:
            np.save(stem.with_name(stem.name + ".joint.npy"), emb.joint, allow_pickle=False)
        tmp = stem.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "ids": list(emb.ids), "meta": list(metas)}))
        os.replace(tmp, stem.with_suffix(".json"))

    def clear(self) -> None:
        for p in self.dir.glob("shard-*"):
            p.unlink(missing_ok=True)


def _decode(
    item: _Item, draft_size: int, max_pixels: int, square: Callable[[Image.Image], np.ndarray] | None = None
) -> tuple[_Item, np.ndarray] | BadImage:
    """Decode one file once: its perceptual hash, its displayed size and (with ``square``) the model input.

    ``square`` maps the decoded upright RGB PIL image to the encoder's ``(s, s, 3)`` uint8 input square; doing
    it here, in the decode worker, spares the encoder a second resize of a full-size array. The pixels stay
    in Pillow until that small square, so decode workers seldom hold Python's lock (see ``decode_file``).
    """
    from visrec.data.dedup import hash_rgb_image
    from visrec.data.images import decode_file

    try:
        decoded = decode_file(item.abspath, draft_size=draft_size, max_pixels=max_pixels)
    except BadImage as bad:
        return bad
    meta = dict(item.meta, extra=dict(item.meta["extra"]))
    if not meta["width"]:
        meta["width"], meta["height"] = decoded.width, decoded.height
    meta["extra"]["phash"] = hash_rgb_image(decoded.image).tobytes().hex()
    pixels = np.asarray(decoded.image, dtype=np.uint8) if square is None else square(decoded.image)
    return _Item(item.record, item.abspath, meta), pixels


SHARDS_IN_FLIGHT = 2
"""Shards encoded at once by :func:`embed_items`: while one finishes its last batches, projects its joint vectors
and is written, the next one already keeps every core inferring (one at a time left a core idle at each shard's
end). Shards are still written in order, one by one."""


class _ShardEncoder:
    """Encodes full shards in background threads, :data:`SHARDS_IN_FLIGHT` at most, and writes them in order."""

    def __init__(self, encoder: Encoder, shards: ShardWriter, batch_size: int, pool: Executor) -> None:
        self.encoder, self.shards, self.batch_size, self.pool = encoder, shards, batch_size, pool
        self.running: deque[tuple[Future[Embeddings], list[dict[str, Any]]]] = deque()

    def submit(self, decoded: Sequence[tuple[_Item, np.ndarray]]) -> None:
        """Start encoding ``decoded`` (one shard); first write the oldest shard when too many are running."""
        pixels, ids = [a for _, a in decoded], [it.record.id for it, _ in decoded]
        future = self.pool.submit(self.encoder.encode_images, pixels, ids=ids, batch_size=self.batch_size)
        self.running.append((future, [it.meta for it, _ in decoded]))
        self.write(keep=SHARDS_IN_FLIGHT - 1)

    def write(self, keep: int = 0) -> None:
        """Wait for and write the oldest shards until at most ``keep`` are still running."""
        while len(self.running) > keep:
            future, metas = self.running.popleft()
            self.shards.write(future.result(), metas)


def embed_items(
    items: Sequence[_Item],
    encoder: Encoder,
    shards: ShardWriter,
    config: IndexConfig,
    report: IndexingReport,
    progress: Progress | None = None,
) -> None:
    """Decode ``items`` in worker threads, encode them in batches and write one shard per ``shard_size`` images.

    The next shard is decoded, and started, while earlier ones encode (:data:`SHARDS_IN_FLIGHT`); each shard is
    encoded by one ``encode_images`` call, so its vectors are those of encoding its images alone.
    """
    done = 0
    pending: list[tuple[_Item, np.ndarray]] = []
    with (
        ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="visrec-decode") as pool,
        ThreadPoolExecutor(SHARDS_IN_FLIGHT, thread_name_prefix="visrec-shard") as shard_pool,
    ):
        encoding = _ShardEncoder(encoder, shards, config.batch_size, shard_pool)
        square = _input_square(encoder)
        decode = partial(_decode, draft_size=encoder.input_size, max_pixels=config.max_pixels, square=square)
        for res in ordered_map(pool, decode, items, window=config.shard_size + 4 * config.workers):
            done += 1
            if isinstance(res, BadImage):
                report.skip(res)
            else:
                pending.append(res)
                if len(pending) >= config.shard_size:
                    encoding.submit(pending)
                    pending = []
            if progress is not None:
                progress("embed", done, len(items))
        if pending:
            encoding.submit(pending)
        encoding.write()


def ordered_map(pool: Executor, fn: Callable[[T], U], items: Sequence[T], window: int) -> Iterator[U]:
    """``map(fn, items)`` on ``pool``, in order, with at most ``window`` calls submitted ahead of the consumer.

    ``Executor.map`` submits every call at once, so decoded images pile up in memory whenever decoding
    outruns encoding (the whole dataset, on a large folder); this keeps memory bounded.
    """
    pending: deque[Future[U]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def _input_square(encoder: Encoder) -> Callable[[Image.Image], np.ndarray] | None:
    """The encoder's own ``decoded image -> (s, s, 3) uint8`` input step when it has one (CNN backbones).

    Encoding that square gives the same vectors as encoding the decoded image (the step is idempotent).
    """
    prep = getattr(encoder, "prep", None)
    square = getattr(prep, "square_decoded", None)
    return square if callable(square) else None


def count_labels(metas: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Images per label (multi-label images count once per label)."""
    c: Counter[str] = Counter(lab for m in metas for lab in m.get("labels", []))
    return dict(sorted(c.items()))


def timed(report: IndexingReport, stage: str) -> Callable[[], None]:
    """Return a function that records the seconds since now under ``stage``."""
    t0 = time.perf_counter()

    def stop() -> None:
        report.seconds[stage] = round(report.seconds.get(stage, 0.0) + time.perf_counter() - t0, 3)

    return stop
