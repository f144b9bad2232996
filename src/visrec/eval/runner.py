"""Run an evaluation: index the train side, classify and retrieve the test side, per encoder and mode.

For each encoder a temporary index of the train images is built with :func:`visrec.index.writer.build_index`
(calibrated leave-one-group-out, as ``visrec index`` does), or a given index is reused. The test images are
encoded once; every classifier mode is scored on the same embeddings; retrieval ranks the index's images.
The result is a JSON-ready dict with stable keys (see :data:`SCHEMA`).
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visrec.classify.decision import AMBIGUOUS, NOVEL
from visrec.errors import EmptyDataset
from visrec.eval.metrics import (
    ClassificationMetrics,
    CoverageCurve,
    OpenSetMetrics,
    RetrievalMetrics,
    best_known_answered,
)
from visrec.eval.splits import SplitPlan
from visrec.types import Embeddings, LabeledSet, Prediction

SCHEMA = "visrec.eval/1"


@dataclass(frozen=True)
class EvalConfig:
    """Options of :func:`evaluate`. ``encoders``: encoder names (ignored when an index is reused);
    ``unknown``: images of classes the index does not hold ("none of these"), for the open-set figures."""

    modes: tuple[str, ...] = ("auto",)
    encoders: tuple[str, ...] = ("efficientnet-lite0",)
    store: str = "exact"
    calibrate: bool = True
    known_recall: float = 0.95
    latency_queries: int = 32
    failures: int = 8
    unknown: tuple[Path, ...] = field(default_factory=tuple)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _confidence(p: Prediction) -> float:
    return p.score if np.isnan(p.calibrated) else p.calibrated


def _scored_truth(answer: str | None, truth: Sequence[str], known: set[str]) -> str | None:
    """The true label a multi-label query is scored against: the one answered, else its first known one."""
    if answer in truth:
        return answer
    return next((t for t in truth if t in known), None)


def retrieval_figures(idx: Any, emb: Embeddings, truths: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Retrieval of the index's images for each query embedding: top-k, 1000-point score, P@k, mAP@R, CMC."""
    labels = [set(m.get("labels", ())) for m in idx.metadata().values()]
    n_rel = np.array([sum(1 for g in labels if g & set(t)) for t in truths], np.int64)
    depth = int(min(max(10, int(n_rel.max(initial=0))), idx.store.count()))
    hits = idx.search_vectors(emb.vectors, k=depth)
    rel = np.zeros((len(truths), depth), bool)
    for i, (row, t) in enumerate(zip(hits, truths, strict=True)):
        rel[i, : len(row)] = [bool(set(h.labels) & set(t)) for h in row]
    m = RetrievalMetrics((1, 5, 10))
    m.update(rel, n_rel)
    out = m.compute()
    out["cmc"] = out["cmc"][:20]
    return out


def _latencies(idx: Any, files: Sequence[Path], modes: Sequence[str], cal: dict[str, bool]) -> dict[str, Any]:
    """p50/p95 ms of one query (decode, encode, classify) per mode, on up to ``len(files)`` images."""
    from visrec.data import load_image

    enc_ms: list[float] = []
    cls_ms: dict[str, list[float]] = {m: [] for m in modes}
    for f in files:
        t0 = time.perf_counter()
        e = idx.encoder.encode_images([load_image(f, draft_size=idx.encoder.input_size)], ids=[str(f)])
        enc_ms.append(1000 * (time.perf_counter() - t0))
        for m in modes:
            t0 = time.perf_counter()
            idx.classify(e, m, calibrated=cal[m])
            cls_ms[m].append(1000 * (time.perf_counter() - t0))
    out = {}
    for m in modes:
        total = np.asarray(enc_ms) + np.asarray(cls_ms[m])
        out[m] = {"p50_ms": float(np.percentile(total, 50)), "p95_ms": float(np.percentile(total, 95))}
    return out


