"""Small edits of an index without a dataset folder: add encoded images, delete items by id; and compaction.

Edits are used by the HTTP API and UI, where images arrive as uploads. Each edit is one new generation (a new
segment and tombstones; prototypes updated, calibration kept while recent), written under the index's lock like
a full build. :func:`compact_index` merges an index's segments (``visrec compact``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visrec.errors import BadInput, ManifestMismatch, UnknownIds
from visrec.index.derived import Delta, _derived_files
from visrec.index.folder import IndexFolder
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.index.writer import _load_current, _writer, apply_changes
from visrec.stores.merge_policy import MergePolicy
from visrec.stores.segmented import SegmentedStore
from visrec.types import Embeddings


def upload_metadata(
    name: str, labels: Sequence[str], sha256: str, width: int, height: int, phash: str
) -> dict[str, Any]:
    """Metadata of an uploaded image (it has no file in a dataset: ``path`` is ``upload/<name>``)."""
    return {
        "path": f"upload/{Path(name).name}",
        "labels": [lab for lab in labels if lab],
        "split": None,
        "sha256": sha256,
        "width": width,
        "height": height,
        "group": None,
        "extra": {"phash": phash},
    }


def edit_index(
    path: str | Path,
    add: Embeddings | None = None,
    metadata: Sequence[dict[str, Any]] = (),
    delete: Sequence[str] = (),
    config: IndexConfig | None = None,
    timeout: float = 10.0,
    *,
    missing_ok: bool = True,
) -> IndexingReport:
    """Upsert ``add`` (with one metadata dict per row) and delete ``delete`` ids, in one new generation.

    An id of ``delete`` that the index does not hold is skipped, or, with ``missing_ok=False``, raises
    :class:`~visrec.errors.UnknownIds` naming every such id before anything is changed (checked under the
    index's lock, so the ids cannot vanish between the check and the edit)."""
    cfg = config or IndexConfig()
    folder = IndexFolder.open(path)
    report = IndexingReport(path=str(path))
    if add is not None and len(metadata) != len(add):
        raise BadInput(f"{len(add)} embeddings but {len(metadata)} metadata entries; give one per image")
    with folder.writer(timeout=timeout):
        store, joint = _load_current(folder)
        if store is None:
            raise BadInput(f"{path}: the index is empty; build it first with: visrec index DATASET --out {path}")
        if not missing_ok:
            _refuse_missing(path, store, delete)
        if add is not None and add.encoder_id != folder.manifest.encoder_fingerprint:
            raise ManifestMismatch(
                f"images were encoded with {add.encoder_id}, the index {path} with "
                f"{folder.manifest.encoder_fingerprint}; encode them with the index's encoder"
            )
        if isinstance(store, SegmentedStore):
            delta = _edit_segments(store, joint, add, metadata, delete, report)
            files = _derived_files(store, joint, cfg, report, folder, delta)
        else:
            _edit_store(store, joint, add, metadata, delete, report)
            files = _derived_files(store, joint, cfg, report, folder)
        if report.removed or report.added or report.updated:
            folder.commit(_writer(store, joint, files), count=store.count())
        report.count = store.count()
    return report


def _refuse_missing(path: str | Path, store: Any, delete: Sequence[str]) -> None:
    known = store if isinstance(store, SegmentedStore) else set(store.ids())
    missing = [i for i in dict.fromkeys(delete) if i not in known]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        shown = ", ".join(repr(i) for i in missing[:10]) + more
        raise UnknownIds(
            f"{path} holds no item with id {shown} ({len(missing)} of the {len(set(delete))} ids asked); nothing "
            "was deleted. Send only ids the index holds (the ids that search and classify answer with)",
            missing,
        )


def _edit_segments(
    store: SegmentedStore, joint: Any, add: Embeddings | None, metadata: Sequence[dict[str, Any]],
    delete: Sequence[str], report: IndexingReport,
) -> Delta:  # fmt: skip
    """Apply an edit as a new segment and tombstones; returns what changed (for the prototypes)."""
    present = [i for i in dict.fromkeys(delete) if i in store]
    rows = []
    if add is not None and len(add):
        report.added = sum(1 for i in add.ids if i not in store)
        report.updated = len(add) - report.added
        joints = [None] * len(add) if add.joint is None or joint is None else list(add.joint)
        rows = [(i, v, j, dict(m)) for i, v, j, m in zip(add.ids, add.vectors, joints, metadata, strict=True)]
    delta, report.merged_segments = apply_changes(store, joint, present, rows)
    report.removed = len(present)
    report.segments = len(store.segments())
    return delta


def _edit_store(store: Any, joint: Any, add: Embeddings | None, metadata: Sequence[dict[str, Any]],
                delete: Sequence[str], report: IndexingReport) -> None:  # fmt: skip
    """Apply an edit to a store that keeps its own segments (Milvus)."""
    report.removed = store.delete(list(delete))
    if joint is not None:
        joint.delete(list(delete))
    if add is not None and len(add):
        existing = set(store.ids())
        report.added = sum(1 for i in add.ids if i not in existing)
        report.updated = len(add) - report.added
        store.upsert(list(add.ids), add.vectors, list(metadata))
        if joint is not None and add.joint is not None:
            joint.upsert(list(add.ids), add.joint, [{"path": m["path"]} for m in metadata])


def compact_index(
    path: str | Path, *, full: bool = True, policy: MergePolicy | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """Merge the segments of the index at ``path`` into a new generation: all into one when ``full``, else as
    ``policy`` says (what a commit does by itself). Tombstoned rows of merged segments are dropped; prototypes
    and calibration are kept (the items are the same). Returns ``{"path", "segments_before", "segments",
    "merged", "count"}``."""
    folder = IndexFolder.open(path)
    with folder.writer(timeout=timeout):
        store, joint = _load_current(folder)
        gen = folder.generation_dir
        if store is None or gen is None:
            raise BadInput(f"{path}: the index is empty; build it first with: visrec index DATASET --out {path}")
        if not isinstance(store, SegmentedStore):
            raise BadInput(f"{path} keeps its vectors in {folder.manifest.store}, which merges its own segments")
        before = len(store.segments())
        merged = store.compact(policy, full=full)
        joint_merged = joint.compact(policy, full=full) if isinstance(joint, SegmentedStore) else 0
        if merged or joint_merged or before != len(store.segments()):
            keep = [p.name for p in gen.iterdir() if p.name not in ("store", "joint")]
            save = _writer(store, joint, {})

            def write(tmp: Path) -> None:
                save(tmp)
                folder.carry_over(tmp, keep)

            folder.commit(write, count=store.count())
        return {"path": str(path), "segments_before": before, "segments": len(store.segments()),
                "merged": merged, "count": store.count()}  # fmt: skip
