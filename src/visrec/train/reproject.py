"""Re-project an index with an adapter into a new index folder (the source index is left untouched).

The new folder keeps every id, label and metadata field; its vectors are the adapter's projection of the stored
vectors (no image is re-encoded), its encoder is ``adapted`` (base encoder + adapter), and its prototypes and
unknown-threshold calibration are recomputed in the new space, as ``visrec index`` does, except that items the
adapter was trained on are not held out as calibration queries (:mod:`visrec.index.fitted`): they sit closer to
their class than any new image will. On caltech101_dev (supcon head, 1,515 train images, 1,212 of them fitted),
calibrating on every item claimed 95.1 % precision at 94.7 % coverage and delivered 92.5 % on the test split at
the 95 % target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.index.fitted import FITTED_IDS
from visrec.train.adapter import Adapter, encoder_entry


def _joint_vectors(index: Any, ids: list[str]) -> np.ndarray | None:
    if index.joint is None:
        return None
    return np.asarray(index.joint.get(ids)[0], np.float32)


def reproject_index(
    index_path: str | Path, adapter: Adapter, out: str | Path, calibrate: bool = True, target_precision: float = 0.95
) -> dict[str, Any]:
    """Write ``out``: the index at ``index_path`` with its vectors projected by ``adapter``.

    Refuses (``ManifestMismatch``) an index built by another encoder than the adapter's base, and (``BadInput``)
    an ``out`` that already exists. Returns a summary (count, dims, encoder fingerprint, calibration figures).
    """
    from visrec.index import Index
    from visrec.index.derived import _derived_files
    from visrec.index.fitted import held_out_ids
    from visrec.index.folder import IndexFolder
    from visrec.index.pipeline import IndexConfig, IndexingReport
    from visrec.index.writer import _writer
    from visrec.stores import create_store
    from visrec.train.data import read_index

    out = Path(out)
    if adapter.path is None:
        raise BadInput("save the adapter (save_adapter) before re-projecting: the new index records its folder")
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} already exists and is not empty; choose a new folder for the re-projected index")
    src = Index(index_path, mmap=False)
    enc = src.encoder_info
    adapter.check_base(str(enc.get("fingerprint")), str(enc.get("name")), f"the index {index_path}")
    ids, vecs, metas, _ = read_index(index_path)
    z = adapter.project(vecs)
    entry = encoder_entry(adapter)
    joint_dim = entry["describe"]["joint_dim"]
    joint_vecs = z if "text" in adapter.heads else _joint_vectors(src, ids)
    backend = src.folder.manifest.store
    folder = IndexFolder.create(out, encoder_info=entry, dim=adapter.out_dim,
                                joint_dim=joint_dim if joint_vecs is not None else None, backend=backend)  # fmt: skip
    store = create_store(backend, adapter.out_dim)
    store.add(ids, z, metas)
    joint = None
    if joint_vecs is not None:
        joint = create_store(backend, joint_vecs.shape[1])
        joint.add(ids, joint_vecs, [{"path": m["path"]} for m in metas])
    report = IndexingReport(path=str(out))
    labels = [m.get("labels") or () for m in metas]
    queries = held_out_ids(ids, labels, adapter.info.get(FITTED_IDS)) if calibrate else None
    cfg = IndexConfig(store=backend, calibrate=calibrate, target_precision=target_precision)
    files = _derived_files(store, joint, cfg, report, query_ids=queries)
    extra = {k: v for k, v in src.folder.manifest.extra.items() if k == "dataset_root"}
    extra["reprojected_from"] = str(Path(index_path).resolve())
    folder.commit(_writer(store, joint, files), count=len(ids), extra=extra)
    held = None if queries is None else len(queries)
    return {"path": str(out), "count": len(ids), "dim": adapter.out_dim, "encoder": entry["fingerprint"],
            "calibration": report.calibration, "calibration_queries": held}  # fmt: skip
