"""Exact vs IVF-Flat vs HNSW in the FAISS store, side by side at one size: build time, single-query p50 / p95,
recall@10 against exact, and the ratios to exact.

Two kinds of vectors (1472-d, the default encoder's width):

- ``proxy``: real embeddings scaled up. The images of ``--data`` are embedded with the default encoder (cached
  as indexes in ``--cache``, as in ``ann_recall_real.py``); ``--queries`` of them are held out as queries, the
  rest are indexed together with generated neighbours up to ``--n``: each is ``(1 - t) * a + t * b + 0.3 * s * g``
  normalised, with ``a`` a random indexed real vector, ``b`` one of its 10 nearest real neighbours, ``t`` uniform
  in [0, 0.5], ``s`` the per-dimension standard deviation of the real vectors and ``g`` standard normal. The
  queries' neighbourhoods are then about as close as in the real set (printed: median cosine to the 1st and
  10th neighbour, queries in the proxy vs real vectors among themselves), and denser.
- ``tight`` / ``diffuse``: synthetic clustered vectors (``ann_recall.py``), which flatter IVF.

Each index is one store searched through ``FaissStore.search`` (one query per call, top 10): exact
(``IndexFlatIP``), IVF-Flat (the store's default ``nlist`` and ``nprobe``) and HNSW (M 32, efConstruction 40)
at each ``--ef``.

    python benchmarks/ann_compare.py --data ../shared/data/caltech101_dev ../shared/data/cifar10_subset \\
        --cache /tmp/visrec-real --n 100000 --queries 200 --ef 32 64 128
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
sys.path.insert(0, str(REPO / "benchmarks"))


def proxy(real: np.ndarray, n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(indexed (n, d), queries (q, d), difficulty)``: held-out real queries, real + generated neighbours."""
    import faiss

    rng = np.random.default_rng(seed)
    held = np.zeros(len(real), bool)
    held[rng.choice(len(real), n_queries, replace=False)] = True
    q, base = real[held], real[~held]
    flat = faiss.IndexFlatIP(real.shape[1])
    flat.add(base)
    near_real, nn = flat.search(base, 11)
    m = n - len(base)
    a = rng.integers(0, len(base), m)
    b = nn[a, rng.integers(1, 11, m)]
    t = rng.uniform(0, 0.5, (m, 1)).astype(np.float32)
    sd = base.std(0)
    out = np.empty((n, real.shape[1]), np.float32)
    out[: len(base)] = base
    for s in range(0, m, 20_000):
        e = min(m, s + 20_000)
        g = rng.standard_normal((e - s, real.shape[1])).astype(np.float32)
        block = (1 - t[s:e]) * base[a[s:e]] + t[s:e] * base[b[s:e]] + 0.3 * sd * g
        out[len(base) + s : len(base) + e] = block / np.linalg.norm(block, axis=1, keepdims=True)
    big = faiss.IndexFlatIP(real.shape[1])
    big.add(out)
    near_q, _ = big.search(q, 10)
    difficulty = {
        "real_among_real_cos_nn1_nn10": [round(float(np.median(near_real[:, c])), 3) for c in (1, 10)],
        "queries_in_proxy_cos_nn1_nn10": [round(float(np.median(near_q[:, c])), 3) for c in (0, 9)],
    }
    return out, q, difficulty


def measure(store: Any, queries: np.ndarray, truth: list[set[str]] | None) -> tuple[dict[str, float], list[set[str]]]:
    times, found = [], []
    for v in queries:
        t0 = time.perf_counter()
        got = store.search(v[None, :], 10).ids[0]
        times.append(1e3 * (time.perf_counter() - t0))
        found.append(set(got))
    out = {"p50_ms": round(float(np.median(times)), 3), "p95_ms": round(float(np.percentile(times, 95)), 3)}
    if truth is not None:
        out["recall_at_10"] = round(float(np.mean([len(f & t) / 10 for f, t in zip(found, truth, strict=True)])), 4)
    return out, found


def _saved_index_bytes(store: Any) -> float:
    """Size in MB of the store's FAISS index as saved (the graph and its copy of the vectors, or their codes)."""
    import faiss

    return round(len(faiss.serialize_index(store._index)) / 1e6, 1)


def compare(x: np.ndarray, q: np.ndarray, efs: list[int], quantize: tuple[str, ...] = ()) -> dict[str, Any]:
    """Exact, IVF (store defaults) and HNSW at each ``ef``, one after the other (one index in memory at a time);
    with ``quantize`` also HNSW with those codes (``fp16``, ``sq8``: candidates re-scored exactly), with the
    size of the saved FAISS index."""
    from visrec.stores.faiss_store import FaissStore

    ids, metas = [str(i) for i in range(len(x))], [{}] * len(x)
    rows: dict[str, Any] = {}
    truth: list[set[str]] = []
    variants: list[tuple[str, dict[str, Any]]] = [
        ("exact", {"ivf_threshold": 10**12}),
        ("ivf", {"ivf_threshold": 1, "hnsw_max": 0}),
        ("hnsw", {"ivf_threshold": 1}),
    ]
    variants += [(f"hnsw-{qz}", {"ivf_threshold": 1, "quantize": qz}) for qz in quantize]
    for name, options in variants:
        store = FaissStore(x.shape[1], **options)
        t0 = time.perf_counter()
        store.add(ids, x, metas)
        kind = store.index_kind  # builds the index
        build = round(time.perf_counter() - t0, 1)
        size = _saved_index_bytes(store) if name.startswith("hnsw") else None
        for ef in efs if name.startswith("hnsw") else [0]:
            store.ef_search = ef or None
            r, found = measure(store, q, truth or None)
            truth = truth or found
            label = f"{name}_ef{ef}" if name.startswith("hnsw") else name
            rows[label] = {"kind": kind, "build_s": build, **r, **({"index_mb": size} if size else {})}
            if name == "ivf":
                rows[label] |= {"nlist": int(store._index.nlist), "nprobe": store._nprobe()}
        del store
    base = rows["exact"]["p50_ms"]
    for r in rows.values():
        r.setdefault("recall_at_10", 1.0)
        r["speedup_vs_exact"] = round(base / max(r["p50_ms"], 1e-6), 1)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--quantize", nargs="*", default=[], choices=["fp16", "sq8"], help="also HNSW with these codes")
    ap.add_argument("--no-synthetic", action="store_true")
    args = ap.parse_args()
    from ann_recall import clustered
    from ann_recall_real import embeddings

    real = embeddings(args.data, args.cache)
    x, q, difficulty = proxy(real, args.n, args.queries)
    results: dict[str, Any] = {"n": args.n, "dim": int(x.shape[1]), "queries": args.queries}
    results["proxy"] = {"real_images": len(real), **difficulty, **compare(x, q, args.ef, tuple(args.quantize))}
    print(json.dumps(results["proxy"]), file=sys.stderr, flush=True)
    del x
    for name, noise in () if args.no_synthetic else (("tight", 0.7), ("diffuse", 1.5)):
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((1000, real.shape[1])).astype(np.float32)
        x = clustered(args.n, real.shape[1], noise, rng, centres)
        results[name] = compare(x, clustered(args.queries, real.shape[1], noise, rng, centres), args.ef)
        print(json.dumps(results[name]), file=sys.stderr, flush=True)
        del x
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
