"""Whole operations behind the CLI (and the HTTP API): load inputs, call the stages, return result objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.errors import REINDEX_FIX, BadInput, EmptyDataset, IndexCorrupt
from visrec.index.inputs import encode_files, filter_dataset, open_dataset, resolve_encoder
from visrec.index.pipeline import IndexConfig, IndexingReport, Progress
from visrec.types import LabeledSet, Prediction

if TYPE_CHECKING:
    from visrec.classify import ClassNames
    from visrec.prefetch import FactsPrefetch


def index(
    dataset: Path,
    out: Path,
    fmt: str | None = None,
    where: str | None = None,
    encoder: str | None = None,
    checkpoint: str | None = None,
    config: IndexConfig | None = None,
    progress: Progress | None = None,
    prefetch: FactsPrefetch | None = None,
) -> IndexingReport:
    """Index (or update) ``out`` from the dataset at ``dataset``. ``prefetch``: a helper process already
    gathering the folder's file facts (started here when not given; see :mod:`visrec.prefetch`)."""
    from visrec.data import read_dataset
    from visrec.index.writer import build_index
    from visrec.prefetch import start_prefetch

    if prefetch is None and not (config is not None and config.rehash):
        prefetch = start_prefetch(dataset, out)  # an update of a large index: stat its files in parallel
    try:
        loaded, load = read_dataset(dataset, fmt)
        ds = filter_dataset(loaded, where)
        report = build_index(ds, out, resolve_encoder(out, encoder, checkpoint), config, progress, prefetch)
    except IndexCorrupt as e:  # an update reads the damaged files too: re-indexing means another folder
        fix = "" if REINDEX_FIX in str(e) else f": {REINDEX_FIX}"
        raise IndexCorrupt(f"{e}. An update cannot repair it{fix}") from None
    finally:
        if prefetch is not None:
            prefetch.close()
    for s in load.skipped:  # rows and files the reader left out (listed but missing, .heic...) are skipped too
        entry = s.detail if s.path.startswith("line ") else str(loaded.root / s.path)  # a row with no path
        report.skipped.setdefault(s.reason, []).append(entry)
    return report


@dataclass
class ClassifyResult:
    """Predictions for a list of images, the files that could not be read, and (on labeled input) a summary."""

    paths: list[str]
    predictions: list[Prediction]
    truths: list[tuple[str, ...]] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        items = []
        for i, (p, pred) in enumerate(zip(self.paths, self.predictions, strict=True)):
            d = {"path": p, **pred.to_dict()}
            if self.truths is not None:
                d["truth"] = list(self.truths[i])
            items.append(d)
        return {
            "items": items,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "summary": self.summary,
            "notes": self.notes,
        }


def _gather(inputs: Sequence[Path], where: str | None) -> tuple[list[Path], list[tuple[str, ...]] | None]:
    """Image files to classify and, when the input is one labeled dataset, their true labels."""
    from visrec.data import detect_format, is_image_file

    if len(inputs) == 1 and (inputs[0].is_dir() or inputs[0].suffix.lower() == ".csv"):
        fmt = detect_format(inputs[0])
        ds = open_dataset(inputs[0], fmt, where)
        truths = [r.labels for r in ds.records] if fmt != "unlabeled" else None
        return [ds.abspath(r) for r in ds.records], truths
    if where:
        raise BadInput(
            f"--where {where!r} filters a dataset (a folder per label or a manifest CSV), not single images: "
            "pass the dataset instead, or drop --where"
        )
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
        else:
            files.append(p)
    if not files:
        raise EmptyDataset(f"no image among {', '.join(map(str, inputs))}")
    return files, None


def class_names(spec: str) -> list[str]:
    """Zero-shot classes from ``--classes``: comma-separated ``Label=name`` / ``name`` items, or a text file of
    such items (one per line or comma-separated; blank lines and ``#`` comments skipped)."""
    path = Path(spec)
    if path.is_file():
        lines = [ln.split("#", 1)[0] for ln in path.read_text(encoding="utf-8").splitlines()]
        items = [c.strip() for ln in lines for c in ln.split(",") if c.strip()]
        if not items:
            raise BadInput(f"{path}: no class in the file; write one 'Label=name' per line")
        return items
    return [c.strip() for c in spec.split(",") if c.strip()]


