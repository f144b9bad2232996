"""Files an index generation derives from its vectors: class prototypes, the calibration of the unknown decision
and the novelty model it decides with (kept from the previous generation while recent enough)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visrec.errors import BadInput
from visrec.index.folder import IndexFolder
from visrec.index.metric import WHITENING_ARRAYS, WHITENING_JSON, whitening_files
from visrec.index.pipeline import IndexConfig, IndexingReport
from visrec.index.snapshot import LINEAR_HEAD
from visrec.npyio import load_npy
from visrec.stores.base import VectorStore

CALIBRATED_MODES = ("knn", "prototype", "linear")
MIN_LABELED_FOR_CALIBRATION = 10
RECALIBRATE_FRACTION = 0.1
"""A commit keeps the previous calibration while the items added, changed or removed since it was fitted stay
at most this share of the items it was fitted on and the classes are the same; past it, or with a new or lost
class, the leave-one-group-out calibration (quadratic in the index size) runs again."""
BASIS = "calibration_basis.json"
SUMS = "prototype_sums.npy"
"""Per-class sums of the vectors (``(c, d)`` float64, classes as in ``prototypes.json``), kept so a commit
updates the prototypes from what changed."""


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


def _groups(hashes: Sequence[str], around: np.ndarray | None = None) -> list[str | None]:
    """Near-duplicate group of each item from its pHash (None: no hash, its own group). With ``around`` (item
    rows), only the groups of those items are found (:func:`~visrec.data.dedup.groups_around`, linear in the
    index instead of all pairs); every other item is a group of its own."""
    from visrec.data.dedup import groups_around, near_duplicate_groups

    groups: list[str | None] = [None] * len(hashes)
    have = [i for i, h in enumerate(hashes) if h]
    if have:
        packed = np.stack([np.frombuffer(bytes.fromhex(hashes[i]), np.uint8) for i in have])
        if around is None:
            codes = near_duplicate_groups(packed)
        else:
            at = np.full(len(hashes), -1, np.int64)
            at[have] = np.arange(len(have))
            seeds = at[np.asarray(around, np.int64)]
            codes = groups_around(packed, seeds[seeds >= 0])
        for i, g in zip(have, codes.tolist(), strict=True):
            groups[i] = f"p{g}"
    return groups


def sampled_items(
    store: VectorStore, sample: int, seed: int
) -> tuple[list[str], np.ndarray, list[tuple[str, ...]], list[str | None], np.ndarray]:
    """``(ids, (n, d) float32 vectors, label tuples, near-duplicate groups, rows)`` of every stored item, with
    ``rows`` a seeded sample of at most ``sample`` labeled items (ascending) and the groups found around them
    (every other item is a group of its own)."""
    from visrec.classify.loo import sample_queries

    ids, matrix, labels, hashes = _export_labeled(store)
    rows = sample_queries(labels, sample, seed)
    return ids, matrix, labels, _groups(hashes, around=rows), rows


def _labels_and_groups(
    store: VectorStore, with_groups: bool = True
) -> tuple[list[str], np.ndarray, list[tuple[str, ...]], list[str | None]]:
    ids, matrix, labels, hashes = _export_labeled(store)
    return ids, matrix, labels, _groups(hashes) if with_groups else [None] * len(ids)


@dataclass
class Delta:
    """The rows a commit removes and adds (a replaced row is in both), so prototypes update in O(changed).

    ``removed`` / ``added``: ``(n, d)`` float32 vectors; ``*_labels``: one label tuple per row."""

    removed: np.ndarray
    removed_labels: list[tuple[str, ...]]
    added: np.ndarray
    added_labels: list[tuple[str, ...]]


ClassSums = tuple[list[str], np.ndarray, np.ndarray, int]
"""``(classes, sums (c, d) float64, counts (c,) int64, labeled items)``."""


def _class_state(store: VectorStore, previous: IndexFolder | None, delta: Delta | None) -> tuple[ClassSums, Any]:
    """Per-class sums: the previous generation's updated by ``delta`` when both exist, else from a full export
    (returned too, so a calibration does not export again)."""
    state = _read_sums(previous) if delta is not None and previous is not None else None
    if state is not None and delta is not None:
        return _apply_delta(state, delta), None
    from visrec.classify.prototype import class_sums

    exported = _export_labeled(store)
    _, vecs, labels, _ = exported
    classes, sums, counts = class_sums(vecs, labels)
    return (list(classes), sums, counts, sum(1 for lab in labels if lab)), exported


def _read_sums(folder: IndexFolder) -> ClassSums | None:
    gen = folder.generation_dir
    info = folder.read_json("prototypes.json")
    if gen is None or not isinstance(info, dict) or "counts" not in info or not (gen / SUMS).is_file():
        return None
    try:
        sums = load_npy(gen / SUMS)
    except (OSError, ValueError):
        return None  # a damaged running sum is recomputed from the stored vectors (and written anew)
    counts = np.asarray(info["counts"], np.int64)
    if sums.shape[0] != len(info["classes"]) or len(counts) != len(info["classes"]):
        return None
    return list(info["classes"]), sums, counts, int(info.get("labeled", 0))


def _apply_delta(state: ClassSums, delta: Delta) -> ClassSums:
    from natsort import natsorted

    classes, sums, counts, labeled = state
    acc = {c: (sums[i].copy(), int(counts[i])) for i, c in enumerate(classes)}
    for sign, vecs, labels in ((-1, delta.removed, delta.removed_labels), (1, delta.added, delta.added_labels)):
        for v, labs in zip(vecs, labels, strict=True):
            labeled += sign if labs else 0
            for lab in dict.fromkeys(labs):
                total, n = acc.get(lab, (np.zeros(sums.shape[1], np.float64), 0))
                acc[lab] = (total + sign * v.astype(np.float64), n + sign)
    names = natsorted(c for c, (_, n) in acc.items() if n > 0)
    dim = sums.shape[1]
    out = np.stack([acc[c][0] for c in names]) if names else np.zeros((0, dim), np.float64)
    return names, out, np.array([acc[c][1] for c in names], np.int64), labeled


def prototype_files(vectors: np.ndarray, labels: Sequence[tuple[str, ...]]) -> dict[str, bytes]:
    """``prototypes.npy`` / ``prototypes.json`` / ``prototype_sums.npy`` computed afresh from every stored item's
    ``(n, d)`` float32 vector and labels (what a calibration writes, so that it also restores damaged ones)."""
    from visrec.classify.prototype import class_sums

    classes, sums, counts = class_sums(vectors, labels)
    return _prototype_files((list(classes), sums, counts, sum(1 for lab in labels if lab)))


def _prototype_files(state: ClassSums) -> dict[str, bytes]:
    from visrec.classify.base import normalize_rows

    classes, sums, counts, labeled = state
    info = {"classes": classes, "counts": counts.tolist(), "labeled": labeled}
    files = {"prototypes.json": json.dumps(info).encode(), SUMS: _npy_bytes(sums)}
    if classes:  # an index without labels has no prototypes.npy
        files["prototypes.npy"] = _npy_bytes(normalize_rows(sums))
    return files


def _derived_files(
    store: VectorStore,
    joint: VectorStore | None,
    cfg: IndexConfig,
    report: IndexingReport,
    previous: IndexFolder | None = None,
    delta: Delta | None = None,
    query_ids: frozenset[str] | None = None,
) -> dict[str, bytes]:
    """Prototypes, the whitened kNN metric when the index's kNN uses it (:mod:`visrec.index.metric`, fitted afresh
    whenever a labeled item changes) and (when there are enough labels) the leave-one-group-out calibration of the
    new items; the calibration of ``previous``'s current generation is kept while it is recent enough
    (:data:`RECALIBRATE_FRACTION`). With ``delta`` (what changed since ``previous``), prototypes are updated
    from the previous class sums and nothing is exported unless the calibration or the metric is fitted again.
    ``query_ids``: when given, only these items are held-out queries of the calibration (all items stay
    neighbours)."""
    from visrec.classify import CalibrationOptions, calibrate_leave_one_group_out
    from visrec.classify.loo import sample_queries
    from visrec.classify.novelty import DEFAULT_NOVELTY
    from visrec.index.recognize import make_classifier_from_params

    state, exported = _class_state(store, previous, delta)
    classes, labeled = state[0], state[3]
    files = _prototype_files(state)
    kept_metric = _previous_knn_metric(previous)
    knn_metric = cfg.knn_metric or kept_metric
    if knn_metric == "whitened":  # opted in: refitted whenever a labeled item changes
        metric = _carry_metric(previous, delta)
        if metric is None:
            exported = exported if exported is not None else _export_labeled(store)
            metric = whitening_files(exported[0], exported[1], exported[2])
        files.update(metric)
    carry = cfg.calibrate and previous is not None and knn_metric == kept_metric  # a new metric recalibrates
    carried = _carry_calibration(previous, report, classes) if carry and previous is not None else None
    if carried is not None:
        files.update(carried)
    elif cfg.calibrate and labeled >= MIN_LABELED_FOR_CALIBRATION and len(classes) >= 2:
        ids, vecs, labels, hashes = exported if exported is not None else _export_labeled(store)
        queries = None if query_ids is None else np.array([i in query_ids for i in ids], bool)
        n_classes = len(classes)
        # With two classes, removing one leaves a single class that wins every simulated-unknown query: too
        # harsh a picture of a new class, so new classes are simulated from three classes on.
        opts = CalibrationOptions(target_precision=cfg.target_precision, simulate_unknown=n_classes >= 3,
                                  novelty=DEFAULT_NOVELTY, held_out_cache={})  # fmt: skip
        # only the items the calibration scores need their near-duplicate groups (all pairs: quadratic)
        groups = _groups(hashes, around=sample_queries(labels, opts.max_queries, opts.seed, queries))
        cals = {}
        for mode in CALIBRATED_MODES:
            clf = make_classifier_from_params(mode, {"metric": knn_metric} if mode == "knn" else {})
            cals[mode] = calibrate_leave_one_group_out(vecs, labels, groups, clf, opts, queries=queries).to_dict()
        files["calibration.json"] = json.dumps(cals, indent=1).encode()
        files.update(novelty_files(vecs, labels, cals))
        files.update(linear_files(vecs, labels, cals))
        files[BASIS] = json.dumps({"count": labeled, "changed": 0, "classes": classes}).encode()
        report.calibration = {m: _brief(c) for m, c in cals.items()}
    return files


def _previous_knn_metric(previous: IndexFolder | None) -> str:
    """The kNN metric ``previous``'s current generation chose (``"whitened"`` once ``visrec index --knn-metric
    whitened`` or ``visrec calibrate --metric whitened`` chose it; updates keep it): its kNN calibration's, else
    (no kNN calibration) ``"whitened"`` when the generation stores a whitening (fitted or not: only an index
    opted in writes one), else :data:`~visrec.classify.knn.DEFAULT_METRIC`."""
    from visrec.classify.knn import DEFAULT_METRIC, KNN_METRICS

    gen = previous.generation_dir if previous is not None else None
    if gen is None:
        return DEFAULT_METRIC
    path = gen / "calibration.json"
    try:
        knn = json.loads(path.read_text()).get("knn") if path.is_file() else None
        metric = knn.get("params", {}).get("metric", "cosine") if knn is not None else None
    except (ValueError, AttributeError):
        return DEFAULT_METRIC
    if metric is None:
        return "whitened" if (gen / WHITENING_JSON).is_file() else DEFAULT_METRIC
    return metric if metric in KNN_METRICS else DEFAULT_METRIC


def _carry_metric(previous: IndexFolder | None, delta: Delta | None) -> dict[str, bytes] | None:
    """The current generation's whitening files when ``delta`` changed no labeled item (the fit and the digest of
    the items it was made on are then the same), else None."""
    gen = previous.generation_dir if previous is not None else None
    if gen is None or delta is None or any(delta.removed_labels) or any(delta.added_labels):
        return None
    if not (gen / WHITENING_JSON).is_file():
        return None
    return {n: (gen / n).read_bytes() for n in (WHITENING_JSON, WHITENING_ARRAYS) if (gen / n).is_file()}


def novelty_files(vecs: np.ndarray, labels: Sequence[tuple[str, ...]], cals: dict[str, Any]) -> dict[str, bytes]:
    """``{"novelty.npz": ...}``: the novelty score the calibrations decide with, fitted on every labeled item
    (first label of each), as float32 arrays; empty when no calibration has an open-set decision."""
    import io

    from visrec.blas import blas_threads, free_cores
    from visrec.classify.novelty import GaussianNovelty, create_novelty

    names = {(c["decision"]["novelty"], c["decision"].get("novelty_dims")) for c in cals.values() if c.get("decision")}
    if not names:
        return {}
    if len(names) > 1:
        raise BadInput(f"calibrations use different novelty scores {sorted(names)}; calibrate them together")
    labeled = [i for i, lab in enumerate(labels) if lab]
    name, dims = names.pop()
    options = {} if dims is None else {"dims": int(dims)}  # the axes its held-out scores were made with
    with blas_threads(free_cores()):  # a core another process holds would stall every BLAS thread (visrec.blas)
        score = create_novelty(name, **options).fit(vecs[labeled], [labels[i][0] for i in labeled])
    if not isinstance(score, GaussianNovelty):
        return {}
    buf = io.BytesIO()
    np.savez(buf, **score.to_arrays())  # type: ignore[arg-type]
    return {"novelty.npz": buf.getvalue()}


def linear_files(vecs: np.ndarray, labels: Sequence[tuple[str, ...]], cals: dict[str, Any]) -> dict[str, bytes]:
    """``{LINEAR_HEAD: ...}``: the linear probe fitted on every labeled item with the penalty its calibration chose
    (``cals["linear"]``); empty when there is no linear calibration."""
    import io

    from visrec.classify import LinearClassifier

    params = cals.get("linear", {}).get("params")
    if not params:
        return {}
    clf = LinearClassifier(top_k=int(params.get("top_k", 5)), penalty=params.get("penalty"))
    clf.fit(vecs, labels)
    buf = io.BytesIO()
    head = clf.arrays()
    np.savez(buf, classes=np.asarray(clf.classes, dtype=str), weights=head["weights"], bias=head["bias"])
    return {LINEAR_HEAD: buf.getvalue()}


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
    for name in ("novelty.npz", LINEAR_HEAD):  # the novelty model and linear head the calibration decides with
        if (gen / name).is_file():
            out[name] = (gen / name).read_bytes()
    return out


def _brief(cal: dict[str, Any]) -> dict[str, Any]:
    keys = ("precision", "coverage", "unknown_rejected", "target_met")
    return {k: cal.get(k) for k in keys}


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
