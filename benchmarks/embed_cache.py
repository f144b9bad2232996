"""Embed the dev data sets once per encoder and keep features + ImageNet logits as ``.npy`` for the benchmarks.

Usage::

    python benchmarks/embed_cache.py --cache /tmp/visrec-bench [--encoders efficientnet-lite0,mobilenet-v2]
        [--sets naruto,cifar,caltech,caltech_sketch,caltech_cartoon] [--data ../shared/data]

For each (encoder, set) it writes ``<cache>/<encoder>/<set>.features.npy`` ``(n, dim)`` float32 unit rows (the
encoder's default retrieval features), ``<set>.logits.npy`` ``(n, 1000)`` float32 and ``<set>.paths.txt``;
a set already there is skipped. ``caltech_sketch`` / ``caltech_cartoon`` are caltech101_dev's *test* photos
rendered with :func:`visrec.train.styles.sketch` / :func:`~visrec.train.styles.cartoon` (PNG files under
``<cache>/render/``, made once). Used by ``encoder_accuracy.py --cache``, ``cross_domain.py`` and
``bridge_eval.py``, so several tables share one embedding pass (the CPU is the bottleneck here).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from visrec.encoders import create_encoder  # noqa: E402

SETS = {"naruto": "naruto_roboflow", "cifar": "cifar10_subset", "caltech": "caltech101_dev"}
RENDERED = ("caltech_sketch", "caltech_cartoon")


def manifest(root: Path, name: str) -> list[dict[str, str]]:
    """Rows of ``<root>/<data set>/manifest.csv`` with ``path`` made absolute."""
    folder = root / SETS[name]
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    for r in rows:
        r["path"] = str(folder / r["path"])
    return rows


def rendered_paths(root: Path, cache: Path, style: str) -> list[str]:
    """caltech101_dev test photos rendered in ``style`` (``sketch`` | ``cartoon``), written once as PNG."""
    from PIL import Image

    from visrec.train import styles

    draw = {"sketch": styles.sketch, "cartoon": styles.cartoon}[style]
    out = []
    for r in manifest(root, "caltech"):
        if r["split"] != "test":
            continue
        src = Path(r["path"])
        dst = cache / "render" / style / src.parent.name / (src.stem + ".png")
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(src) as im:
                draw(im.convert("RGB")).save(dst)
        out.append(str(dst))
    return out


def set_paths(root: Path, cache: Path, name: str) -> list[str]:
    if name in RENDERED:
        return rendered_paths(root, cache, name.split("_", 1)[1])
    return [r["path"] for r in manifest(root, name)]


def embed(encoder_name: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, dim), logits (n, 1000))`` float32 with the encoder's default options."""
    encoder = create_encoder(encoder_name, bridge=False)
    feats = np.empty((len(paths), encoder.dim), np.float32)
    logits = np.empty((len(paths), 1000), np.float32)
    for start, (f, lg) in encoder._outputs(paths, 32):  # type: ignore[attr-defined]
        feats[start : start + len(f)] = f
        logits[start : start + len(f)] = lg
    return feats, logits


def load(cache: Path, encoder: str, name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The cached ``(features, logits, paths)`` of one set; raises FileNotFoundError when not embedded yet."""
    base = cache / encoder / name
    paths = Path(f"{base}.paths.txt").read_text().splitlines()
    return np.load(f"{base}.features.npy"), np.load(f"{base}.logits.npy"), paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--encoders", default="efficientnet-lite0,mobilenet-v2,efficientnet-lite1,efficientnet-lite2")
    parser.add_argument("--sets", default="naruto,cifar,caltech,caltech_sketch,caltech_cartoon")
    args = parser.parse_args()
    for enc in args.encoders.split(","):
        for name in args.sets.split(","):
            base = args.cache / enc / name
            if Path(f"{base}.paths.txt").exists():
                continue
            paths = set_paths(args.data, args.cache, name)
            start = time.perf_counter()
            feats, logits = embed(enc, paths)
            base.parent.mkdir(parents=True, exist_ok=True)
            np.save(f"{base}.features.npy", feats)
            np.save(f"{base}.logits.npy", logits)
            Path(f"{base}.paths.txt").write_text("\n".join(paths) + "\n")
            secs = time.perf_counter() - start
            print(f"{enc:20s} {name:16s} {len(paths):5d} images {secs:6.1f} s", flush=True)


if __name__ == "__main__":
    main()
