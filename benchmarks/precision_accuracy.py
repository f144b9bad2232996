"""Does bfloat16 inference answer like float32? kNN accuracy and vector agreement, side by side.

Usage::

    python benchmarks/precision_accuracy.py [--data ../shared/data] [--encoder efficientnet-lite0] [--limit N]

For naruto_roboflow (index ``grouped_split == train``, query ``test``), cifar10_subset and caltech101_dev (``split``)
the encoder embeds every image on OpenVINO at each precision (the indexing path: one single-threaded inference
per core). Each test image is classified by kNN (1-NN and a similarity-weighted vote of the 5 nearest) against the
train images of the *same* precision. Printed per set: top-1 of each precision, the share of test images with the
same answer, the cosine between the two precisions' vectors of one image (min / mean), and images/s of each
(decode included; precisions alternate per set, so load on the machine hits both alike).

The gate for bfloat16 as the default (``visrec.encoders.runtime.BF16_GATE``): top-1 at most 0.5 points below
float32 for k=1 and k=5 on every set (the largest change either way is printed too). The cosine decides the
identity: at or above
``visrec.encoders.runtime.INTERCHANGEABLE_COSINE`` for every image, both precisions keep one encoder fingerprint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quantize_agreement import knn_top1, read_split  # noqa: E402

from visrec.encoders import create_encoder  # noqa: E402
from visrec.encoders.runtime import BF16_GATE, INTERCHANGEABLE_COSINE  # noqa: E402

SETS = {"naruto_roboflow": "grouped_split", "cifar10_subset": "split", "caltech101_dev": "split"}
PRECISIONS = ("f32", "bf16")


def embed(name: str, precision: str, paths: list[Path]) -> tuple[np.ndarray, float]:
    """``(n, d)`` unit vectors at ``precision`` on OpenVINO and images/s (sessions opened before timing)."""
    os.environ["VISREC_RUNTIME"], os.environ["VISREC_PRECISION"] = "openvino", precision
    enc: Any = create_encoder(name, bridge=False)
    enc.warm_up()
    if enc.precision != precision or enc.batch_session().precision != precision:
        sys.exit(f"asked for {precision}, the session runs {enc.batch_session().precision}: this CPU lacks it")
    t0 = time.perf_counter()
    vecs = enc.encode_images(paths).vectors
    return vecs, len(paths) / (time.perf_counter() - t0)


def compare(root: Path, split_col: str, name: str, limit: int) -> dict[str, float]:
    """Accuracy of each precision, answer agreement and vector cosines on one data set."""
    paths, labels, is_test = read_split(root, split_col)
    if limit:
        keep = np.random.default_rng(0).permutation(len(paths))[:limit]
        paths, labels, is_test = [paths[i] for i in keep], labels[keep], is_test[keep]
    vecs, out = {}, {"n_test": float(is_test.sum())}
    for p in PRECISIONS:
        vecs[p], out[f"{p}_img_s"] = embed(name, p, paths)
    cos = (vecs["f32"] * vecs["bf16"]).sum(1)
    out |= {"cos_min": float(cos.min()), "cos_mean": float(cos.mean())}
    for k in (1, 5):
        preds = {p: knn_top1(v[~is_test], labels[~is_test], v[is_test], k) for p, v in vecs.items()}
        for p in PRECISIONS:
            out[f"k{k}_{p}"] = float((preds[p] == labels[is_test]).mean())
        out[f"k{k}_agree"] = float((preds["f32"] == preds["bf16"]).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--limit", type=int, default=0, help="a seeded random subset of N images per set")
    args = ap.parse_args()
    sets = {s: c for s, c in SETS.items() if (args.data / s).exists()}
    if not sets:
        sys.exit(f"no dev data under {args.data}; pass --data")
    results = {s: compare(args.data / s, c, args.encoder, args.limit) for s, c in sets.items()}
    print(f"{'set':<16} {'test':>5} {'k':>2} {'f32':>7} {'bf16':>7} {'diff':>6} {'agree':>6} {'cos min':>8} "
          f"{'cos mean':>9} {'f32/s':>6} {'bf16/s':>7}")  # fmt: skip
    worst, largest, cos_min = 0.0, 0.0, 1.0
    for s, r in results.items():
        cos_min = min(cos_min, r["cos_min"])
        for k in (1, 5):
            diff = r[f"k{k}_bf16"] - r[f"k{k}_f32"]
            worst, largest = min(worst, diff), max(largest, abs(diff))
            print(f"{s:<16} {int(r['n_test']):>5} {k:>2} {100 * r[f'k{k}_f32']:>7.2f} {100 * r[f'k{k}_bf16']:>7.2f} "
                  f"{100 * diff:>+6.2f} {100 * r[f'k{k}_agree']:>6.1f} {r['cos_min']:>8.4f} {r['cos_mean']:>9.5f} "
                  f"{r['f32_img_s']:>6.1f} {r['bf16_img_s']:>7.1f}")  # fmt: skip
    verdict = "PASS" if -worst <= BF16_GATE + 1e-9 else "FAIL"
    print(f"largest top-1 loss bf16 vs f32: {-100 * worst:.2f} points -> {verdict} (gate: at most "
          f"{100 * BF16_GATE:.1f}); largest change either way {100 * largest:.2f} points")  # fmt: skip
    same = "same encoder identity" if cos_min >= INTERCHANGEABLE_COSINE else "NOT interchangeable"
    print(f"lowest cosine of one image's vectors: {cos_min:.4f} -> {same} (needs >= {INTERCHANGEABLE_COSINE})")


if __name__ == "__main__":
    main()
