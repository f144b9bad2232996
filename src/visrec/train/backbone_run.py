"""Whole backbone fine-tuning runs on an index: train the tail (:mod:`visrec.train.tail`), save it as an encoder,
measure before / after on the index's leak-free test split, and re-index with the new encoder."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.train.data import load_split
from visrec.train.evaluate import embedding_figures
from visrec.train.run import SplitOptions
from visrec.train.tail import TailConfig, finetune_tail, save_backbone


def _files(index_path: Path, ids: Sequence[str]) -> list[Path]:
    """The image file of each item id, from the index's dataset root; ``BadInput`` names the first missing one."""
    from visrec.train.data import item_files

    out = item_files(index_path, ids)
    for i, p in zip(ids, out, strict=True):
        if not p.is_file():
            raise BadInput(f"{p} (item {i} of {index_path}) is missing; backbone fine-tuning needs the image files")
    return out


def _cpu_seconds() -> float:
    """CPU time of this process so far (user + system, all threads): the cost of a run on a shared machine."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def finetune_encoder(index_path: str | Path, out: str | Path, cfg: TailConfig, split: SplitOptions) -> dict[str, Any]:
    """Fine-tune the index's encoder on its labeled items, save it to ``out``, and return the run's figures:
    ``before`` / ``after`` (kNN top-1, macro-F1, R@1, R@5, mAP@R of the test rows against train + val), the
    training record, wall and CPU seconds (training + re-embedding the index's images) and peak memory (MB)."""
    from visrec.encoders import create_encoder, encoder_from_info

    index_path = Path(index_path)
    sp = load_split(index_path, split.field, split.train_values, split.test_values, split.val_fraction, cfg.seed)
    base = encoder_from_info(sp.encoder.get("describe", {}))
    files = _files(index_path, sp.ids)
    fit_rows = sp.rows("train", "val")
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    graph, res = finetune_tail(base, [files[i] for i in fit_rows], sp.labels[fit_rows], sp.side[fit_rows], cfg)
    save_backbone(graph, base, out, res, cfg, [sp.ids[i] for i in fit_rows])
    tuned = create_encoder("finetuned", model=str(out))
    z = tuned.encode_images(files).vectors
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    test, gallery = sp.rows("test"), sp.rows("train", "val")
    return {
        "encoder": tuned.fingerprint,
        "base": base.fingerprint,
        "split": sp.to_dict(),
        "before": embedding_figures(sp.vectors, sp.labels, test, gallery, sp.classes),
        "after": embedding_figures(z, sp.labels, test, gallery, sp.classes),
        "training": res.to_dict(),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def reencode_index(index_path: str | Path, encoder: Any, out: str | Path, calibrate: bool = True) -> dict[str, Any]:
    """Write ``out``: every item of the index at ``index_path`` re-embedded from its file with ``encoder`` (ids,
    labels and metadata kept; prototypes and calibration recomputed, held out on the items a fine-tuned
    ``encoder`` never saw, as :func:`visrec.train.reproject.reproject_index` does). The source index is left
    untouched."""
    from visrec.index import Index
    from visrec.index.derived import _derived_files
    from visrec.index.fitted import held_out_ids, recorded_fitted_ids
    from visrec.index.folder import IndexFolder
    from visrec.index.pipeline import IndexConfig, IndexingReport
    from visrec.index.writer import _writer
    from visrec.stores import create_store
    from visrec.train.data import read_index

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} already exists and is not empty; choose a new folder for the re-encoded index")
    src = Index(index_path, mmap=False)
    ids, _, metas, _ = read_index(index_path)
    emb = encoder.encode_images(_files(Path(index_path), ids), ids=ids)
    backend = src.folder.manifest.store
    info = {"describe": encoder.describe(), "fingerprint": encoder.fingerprint, "name": encoder.name}
    folder = IndexFolder.create(out, encoder_info=info, dim=encoder.dim, joint_dim=encoder.joint_dim, backend=backend)
    store = create_store(backend, encoder.dim)
    store.add(ids, emb.vectors, metas)
    joint = None
    if emb.joint is not None:
        joint = create_store(backend, emb.joint.shape[1])
        joint.add(ids, np.asarray(emb.joint, np.float32), [{"path": m["path"]} for m in metas])
    report = IndexingReport(path=str(out))
    labels = [m.get("labels") or () for m in metas]
    queries = held_out_ids(ids, labels, recorded_fitted_ids(encoder.describe())) if calibrate else None
    files = _derived_files(store, joint, IndexConfig(store=backend, calibrate=calibrate), report, query_ids=queries)
    extra = {k: v for k, v in src.folder.manifest.extra.items() if k == "dataset_root"}
    extra["reencoded_from"] = str(Path(index_path).resolve())
    folder.commit(_writer(store, joint, files), count=len(ids), extra=extra)
    held = None if queries is None else len(queries)
    return {"path": str(out), "count": len(ids), "dim": encoder.dim, "encoder": encoder.fingerprint,
            "calibration": report.calibration, "calibration_queries": held}  # fmt: skip
