"""FAISS vs Milvus Lite through the visrec store API, on the same vectors, side by side in one run.

Usage::

    python benchmarks/stores_faiss_vs_milvus.py [--n 100000] [--dim 512] [--queries 1000] [--configs ...]

Data: ``--n`` L2-normalised vectors drawn around 1000 Gaussian centres (noise 0.6) and ``--queries`` queries
drawn the same way (seeded). Ground truth: the ``exact`` store. For each configuration:

- ``build``: ``create_store`` + ``add`` in batches of 10k (plus the first search, which builds a lazy index);
- ``p50 1q``: median latency of 100 single-query searches (k=10);
- ``batch``: wall time of one search call with every query (k=10);
- ``recall@10``: mean overlap with the exact top-10;
- ``filtered``: recall@10 with ``label == "c3"`` (a filter keeping ~1/7 of the rows).

Ratios are printed against ``faiss`` (the default FAISS store). Synthetic clusters flatter IVF; re-measure
on real embeddings before fixing defaults. Milvus Lite is an in-process stand-in for a Milvus server: its
numbers say nothing about a Standalone or Distributed deployment.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "faiss": ("faiss", {}),
    "faiss-ivf": ("faiss", {"ivf_threshold": 10_000, "hnsw_max": 0}),
    "milvus-flat": ("milvus", {"index": "flat"}),
    "milvus-ivf": ("milvus", {"index": "ivf", "nlist": 316, "nprobe": 16}),
    "milvus-hnsw": ("milvus", {"index": "hnsw", "m": 16, "ef": 128}),
}
FILTER = 'label == "c3"'


def make_data(n: int, dim: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, dim)`` and ``(nq, dim)`` float32 unit vectors around 1000 shared centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        v = centres[rng.integers(0, 1000, m)] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def measure(name: str, options: dict[str, Any], vecs: np.ndarray, q: np.ndarray, truth: dict[str, Any]) -> dict:
    from visrec.stores import create_store

    ids = [f"v{i}" for i in range(len(vecs))]
    metas = [{"labels": [f"c{i % 7}"]} for i in range(len(vecs))]
    with tempfile.TemporaryDirectory() as tmp:
        if name == "milvus":
            options = {**options, "uri": f"milvus-lite://{tmp}/bench.db"}
        t0 = time.perf_counter()
        store = create_store(name, vecs.shape[1], **options)
        for s in range(0, len(vecs), 10_000):
            store.add(ids[s : s + 10_000], vecs[s : s + 10_000], metas[s : s + 10_000])
        store.search(q[:1], 10)
        build = time.perf_counter() - t0
        lat = []
        for row in q[:100]:
            t = time.perf_counter()
            store.search(row[None], 10)
            lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = store.search(q, 10)
        batch = time.perf_counter() - t
        filtered = store.search(q[:200], 10, where=FILTER)
    return {"build": build, "p50": float(np.median(lat)), "batch": batch,
            "recall": recall(got.ids, truth["all"]), "filtered": recall(filtered.ids, truth["filtered"])}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    from visrec.stores import create_store

    vecs, q = make_data(args.n, args.dim, args.queries)
    exact = create_store("exact", args.dim)
    exact.add([f"v{i}" for i in range(args.n)], vecs, [{"labels": [f"c{i % 7}"]} for i in range(args.n)])
    truth = {"all": exact.search(q, 10).ids, "filtered": exact.search(q[:200], 10, where=FILTER).ids}
    print(f"n={args.n} dim={args.dim} queries={args.queries} k=10")
    print(f"{'config':<13} {'build s':>8} {'p50 1q ms':>10} {'batch s':>8} {'recall@10':>10} {'filtered':>9}")
    res = {}
    for cfg in args.configs:
        backend, options = CONFIGS[cfg]
        r = res[cfg] = measure(backend, options, vecs, q, truth)
        print(f"{cfg:<13} {r['build']:>8.2f} {r['p50'] * 1e3:>10.2f} {r['batch']:>8.2f} {r['recall']:>10.3f} "
              f"{r['filtered']:>9.3f}", flush=True)  # fmt: skip
    base = res.get("faiss")
    if base:
        for cfg, r in res.items():
            if cfg != "faiss":
                print(f"RATIO {cfg}/faiss: build {r['build'] / base['build']:.1f}x, p50 {r['p50'] / base['p50']:.1f}x, "
                      f"batch {r['batch'] / base['batch']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
