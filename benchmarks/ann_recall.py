"""Exact vs IVF search in the FAISS store at one size: single-query p50 and recall@10 against exact.

Vectors are synthetic clustered unit rows of the default encoder's width (1472-d), in two difficulties: ``tight``
(noise 0.7 around 1,000 centres, as in ``query_latency.py``) and ``diffuse`` (noise 1.5: neighbours barely
closer than strangers, which is hard for IVF). Queries are fresh rows of the same distribution (not indexed).
Synthetic data flatters IVF (its cells line up with the clusters): treat recall here as an upper bound. Also
timed: building the IVF index from scratch (training) vs refilling the centroids of a saved one
(``FaissStore.adopt_trained``, what an index commit does), and the recall of the refilled index.

    python benchmarks/ann_recall.py --n 100000 --queries 200
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


def clustered(n: int, dim: int, noise: float, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 20_000):
        m = min(20_000, n - s)
        block = centres[rng.integers(0, len(centres), m)] + noise * rng.standard_normal((m, dim)).astype(np.float32)
        out[s : s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def measure(store: object, queries: np.ndarray, truth: list[np.ndarray] | None) -> dict[str, float]:
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        nb = store.search(q[None, :], 10)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
        found.append(nb.ids[0])
    ms = 1000 * np.asarray(times)
    out = {"p50_ms": round(float(np.median(ms)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}
    if truth is not None:
        hits = [len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]
        out["recall_at_10"] = round(float(np.mean(hits)), 4)
    return out


def refill(trained: object, ids: list[str], x: np.ndarray, q: np.ndarray, truth: list[np.ndarray], nprobe: int
           ) -> dict[str, object]:  # fmt: skip
    """Save ``trained``, then time a new store adopting its centroids and adding the same vectors."""
    import tempfile

    from visrec.stores.faiss_store import FaissStore

    with tempfile.TemporaryDirectory() as tmp:
        trained.save(Path(tmp))  # type: ignore[attr-defined]
        store = FaissStore(x.shape[1], ivf_threshold=1, hnsw_max=0, nprobe=nprobe or None)
        t0 = time.perf_counter()
        store.adopt_trained(Path(tmp))
        store.add(ids, x, [{}] * len(ids))
        kind = store.index_kind
        seconds = time.perf_counter() - t0
    return {"refill_s": round(seconds, 1), "kind": kind, **measure(store, q, truth)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1472)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[0], help="0: the store's default")
    ap.add_argument("--no-refill", action="store_true", help="skip timing the refill of saved centroids")
    args = ap.parse_args()
    from visrec.stores.faiss_store import FaissStore

    results = {}
    for name, noise in (("tight", 0.7), ("diffuse", 1.5)):
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((1000, args.dim)).astype(np.float32)
        x = clustered(args.n, args.dim, noise, rng, centres)
        q = clustered(args.queries, args.dim, noise, rng, centres)
        ids = [str(i) for i in range(args.n)]
        metas = [{}] * args.n
        flat = FaissStore(args.dim, ivf_threshold=10**12)
        flat.add(ids, x, metas)
        exact = measure(flat, q, None)
        truth = [flat.search(v[None, :], 10).ids[0] for v in q]
        del flat
        row: dict[str, object] = {"exact": exact}
        ivf = FaissStore(args.dim, ivf_threshold=1, hnsw_max=0, nprobe=args.nprobe[0] or None)
        t0 = time.perf_counter()
        ivf.add(ids, x, metas)
        kind = ivf.index_kind  # trains the IVF index (once; each nprobe searches the same lists)
        build = time.perf_counter() - t0
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe or None
            r = measure(ivf, q, truth)
            r |= {"build_s": round(build, 1), "kind": kind, "nprobe": ivf._nprobe(), "nlist": int(ivf._index.nlist)}
            r["speedup_vs_exact"] = round(exact["p50_ms"] / max(r["p50_ms"], 1e-6), 1)
            row[f"ivf_nprobe_{nprobe or 'default'}"] = r
        if not args.no_refill:
            row["refilled"] = refill(ivf, ids, x, q, truth, args.nprobe[0])
        del ivf
        results[name] = row
        del x
    print(json.dumps({"n": args.n, "dim": args.dim, "queries": args.queries, **results}, indent=1))


if __name__ == "__main__":
    main()
