"""kNN vote against the ridge linear probe (``visrec.classify.linear``) on every dev set, from cached features.

Usage::

    python benchmarks/embed_cache.py --cache /tmp/visrec-bench --encoders efficientnet-lite0 --sets naruto,cifar,caltech
    python benchmarks/linear_probe.py --cache /tmp/visrec-bench [--logistic]

Per set (naruto_roboflow ``grouped_split``, cifar10_subset and caltech101_dev ``split``): raw top-1 of each
classifier on the test split, and the share of test images answered at 95 % precision by a single threshold on
its score, the threshold chosen on held-out predictions of the TRAIN split (grouped folds for the probe, leave
one group out for kNN), with the precision it then delivers on test. The probe's penalty is chosen on the same
folds (``choose_penalty``); ``--logistic`` adds scikit-learn's multinomial logistic regression (C chosen the same
way) for comparison. No test label is used to choose anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from encoder_choice import DevSets, knn_top1  # noqa: E402

from visrec.classify.linear import (  # noqa: E402
    FOLDS,
    PENALTIES,
    best_penalty,
    fold_outputs,
    group_folds,
    incidence,
    margins,
    ridge_fit,
)

ENCODER = "efficientnet-lite0"


def threshold_at(conf: np.ndarray, correct: np.ndarray, precision: float) -> float:
    """The lowest score whose answers above it reach ``precision`` (inf when none does)."""
    order = np.argsort(-conf, kind="stable")
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(running >= precision)
    return float(conf[order][ok.max()]) if ok.size else float("inf")


def knn_scores(sims: np.ndarray, gallery: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(candidate class index, score) of the library's default kNN vote over ``(q, g)`` cosines."""
    k = min(k, sims.shape[1])
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, nn, axis=1)
    w = np.exp((s - s.max(axis=1, keepdims=True)) / 0.05)
    classes, idx = np.unique(gallery, return_inverse=True)
    votes = np.zeros((len(sims), len(classes)))
    best = np.full((len(sims), len(classes)), -np.inf)
    rows = np.repeat(np.arange(len(sims))[:, None], k, axis=1)
    np.add.at(votes, (rows, idx[nn]), w)
    np.maximum.at(best, (rows, idx[nn]), s)
    score = votes / votes.sum(axis=1, keepdims=True) * np.maximum(best, 0)
    return score.argmax(axis=1), score.max(axis=1)


def row(name: str, held: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> str:
    th = threshold_at(held[0], held[1], 0.95)
    answered = test[0] >= th
    prec = test[1][answered].mean() if answered.any() else float("nan")
    return (f"{name:<28} top-1 {100 * test[1].mean():5.1f} %  answered at 95 % {100 * answered.mean():5.1f} % "
            f"(precision {100 * prec:5.1f} %)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--logistic", action="store_true")
    args = ap.parse_args()
    dev = DevSets(args.cache, args.data, [ENCODER])
    for name in ("naruto", "cifar", "caltech"):
        if name not in dev.meta:
            continue
        m, x = dev.meta[name], dev.feats[(ENCODER, name)]
        tr, te = m["split"] == "train", m["split"] == "test"
        g, q = m["label"][tr], m["label"][te]
        classes, gi = np.unique(g, return_inverse=True)
        print(f"{name}: {tr.sum()} train / {te.sum()} test, {len(classes)} classes")
        # kNN: held-out = leave-one-group-out on train; test = train gallery
        loo = dev.sims((ENCODER,), (1.0,), f"train:{name}", name)
        c_h, s_h = knn_scores(loo, g)
        c_t, s_t = knn_scores(dev.sims((ENCODER,), (1.0,), name, name), g)
        print("  " + row("kNN vote (default)", (s_h, c_h == gi), (s_t, classes[c_t] == q)))
        assert abs(100 * np.mean(classes[c_t] == q) - knn_top1(dev.sims((ENCODER,), (1.0,), name, name), g, q)) < 1e-9
        # ridge probe: penalty and threshold from grouped folds of train
        y = incidence([(lab,) for lab in g], classes)
        codes = np.unique(m["group"][tr], return_inverse=True)[1]
        folds = group_folds(codes, FOLDS)
        t0 = time.perf_counter()
        outputs = fold_outputs(x[tr], y, folds, PENALTIES)
        chosen = best_penalty(outputs, y, PENALTIES)
        lam = PENALTIES[chosen]
        held = margins(outputs[chosen])
        ((w, b),) = ridge_fit(x[tr], y, [lam])
        fit_s = time.perf_counter() - t0
        test = margins(x[te] @ w + b)
        print("  " + row(f"ridge probe (penalty {lam:g})", (held.max(axis=1), held.argmax(axis=1) == gi),
                         (test.max(axis=1), classes[test.argmax(axis=1)] == q)) + f"  fit {fit_s:.1f} s")  # fmt: skip
        if args.logistic:
            from sklearn.linear_model import LogisticRegression

            best = None
            for c in (1.0, 10.0, 100.0):
                probs = np.zeros(y.shape)
                for f in np.unique(folds):
                    fit = LogisticRegression(C=c, max_iter=500).fit(x[tr][folds != f], gi[folds != f])
                    probs[np.ix_(folds == f, fit.classes_)] = fit.predict_proba(x[tr][folds == f])
                acc = np.mean(probs.argmax(axis=1) == gi)
                if best is None or acc > best[0]:
                    best = (acc, c, probs)
            assert best is not None
            fit = LogisticRegression(C=best[1], max_iter=500).fit(x[tr], gi)
            p = fit.predict_proba(x[te])
            print("  " + row(f"logistic (C {best[1]:g})", (best[2].max(axis=1), best[2].argmax(axis=1) == gi),
                             (p.max(axis=1), classes[p.argmax(axis=1)] == q)))  # fmt: skip


if __name__ == "__main__":
    main()
