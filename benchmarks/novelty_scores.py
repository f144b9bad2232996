"""Which novelty score tells "none of these classes" apart from known classes best, on real dev sets.

Usage::

    python benchmarks/novelty_scores.py --pair caltech:/tmp/caltech_all.vrx:split:/tmp/bg_all.vrx \\
        --pair naruto-cifar:/tmp/naruto_all.vrx:grouped_split:/tmp/cifar_all.vrx ...

Each ``--pair NAME:KNOWN:FIELD:UNKNOWN`` names an index of a whole labeled dataset (built with
``visrec index DATASET --no-calibrate``), the metadata field that holds its train/test split (``split`` or the
manifest column ``grouped_split``, read from the item's ``extra``), and an index of "none of these" images. Every
score of :mod:`visrec.classify.novelty` is fitted on the known index's train items and scored on its test items
(known) and on the unknown index's items. Printed per pair and score: AUROC (unknown vs known test; 0.5 =
chance) and the share of unknown images rejected at the threshold that keeps 95 % of the known test images; the
kNN classifier's own raw score (``vote_similarity``, the score thresholds were set on so far) is the baseline.
No threshold is fitted here: the figures rank scores, they do not set any constant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def index_arrays(path: str) -> tuple[np.ndarray, list[tuple[str, ...]], list[dict[str, Any]]]:
    """``(n, d)`` vectors, label tuples and metadata of every item of an index folder."""
    from visrec.index import Index

    idx = Index(path, mmap=False)
    vecs, labels, metas = [], [], []
    for _, v, ms in idx.store.export():
        vecs.append(np.asarray(v, np.float32))
        labels += [tuple(m.get("labels", ())) for m in ms]
        metas += ms
    return np.concatenate(vecs), labels, metas


def split_of(meta: dict[str, Any], field: str) -> str:
    """The value of split ``field`` for one item (top-level metadata first, then manifest extras)."""
    return str(meta.get(field) or meta.get("extra", {}).get(field) or "")


def open_set(known: np.ndarray, unknown: np.ndarray, recall: float = 0.95) -> dict[str, float]:
    """AUROC of novelty scores (unknown above known) and unknown rejection at ``recall`` of known kept."""
    from visrec.eval.metrics import OpenSetMetrics

    m = OpenSetMetrics(recall)
    m.update(-known, -unknown)  # OpenSetMetrics wants confidences: higher = more known
    out = m.compute()
    return {"auroc": out["auroc"], "rejected_at_95": out["rejection_rate"]}


def knn_baseline(train: np.ndarray, labels: list[str], queries: np.ndarray) -> np.ndarray:
    """Novelty as minus the kNN classifier's raw ``vote_similarity`` score (k=10, T=0.05)."""
    from visrec.classify import KnnClassifier

    clf = KnnClassifier()
    sims = queries @ train.T
    top = np.argsort(-sims, axis=1)[:, : clf.k]
    nb = [[(labels[j],) for j in row] for row in top]
    preds = clf.predict_from_neighbors(nb, np.take_along_axis(sims, top, axis=1))
    return -np.array([p.score for p in preds])


def run_pair(spec: str) -> dict[str, Any]:
    """Figures of every score on one ``NAME:KNOWN:FIELD:UNKNOWN`` pair."""
    from visrec.classify.novelty import NOVELTY_SCORES, create_novelty

    name, known_path, field, unknown_path = spec.split(":")
    vecs, labels, metas = index_arrays(known_path)
    split = np.array([split_of(m, field) for m in metas])
    tr = np.flatnonzero((split != "test") & np.array([bool(x) for x in labels]))
    te = np.flatnonzero(split == "test")
    unk = index_arrays(unknown_path)[0]
    tr_labels = [labels[i][0] for i in tr]
    rows: dict[str, Any] = {"knn_vote_similarity (baseline)": open_set(
        knn_baseline(vecs[tr], tr_labels, vecs[te]), knn_baseline(vecs[tr], tr_labels, unk))}  # fmt: skip
    for score in NOVELTY_SCORES:
        t0 = time.perf_counter()
        nov = create_novelty(score).fit(vecs[tr], tr_labels)
        k_s, u_s = nov.score(vecs[te]), nov.score(unk)
        rows[score] = open_set(k_s, u_s) | {"seconds": time.perf_counter() - t0}
    return {"pair": name, "n_train": int(tr.size), "n_known_test": int(te.size), "n_unknown": len(unk), "scores": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", action="append", required=True, help="NAME:KNOWN_INDEX:SPLIT_FIELD:UNKNOWN_INDEX")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = [run_pair(p) for p in args.pair]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for r in results:
        print(f"\n{r['pair']}: {r['n_train']} train, {r['n_known_test']} known test, {r['n_unknown']} unknown")
        print(f"  {'score':32s} {'AUROC':>7s} {'rejected@95%':>13s}")
        for s, f in r["scores"].items():
            print(f"  {s:32s} {f['auroc']:7.3f} {f['rejected_at_95']:13.1%}")


if __name__ == "__main__":
    main()