def _mode_figures(
    preds: Sequence[Prediction], truths: Sequence[Sequence[str]], classes: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    known = set(classes)
    answers = [p.label for p in preds]
    scored = [_scored_truth(a, t, known) for a, t in zip(answers, truths, strict=True)]
    cm = ClassificationMetrics(classes)
    cm.update([s for s in scored if s is not None], [a for a, s in zip(answers, scored, strict=True) if s])
    cov = CoverageCurve()
    cov.update([_confidence(p) for p in preds], [p.candidate in t for p, t in zip(preds, truths, strict=True)])
    cls = cm.compute()
    cls["top1_raw"] = float(np.mean([p.candidate in t for p, t in zip(preds, truths, strict=True)]))
    return cls, cov.compute()


def _failures(idx: Any, emb: Embeddings, preds: Sequence[Prediction], truths: Sequence[Sequence[str]], n: int) -> list:
    """The ``n`` most confident wrong answers, each with its query path and its top-3 hits."""
    wrong = [i for i, (p, t) in enumerate(zip(preds, truths, strict=True)) if p.label is not None and p.label not in t]
    wrong = sorted(wrong, key=lambda i: -_confidence(preds[i]))[:n]
    if not wrong:
        return []
    hits = idx.search_vectors(emb.vectors[wrong], k=3)
    return [
        {
            "query": emb.ids[i],
            "truth": list(truths[i]),
            "answer": preds[i].label,
            "confidence": _confidence(preds[i]),
            "hits": [h.to_dict() for h in row],
        }
        for i, row in zip(wrong, hits, strict=True)
    ]


def _open_set(idx: Any, unknown: Embeddings | None, modes: Sequence[str], cal: dict[str, bool],
              known_preds: dict[str, list[Prediction]], recall: float) -> dict[str, Any]:  # fmt: skip
    if unknown is None or len(unknown) == 0:
        return {}
    out = {}
    for m in modes:
        u = idx.classify(unknown, m, calibrated=cal[m])
        o = OpenSetMetrics(recall)
        o.update([_confidence(p) for p in known_preds[m]], [_confidence(p) for p in u])
        out[m] = o.compute() | {"unknown_rate_on_unknown": float(np.mean([p.label is None for p in u]))}
    return out


TRADE_OFF_TARGETS = (0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99)


def trade_off(idx: Any, mode: str, emb: Embeddings, truths: Sequence[Sequence[str]],
              unknown: Embeddings | None) -> dict[str, Any] | None:  # fmt: skip
    """Precision on answered / share of known answered / share of unknown rejected, on the test stream (known
    test images plus the unknown ones as given) and as predicted on the held-out calibration stream, for a
    range of target precisions; ``default`` is the calibrated operating point. None without a decision.

    ``best_known_answered``: the most known images any threshold on the same confidence could answer at that
    precision on this test stream (chosen with the test labels: the ceiling of the confidence ranking);
    ``unknown_reasons``: the share of known test images made unknown as ``novel`` / ``ambiguous`` at the default.
    """
    cal = idx.calibration(mode)
    if cal is None or cal.decision is None:
        return None
    points: list[dict[str, float]] = []
    reasons: dict[str, float] = {}
    for t in sorted({*TRADE_OFF_TARGETS, cal.target_precision}):
        kp = idx.classify(emb, mode, target_precision=t)
        up = idx.classify(unknown, mode, target_precision=t) if unknown is not None and len(unknown) else []
        op = cal.operating_point(t)
        points.append(_trade_point(t, kp, up, truths) | {"held_out_precision": op.precision,
                                                         "held_out_coverage": op.coverage})  # fmt: skip
        if t == cal.target_precision:
            reasons = {r: float(np.mean([p.label is None and p.reason == r for p in kp])) for r in (NOVEL, AMBIGUOUS)}
    return {"default": cal.target_precision, "novelty_prior": cal.novelty_prior, "points": points,
            "unknown_reasons": reasons}  # fmt: skip


def _trade_point(target: float, kp: Sequence[Prediction], up: Sequence[Prediction],
                 truths: Sequence[Sequence[str]]) -> dict[str, float]:  # fmt: skip
    right = sum(p.label is not None and p.label in tr for p, tr in zip(kp, truths, strict=True))
    answered = sum(p.label is not None for p in [*kp, *up])
    ok = [p.candidate in tr for p, tr in zip(kp, truths, strict=True)]
    return {"target": target, "precision": right / answered if answered else float("nan"),
            "known_answered": float(np.mean([p.label is not None for p in kp])),
            "unknown_rejected": float(np.mean([p.label is None for p in up])) if up else float("nan"),
            "best_known_answered": best_known_answered([_confidence(p) for p in kp], ok,
                                                       [_confidence(p) for p in up], target)}  # fmt: skip


def evaluate_index(idx: Any, test: LabeledSet, cfg: EvalConfig, unknown_files: Sequence[Path] = ()) -> dict[str, Any]:
    """Figures of one index on the labeled ``test`` images: per mode classification, coverage, open-set,
    latency; per index retrieval and encoding speed. Test images whose labels the index lacks go to the
    open-set side together with ``unknown_files``."""
    from visrec.index.inputs import encode_files

    classes = sorted(idx.labels())
    recs = [r for r in test.records if set(r.labels) & set(classes)]
    extra_unknown = [test.abspath(r) for r in test.records if r.labels and not set(r.labels) & set(classes)]
    if not recs:
        theirs = sorted({c for r in test.records for c in r.labels})
        raise EmptyDataset(
            f"{test.root}: none of its {len(test.records)} test images is labeled with a class of the index "
            f"(index: {', '.join(classes[:8]) or 'no labels'}; test images: {', '.join(theirs[:8]) or 'no labels'}); "
            "evaluate on test images of the indexed classes, or index this dataset's training images first"
        )
    files = [test.abspath(r) for r in recs]
    t0 = time.perf_counter()
    emb, kept, skipped = encode_files(idx, files)
    enc_s = time.perf_counter() - t0
    truths = [recs[i].labels for i in kept]
    unk_files = list(unknown_files) + extra_unknown
    unk = encode_files(idx, unk_files)[0] if unk_files else None
    names = list(dict.fromkeys(idx.resolve_mode(m) for m in cfg.modes))  # "auto" -> the mode it stands for
    cal = {m: cfg.calibrate and m in idx.calibration_data() for m in names}
    preds = {m: idx.classify(emb, m, calibrated=cal[m]) for m in names}
    lat = _latencies(idx, [files[i] for i in kept[: cfg.latency_queries]], names, cal)
    opens = _open_set(idx, unk, names, cal, preds, cfg.known_recall)
    modes = {}
    for m in names:
        cls, cov = _mode_figures(preds[m], truths, classes)
        modes[m] = {"calibrated": cal[m], "classification": cls, "coverage": cov,
                    "open_set": opens.get(m), "latency": lat[m],
                    "trade_off": trade_off(idx, m, emb, truths, unk) if cal[m] else None,
                    "failures": _failures(idx, emb, preds[m], truths, cfg.failures)}  # fmt: skip
    return {
        "encoder": idx.encoder_info.get("name"),
        "index": str(idx.path),
        "gallery": idx.store.count(),
        "queries": len(kept),
        "skipped": [list(s) for s in skipped],
        "encode_images_per_s": len(kept) / enc_s if enc_s > 0 else float("nan"),
        "index_bytes": _folder_bytes(idx.path),
        "retrieval": retrieval_figures(idx, emb, truths),
        "modes": modes,
        "peak_rss_mb": _peak_rss_mb(),
    }


def evaluate_encoder(name: str, plan: SplitPlan, cfg: EvalConfig, workdir: Path) -> dict[str, Any]:
    """Build a temporary index of ``plan.train`` with encoder ``name`` under ``workdir``, then evaluate it."""
    from visrec.encoders import create_encoder
    from visrec.index import Index
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    enc = create_encoder(name)
    out = workdir / f"{name.replace('/', '_')}.vrx"
    rep = build_index(plan.train, out, enc, IndexConfig(store=cfg.store, calibrate=cfg.calibrate))
    res = evaluate_index(Index(out, encoder=enc), plan.test, cfg, cfg.unknown)
    res["build"] = {"seconds": rep.seconds, "embedded_per_second": rep.embedded_per_second}
    res["gallery_root"] = str(plan.train.root)
    return res


def comparison_table(encoders: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (encoder, mode): accuracy, macro-F1, unknown rate, retrieval, speed, memory, index size."""
    rows = []
    for e in encoders:
        r = e["retrieval"]
        for m, d in e["modes"].items():
            c = d["classification"]
            rows.append({
                "encoder": e["encoder"], "mode": m, "top1": c["top1"], "top1_raw": c["top1_raw"],
                "macro_f1": c["macro_f1"], "unknown_rate": c["unknown_rate"], "score_1000": r["score_1000"],
                "map_at_r": r["map_at_r"], "images_per_s": e["encode_images_per_s"],
                "p50_ms": d["latency"]["p50_ms"], "p95_ms": d["latency"]["p95_ms"],
                "peak_rss_mb": e["peak_rss_mb"], "index_mb": e["index_bytes"] / 2**20,
            })  # fmt: skip
    return rows


def evaluate(dataset: str, plan: SplitPlan, cfg: EvalConfig, index: Any = None) -> dict[str, Any]:
    """The whole evaluation: one entry per encoder (or the given opened ``index``) and a comparison table."""
    if index is not None:
        encoders = [evaluate_index(index, plan.test, cfg, cfg.unknown)]
    else:
        with tempfile.TemporaryDirectory(prefix="visrec-eval-") as tmp:
            encoders = [evaluate_encoder(n, plan, cfg, Path(tmp)) for n in cfg.encoders]
    return {
        "schema": SCHEMA,
        "dataset": dataset,
        "split": plan.to_dict(),
        "warnings": plan.warnings(dataset),
        "leakage": plan.leakage,
        "encoders": encoders,
        "table": comparison_table(encoders),
    }


def evaluate_source(
    source: Path,
    cfg: EvalConfig,
    split_field: str = "auto",
    train_values: Sequence[str] = ("train", "valid"),
    test_values: Sequence[str] = ("test",),
    data: Path | None = None,
    where: str | None = None,
) -> dict[str, Any]:
    """Evaluate a dataset (temporary index per encoder) or an existing index on the test side of ``data``.

    With an index, its train images are not re-split: the test side of ``data`` is classified against it, and the
    leakage check compares that test side with the train side of ``data``.
    """
    from visrec.errors import BadInput
    from visrec.eval.splits import plan_split
    from visrec.index.folder import IndexFolder
    from visrec.index.inputs import open_dataset

    is_index = IndexFolder.is_index(source)
    if is_index and data is None:
        raise BadInput(f"{source} is an index: name the labeled test images with --data DATASET")
    ds = open_dataset(data if is_index and data is not None else source, None, where)
    plan = plan_split(ds, split_field, train_values, test_values)
    if not is_index:
        return evaluate(str(source), plan, cfg)
    from visrec.index import Index

    return evaluate(str(data), plan, cfg, Index(source)) | {"index": str(source)}
