"""Write index folders: build or update from a dataset, and (re)calibrate the unknown thresholds.

Every write happens under the folder's lock and ends in one atomic switch to a new generation, so a reader
never sees a half-written index and a crash never loses the previous one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrec.encoders.base import Encoder
from visrec.encoders.runtime import recorded_precision
from visrec.errors import BadInput, EmptyDataset
from visrec.index.derived import Delta, _derived_files
from visrec.index.folder import IndexFolder
from visrec.index.inputs import utf8_only
from visrec.index.pipeline import (
    IndexConfig,
    IndexingReport,
    Progress,
    ShardWriter,
    embed_items,
    timed,
)
from visrec.index.scan import StoredItems, plan_changes
from visrec.prefetch import FactsPrefetch
from visrec.stores.base import VectorStore
from visrec.stores.merge_policy import MergePolicy
from visrec.stores.segmented import SegmentedStore
from visrec.types import LabeledSet


def _open_or_create(out: Path, encoder: Encoder, backend: str) -> IndexFolder:
    if (out / "manifest.json").exists():
        folder = IndexFolder.open(out)
        folder.check_encoder(encoder.fingerprint, encoder.name, recorded_precision(encoder.describe()))
        return folder
    info = {"describe": encoder.describe()}
    return IndexFolder.create(
        out,
        encoder_info=info | {"fingerprint": encoder.fingerprint, "name": encoder.name},
        dim=encoder.dim,
        joint_dim=encoder.joint_dim,
        backend=backend,
    )


def _load_current(folder: IndexFolder) -> tuple[VectorStore | None, VectorStore | None]:
    """The current generation's store and joint store: segmented (vectors memory-mapped) unless Milvus."""
    from visrec.stores import load_store

    gen = folder.generation_dir
    if gen is None:
        return None, None
    backend = folder.manifest.store
    if backend != "milvus":
        joint_seg = SegmentedStore.load(gen / "joint", backend) if (gen / "joint").exists() else None
        return SegmentedStore.load(gen / "store", backend), joint_seg
    joint = load_store(backend, gen / "joint") if (gen / "joint").exists() else None
    return load_store(backend, gen / "store"), joint


def _stored_items(store: VectorStore | None) -> StoredItems:
    """Ids and file facts of every stored item (a segmented store reads its segments' ``facts.npy``, no
    metadata); another store exports every item's metadata."""
    if isinstance(store, SegmentedStore):
        ids, facts = store.file_facts()
        return StoredItems(ids, facts, store.metadata_of)
    metas: dict[str, dict[str, Any]] = {}
    if store is not None:
        for ids, _, ms in store.export():
            metas.update(zip(ids, ms, strict=True))
    return StoredItems.from_metadata(metas)


def _empty_segmented(
    backend: str, encoder: Encoder, compress: str | None = None
) -> tuple[SegmentedStore, SegmentedStore | None]:
    options = {"quantize": compress} if compress and backend == "faiss" else {}
    if compress and backend != "faiss":
        raise BadInput(f"--compress applies to the faiss store, not to {backend}")
    joint = None if encoder.joint_dim is None else SegmentedStore(backend, encoder.joint_dim, options)
    return SegmentedStore(backend, encoder.dim, options), joint


def apply_changes(
    store: SegmentedStore,
    joint: SegmentedStore | None,
    remove: Sequence[str],
    rows: Sequence[tuple[str, np.ndarray, np.ndarray | None, dict[str, Any]]],
    policy: MergePolicy | None = None,
) -> tuple[Delta, int]:
    """Delete ``remove`` and upsert ``rows`` ``(id, vector, joint vector | None, metadata)`` in place (a new
    segment and tombstones), then merge segments as ``policy`` says. Returns what changed (for the prototypes)
    and how many segments were merged away. Costs O(changed) unless a merge is due."""
    dim = store.dim
    gone = [i for i in dict.fromkeys([*remove, *(r[0] for r in rows)]) if i in store]
    old_vecs, old_metas = store.get(gone) if gone else (np.zeros((0, dim), np.float32), [])
    store.delete(list(remove))
    if joint is not None:
        joint.delete(list(remove))
    ids = [r[0] for r in rows]
    vecs = np.stack([r[1] for r in rows]) if rows else np.zeros((0, dim), np.float32)
    if rows:
        store.upsert(ids, vecs, [r[3] for r in rows])
        if joint is not None and all(r[2] is not None for r in rows):
            joint.upsert(ids, np.stack([r[2] for r in rows]), [{"path": r[3]["path"]} for r in rows])  # type: ignore[misc]
    merged = store.compact(policy)
    if joint is not None:
        joint.compact(policy)
    labels = [tuple(m.get("labels", ())) for m in old_metas]
    delta = Delta(old_vecs, labels, vecs, [tuple(r[3].get("labels", ())) for r in rows])
    return delta, merged


