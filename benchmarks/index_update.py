"""Cost of a small update: add one image to an index of N synthetic images (``fake`` encoder, so encoder time
is near zero and the figure is the index's own cost).

Builds the index once (timed too), adds one image ``--adds`` times (one commit each), then re-runs with nothing
changed, and prints the stage seconds of each run (``scan``, ``embed``, ``store``, ``commit``) as JSON, with the
median add-one time. With ``--baseline-src DIR`` (another checkout's ``src``) the same runs are made with that
code on the same images, side by side, and the ratio of the median add-one times is printed. Each run is a fresh
process, so the figures include starting Python and importing visrec. ``--no-calibrate`` builds without the
open-set calibration (its leave-one-group-out fit is quadratic in the index: minutes at 200k), so large sizes
can be measured; an update carries a recent calibration over in any case.

With ``--data DIR --index DIR`` an existing image folder and index are updated instead (built first when the
index does not exist), and with ``--baseline-src`` both versions add images to that same index, alternately
(this, baseline, this, ...): side by side on one index without building it twice (at 200k a build takes minutes).

    python benchmarks/index_update.py --n 20000 [--baseline-src ../other/src] [--adds 3] [--no-calibrate]
    python benchmarks/index_update.py --data /tmp/d200k --index /tmp/i200k.vrx --baseline-src ../other/src
    python benchmarks/index_update.py --n 20000 --cli --baseline-src ../other/src   # the whole command
    python benchmarks/index_update.py --cli --data /tmp/d200k --index /tmp/i200k.vrx \
        --baseline-src ../other/src --baseline-index /tmp/i200k-base.vrx --no-calibrate

With ``--cli`` each run is the ``visrec index`` command itself, timed from start to exit (Python's start,
listing the folder, the helper process that stats its files, the index work), as a user waits for it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _make_images(root: Path, n: int, classes: int = 20) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (classes, 3))
    for i in range(n):
        c = i % classes
        px = np.clip(base[c] + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(root / f"class{c:02d}" / f"img{i:07d}.png")


_RUN = """
import json, sys, time
from pathlib import Path
from visrec.data import load_dataset
from visrec.encoders import create_encoder
from visrec.index.writer import build_index
from visrec.index.pipeline import IndexConfig
t0 = time.perf_counter()
ds = load_dataset(Path(sys.argv[1]))
t1 = time.perf_counter()
rep = build_index(ds, Path(sys.argv[2]), create_encoder("fake"), IndexConfig(calibrate=sys.argv[3] == "1"))
print(json.dumps({"total_s": round(time.perf_counter() - t1, 3), "load_dataset_s": round(t1 - t0, 3),
                  "stages": rep.seconds, "added": rep.added, "count": rep.count,
                  "segments": getattr(rep, "segments", None)}))
