"""Latency of one classify call with the open-set decision against the raw-score thresholds, side by side.

Usage::

    python benchmarks/decision_latency.py INDEX [--queries 200] [--mode knn]

``INDEX`` must be calibrated with an open-set decision (``visrec index`` / ``visrec calibrate`` do that). The
index's own vectors serve as queries (one per call, as a user classifying single photos). Three variants run
interleaved in one process, after a warm-up: ``raw`` (no unknown decision), ``thresholds`` (the classic
per-class raw-score thresholds, fitted here on the same index) and ``decision`` (novelty score + P(known) x
P(class) + threshold). Printed: p50 / p95 ms per call and the ratios decision / thresholds. Image decoding
and encoding (tens of ms per image on a CPU) come on top of all three and are not timed here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    from visrec.classify import CalibrationOptions, calibrate_leave_one_group_out
    from visrec.index import Index
    from visrec.index.derived import _labels_and_groups
    from visrec.index.recognize import make_classifier_from_params
    from visrec.types import Embeddings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--mode", default="knn")
    args = ap.parse_args()

    idx = Index(args.index)
    ids, vecs, labels, groups = _labels_and_groups(idx.store)
    classic = calibrate_leave_one_group_out(vecs, labels, groups, make_classifier_from_params(args.mode, {}),
                                            CalibrationOptions(novelty=None))  # fmt: skip
    with_decision = idx.calibration(args.mode)
    if with_decision is None or with_decision.decision is None:
        raise SystemExit(f"{args.index}: the {args.mode} calibration has no open-set decision; recalibrate it")
    fp = idx.encoder_info["fingerprint"]
    rng = np.random.default_rng(0)
    rows = rng.choice(len(ids), size=min(args.queries, len(ids)), replace=False)
    times: dict[str, list[float]] = {"raw": [], "thresholds": [], "decision": []}

    def run(name: str, emb: Embeddings) -> None:
        idx._parsed[args.mode] = classic if name == "thresholds" else with_decision
        t0 = time.perf_counter()
        idx.classify(emb, args.mode, calibrated=name != "raw")
        times[name].append(1000 * (time.perf_counter() - t0))

    for r in rows[:5]:  # warm-up: loads the novelty model, fits the operating point once
        for name in times:
            run(name, Embeddings(vecs[r : r + 1], (ids[r],), fp))
    for v in times.values():
        v.clear()
    for r in rows:
        emb = Embeddings(vecs[r : r + 1], (ids[r],), fp)
        for name in times:
            run(name, emb)
    print(f"{args.index} ({len(ids)} items), mode {args.mode}, {rows.size} single-query calls each (interleaved)")
    for name, v in times.items():
        print(f"  {name:11s} p50 {np.percentile(v, 50):7.2f} ms   p95 {np.percentile(v, 95):7.2f} ms")
    for q in (50, 95):
        ratio = np.percentile(times["decision"], q) / np.percentile(times["thresholds"], q)
        print(f"  decision / thresholds at p{q}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
