"""Query latency p50 / p95 at 10k and 100k (and, with ``--million``, 1M) indexed vectors, plus peak memory.

Usage::

    python benchmarks/query_latency.py [--sizes 10000 100000] [--million] [--queries 200] [--images DIR]

For each size a real index folder is written (FAISS store, the default encoder's manifest) holding synthetic
clustered unit vectors of the encoder's dimensions (1472-d image space, 384-d joint space), then opened with
:class:`visrec.index.Index` (memory-mapped) in a fresh subprocess, which measures, after one warm-up call each:

- ``search``: one query vector -> top-10 hits with metadata (``Index.search_vectors``: the store's top 40,
  re-ranked in the centred space with query expansion); ``search, plain cosine``: the same with ``rerank=False``;
  ``first search``: the first call, which also estimates the index's mean (once per generation);
- ``search, batched``: 256 query vectors in one call, time per query;
- ``search, FAISS on 1 thread``: as ``search`` with ``faiss.omp_set_num_threads(1)`` (the store does this itself
  for batches of up to 4 queries);
- ``text``: ``Index.search_text(route="joint")``: MiniLM text encoding + joint-space search + hits;
- ``image``: ``Index.search_images([path])``: decode + encode one real JPEG + search + hits.

Also printed: the time to open the index and the subprocess's peak resident memory (vectors are mapped, so
pages touched by a search count). At >= 200k vectors the FAISS store uses IVF (built at open time).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

TEXTS = ("a dog", "a sports car", "a red flower", "a ship at sea", "a cat on a sofa", "an airplane in the sky")


def synthetic(n: int, dim: int, seed: int, clusters: int = 1000) -> np.ndarray:
    """``(n, dim)`` float32 unit rows around ``clusters`` random centres (like real embeddings, not uniform)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        block = centres[rng.integers(0, clusters, m)] + 0.7 * rng.standard_normal((m, dim)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def write_index(path: Path, n: int) -> None:
    """An index folder of ``n`` synthetic items, as ``build_index`` would write it (without calibration)."""
    from visrec.encoders import create_encoder
    from visrec.index.folder import IndexFolder
    from visrec.stores import create_store

    enc: Any = create_encoder()
    info = {"describe": enc.describe(), "fingerprint": enc.fingerprint, "name": enc.name}
    folder = IndexFolder.create(path, encoder_info=info, dim=enc.dim, joint_dim=enc.joint_dim, backend="faiss")
    ids = [f"synthetic/{i:07d}.jpg" for i in range(n)]
    metas = [{"path": i, "labels": [f"class{k % 50}"]} for k, i in enumerate(ids)]
    store, joint = create_store("faiss", enc.dim), create_store("faiss", enc.joint_dim)
    store.add(ids, synthetic(n, enc.dim, 0), metas)
    joint.add(ids, synthetic(n, enc.joint_dim, 1), [{"path": m["path"]} for m in metas])

    def write(tmp: Path) -> None:
        for name, s in (("store", store), ("joint", joint)):
            (tmp / name).mkdir()
            s.save(tmp / name)

    with folder.writer():
        folder.commit(write, count=n)


def percentiles(fn: Callable[[int], Any], n: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds of ``fn(i)`` for ``i`` in ``range(n)`` (after one warm-up call)."""
    fn(0)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def measure(path: Path, images: list[Path], queries: int) -> dict[str, Any]:
    import faiss

    from visrec.index import Index

    t0 = time.perf_counter()
    index = Index(path)
    index.metadata()
    out: dict[str, Any] = {"open_s": time.perf_counter() - t0, "n": index.store.count()}
    q = synthetic(max(queries, 256), index.store.dim, 7)
    t0 = time.perf_counter()
    index.search_vectors(q[:1], k=10)  # the first re-ranked search also estimates the index's mean
    out["first search (mean estimated), ms"] = 1e3 * (time.perf_counter() - t0)
    out["search"] = percentiles(lambda i: index.search_vectors(q[i : i + 1], k=10), queries)
    out["search, plain cosine (no re-ranking)"] = percentiles(
        lambda i: index.search_vectors(q[i : i + 1], k=10, rerank=False), queries
    )
    p50, p95 = percentiles(lambda i: index.search_vectors(q[:256], k=10), max(3, queries // 20))
    out["search, batched 256 (per query)"] = (p50 / 256, p95 / 256)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query is too little work to share: OpenMP's barrier costs more
    out["search, FAISS on 1 thread"] = percentiles(lambda i: index.search_vectors(q[i : i + 1], k=10), queries)
    faiss.omp_set_num_threads(threads)
    out["text"] = percentiles(lambda i: index.search_text(TEXTS[i % len(TEXTS)], k=10, route="joint"), queries)
    if images:
        out["image"] = percentiles(lambda i: index.search_images([images[i % len(images)]], k=10), queries)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_size(n: int, images: list[Path], queries: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"synthetic-{n}.vrx"
        t0 = time.perf_counter()
        write_index(path, n)
        built = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--measure", str(path), "--queries", str(queries)]
        cmd += [str(p) for p in images]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"measuring {n} vectors failed:\n{done.stderr[-3000:]}")
        res = dict(json.loads(done.stdout.strip().splitlines()[-1]))
        res["write_s"] = built
        return res


def report(results: list[dict[str, Any]]) -> None:
    kinds = [k for k in results[0] if isinstance(results[0][k], list)]
    print(f"{'vectors':>9} {'query':<34} {'p50 ms':>8} {'p95 ms':>8}")
    for r in results:
        for kind in kinds:
            p50, p95 = r[kind]
            print(f"{r['n']:>9} {kind:<34} {p50:>8.2f} {p95:>8.2f}")
        print(f"{r['n']:>9} {'open index (s) / peak RSS (MiB)':<34} {r['open_s']:>8.2f} {r['peak_rss_mb']:>8.0f}")
        first = r["first search (mean estimated), ms"]
        print(f"{r['n']:>9} {'first search, mean estimated (ms)':<34} {first:>8.2f}")
        plain, reranked = r["search, plain cosine (no re-ranking)"][0], r["search"][0]
        print(f"{r['n']:>9} {'re-ranked / plain search p50':<34} {reranked / plain:>8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--million", action="store_true", help="add 1,000,000 vectors (~8 GB on disk and in RAM)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "naruto_roboflow" / "images")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.files, args.queries)))
        return
    images = sorted(args.images.rglob("*.jpg"))[:50] if args.images.exists() else []
    sizes = args.sizes + ([1_000_000] if args.million else [])
    results = [run_size(n, images, args.queries) for n in sizes]
    report(results)


if __name__ == "__main__":
    main()