"""


CLI = False
"""``--cli``: time the whole ``visrec index`` command (Python's start, listing the folder, the index work)."""


def _run(src: Path, root: Path, out: Path, calibrate: bool) -> dict[str, Any]:
    """One ``build_index`` over ``root`` into ``out`` with the code in ``src``, in a fresh process; with
    :data:`CLI`, one ``visrec index`` command (``total_s``: its wall time from start to exit)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    if CLI:
        argv = [sys.executable, "-m", "visrec.cli", "index", str(root), "--out", str(out), "--encoder", "fake"]
        argv += ["--json"] + ([] if calibrate else ["--no-calibrate"])
    else:
        argv = [sys.executable, "-c", _RUN, str(root), str(out), "1" if calibrate else "0"]
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"indexing failed with {src}: {res.stderr[-2000:]}")
    if not CLI:
        return dict(json.loads(res.stdout.strip().splitlines()[-1]))
    rep = json.loads(res.stdout)
    keys = ("added", "count")
    return {"total_s": round(wall, 3), "stages": rep.get("seconds"), **{k: rep.get(k) for k in keys}}


def _series(src: Path, root: Path, out: Path, adds: int, calibrate: bool) -> dict[str, Any]:
    from PIL import Image

    build = _run(src, root, out, calibrate)
    added = [root / "class00" / f"added{i}.png" for i in range(adds)]
    runs = []
    for i, path in enumerate(added):
        Image.fromarray(np.full((16, 16, 3), 99 + i, np.uint8)).save(path)
        runs.append(_run(src, root, out, calibrate))
    nothing = _run(src, root, out, calibrate)
    for path in added:
        path.unlink()
    median = float(np.median([r["total_s"] for r in runs]))
    return {"build": build, "add_one": runs, "add_one_median_s": median, "nothing_changed": nothing}


def _alternate(srcs: dict[str, Path], root: Path, outs: dict[str, Path], adds: int, calibrate: bool) -> dict[str, Any]:
    """Add one image ``adds`` times with each version in ``srcs``, alternately, to its index in ``outs`` (the
    same one, or one per version when their index formats differ)."""
    from PIL import Image

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in srcs}
    added = []
    for i in range(adds):
        for j, (name, src) in enumerate(srcs.items()):
            path = root / "class00" / f"added{i}_{j}.png"
            Image.fromarray(np.full((16, 16, 3), (40 + 7 * i + 3 * j) % 256, np.uint8)).save(path)
            added.append(path)
            runs[name].append(_run(src, root, outs[name], calibrate))
    for name, src in srcs.items():
        runs[name + "_nothing_changed"] = [_run(src, root, outs[name], calibrate)]
    for path in added:
        path.unlink()
    for name, src in srcs.items():
        if name == "this" or outs[name] != outs["this"]:
            _run(src, root, outs[name], calibrate)  # the index holds the folder again
    result: dict[str, Any] = {"runs": runs}
    for name in srcs:
        result[f"{name}_add_one_median_s"] = float(np.median([r["total_s"] for r in runs[name]]))
    return result


def _existing(args: argparse.Namespace, cal: bool) -> dict[str, Any]:
    root, out = args.data.resolve(), args.index.resolve()
    result: dict[str, Any] = {"data": str(root), "index": str(out), "calibrate": cal}
    if not root.is_dir():
        t0 = time.perf_counter()
        _make_images(root, args.n)
        result["make_images_s"] = round(time.perf_counter() - t0, 1)
    if not (out / "manifest.json").exists():
        result["build"] = _run(ROOT / "src", root, out, cal)
    srcs, outs = {"this": ROOT / "src"}, {"this": out}
    if args.baseline_src is not None:
        srcs["baseline"] = args.baseline_src.resolve()
        outs["baseline"] = out if args.baseline_index is None else args.baseline_index.resolve()
        if not (outs["baseline"] / "manifest.json").exists():
            result["baseline_build"] = _run(srcs["baseline"], root, outs["baseline"], cal)
    result |= _alternate(srcs, root, outs, args.adds, cal)
    if args.baseline_src is not None:
        result["add_one_baseline_over_this"] = round(
            result["baseline_add_one_median_s"] / result["this_add_one_median_s"], 2
        )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--baseline-src", type=Path, help="another checkout's src folder to compare with")
    ap.add_argument("--adds", type=int, default=3, help="add-one commits to time (the median is reported)")
    ap.add_argument("--no-calibrate", action="store_true", help="build without the open-set calibration")
    ap.add_argument("--tmp", type=Path, help="folder for the images and indexes (default: a temporary one)")
    ap.add_argument("--data", type=Path, help="an image folder to reuse (made with --n images when missing)")
    ap.add_argument("--index", type=Path, help="with --data: the index to update (built when missing)")
    ap.add_argument("--cli", action="store_true", help="time the whole `visrec index` command, start to exit")
    ap.add_argument("--baseline-index", type=Path, help="with --index: the baseline's own index (built when missing)")
    args = ap.parse_args()
    global CLI
    CLI = args.cli
    cal = not args.no_calibrate
    if (args.data is None) != (args.index is None):
        raise SystemExit("--data and --index go together")
    if args.data is not None:
        print(json.dumps(_existing(args, cal), indent=1))
        return

    with tempfile.TemporaryDirectory(prefix="visrec-upd-", dir=args.tmp) as tmp:
        root = Path(tmp) / "data"
        t0 = time.perf_counter()
        _make_images(root, args.n)
        result: dict[str, Any] = {"n": args.n, "calibrate": cal, "make_images_s": round(time.perf_counter() - t0, 1)}
        result["this"] = mine = _series(ROOT / "src", root, Path(tmp) / "this.vrx", args.adds, cal)
        if args.baseline_src is not None:
            base = _series(args.baseline_src.resolve(), root, Path(tmp) / "base.vrx", args.adds, cal)
            result["baseline"] = base
            result["add_one_baseline_over_this"] = round(base["add_one_median_s"] / mine["add_one_median_s"], 2)
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
