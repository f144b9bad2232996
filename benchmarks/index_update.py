"""Cost of a small update: add one image to an index of N synthetic images (``fake`` encoder, so encoder time
is near zero and the figure is the index's own cost).

Builds the index once (timed too), adds one image, then re-runs with nothing changed, and prints the stage
seconds of each run (``scan``, ``embed``, ``store``, ``commit``) as JSON. With ``--baseline-src DIR`` (another
checkout's ``src``) the same runs are made with that code on the same images, side by side, and the ratio of the
add-one times is printed. Each run is a fresh process.

    python benchmarks/index_update.py --n 20000 [--baseline-src ../other/src]
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
t0 = time.perf_counter()
rep = build_index(load_dataset(Path(sys.argv[1])), Path(sys.argv[2]), create_encoder("fake"))
print(json.dumps({"total_s": round(time.perf_counter() - t0, 3), "stages": rep.seconds, "added": rep.added,
                  "count": rep.count}))
"""


def _run(src: Path, root: Path, out: Path) -> dict[str, object]:
    """One ``build_index`` over ``root`` into ``out`` with the code in ``src``, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    res = subprocess.run([sys.executable, "-c", _RUN, str(root), str(out)], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"build_index failed with {src}: {res.stderr[-2000:]}")
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def _series(src: Path, root: Path, out: Path) -> dict[str, object]:
    from PIL import Image

    build = _run(src, root, out)
    added = root / "class00" / "added.png"
    Image.fromarray(np.full((16, 16, 3), 99, np.uint8)).save(added)
    add_one = _run(src, root, out)
    nothing = _run(src, root, out)
    added.unlink()
    return {"build": build, "add_one": add_one, "nothing_changed": nothing}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--baseline-src", type=Path, help="another checkout's src folder to compare with")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="visrec-upd-") as tmp:
        root = Path(tmp) / "data"
        t0 = time.perf_counter()
        _make_images(root, args.n)
        result: dict[str, object] = {"n": args.n, "make_images_s": round(time.perf_counter() - t0, 1)}
        result["this"] = mine = _series(ROOT / "src", root, Path(tmp) / "this.vrx")
        if args.baseline_src is not None:
            result["baseline"] = base = _series(args.baseline_src.resolve(), root, Path(tmp) / "base.vrx")
            ratio = base["add_one"]["total_s"] / mine["add_one"]["total_s"]  # type: ignore[index]
            result["add_one_baseline_over_this"] = round(ratio, 2)
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
