"""One generation of an index, pinned and opened: what every query of an :class:`~visrec.index.reader.Index`
reads, so a query never mixes two generations and a writer's commit never pulls files from under it.

The stores are opened (vectors memory-mapped, metadata in SQLite) and the small files (prototypes, calibration)
read when the snapshot opens; the reader lease (:mod:`visrec.index.leases`) is dropped when the snapshot is
closed or garbage-collected.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrec.encoders.base import Encoder
from visrec.errors import IndexCorrupt, NotCalibrated
from visrec.index.folder import IndexFolder
from visrec.index.manifest import MANIFEST, Manifest
from visrec.npyio import load_npy, load_npz
from visrec.stores import VectorStore, load_store
from visrec.types import Hit, Neighbors

log = logging.getLogger(__name__)

Signature = tuple[int, int, int]
LINEAR_HEAD = "linear.npz"
"""The linear probe of a calibrated generation (``classes``, ``weights``, ``bias``)."""


def manifest_signature(root: Path) -> Signature | None:
    """``(inode, mtime_ns, size)`` of ``manifest.json``: changes whenever a writer commits (atomic replace)."""
    try:
        st = os.stat(root / MANIFEST)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Snapshot:
    """A pinned, opened generation; satisfies :class:`visrec.index.recognize.OpenedIndex`."""

    def __init__(self, folder: IndexFolder, encoder: Callable[[], Encoder], mmap: bool = True) -> None:
        manifest, gen, lease = folder.pin()
        try:
            self.store: VectorStore = load_store(manifest.store, gen / "store", mmap=mmap)
            self.joint: VectorStore | None = (
                load_store(manifest.store, gen / "joint", mmap=mmap) if (gen / "joint").exists() else None
            )
            self._protos = _read_prototypes(gen, self.store, folder.path)
            cal = gen / "calibration.json"
            # the calibration is derived data: removing a damaged one and calibrating again restores it
            self._calibration = _read_json(
                cal, f"remove it and recalibrate: rm '{cal}' && visrec calibrate '{folder.path}'"
            )
        except BaseException:
            folder.release(lease)
            raise
        self.manifest: Manifest = manifest
        self.gen = gen
        self._root = folder.path
        self._encoder = encoder
        self._metas: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self.classifiers: dict[tuple[Any, ...], Any] = {}
        self.parsed: dict[str, Any] = {}  # mode -> Calibration, parsed once per generation
        self.novelty: Any = None  # the fitted novelty score (novelty.npz), loaded on first use
        self._linear: dict[str, np.ndarray] | None = None
        self._whitened: Any = None  # the whitened labeled gallery, built on the first whitened kNN query
        self._finalizer = weakref.finalize(self, folder.release, lease)

    @property
    def generation(self) -> int:
        return self.manifest.generation

    @property
    def path(self) -> Path:
        return self._root

    @property
    def encoder_info(self) -> dict[str, Any]:
        return dict(self.manifest.encoder)

    @property
    def encoder(self) -> Encoder:
        return self._encoder()

    def prototypes(self) -> tuple[np.ndarray, list[str]]:
        """Class mean vectors ``(c, dim)`` float32 and their class names."""
        return self._protos[0], list(self._protos[1])

    def calibration_data(self) -> dict[str, Any]:
        return self._calibration

    @functools.cached_property
    def has_linear_head(self) -> bool:
        """Whether this generation holds a linear probe (looked up once, not on every classify call)."""
        return (self.gen / LINEAR_HEAD).is_file()

    def linear_head(self) -> dict[str, np.ndarray]:
        """The linear probe fitted at calibration (``linear.npz``): ``classes (c,)`` str, ``weights (d, c)``
        float32, ``bias (c,)`` float32; read on first use."""
        with self._lock:
            if self._linear is None:
                p = self.gen / LINEAR_HEAD
                if not p.exists():
                    raise NotCalibrated(
                        f"{self._root} has no linear head (indexed without calibration, with fewer than two labeled "
                        f"classes, or before linear mode existed); run: visrec calibrate {self._root} --modes linear"
                    )
                try:
                    self._linear = load_npz(p)
                except (OSError, ValueError, KeyError) as e:
                    fix = f"visrec calibrate {self._root} --modes linear"
                    raise IndexCorrupt(f"{p} cannot be read ({e}); run: {fix}") from None
        return self._linear

    @functools.cached_property
    def has_whitening(self) -> bool:
        """Whether this generation holds a fitted whitened kNN metric (:mod:`visrec.index.metric`)."""
        from visrec.index.metric import whitening_info

        return bool((whitening_info(self.gen) or {}).get("fitted"))

    def whitened_gallery(self) -> Any:
        """The labeled items in this generation's whitened space (:class:`visrec.index.metric.WhitenedGallery`),
        built on first use: read from the store once and checked against the items the fit was made on."""
        from visrec.index.derived import _export_labeled
        from visrec.index.metric import whitened_gallery

        with self._lock:
            if self._whitened is None:
                ids, matrix, labels, _ = _export_labeled(self.store)
                self._whitened = whitened_gallery(self.gen, self._root, ids, matrix, labels)
        return self._whitened

    @functools.cached_property
    def gallery_mean(self) -> np.ndarray:
        """``(dim,)`` float32 mean of this generation's image vectors (estimated once, on a sample)."""
        from visrec.index.rerank import store_mean

        return store_mean(self)

    def search(self, vectors: np.ndarray, k: int, where: str | None = None) -> list[list[Hit]]:
        """Top-``k`` hits per query vector ``(q, dim)`` in this generation's image space (``where``: a filter)."""
        return self.hits(self.store.search(vectors, k, where))

    def hits(self, nb: Neighbors) -> list[list[Hit]]:
        """Store neighbours (``ids`` / ``scores``, ``(q, k)``) as :class:`Hit` rows; empty slots (``""``) dropped."""
        metas = self.metadata_of([str(i) for i in nb.ids.ravel()])
        out: list[list[Hit]] = []
        for ids, scores in zip(nb.ids, nb.scores, strict=True):
            row = []
            for i, sc in zip(ids, scores, strict=True):
                if i == "":
                    continue
                m = metas[str(i)]
                row.append(Hit(str(i), float(sc), m["path"], tuple(m.get("labels", [])), m.get("split")))
            out.append(row)
        return out

    def metadata(self) -> dict[str, dict[str, Any]]:
        """Metadata of every item, by id (read from the store once; a segmented store reads no vectors for it)."""
        with self._lock:
            if self._metas is None:
                items = getattr(self.store, "metadata_items", None)
                if items is not None:
                    self._metas = dict(items())
                else:
                    metas: dict[str, dict[str, Any]] = {}
                    for ids, _, ms in self.store.export():
                        metas.update(zip(ids, ms, strict=True))
                    self._metas = metas
        return self._metas

    def metadata_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Metadata of the given ids (e.g. a search's hits), by id: looked up in the store, so answering a query
        does not load every item's metadata (unknown ids and ``""`` are left out)."""
        wanted = [i for i in dict.fromkeys(ids) if i]
        with self._lock:
            if self._metas is not None:
                return {i: self._metas[i] for i in wanted if i in self._metas}
        lookup = getattr(self.store, "metadata_of", None)
        if lookup is None:
            metas = self.metadata()
            return {i: metas[i] for i in wanted if i in metas}
        found: dict[str, dict[str, Any]] = lookup(wanted)
        return found

    def close(self) -> None:
        """Drop the reader lease now (also done when the snapshot is garbage-collected)."""
        self._finalizer()


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    """The JSON object at ``path`` (``{}`` when absent); ``IndexCorrupt`` naming ``fix`` when it cannot be read."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexCorrupt(f"{path} cannot be read ({e}); {fix}") from None
    return dict(data)


def _read_prototypes(gen: Path, store: VectorStore, root: Path) -> tuple[np.ndarray, list[str]]:
    """Class means ``(c, dim)`` float32 and their names; damaged files are recomputed from the stored vectors
    (they are derived data) with a warning naming the file and the command that rewrites it."""
    p = gen / "prototypes.npy"
    if not p.exists():
        return np.zeros((0, store.dim), np.float32), []
    try:
        classes = _read_json(gen / "prototypes.json", f"visrec calibrate {root} rewrites it").get("classes", [])
        protos = load_npy(p)
        if protos.shape != (len(classes), store.dim):
            raise ValueError(f"shape {protos.shape} for {len(classes)} classes of width {store.dim}")
    except (IndexCorrupt, OSError, ValueError) as e:
        log.warning("%s cannot be read (%s); the class means are recomputed from the stored vectors on every "
                    "open until it is rewritten: visrec calibrate %s", p, e, root)  # fmt: skip
        return _class_means(store)
    return protos, list(classes)


def _class_means(store: VectorStore) -> tuple[np.ndarray, list[str]]:
    from visrec.classify.base import normalize_rows
    from visrec.classify.prototype import class_sums
    from visrec.index.derived import _export_labeled

    _, vecs, labels, _ = _export_labeled(store)
    classes, sums, _ = class_sums(vecs, labels)
    return normalize_rows(sums).astype(np.float32), list(classes)