def calibrate_hint(index_path: Path, mode: str) -> str:
    """The command that calibrates ``mode`` (``visrec calibrate`` does knn and prototype unless told)."""
    return f"visrec calibrate {index_path}" + ("" if mode in ("knn", "prototype", "linear") else f" --modes {mode}")


def classify(
    index_path: Path,
    inputs: Sequence[Path],
    mode: str = "auto",
    k: int | None = None,
    where: str | None = None,
    classes: ClassNames | None = None,
    calibrated: bool = True,
    target_precision: float | None = None,
    novelty_prior: float | None = None,
) -> ClassifyResult:
    """Classify images (or a labeled dataset, then also summarise accuracy) against an index;
    ``target_precision``/``novelty_prior`` replace the calibrated ones.

    With ``classes`` (zero-shot/blend) answers are their labels (:func:`visrec.classify.class_prompts`) and a
    labeled dataset is scored on its images of those labels.
    """
    from visrec.classify import class_prompts
    from visrec.index import Index

    idx = Index(index_path)
    if not idx.labels() and classes is None:
        raise BadInput(
            f"{index_path} holds no labeled image, so there is nothing to classify against: index a labeled "
            f"dataset (a folder per label, or a manifest with a label column), give --classes with --mode "
            f"zeroshot, or search it instead (visrec search {index_path} --image IMAGE)"
        )
    files, truths = _gather(inputs, where)
    emb, kept, skipped = encode_files(idx, files)
    notes = []
    mode = idx.resolve_mode(mode, k)
    use_cal = calibrated and classes is None and mode in idx.calibration_data()
    if calibrated and not use_cal:
        hint = (
            "calibration applies to the index's own labels" if classes else f"run: {calibrate_hint(index_path, mode)}"
        )
        notes.append(f"no calibration for mode {mode!r}: raw scores, no unknown ({hint})")
    preds = idx.classify(emb, mode, k, use_cal, classes, target_precision, novelty_prior)
    res = ClassifyResult([str(files[i]) for i in kept], preds, None, skipped, None, notes)
    if truths is not None:
        res.truths = [tuple(truths[i]) for i in kept]
        known = set(class_prompts(classes)) if classes else set(idx.labels())
        res.summary = _score(res.truths, preds, known, notes)
    return res


def _score(
    truths: list[tuple[str, ...]], preds: list[Prediction], known: set[str], notes: list[str]
) -> dict[str, Any] | None:
    """Summary of the predictions of images whose truth is among ``known`` (None if none); notes what is not."""
    from visrec.eval import summarize

    seen = {t for ts in truths for t in ts}
    unmatched = sorted(known - seen)
    if unmatched:
        notes.append(
            f"{len(unmatched)} class(es) match no label of these images ({', '.join(unmatched[:5])}): their answers "
            "are never right; map each to the dataset's label with --classes 'Label=name,...'"
        )
    scored = [i for i, t in enumerate(truths) if set(t) & known]
    if len(scored) < len(truths):
        notes.append(f"{len(truths) - len(scored)} images have labels that are not among the classes (not scored)")
    return summarize([truths[i] for i in scored], [preds[i] for i in scored]).to_dict() if scored else None


