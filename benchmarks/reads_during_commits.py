"""Reads while a writer commits: how many answers fail or come back degraded.

A writer process adds one image per commit (``visrec index`` over a growing folder, ``fake`` encoder) ``--commits``
times. Meanwhile (1) a loop of ``visrec classify --json`` processes and (2) an in-process :class:`visrec.index.Index`
in a thread classify a fixed query and search by text. A read *fails* when the CLI exits non-zero or a call raises;
it is *degraded* when the answer has no calibrated confidence (no unknown decision) or the text search finds
nothing. Also reported: how many distinct generations the in-process reader saw (it should follow the writer)
and the generation folders left on disk at the end (old ones go once nobody reads them).

    python benchmarks/reads_during_commits.py --commits 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.fixtures_images import class_colour, make_labeled_tree, noise_image  # noqa: E402

CLASSES = ("amber", "blue", "crimson", "green")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "visrec.cli", *args], capture_output=True, text=True, env=env)


def _writer(root: Path, out: Path, commits: int, log: list[float]) -> None:
    from PIL import Image

    for i in range(commits):
        Image.fromarray(noise_image(48, seed=5000 + i, base=class_colour(1, 4))).save(root / "blue" / f"w{i}.png")
        res = _cli("index", str(root), "--out", str(out), "--json")
        if res.returncode != 0:
            raise SystemExit(f"writer failed: {res.stderr}")
        log.append(time.monotonic())


def _cli_reads(out: Path, query: Path, stop: threading.Event, tally: dict[str, int]) -> None:
    while not stop.is_set():
        res = _cli("classify", str(out), str(query), "--json")
        tally["reads"] += 1
        if res.returncode != 0:
            tally["failed"] += 1
            print("CLI failure:", res.returncode, res.stderr.strip()[-300:])
            continue
        item = json.loads(res.stdout)["items"][0]
        if item.get("calibrated") is None:
            tally["degraded"] += 1


def _lib_reads(out: Path, query: Path, stop: threading.Event, tally: dict[str, int], gens: set[int]) -> None:
    from visrec.index import Index

    idx = Index(out)
    emb = idx.encode([query])
    while not stop.is_set():
        tally["reads"] += 1
        try:
            pred = idx.classify(emb)[0]
            hits = idx.search_text("crimson", k=3).hits
            gens.add(idx.snapshot().generation)
            if math.isnan(pred.calibrated) or not hits:
                tally["degraded"] += 1
        except Exception as e:  # every exception is a failed read here
            tally["failed"] += 1
            print("library failure:", repr(e))
        time.sleep(0.01)
    idx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--per-class", type=int, default=50)
    args = ap.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="visrec-rdc-") as tmp:
        root, out = Path(tmp) / "data", Path(tmp) / "idx.vrx"
        make_labeled_tree(root, CLASSES, per_class=args.per_class, size=48)
        query = Path(tmp) / "q.png"
        Image.fromarray(noise_image(48, seed=4242, base=class_colour(2, 4))).save(query)
        res = _cli("index", str(root), "--out", str(out), "--encoder", "fake", "--json")
        assert res.returncode == 0, res.stderr
        stop = threading.Event()
        cli = {"reads": 0, "failed": 0, "degraded": 0}
        lib = {"reads": 0, "failed": 0, "degraded": 0}
        gens: set[int] = set()
        readers = [
            threading.Thread(target=_cli_reads, args=(out, query, stop, cli)),
            threading.Thread(target=_lib_reads, args=(out, query, stop, lib, gens)),
        ]
        for t in readers:
            t.start()
        t0, log = time.monotonic(), []
        try:
            _writer(root, out, args.commits, log)
        finally:
            stop.set()
            for t in readers:
                t.join()
        left = sorted(p.name for p in out.iterdir() if p.name.startswith("gen-"))
        print(json.dumps({
            "commits": args.commits, "seconds": round(time.monotonic() - t0, 1),
            "cli": cli, "library": lib, "generations_seen_by_library": len(gens),
            "generation_folders_left": left,
            "failed_or_degraded": cli["failed"] + cli["degraded"] + lib["failed"] + lib["degraded"],
            "reads": cli["reads"] + lib["reads"],
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
