"""Encoding speed of an encoder ensemble against its single members, side by side in one run.

Usage::

    python benchmarks/ensemble_speed.py [--data ../shared/data/naruto_roboflow/images] [--n 96]
        [--encoders efficientnet-lite0,mobilenet-v2,efficientnet-lite0+mobilenet-v2]

Each encoder is built and warmed up (export, sessions, bridge vectors) first; then ``encode_images`` over the same
``n`` JPEG paths runs twice per encoder, interleaved, and the better pass counts. Prints images per second and the
ratio to the first encoder. End to end from files (decode + resize + model + bridge), as indexing does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from visrec.encoders import create_encoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "naruto_roboflow" / "images")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--encoders", default="efficientnet-lite0,mobilenet-v2,efficientnet-lite0+mobilenet-v2")
    args = parser.parse_args()
    paths = sorted(args.data.glob("*/*.jpg"))[: args.n]
    encoders = {name: create_encoder(name) for name in args.encoders.split(",")}
    for enc in encoders.values():
        enc.encode_images(paths[:8])  # warm-up: export, sessions, bridge vectors
    best = {name: 0.0 for name in encoders}
    for _ in range(2):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode_images(paths)
            best[name] = max(best[name], len(paths) / (time.perf_counter() - t0))
    first = next(iter(best.values()))
    print(f"{len(paths)} images, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for name, ips in best.items():
        print(f"  {name:40s} {ips:7.1f} images/s  {ips / first:5.2f}x")


if __name__ == "__main__":
    main()
