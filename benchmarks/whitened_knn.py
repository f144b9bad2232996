"""Leave-one-group-out kNN top-1 of an index's own (train) items: cosine vs whitened, as the calibration scores them.

Usage::

    python benchmarks/whitened_knn.py INDEX [INDEX ...]

For each index (built from a train split, e.g. ``visrec index MANIFEST --where "split == 'train'" --out X.vrx``)
every labeled item is predicted by the default kNN vote without its near-duplicate group:

* ``cosine``: plain cosines over every other item (what the calibration scored before the whitened metric);
* ``whitened, refit per fold``: :func:`visrec.classify.loo_whitened.whitened_left_out` (10 group folds, the
  whitening refitted on each fold's remaining items, neighbours among them): what the calibration scores now;
* ``whitened, one global fit``: the whitening fitted on every item, the held-out item included (leaks: shown
  only to size the leak).

It prints top-1 per index, the mean over the indexes and the time of each column side by side (ratio to cosine).
``--calibration`` also times the whole kNN calibration as ``visrec index`` runs it (open-set decision, simulated
unknowns, 3000 sampled queries) with each metric side by side, and prints its held-out coverage at 95 %.
``--latency`` times raw kNN answers from stored vectors (``visrec.index.recognize.predict``, one query per call,
200 calls, p50) per metric side by side, and the first whitened call of an opened generation (it whitens the
labeled gallery). ``--fit-cost N D`` times what a commit that changes a labeled item adds: the whitening files of N
synthetic unit vectors of D dimensions in 100 classes (:func:`visrec.index.metric.whitening_files`: the fit and the
digest of the items), best of 3.
The default metric (:data:`visrec.classify.knn.DEFAULT_METRIC`) was chosen on the mean of the first two columns
over the train splits of naruto_roboflow, cifar10_subset and caltech101_dev.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from visrec.classify import KnnClassifier  # noqa: E402
from visrec.classify.loo import LooData, chunked_left_out  # noqa: E402
from visrec.classify.loo_whitened import whitened_left_out  # noqa: E402
from visrec.classify.whitening import fit_within_class_whitening  # noqa: E402
from visrec.index import Index  # noqa: E402
from visrec.index.derived import _labels_and_groups  # noqa: E402


def top1(preds: list, truths: list) -> float:
    return 100.0 * float(np.mean([p.candidate in t for p, t in zip(preds, truths, strict=True)]))


def global_fit(data: LooData, rows: np.ndarray) -> list:
    single = [i for i, x in enumerate(data.labels) if len(x) == 1]
    w = fit_within_class_whitening(data.vectors[single], [data.labels[i][0] for i in single])
    labeled = [i for i, x in enumerate(data.labels) if x]
    moved = LooData.build(w.transform(data.vectors[labeled]), [data.labels[i] for i in labeled],
                          [f"g{g}" for g in data.gid[labeled]])  # fmt: skip
    pos = np.full(len(data.labels), -1)
    pos[labeled] = np.arange(len(labeled))
    return chunked_left_out(KnnClassifier(metric="cosine"), moved, pos[rows], False, 512)


def measure(path: Path) -> dict[str, tuple[float, float]]:
    _, vecs, labels, groups = _labels_and_groups(Index(path).store)
    data = LooData.build(vecs, labels, groups)
    rows = np.flatnonzero([len(x) > 0 for x in data.labels])
    truths = [data.labels[i] for i in rows]
    runs = {
        "cosine": lambda: chunked_left_out(KnnClassifier(metric="cosine"), data, rows, False, 512),
        "whitened, refit per fold": lambda: whitened_left_out(KnnClassifier(metric="whitened"), data, rows, False),
        "whitened, one global fit (leaks)": lambda: global_fit(data, rows),
    }
    out = {}
    for name, run in runs.items():
        t0 = time.perf_counter()
        preds = run()
        out[name] = (top1(preds, truths), time.perf_counter() - t0)
    return out


def calibration_cost(path: Path) -> None:
    from visrec.classify import CalibrationOptions, calibrate_leave_one_group_out
    from visrec.classify.novelty import DEFAULT_NOVELTY

    _, vecs, labels, groups = _labels_and_groups(Index(path).store)
    cells = []
    for metric in ("cosine", "whitened"):
        opts = CalibrationOptions(novelty=DEFAULT_NOVELTY, held_out_cache={})
        t0 = time.perf_counter()
        cal = calibrate_leave_one_group_out(vecs, labels, groups, KnnClassifier(metric=metric), opts)
        cells.append((metric, time.perf_counter() - t0, cal.coverage, cal.precision))
    base = cells[0][1]
    text = ", ".join(f"{m} {t:.1f} s ({t / base:.1f}x), answers {c:.1%} at {p:.1%}" for m, t, c, p in cells)
    print(f"| {path.name} | kNN calibration: {text} |")


def latency(path: Path, calls: int = 200) -> None:
    from visrec.index.recognize import predict
    from visrec.types import Embeddings

    snap = Index(path).snapshot()
    ids = snap.store.ids()[:calls]
    vecs = snap.store.get(ids)[0]
    fp = snap.encoder_info["fingerprint"]
    t0 = time.perf_counter()
    snap.whitened_gallery()
    first = time.perf_counter() - t0
    cells = []
    for metric in ("cosine", "whitened"):
        clf = KnnClassifier(metric=metric)
        times = []
        for i in range(len(ids)):
            emb = Embeddings(vecs[i : i + 1], (ids[i],), fp)
            t0 = time.perf_counter()
            predict(snap, clf, emb, "knn")
            times.append(time.perf_counter() - t0)
        cells.append((metric, 1000 * float(np.median(times))))
    base = cells[0][1]
    text = ", ".join(f"{m} p50 {t:.2f} ms ({t / base:.1f}x)" for m, t in cells)
    print(f"| {path.name} | one kNN answer: {text}; whitening the gallery on first use {first:.2f} s |")


def fit_cost(n: int, d: int) -> None:
    from visrec.index.metric import whitening_files

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, d)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids, labels = [f"i{i}" for i in range(n)], [(f"c{i % 100}",) for i in range(n)]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        whitening_files(ids, vecs, labels)
        times.append(time.perf_counter() - t0)
    print(f"| whitening files of {n} x {d} | best {min(times):.2f} s of {', '.join(f'{t:.2f}' for t in times)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("indexes", nargs="*", type=Path)
    ap.add_argument("--fit-cost", nargs=2, type=int, metavar=("N", "D"), help="time the whitening files of N x D")
    ap.add_argument("--calibration", action="store_true", help="also time the whole kNN calibration per metric")
    ap.add_argument("--latency", action="store_true", help="only time one raw kNN answer per metric")
    args = ap.parse_args()
    if args.fit_cost:
        fit_cost(*args.fit_cost)
    if args.latency:
        for p in args.indexes:
            latency(p)
        return
    if args.calibration:
        for p in args.indexes:
            calibration_cost(p)
    if not args.indexes:
        return
    results = {p.name: measure(p) for p in args.indexes}
    names = list(next(iter(results.values())))
    print("| index | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for index, res in results.items():
        base = res["cosine"][1]
        cells = [f"{res[n][0]:.1f} % ({res[n][1]:.1f} s, {res[n][1] / base:.1f}x)" for n in names]
        print(f"| {index} | " + " | ".join(cells) + " |")
    means = [np.mean([r[n][0] for r in results.values()]) for n in names]
    print("| mean top-1 | " + " | ".join(f"{m:.1f} %" for m in means) + " |")


if __name__ == "__main__":
    main()