def _shard_rows(
    shards: ShardWriter,
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None, dict[str, Any]]]:
    """(id, sha256) -> (vector, joint vector, metadata) of every finished shard; later shards win."""
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None, dict[str, Any]]] = {}
    for info, vec, joint in shards.completed():
        for r, (i, meta) in enumerate(zip(info["ids"], info["meta"], strict=True)):
            out[(i, meta["sha256"])] = (vec[r], None if joint is None else joint[r], meta)
    return out


class _Assembly:
    """The next generation's items, gathered from the old store, metadata updates and new shards."""

    def __init__(self, encoder: Encoder) -> None:
        self.ids: list[str] = []
        self.vecs: list[np.ndarray] = []
        self.joint: list[np.ndarray] = []
        self.metas: list[dict[str, Any]] = []
        self.unchanged: set[str] = set()  # taken from the old store with their stored metadata
        self.encoder = encoder

    def take_old(self, old: Any, old_joint: Any, ids: Sequence[str], metas: Sequence[dict[str, Any]] | None) -> None:
        if not ids:
            return
        vec, stored = old.get(list(ids))
        if metas is None:
            self.unchanged.update(ids)
        self.ids += list(ids)
        self.vecs.append(vec)
        self.metas += list(metas) if metas is not None else stored
        if old_joint is not None:
            self.joint.append(old_joint.get(list(ids))[0])

    def take_new(self, rows: Sequence[tuple[str, tuple[np.ndarray, np.ndarray | None, dict[str, Any]]]]) -> None:
        if not rows:
            return
        self.ids += [i for i, _ in rows]
        self.vecs.append(np.stack([r[0] for _, r in rows]))
        self.metas += [r[2] for _, r in rows]
        if self.encoder.joint_dim is not None:
            self.joint.append(np.stack([r[1] for _, r in rows]))  # type: ignore[misc]

    def stores(
        self, backend: str, options: dict[str, Any], previous: Path | None
    ) -> tuple[VectorStore, VectorStore | None]:
        """The next generation's store (and joint store); ``previous``: the current generation's folder."""
        enc = self.encoder
        vecs = np.concatenate(self.vecs) if self.vecs else np.zeros((0, enc.dim), np.float32)
        same = frozenset(self.unchanged)
        store = _filled(backend, enc.dim, options, previous, "store", (self.ids, vecs, self.metas), same)
        joint = None
        if enc.joint_dim is not None:
            jvecs = np.concatenate(self.joint) if self.joint else np.zeros((0, enc.joint_dim), np.float32)
            jmeta = [{"path": m["path"]} for m in self.metas]
            joint = _filled(backend, enc.joint_dim, options, previous, "joint", (self.ids, jvecs, jmeta), same)
        return store, joint


def _filled(
    backend: str, dim: int, options: dict[str, Any], previous: Path | None, part: str,
    items: tuple[list[str], np.ndarray, list[dict[str, Any]]], unchanged: frozenset[str] = frozenset(),
) -> VectorStore:  # fmt: skip
    """A store of ``backend`` holding exactly ``items``; a Milvus collection at a URI is updated in place
    (only the rows not ``unchanged`` are written)."""
    from visrec.stores import create_store

    ids, vecs, metas = items
    if backend == "milvus" and options.get("uri"):
        from visrec.stores.milvus_store import fill_generation, part_options

        prev = None if previous is None else previous / part
        return fill_generation(dim, part_options(part, options), prev, ids, vecs, metas, unchanged)
    store = create_store(backend, dim)
    adopt = getattr(store, "adopt_trained", None)
    if adopt is not None and previous is not None:
        adopt(previous / part)  # a FAISS IVF index is refilled, not retrained, on every commit
    if ids:
        store.add(ids, vecs, metas)
    return store


def _store_target(folder: IndexFolder, requested: dict[str, Any], encoder: Encoder) -> tuple[dict[str, Any], bool]:
    """Options of the next generation's stores (the Milvus URI asked for, else the saved one), and whether
    they move the vectors to another collection. A new collection is checked now, before any embedding."""
    backend, gen = folder.manifest.store, folder.generation_dir
    if requested and backend != "milvus":
        raise BadInput(
            f"{folder.path} keeps its vectors in a {backend} store; a Milvus URI cannot change that. Move the "
            "index with `visrec export` and `visrec import --store URI`, or index into a new folder"
        )
    if backend != "milvus":
        return {}, False
    if not requested:
        pointer = None if gen is None else gen / "store" / "milvus.json"
        saved = json.loads(pointer.read_text(encoding="utf-8")) if pointer and pointer.is_file() else {}
        if not saved.get("uri"):
            return {}, False  # a private Milvus Lite file, re-created from the saved files
        return {"uri": saved["uri"], "collection": saved["collection"], "encoder_id": encoder.fingerprint}, False
    from visrec.stores.milvus_store import claim_collection

    options = {**requested, "encoder_id": encoder.fingerprint}
    current = claim_collection(encoder.dim, options, None if gen is None else gen / "store")
    return options, not current


