"""IVF recall on real embeddings: the FAISS store's IVF index against exact search, by ``nprobe``.

The images of the given dataset folders are embedded once with the default encoder (an index per folder in
``--cache``, exact store, no calibration), pooled, and indexed in an IVF store with the store's default ``nlist``
for that size. Queries are ``--queries`` pooled items searched among all the others (leave-one-out: the item
itself is dropped from both result lists); recall@10 is the share of the exact top 10 the IVF search returns.
Real embeddings are far less friendly to IVF than synthetic clusters (``benchmarks/ann_recall.py``), but the
sets here are small (a few thousand images), so ``nlist`` is small too: the share of lists probed, printed with
each row, is what carries over to larger indexes (the default probes max(16, nlist / 16): 6.25 % from 4,096
items per list on).

    python benchmarks/ann_recall_real.py --data ../shared/data/caltech101_dev ../shared/data/cifar10_subset \\
        --cache /tmp/visrec-real --nprobe 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def embeddings(folders: list[Path], cache: Path) -> np.ndarray:
    """``(n, d)`` unit vectors of every readable image of ``folders`` (default encoder), cached as indexes."""
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index import Index
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    parts = []
    for folder in folders:
        out = cache / f"{folder.name}.vrx"
        if not (out / "manifest.json").is_file():
            build_index(load_dataset(folder), out, create_encoder(), IndexConfig(calibrate=False, store="exact"))
        parts += [vecs for _, vecs, _ in Index(out).store.export()]
    return np.concatenate(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = ap.parse_args()
    from visrec.stores.faiss_store import FaissStore

    x = embeddings(args.data, args.cache)
    n = len(x)
    ids = [str(i) for i in range(n)]
    picks = np.random.default_rng(0).choice(n, min(args.queries, n), replace=False)
    exact = FaissStore(x.shape[1], ivf_threshold=10**12)
    exact.add(ids, x, [{}] * n)
    truth = [[i for i in exact.search(x[p], 11).ids[0] if i != str(p)][:10] for p in picks]
    ivf = FaissStore(x.shape[1], ivf_threshold=1, hnsw_max=0)
    ivf.add(ids, x, [{}] * n)
    nlist = int(ivf._ensure_index().nlist)
    rows = []
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        found, times = [], []
        for p in picks:
            t0 = time.perf_counter()
            got = ivf.search(x[p], 11).ids[0]
            times.append(1e3 * (time.perf_counter() - t0))
            found.append([i for i in got if i != str(p)][:10])
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
        rows.append({"nprobe": nprobe, "share_probed": round(nprobe / nlist, 4), "recall_at_10": round(recall, 4),
                     "p50_ms": round(float(np.median(times)), 3)})  # fmt: skip
    print(json.dumps({"n": n, "dim": int(x.shape[1]), "nlist": nlist, "queries": len(picks), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
