"""Does the int8 encoder answer like the fp32 one? Top-1 agreement on the dev data, side by side.

Usage::

    python benchmarks/quantize_agreement.py [--data ../shared/data] [--encoder efficientnet-lite0]

For naruto_roboflow (index ``grouped_split == train``, query ``test``: 85 images) and cifar10_subset (train 2000,
test 1000) both encoders embed every image; each test image is classified by kNN (1-NN and a similarity-weighted
vote of the 5 nearest) against the train images embedded by the *same* encoder. Printed: accuracy of each, the
fraction of test images whose top-1 label is the same for int8 and fp32 (the gate for shipping int8:
>= 99 % on both sets pooled), the cosine between the two encoders' vectors of one image, and images/s.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from visrec.encoders import create_encoder  # noqa: E402

SETS = {"naruto_roboflow": "grouped_split", "cifar10_subset": "split"}
GATE = 0.99
BATCH = 16


def read_split(root: Path, split_col: str) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Image paths, labels and a boolean ``is_test`` mask from a dataset's ``manifest.csv``."""
    with (root / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [root / r["path"] for r in rows]
    labels = np.array([r["label"] for r in rows])
    is_test = np.array([r[split_col] == "test" for r in rows])
    return paths, labels, is_test


def knn_top1(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """Labels voted by the ``k`` nearest train rows (cosine; votes weighted by similarity)."""
    sims = test @ train.T
    nearest = np.argsort(-sims, axis=1)[:, :k]
    classes, codes = np.unique(train_labels, return_inverse=True)
    votes = np.zeros((len(test), len(classes)))
    for j in range(k):
        np.add.at(votes, (np.arange(len(test)), codes[nearest[:, j]]), sims[np.arange(len(test)), nearest[:, j]])
    return np.asarray(classes[votes.argmax(1)])


def embed(name: str, precision: str, paths: list[Path]) -> tuple[np.ndarray, float]:
    """``(n, d)`` unit vectors of the ``precision`` graph and its images/s (sessions created before timing)."""
    from visrec.encoders.onnx_export import create_session
    from visrec.encoders.quantize import quantized_model

    enc: Any = create_encoder(name, bridge=False)
    path = enc.session() and enc.onnx_path
    if precision == "int8":
        path = quantized_model(path, enc.prep, enc.graph_id)
    session = create_session(path)
    buf = np.empty((BATCH, 3, enc.input_size, enc.input_size), np.float32)
    out = []
    t0 = time.perf_counter()
    for start in range(0, len(paths), BATCH):
        out.append(session.run(["features"], {"image": enc.prep.fill(paths[start : start + BATCH], buf)})[0])
    speed = len(paths) / (time.perf_counter() - t0)
    vecs = np.concatenate(out)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), speed


def compare(root: Path, split_col: str, name: str) -> dict[str, float]:
    paths, labels, is_test = read_split(root, split_col)
    fp32, fp32_speed = embed(name, "fp32", paths)
    int8, int8_speed = embed(name, "int8", paths)
    out = {"n_test": float(is_test.sum()), "fp32_img_s": fp32_speed, "int8_img_s": int8_speed}
    out["cos_min"] = float((fp32 * int8).sum(1).min())
    out["cos_mean"] = float((fp32 * int8).sum(1).mean())
    for k in (1, 5):
        preds = [knn_top1(v[~is_test], labels[~is_test], v[is_test], k) for v in (fp32, int8)]
        out[f"k{k}_acc_fp32"] = float((preds[0] == labels[is_test]).mean())
        out[f"k{k}_acc_int8"] = float((preds[1] == labels[is_test]).mean())
        out[f"k{k}_agree"] = float((preds[0] == preds[1]).mean())
        out[f"k{k}_n_agree"] = float((preds[0] == preds[1]).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--encoder", default="efficientnet-lite0")
    args = ap.parse_args()
    results = {s: compare(args.data / s, col, args.encoder) for s, col in SETS.items() if (args.data / s).exists()}
    if not results:
        sys.exit(f"no dev data under {args.data}; pass --data")
    cols = ("acc fp32", "acc int8", "agree", "cos min", "fp32/s", "int8/s")
    print(f"{'set':<16} {'n':>5} {'k':>2} " + " ".join(f"{c:>9}" for c in cols))
    for s, r in results.items():
        for k in (1, 5):
            print(
                f"{s:<16} {int(r['n_test']):>5} {k:>2} {r[f'k{k}_acc_fp32']:>9.3f} {r[f'k{k}_acc_int8']:>9.3f} "
                f"{r[f'k{k}_agree']:>9.3f} {r['cos_min']:>9.4f} {r['fp32_img_s']:>9.1f} {r['int8_img_s']:>9.1f}"
            )
    n = sum(r["n_test"] for r in results.values())
    for k in (1, 5):
        pooled = sum(r[f"k{k}_n_agree"] for r in results.values()) / n
        verdict = "PASS" if pooled >= GATE else "FAIL"
        print(f"pooled top-1 agreement int8 vs fp32 (k={k}, {int(n)} queries): {pooled:.4f} -> {verdict} (gate {GATE})")


if __name__ == "__main__":
    main()