def calibrate(
    index_path: Path,
    held_out: Path | None,
    where: str | None,
    modes: Sequence[str],
    target_precision: float = 0.95,
    novelty_prior: float = 0.1,
    metric: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Calibrate ``modes`` (on a labeled held-out set, or leave-one-group-out on the index) and store them, with
    the whitened kNN metric refitted when kNN uses it. ``metric``: the kNN metric to calibrate (default: the
    index's current one, :data:`visrec.classify.knn.DEFAULT_METRIC` for a new index; ``cosine`` where the index's
    labels cannot fit a whitening)."""
    from visrec.classify import CalibrationOptions
    from visrec.classify.novelty import DEFAULT_NOVELTY
    from visrec.index import Index
    from visrec.index.derived import _labels_and_groups, linear_files, novelty_files, prototype_files
    from visrec.index.metric import whitening_files
    from visrec.index.writer import save_calibration

    idx = Index(index_path)
    ids, vecs, labels, _ = _labels_and_groups(idx.store, with_groups=False)  # saving calibrations keeps the vectors
    _require_classes(index_path, labels, held_out is not None, modes)
    metric = metric or idx.classifier("knn").config.metric  # the index's current kNN metric unless one is named
    metric_files = whitening_files(ids, vecs, labels) if metric == "whitened" else {}
    if held_out is not None and "knn" in modes:  # held-out kNN predictions search the refitted whitened space
        save_calibration(index_path, {}, metric_files)
        idx = Index(index_path)
    if held_out is not None and "linear" in modes and idx.resolve_mode("auto") != "linear":
        # a held-out calibration scores the stored head: an index that has none gets one fitted first
        head = linear_files(vecs, labels, {"linear": {"params": {"mode": "linear", "penalty": None}}})
        save_calibration(index_path, {}, head)
        idx = Index(index_path)
    opts = CalibrationOptions(target_precision=target_precision, novelty_prior=novelty_prior,
                              novelty=DEFAULT_NOVELTY, held_out_cache={})  # fmt: skip
    cals = {}
    for mode in modes:
        clf = _calibrated_classifier(idx, mode, held_out is None, metric)
        cal = _held_out(idx, held_out, where, clf, opts) if held_out else _loo(idx, clf, opts)
        cals[mode] = cal.to_dict()
    derived = {**novelty_files(vecs, labels, cals), **linear_files(vecs, labels, cals), **metric_files,
               **prototype_files(vecs, labels)}  # fmt: skip
    save_calibration(index_path, cals, derived)
    return cals


def _require_classes(index_path: Path, labels: Sequence[tuple[str, ...]], held_out: bool, modes: Sequence[str]) -> None:
    """``BadInput`` naming the index and the way out when its labels are too few classes to calibrate ``modes``:
    leave-one-group-out simulates novel images by hiding classes (3 needed), a linear probe separates 2."""
    classes = sorted({c for row in labels for c in row})
    needed = 2 if held_out and "linear" in modes else 1 if held_out else 3
    if not classes or len(classes) >= needed:
        return  # no label at all has its own message
    if held_out:
        fix = "index images of a second class, or calibrate without it: --modes knn,prototype"
    else:
        fix = "index images of at least 3 classes, or calibrate on labeled held-out images: "
        fix += f"visrec calibrate {index_path} HELD_OUT"
    raise BadInput(
        f"{index_path} holds labeled images of {len(classes)} class(es) ({', '.join(classes[:5])}); calibrating "
        f"{', '.join(modes)} {'on held-out images' if held_out else 'on the index itself'} needs at least "
        f"{needed}: {fix}"
    )


def _calibrated_classifier(idx: Any, mode: str, on_index: bool, metric: str | None) -> Any:
    """The classifier a calibration of ``mode`` scores: the index's, with kNN on ``metric`` (default
    :data:`~visrec.classify.knn.DEFAULT_METRIC`; cosine where no whitening is fitted) and, on the index itself, a
    linear probe fitted afresh (its penalty chosen on the folds), not read from a head that may be stale."""
    from visrec.classify.knn import DEFAULT_METRIC
    from visrec.index.recognize import make_classifier_from_params

    if mode == "linear" and on_index:
        return make_classifier_from_params("linear", {})
    if mode != "knn":
        return idx.classifier(mode)
    chosen = metric or DEFAULT_METRIC
    if chosen == "whitened" and not on_index and not idx.snapshot().has_whitening:
        chosen = "cosine"  # the leave-one-group-out calibration falls back by itself (cosine_fallback)
    return make_classifier_from_params("knn", {**idx.classifier("knn").params(), "metric": chosen})


def _held_out(idx: Any, held_out: Path, where: str | None, clf: Any, opts: Any) -> Any:
    from visrec.classify import calibrate_held_out
    from visrec.index.recognize import predict

    ds = open_dataset(held_out, None, where)
    labeled = [r for r in ds.records if r.labels]
    if not labeled:
        raise EmptyDataset(f"{held_out}: calibration needs labeled images; none found")
    files = [ds.abspath(r) for r in labeled]
    emb, kept, _ = encode_files(idx, files)
    preds = predict(idx.snapshot(), clf, emb, clf.mode)
    known = set(idx.labels())
    truths = [labeled[i].labels for i in kept]
    is_known = [bool(set(t) & known) for t in truths]
    return calibrate_held_out(
        [p for p, ok in zip(preds, is_known, strict=True) if ok],
        [t for t, ok in zip(truths, is_known, strict=True) if ok],
        opts,
        [p for p, ok in zip(preds, is_known, strict=True) if not ok],
        clf.params(),
    )


def _loo(idx: Any, clf: Any, opts: Any) -> Any:
    from visrec.classify import ZeroShotClassifier, calibrate_leave_one_group_out
    from visrec.index.derived import _labels_and_groups
    from visrec.index.fitted import held_out_ids, recorded_fitted_ids

    ids, vecs, labels, groups = _labels_and_groups(idx.store)
    joint = None
    if clf.mode in ("zeroshot", "blend"):
        if idx.joint is None:
            raise BadInput(f"mode {clf.mode!r} needs an encoder with a text side")
        joint = np.asarray(idx.joint.get(ids)[0], np.float32)
    if isinstance(clf, ZeroShotClassifier) and clf.concepts is not None:
        clf = clf.joint_only()  # the index keeps joint vectors, not ImageNet logits: calibrate what it can score
    # an adapted or fine-tuned encoder's own training items would look easier than new images: hold out the others
    held = held_out_ids(ids, labels, recorded_fitted_ids(idx.encoder_info.get("describe") or {}))
    queries = None if held is None else np.array([i in held for i in ids], bool)
    return calibrate_leave_one_group_out(vecs, labels, groups, clf, opts, joint, queries)


def data_check(
    path: Path,
    fmt: str | None,
    split_field: str,
    train: Sequence[str],
    test: Sequence[str],
    threshold: int | None,
    write_split: Path | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Readable files, classes and splits, near-duplicate groups and train/test leakage of a dataset."""
    from visrec.data import (
        DEFAULT_THRESHOLD,
        hash_dataset,
        leakage_report,
        near_duplicate_groups,
        read_dataset,
        split_counts,
    )

    ds, load = read_dataset(path, fmt)
    th = DEFAULT_THRESHOLD if threshold is None else threshold
    hashes = hash_dataset(ds)
    groups = near_duplicate_groups(hashes.hashes, th)
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, np.int64)
    per_split, no_split = split_counts(ds, split_field)
    out: dict[str, Any] = {
        "path": str(path),
        "format": ds.source,
        "images": len(ds),
        "classes": {c: sum(1 for r in ds.records if c in r.labels) for c in ds.classes},
        "unlabeled": sum(1 for r in ds.records if not r.labels),
        "split_field": split_field,
        "splits": per_split,
        "no_split": no_split,
        "skipped": load.to_dict(),
        "unreadable": [[b.path, b.reason] for b in hashes.bad],
        "near_duplicates": {"threshold": th, "groups": len(sizes),
                            "images_in_groups_of_2_or_more": int(sizes[sizes > 1].sum()) if len(sizes) else 0},
    }  # fmt: skip
    if any(v in per_split for v in test):
        rep = leakage_report(ds, split_field, list(train), list(test), th, hashes=hashes)
        out["leakage"] = rep.to_dict()
    if write_split is not None:
        out["written"] = _write_grouped(ds, hashes.ids, groups, write_split)
    return out


def _write_grouped(ds: LabeledSet, ids: Sequence[str], groups: np.ndarray, dest: Path) -> str:
    from dataclasses import replace

    from visrec.data import grouped_split, write_manifest

    gmap = {i: int(g) for i, g in zip(ids, groups, strict=True)}
    split = grouped_split(ds, gmap, every_nth=5)
    recs = [replace(r, extra={**r.extra, "grouped_split": split[r.id]}, group=r.group or str(gmap.get(r.id, "")))
            for r in ds.records]  # fmt: skip
    if dest.suffix.lower() != ".csv":
        raise BadInput(f"--write-split takes a .csv path, got {dest}")
    write_manifest(ds.subset(recs), dest)
    return str(dest)