def build_index(
    dataset: LabeledSet,
    out: str | Path,
    encoder: Encoder,
    config: IndexConfig | None = None,
    progress: Progress | None = None,
    prefetch: FactsPrefetch | None = None,
) -> IndexingReport:
    """Create or update the index folder ``out`` so that it holds exactly ``dataset``'s images.

    Only new or changed files (by sha256) are embedded; removed files are dropped; a file that became
    unreadable keeps its previous entry and is reported. Embeddings are saved in resumable shards as they are
    computed, so an interrupted run resumes where it stopped. Returns what was done. ``prefetch``: the file
    facts of ``dataset``'s folder being gathered by a helper process (:func:`~visrec.prefetch.start_prefetch`),
    started before the folder was listed.
    """
    cfg = config or IndexConfig()
    out = Path(out)
    if len(dataset) == 0:
        raise EmptyDataset(f"{dataset.root}: no image to index")
    from visrec.stores.milvus_store import parse_store_spec

    backend, requested = parse_store_spec(cfg.store)
    folder = _open_or_create(out, encoder, backend)
    report = IndexingReport(path=str(out))
    with folder.writer():
        options, moving = _store_target(folder, requested, encoder)
        old, old_joint = _load_current(folder)
        stored = _stored_items(old)
        stop = timed(report, "scan")
        prefetched = prefetch.result() if prefetch is not None and not cfg.rehash and len(stored) else None
        if folder.manifest.store == "milvus":
            dataset = utf8_only(dataset, report)
        plan = plan_changes(dataset, stored, report, cfg.workers, cfg.rehash, prefetched)
        stop()
        shards = ShardWriter(folder.work_dir, encoder.fingerprint)
        new = _embed_changes(plan, encoder, shards, cfg, report, progress)
        failed_but_stored = [i for reason in report.skipped.values() for i in _ids_of(dataset, reason) if i in stored]
        _count_changes(report, new, stored, plan)
        if old is not None and not (new or plan.remove or plan.meta_only or moving or _metric_changes(folder, cfg)):
            report.count = len(stored)
            shards.clear()
            return report
        stop = timed(report, "store")
        if folder.manifest.store == "milvus":
            kept = (plan, new, failed_but_stored)
            store, joint, files = _assemble(folder, (old, old_joint), kept, encoder, options, cfg, report)
        else:
            store, joint, files = _segments(folder, (old, old_joint), plan, new, encoder, cfg, report)
        stop()
        if not store.count():
            raise EmptyDataset(_nothing_indexed(dataset, report))
        stop = timed(report, "commit")
        folder.commit(
            _writer(store, joint, files), count=store.count(), extra={"dataset_root": str(Path(dataset.root).resolve())}
        )
        stop()
        shards.clear()
    report.count = store.count()
    return report


def _metric_changes(folder: IndexFolder, cfg: IndexConfig) -> bool:
    """Whether ``cfg`` names a kNN metric other than the one the current generation is calibrated with (the next
    generation is then written with the same items and a new calibration)."""
    from visrec.index.derived import _previous_knn_metric

    return cfg.knn_metric is not None and cfg.knn_metric != _previous_knn_metric(folder)


def _segments(
    folder: IndexFolder, current: tuple[Any, Any], plan: Any, new: NewRows, encoder: Encoder, cfg: IndexConfig,
    report: IndexingReport,
) -> tuple[SegmentedStore, SegmentedStore | None, dict[str, bytes]]:  # fmt: skip
    """The next generation of a local index: the current segments plus one new segment, tombstones for what
    was removed or replaced, merged as the policy says; prototypes updated from what changed."""
    store, joint = current if current[0] is not None else _empty_segmented(folder.manifest.store, encoder, cfg.compress)
    rows = [(i, r[0], r[1], r[2]) for i, r in new]
    if plan.meta_only:  # same content, new metadata: the stored vectors with the new metadata
        ids = [it.record.id for it in plan.meta_only]
        vecs = store.get(ids)[0]
        jvecs = joint.get(ids)[0] if joint is not None else [None] * len(ids)
        rows += [(i, v, j, it.meta) for i, v, j, it in zip(ids, vecs, jvecs, plan.meta_only, strict=True)]
    delta, report.merged_segments = apply_changes(store, joint, plan.remove, rows)
    report.segments = len(store.segments())
    files = _derived_files(store, joint, cfg, report, folder, delta if current[0] is not None else None)
    return store, joint, files


