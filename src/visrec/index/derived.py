"""Files an index generation derives from its vectors: class prototypes, the calibration of the unknown decision
and the novelty model it decides with (kept from the previous generation while recent enough)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.index.folder import IndexFolder
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.stores.base import VectorStore

CALIBRATED_MODES = ("knn", "prototype")
MIN_LABELED_FOR_CALIBRATION = 10
RECALIBRATE_FRACTION = 0.1
"""A commit keeps the previous calibration while the items added, changed or removed since it was fitted stay
at most this share of the items it was fitted on and the classes are the same; past it, or with a new or lost
class, the leave-one-group-out calibration (quadratic in the index size) runs again."""
BASIS = "calibration_basis.json"


def _export_labeled(store: VectorStore) -> tuple[list[str], np.ndarray, list[tuple[str, ...]], list[str]]:
    """``(ids, (n, d) float32 vectors, label tuples, pHash hex strings)`` of every stored item."""
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    labels: list[tuple[str, ...]] = []
    hashes: list[str] = []
    for bid, bvec, bmeta in store.export():
        ids += bid
        vecs.append(np.asarray(bvec, np.float32))
        labels += [tuple(m.get("labels", ())) for m in bmeta]
        hashes += [m.get("extra", {}).get("phash", "") for m in bmeta]
    matrix = np.concatenate(vecs) if vecs else np.zeros((0, store.dim), np.float32)
    return ids, matrix, labels, hashes


def _groups(hashes: Sequence[str]) -> list[str | None]:
    """Near-duplicate group of each item from its pHash (None: no hash, its own group)."""
    from visrec.data.dedup import near_duplicate_groups

    groups: list[str | None] = [None] * len(hashes)
    have = [i for i, h in enumerate(hashes) if h]
    if have:
        packed = np.stack([np.frombuffer(bytes.fromhex(hashes[i]), np.uint8) for i in have])
        for i, g in zip(have, near_duplicate_groups(packed), strict=True):
            groups[i] = f"p{g}"
    return groups


def _labels_and_groups(
    store: VectorStore, with_groups: bool = True
) -> tuple[list[str], np.ndarray, list[tuple[str, ...]], list[str | None]]:
    ids, matrix, labels, hashes = _export_labeled(store)
    return ids, matrix, labels, _groups(hashes) if with_groups else [None] * len(ids)


def _derived_files(
    store: VectorStore,
    joint: VectorStore | None,
    cfg: IndexConfig,
    report: IndexingReport,
    previous: IndexFolder | None = None,
) -> dict[str, bytes]:
    """Prototypes and (when there are enough labels) the leave-one-group-out calibration of the new items;
    the calibration of ``previous``'s current generation is kept while it is recent enough
    (:data:`RECALIBRATE_FRACTION`)."""
    from visrec.classify import CalibrationOptions, PrototypeClassifier, calibrate_leave_one_group_out
    from visrec.classify.novelty import DEFAULT_NOVELTY
    from visrec.index.recognize import make_classifier_from_params

    _, vecs, labels, hashes = _export_labeled(store)
    files: dict[str, bytes] = {}
    labeled = [i for i, lab in enumerate(labels) if lab]
    classes: list[str] = []
    if labeled:
        proto = PrototypeClassifier().fit(vecs[labeled], [labels[i] for i in labeled])
        classes = list(proto.classes)
        files["prototypes.json"] = json.dumps({"classes": classes}).encode()
        files["prototypes.npy"] = _npy_bytes(proto.prototypes)
    n_classes = len({x for lab in labels for x in lab})
    carried = _carry_calibration(previous, report, classes) if cfg.calibrate and previous is not None else None
    if carried is not None:
        files.update(carried)
    elif cfg.calibrate and len(labeled) >= MIN_LABELED_FOR_CALIBRATION and n_classes >= 2:
        groups = _groups(hashes)
        # With two classes, removing one leaves a single class that wins every simulated-unknown query: too
        # harsh a picture of a new class, so new classes are simulated from three classes on.
        opts = CalibrationOptions(target_precision=cfg.target_precision, simulate_unknown=n_classes >= 3,
                                  novelty=DEFAULT_NOVELTY, held_out_cache={})  # fmt: skip
        cals = {}
        for mode in CALIBRATED_MODES:
            clf = make_classifier_from_params(mode, {})
            cals[mode] = calibrate_leave_one_group_out(vecs, labels, groups, clf, opts).to_dict()
        files["calibration.json"] = json.dumps(cals, indent=1).encode()
        files.update(novelty_files(vecs, labels, cals))
        files[BASIS] = json.dumps({"count": len(labeled), "changed": 0, "classes": classes}).encode()
        report.calibration = {m: _brief(c) for m, c in cals.items()}
    return files


def novelty_files(vecs: np.ndarray, labels: Sequence[tuple[str, ...]], cals: dict[str, Any]) -> dict[str, bytes]:
    """``{"novelty.npz": ...}``: the novelty score the calibrations decide with, fitted on every labeled item
    (first label of each), as float32 arrays; empty when no calibration has an open-set decision."""
    import io

    from visrec.classify.novelty import GaussianNovelty, create_novelty

    names = {(c["decision"]["novelty"], c["decision"].get("novelty_dims")) for c in cals.values() if c.get("decision")}
    if not names:
        return {}
    if len(names) > 1:
        raise BadInput(f"calibrations use different novelty scores {sorted(names)}; calibrate them together")
    labeled = [i for i, lab in enumerate(labels) if lab]
    name, dims = names.pop()
    options = {} if dims is None else {"dims": int(dims)}  # the axes its held-out scores were made with
    score = create_novelty(name, **options).fit(vecs[labeled], [labels[i][0] for i in labeled])
    if not isinstance(score, GaussianNovelty):
        return {}
    buf = io.BytesIO()
    np.savez(buf, **score.to_arrays())  # type: ignore[arg-type]
    return {"novelty.npz": buf.getvalue()}


def _carry_calibration(folder: IndexFolder, report: IndexingReport, classes: list[str]) -> dict[str, bytes] | None:
    """The current calibration files with this commit's changes counted, or None when it must be refitted."""
    gen = folder.generation_dir
    basis = folder.read_json(BASIS)
    if gen is None or not isinstance(basis, dict) or not (gen / "calibration.json").is_file():
        return None
    changed = int(basis.get("changed", 0)) + report.added + report.updated + report.removed + report.metadata_updated
    if basis.get("classes") != classes or changed > RECALIBRATE_FRACTION * int(basis.get("count", 0)):
        return None
    data = (gen / "calibration.json").read_bytes()
    report.calibration = {m: {**_brief(c), "carried_over": True} for m, c in json.loads(data).items()}
    out = {"calibration.json": data, BASIS: json.dumps({**basis, "changed": changed}).encode()}
    if (gen / "novelty.npz").is_file():  # the novelty model the carried calibration decides with
        out["novelty.npz"] = (gen / "novelty.npz").read_bytes()
    return out


def _brief(cal: dict[str, Any]) -> dict[str, Any]:
    keys = ("precision", "coverage", "unknown_rejected", "target_met")
    return {k: cal.get(k) for k in keys}


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
