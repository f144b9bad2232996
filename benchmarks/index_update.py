"""Cost of a small update: add one image to an index of N synthetic images (``fake`` encoder, so encoder time
is near zero and the figure is the index's own cost).

Builds the index once (timed too), adds one image, then re-runs with nothing changed, and prints the stage
seconds of each run (``scan``, ``embed``, ``store``, ``commit``) as JSON.

    python benchmarks/index_update.py --n 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]


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


def _run(root: Path, out: Path) -> dict[str, object]:
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.index.writer import build_index

    t0 = time.perf_counter()
    rep = build_index(load_dataset(root), out, create_encoder("fake"))
    total = time.perf_counter() - t0
    return {"total_s": round(total, 3), "stages": rep.seconds, "added": rep.added, "count": rep.count}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="visrec-upd-") as tmp:
        root, out = Path(tmp) / "data", Path(tmp) / "idx.vrx"
        t0 = time.perf_counter()
        _make_images(root, args.n)
        made = time.perf_counter() - t0
        build = _run(root, out)
        Image.fromarray(np.full((16, 16, 3), 99, np.uint8)).save(root / "class00" / "added.png")
        add_one = _run(root, out)
        nothing = _run(root, out)
        print(json.dumps({"n": args.n, "make_images_s": round(made, 1), "build": build, "add_one": add_one,
                          "nothing_changed": nothing}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