def _assemble(
    folder: IndexFolder, current: tuple[Any, Any], changes: tuple[Any, NewRows, list[str]], encoder: Encoder,
    options: dict[str, Any], cfg: IndexConfig, report: IndexingReport,
) -> tuple[VectorStore, VectorStore | None, dict[str, bytes]]:  # fmt: skip
    """The next generation of a Milvus index: every kept item gathered with the new ones (only the changed rows
    are written to the collection)."""
    old, old_joint = current
    plan, new, failed_but_stored = changes
    asm = _Assembly(encoder)
    asm.take_old(old, old_joint, plan.keep + failed_but_stored, None)
    asm.take_old(old, old_joint, [it.record.id for it in plan.meta_only], [it.meta for it in plan.meta_only])
    asm.take_new(new)
    store, joint = asm.stores(folder.manifest.store, options, folder.generation_dir)
    return store, joint, _derived_files(store, joint, cfg, report, folder)


NewRows = list[tuple[str, tuple[np.ndarray, "np.ndarray | None", dict[str, Any]]]]


def _embed_changes(
    plan: Any,
    encoder: Encoder,
    shards: ShardWriter,
    cfg: IndexConfig,
    report: IndexingReport,
    progress: Progress | None,
) -> NewRows:
    """Embed what the plan needs and no finished shard holds yet; returns (id, row) for every planned item."""
    done = _shard_rows(shards)
    todo = [it for it in plan.embed if (it.record.id, it.meta["sha256"]) not in done]
    report.resumed = len(plan.embed) - len(todo)
    warm_up = getattr(encoder, "warm_up", None)
    if todo and callable(warm_up):
        # the first run exports the models (about a minute): kept out of the images/s figure
        stop = timed(report, "prepare")
        warm_up()
        stop()
    stop = timed(report, "embed")
    if cfg.engine == "ray":
        from visrec.distributed.ray_index import embed_items_with_ray

        embed_items_with_ray(todo, encoder, shards, cfg, report, progress)
    else:
        embed_items(todo, encoder, shards, cfg, report, progress)
    stop()
    if todo and report.seconds["embed"] > 0:
        report.embedded_per_second = round(len(todo) / report.seconds["embed"], 2)
    done = _shard_rows(shards)
    return [(it.record.id, done[k]) for it in plan.embed if (k := (it.record.id, it.meta["sha256"])) in done]


def _count_changes(report: IndexingReport, new: NewRows, stored: StoredItems, plan: Any) -> None:
    report.added = sum(1 for i, _ in new if i not in stored)
    report.updated = len(new) - report.added
    report.removed = len(plan.remove)
    report.unchanged = len(plan.keep)
    report.metadata_updated = len(plan.meta_only)


def _ids_of(dataset: LabeledSet, paths: Sequence[str]) -> list[str]:
    by_path = {str(dataset.abspath(r)): r.id for r in dataset.records}
    return [by_path[p] for p in paths if p in by_path]


def _nothing_indexed(dataset: LabeledSet, report: IndexingReport) -> str:
    reasons = ", ".join(f"{len(v)} {k}" for k, v in report.skipped.items()) or "none"
    return f"{dataset.root}: none of the {len(dataset)} images could be indexed (skipped: {reasons})"


def _writer(store: VectorStore, joint: VectorStore | None, files: dict[str, bytes]) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        (tmp / "store").mkdir()
        store.save(tmp / "store")
        if joint is not None:
            (tmp / "joint").mkdir()
            joint.save(tmp / "joint")
        for name, data in files.items():
            (tmp / name).write_bytes(data)

    return write


def save_calibration(
    index_path: str | Path, calibrations: dict[str, dict[str, Any]], files: dict[str, bytes] | None = None
) -> None:
    """Store calibrations (mode -> ``Calibration.to_dict()``) in a new generation of the index, merged with
    the modes already calibrated, plus derived ``files`` (name -> bytes, e.g. ``novelty.npz``)."""
    folder = IndexFolder.open(index_path)
    with folder.writer():
        gen = folder.generation_dir
        if gen is None:
            raise BadInput(f"{index_path}: the index is empty; nothing to calibrate")
        p = gen / "calibration.json"
        merged = json.loads(p.read_text()) if p.exists() else {}
        merged.update(calibrations)
        data = json.dumps(merged, indent=1).encode()
        extra = dict(files or {})
        keep = [p.name for p in gen.iterdir() if p.name != "calibration.json" and p.name not in extra]

        def write(tmp: Path) -> None:
            folder.carry_over(tmp, keep)
            (tmp / "calibration.json").write_bytes(data)
            for name, blob in extra.items():
                (tmp / name).write_bytes(blob)

        folder.commit(write, count=folder.manifest.count)
