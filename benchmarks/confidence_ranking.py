"""How far the open-set decision's confidence ranking lets answers go at a target precision, on real dev sets.

Usage::

    python benchmarks/confidence_ranking.py --set caltech:/tmp/caltech_all.vrx:split:/tmp/bg_all.vrx \\
        --set cifar:/tmp/cifar_all.vrx:split: \\
        --set naruto:/tmp/naruto_all.vrx:grouped_split:/tmp/cifar_all.vrx,/tmp/celebs_all.vrx

Each ``--set NAME:INDEX:FIELD:UNKNOWN[,UNKNOWN...]`` names an index of a whole labeled dataset (built with
``visrec index DATASET --no-calibrate``), the metadata field of its train/test split and zero or more indexes of
"none of these" images. The train items are calibrated exactly as ``visrec index`` does (kNN, default options);
then, per set:

* ``test``: the default operating point on the test stream (known test + unknown images): precision on answered,
  known answered, unknown rejected, and the share of known test images made unknown as novel / ambiguous;
  ``best``: the most known images any single threshold on the same confidence answers at the target on the
  test stream (chosen with the test labels: the ceiling of the ranking, an oracle, never a setting);
* ``ranking``: the same ceiling on known images only, for candidate P(correct) features, on the held-out
  (leave-one-group-out) predictions of the train split, where a choice may be made, and on the test split;
* ``shrink``: per-class map pseudo-count, judged out of fold: maps fitted on half of the held-out stream, the
  other half's best coverage at the target (3 random halvings, both ways);
* ``in_sample``: held-out precision at the calibrated threshold when the maps that score an item were fitted
  without it (5 folds), and what the test stream gives at the threshold picked on those out-of-fold scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

TARGET = 0.95


def load_set(spec: str) -> dict[str, Any]:
    """Train / test vectors, labels, near-duplicate groups of the train items, and the unknown vectors."""
    from novelty_scores import index_arrays, split_of

    from visrec.data.dedup import near_duplicate_groups

    name, path, field, unknown = spec.split(":")
    vecs, labels, metas = index_arrays(path)
    split = np.array([split_of(m, field) for m in metas])
    tr = np.flatnonzero((split == "train") & np.array([bool(x) for x in labels]))
    te = np.flatnonzero((split == "test") & np.array([bool(x) for x in labels]))
    hashes = [metas[i].get("extra", {}).get("phash", "") for i in tr]
    have = [j for j, h in enumerate(hashes) if h]
    groups: list[str | None] = [None] * tr.size
    if have:
        packed = np.stack([np.frombuffer(bytes.fromhex(hashes[j]), np.uint8) for j in have])
        for j, g in zip(have, near_duplicate_groups(packed), strict=True):
            groups[j] = f"p{g}"
    unk = [index_arrays(p)[0] for p in unknown.split(",") if p]
    return {"name": name, "train": vecs[tr], "train_labels": [labels[i] for i in tr], "groups": groups,
            "test": vecs[te], "test_labels": [labels[i] for i in te],
            "unknown": np.concatenate(unk) if unk else np.zeros((0, vecs.shape[1]), np.float32)}  # fmt: skip


def knn(train: np.ndarray, labels: list[tuple[str, ...]], queries: np.ndarray) -> list[Any]:
    """Exact kNN predictions of ``queries`` from the train items (the library's default classifier)."""
    from visrec.classify import KnnClassifier

    clf = KnnClassifier()
    sims = queries @ train.T
    top = np.argsort(-sims, axis=1)[:, : clf.k]
    return clf.predict_from_neighbors([[labels[j] for j in r] for r in top], np.take_along_axis(sims, top, axis=1))


def margin(preds: list[Any]) -> np.ndarray:
    """Best class score minus the second one (0 when only one class voted)."""
    return np.array([p.score - (p.top_k[1][1] if len(p.top_k) > 1 else 0.0) for p in preds])


def stream_figures(s: dict[str, Any], cal: Any, novelty: Any) -> dict[str, Any]:
    """The default operating point on the test stream and the best threshold's known answered."""
    from visrec.eval.metrics import best_known_answered

    kp = cal.apply(knn(s["train"], s["train_labels"], s["test"]), novelty.score(s["test"]))
    up = cal.apply(knn(s["train"], s["train_labels"], s["unknown"]), novelty.score(s["unknown"])) if len(
        s["unknown"]) else []  # fmt: skip
    ok = np.array([p.candidate in t for p, t in zip(kp, s["test_labels"], strict=True)])
    answered = np.array([p.label is not None for p in kp])
    u_answered = np.array([p.label is not None for p in up], bool)
    kc, uc = np.array([p.calibrated for p in kp]), np.array([p.calibrated for p in up])
    return {
        "precision": float((answered & ok).sum() / max(1, answered.sum() + u_answered.sum())),
        "known_answered": float(answered.mean()),
        "unknown_rejected": float(1 - u_answered.mean()) if len(up) else None,
        "novel": float(np.mean([p.reason == "novel" for p in kp])),
        "ambiguous": float(np.mean([p.reason == "ambiguous" for p in kp])),
        "best": best_known_answered(kc, ok, uc, TARGET),
        "best_known_only": best_known_answered(kc, ok, [], TARGET),
    }


def ranking(s: dict[str, Any]) -> dict[str, Any]:
    """Known-only ceiling at the target for P(correct) features, held-out (train) and test."""
    from visrec.classify import KnnClassifier
    from visrec.classify.loo import LooData, _prototype_cosines, chunked_left_out, sample_queries
    from visrec.eval.metrics import best_known_answered

    data = LooData.build(s["train"], s["train_labels"], s["groups"])
    rows = sample_queries(data.labels, 3000, 0)
    held = chunked_left_out(KnnClassifier(), data, rows, False, 512)
    test = knn(s["train"], s["train_labels"], s["test"])
    truth = {"held_out": [data.labels[i] for i in rows], "test": s["test_labels"]}
    protos = data.sums / np.linalg.norm(data.sums, axis=1, keepdims=True)
    cos = {"held_out": _prototype_cosines(data, rows, False), "test": s["test"] @ protos.T}
    out: dict[str, Any] = {}
    for part, preds in (("held_out", held), ("test", test)):
        ok = np.array([p.candidate in t for p, t in zip(preds, truth[part], strict=True)])
        top2 = -np.sort(-cos[part], axis=1)[:, :2]
        p_ok = np.array([data.classes[j] in t for j, t in zip(cos[part].argmax(axis=1), truth[part], strict=True)])
        out[part] = {"knn_top1": float(ok.mean()),
                     "knn_score": best_known_answered(np.array([p.score for p in preds]), ok, [], TARGET),
                     "knn_margin": best_known_answered(margin(preds), ok, [], TARGET),
                     "prototype_top1": float(p_ok.mean()),
                     "prototype_margin": best_known_answered(top2[:, 0] - top2[:, 1], p_ok, [], TARGET)}  # fmt: skip
    return out


def _sub(h: Any, m: np.ndarray) -> Any:
    from visrec.classify.decision import HeldOut

    return HeldOut(h.score[m], h.candidate[m], h.novelty[m], h.correct[m])


def _stream(dec: Any, kh: Any, nh: Any, prior: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence, correctness and stream weights (known 1 - prior, novel prior) of held-out items."""
    ck, cn = (np.prod(dec.confidence(h, prior), axis=0) for h in (kh, nh))
    w = np.r_[np.full(ck.size, (1 - prior) / ck.size), np.full(cn.size, prior / max(1, cn.size))]
    return np.r_[ck, cn], np.r_[kh.correct, np.zeros(cn.size, bool)], w


def _best_weighted(conf: np.ndarray, ok: np.ndarray, w: np.ndarray, n_known: int) -> float:
    order = np.argsort(-conf, kind="stable")
    prec = np.cumsum((w * ok)[order]) / np.cumsum(w[order])
    cut = np.r_[conf[order][1:] != conf[order][:-1], True]
    good = np.flatnonzero(cut & (prec >= TARGET - 1e-12))
    return float((order[: good[-1] + 1] < n_known).sum() / n_known) if good.size else 0.0


def shrink_out_of_fold(d: Any, prior: float) -> dict[str, float]:
    """Per pseudo-count: mean best held-out coverage at the target on halves the maps were not fitted on."""
    from visrec.classify.decision import fit_decision

    rng = np.random.default_rng(1)
    res: dict[str, list[float]] = {}
    for _ in range(3):
        mk, mn = rng.random(d.known.score.size) < 0.5, rng.random(d.novel.score.size) < 0.5
        for a, b in ((mk, mn), (~mk, ~mn)):
            for m in (0.01, 3.0, 10.0, 30.0, 100.0, 1e9):
                dec = fit_decision(_sub(d.known, a), _sub(d.novel, b), d.novelty_name, m)
                conf, ok, w = _stream(dec, _sub(d.known, ~a), _sub(d.novel, ~b), prior)
                res.setdefault(f"{m:g}", []).append(_best_weighted(conf, ok, w, int((~a).sum())))
    return {k: float(np.mean(v)) for k, v in res.items()}


def in_sample(d: Any, prior: float, folds: int = 5) -> dict[str, float]:
    """Held-out precision at the calibrated threshold with maps fitted without the scored items, and the
    threshold those out-of-fold scores would pick."""
    from visrec.classify.decision import fit_decision
    from visrec.classify.thresholds import pick_threshold, threshold_curve

    rng = np.random.default_rng(0)
    fk, fn = rng.integers(0, folds, d.known.score.size), rng.integers(0, folds, d.novel.score.size)
    ck, cn = np.zeros(d.known.score.size), np.zeros(d.novel.score.size)
    for f in range(folds):
        dec = fit_decision(_sub(d.known, fk != f), _sub(d.novel, fn != f), d.novelty_name, d.shrink)
        ck[fk == f] = np.prod(dec.confidence(_sub(d.known, fk == f), prior), axis=0)
        cn[fn == f] = np.prod(dec.confidence(_sub(d.novel, fn == f), prior), axis=0)
    conf, ok = np.r_[ck, cn], np.r_[d.known.correct, np.zeros(cn.size, bool)]
    w = np.r_[np.full(ck.size, (1 - prior) / ck.size), np.full(cn.size, prior / max(1, cn.size))]
    tau = d.operating_point(TARGET, prior).tau
    acc = conf >= tau
    oof_tau, _ = pick_threshold(threshold_curve(conf, ok, w), TARGET)
    return {"tau": float(tau), "out_of_fold_precision": float((w * ok)[acc].sum() / w[acc].sum()),
            "out_of_fold_tau": float(oof_tau)}  # fmt: skip


def run_set(spec: str) -> dict[str, Any]:
    """Every figure of one ``--set``."""
    from visrec.classify import CalibrationOptions, KnnClassifier, calibrate_leave_one_group_out
    from visrec.classify.novelty import DEFAULT_NOVELTY, create_novelty

    s = load_set(spec)
    opts = CalibrationOptions(novelty=DEFAULT_NOVELTY, held_out_cache={})
    cal = calibrate_leave_one_group_out(s["train"], s["train_labels"], s["groups"], KnnClassifier(), opts)
    d = cal.decision
    novelty = create_novelty(d.novelty_name, dims=d.novelty_dims).fit(s["train"], [x[0] for x in s["train_labels"]])
    prior = cal.novelty_prior
    out = {"set": s["name"], "test": stream_figures(s, cal, novelty), "ranking": ranking(s),
           "shrink": shrink_out_of_fold(d, prior), "in_sample": in_sample(d, prior)}  # fmt: skip
    oof = out["in_sample"]["out_of_fold_tau"]
    out["in_sample"]["test_at_out_of_fold_tau"] = stream_figures(s, _with_tau(cal, oof), novelty)
    return out


def _with_tau(cal: Any, tau: float) -> Any:
    """The calibration answering at confidence ``tau`` instead of its target's threshold."""
    from dataclasses import replace

    class Fixed:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, k: str) -> Any:
            return getattr(self.inner, k)

        def operating_point(self, target: float, prior: float) -> Any:
            return replace(self.inner.operating_point(target, prior), tau=tau)

    return replace(cal, decision=Fixed(cal.decision), _points={})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", action="append", required=True, help="NAME:INDEX:FIELD:UNKNOWN[,UNKNOWN...]")
    args = ap.parse_args(argv)
    for spec in args.set:
        print(json.dumps(run_set(spec)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
