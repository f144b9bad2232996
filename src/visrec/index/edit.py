"""Small edits of an index without a dataset folder: add encoded images, delete items by id.

Used by the HTTP API and UI, where images arrive as uploads. Each edit is one new generation (prototypes and
calibration recomputed), written under the index's lock like a full build.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visrec.errors import BadInput, ManifestMismatch
from visrec.index.derived import _derived_files
from visrec.index.folder import IndexFolder
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.index.writer import _load_current, _writer
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
) -> IndexingReport:
    """Upsert ``add`` (with one metadata dict per row) and delete ``delete`` ids, in one new generation."""
    cfg = config or IndexConfig()
    folder = IndexFolder.open(path)
    report = IndexingReport(path=str(path))
    if add is not None and len(metadata) != len(add):
        raise BadInput(f"{len(add)} embeddings but {len(metadata)} metadata entries; give one per image")
    with folder.writer(timeout=timeout):
        store, joint = _load_current(folder)
        if store is None:
            raise BadInput(f"{path}: the index is empty; build it first with: visrec index DATASET --out {path}")
        if add is not None and add.encoder_id != folder.manifest.encoder_fingerprint:
            raise ManifestMismatch(
                f"images were encoded with {add.encoder_id}, the index {path} with "
                f"{folder.manifest.encoder_fingerprint}; encode them with the index's encoder"
            )
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
        if report.removed or report.added or report.updated:
            files = _derived_files(store, joint, cfg, report, folder)
            folder.commit(_writer(store, joint, files), count=store.count())
        report.count = store.count()
    return report
