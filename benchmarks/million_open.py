"""Opening and searching a large segmented index in bounded memory: open time, peak RSS against the stored vector
bytes, and single-query latency.

The index folder is written once into ``--cache`` (reused by later runs) the way updates grow an index: one
segment of ``--segment`` synthetic clustered unit vectors (1472-d, the default encoder's width) per commit, each
segment a FAISS store (IVF above its threshold), old segments linked, not rewritten. Then a fresh subprocess opens
it with :class:`visrec.index.Index` and measures the open time, 200 single queries (top-10 hits with metadata)
and its peak resident memory (``VmHWM``: mapped pages it touched count too), with the resident memory after
opening and after the queries split into anonymous and file-backed (mapped, evictable) pages. Writing 1M vectors
takes about 12 GB of disk (vectors + IVF lists) and a few GB of memory per segment.

    python benchmarks/million_open.py --n 1000000 --segment 100000 --cache /tmp/visrec-million
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def write_index(path: Path, n: int, segment: int) -> None:
    """An index folder of ``n`` synthetic items in segments of ``segment`` rows, one commit per segment."""
    from query_latency import synthetic

    from visrec.encoders import create_encoder
    from visrec.index.folder import IndexFolder
    from visrec.stores.segmented import SegmentedStore

    enc: Any = create_encoder()
    info = {"describe": enc.describe(), "fingerprint": enc.fingerprint, "name": enc.name}
    folder = IndexFolder.create(path, encoder_info=info, dim=enc.dim, joint_dim=None, backend="faiss")
    for s0 in range(0, n, segment):
        gen = folder.generation_dir
        store = SegmentedStore("faiss", enc.dim) if gen is None else SegmentedStore.load(gen / "store", "faiss")
        m = min(segment, n - s0)
        ids = [f"synthetic/{i:08d}.jpg" for i in range(s0, s0 + m)]
        metas = [{"path": i, "labels": [f"class{k % 50}"]} for k, i in enumerate(ids)]
        store.add(ids, synthetic(m, enc.dim, seed=s0), metas)

        def write(tmp: Path, store: SegmentedStore = store) -> None:
            (tmp / "store").mkdir()
            store.save(tmp / "store")

        t0 = time.perf_counter()
        folder.commit(write, count=s0 + m)
        print(f"segment at {s0}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def _status_mb() -> dict[str, int]:
    """Resident memory now, split into anonymous and file-backed (mapped files) pages (Linux ``/proc``), MiB."""
    keys = {"VmRSS": "rss_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb", "VmHWM": "peak_rss_mb"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            out[keys[name]] = int(value.split()[0]) // 1024
    return out


def measure(path: Path, queries: int) -> dict[str, Any]:
    from query_latency import synthetic

    from visrec.index import Index

    t0 = time.perf_counter()
    index = Index(path)
    n = index.store.count()
    out: dict[str, Any] = {"open_s": round(time.perf_counter() - t0, 3), "n": n}
    out["after_open"] = _status_mb()
    q = synthetic(queries, index.store.dim, seed=7)
    index.search_vectors(q[:1], k=10)
    times = []
    for i in range(queries):
        t = time.perf_counter()
        index.search_vectors(q[i : i + 1], k=10)
        times.append(1e3 * (time.perf_counter() - t))
    out["search_p50_ms"] = round(float(np.percentile(times, 50)), 3)
    out["search_p95_ms"] = round(float(np.percentile(times, 95)), 3)
    out["after_queries"] = _status_mb()
    # VmHWM, not ru_maxrss: a child's ru_maxrss keeps the parent's size at fork (the parent may have written
    # the index)
    out["peak_rss_mb"] = out["after_queries"].pop("peak_rss_mb")
    out["vector_bytes_mb"] = round(n * index.store.dim * 4 / 2**20)
    out["peak_rss_over_vector_bytes"] = round(out["peak_rss_mb"] / out["vector_bytes_mb"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--segment", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cache", type=Path, required=True, help="folder for the index (written once, reused)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.queries)))
        return
    path = args.cache / f"synthetic-{args.n}-{args.segment}.vrx"
    if not (path / "manifest.json").is_file():
        t0 = time.perf_counter()
        write_index(path, args.n, args.segment)
        print(f"wrote {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cmd = [sys.executable, __file__, "--measure", str(path), "--queries", str(args.queries), "--cache", str(args.cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"measuring failed:\n{done.stderr[-3000:]}")
    print(json.dumps(json.loads(done.stdout.strip().splitlines()[-1]), indent=1))


if __name__ == "__main__":
    main()
