"""Zero-shot top-1 through the label bridge: class texts x temperature x top-k, chosen on TRAIN splits.

Usage::

    python benchmarks/embed_cache.py --cache /tmp/visrec-bench --sets cifar,caltech      # once
    python benchmarks/bridge_eval.py --cache /tmp/visrec-bench [--encoders efficientnet-lite0]

Zero-shot is what ``visrec classify --mode zeroshot`` does: each image's ImageNet logits go through the bridge
(:class:`visrec.encoders.bridge.LabelBridge`), each data set label through the classifier's prompt ensemble
(:func:`visrec.classify.zeroshot.prompt_vectors`), and the closest label wins. The grid runs on the *train*
splits of caltech101_dev (1515 images, 101 classes) and cifar10_subset (2000 images, 10 classes); the setting with
the best mean train top-1 is then reported once on the test splits, beside today's default (class_text=name,
T=3, top-k 5). With several encoders, their bridge vectors are also averaged (what an ensemble's joint vector is).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from embed_cache import SETS, load  # noqa: E402

from visrec.classify.zeroshot import prompt_vectors  # noqa: E402
from visrec.encoders.bridge import CLASS_TEXTS, LabelBridge  # noqa: E402
from visrec.encoders.text import MiniLMTextEncoder  # noqa: E402

TEMPERATURES = (1.0, 2.0, 3.0, 5.0)
TOP_K = (1, 3, 5, 10, 0)
TODAY = ("name", 3.0, 5)


def labels_and_splits(root: Path, name: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Label and split of each cached path, from the data set's manifest."""
    folder = root / SETS[name]
    rows = {str(folder / r["path"]): r for r in csv.DictReader((folder / "manifest.csv").open())}
    return np.array([rows[p]["label"] for p in paths]), np.array([rows[p]["split"] for p in paths])


def zero_shot(joint: np.ndarray, labels: np.ndarray, text_vectors: np.ndarray, classes: list[str]) -> float:
    """Top-1 (percent) of the closest class text vector."""
    pred = np.asarray(classes)[(joint @ text_vectors.T).argmax(axis=1)]
    return 100 * float((pred == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--encoders", default="efficientnet-lite0")
    args = parser.parse_args()
    text = MiniLMTextEncoder()
    encoders = args.encoders.split(",")
    data = {}
    for name in ("caltech", "cifar"):
        logits = [load(args.cache, e, name)[1] for e in encoders]
        labels, splits = labels_and_splits(args.data, name, load(args.cache, encoders[0], name)[2])
        classes = sorted(set(labels))
        data[name] = (logits, labels, splits, classes, prompt_vectors(classes, text.encode))
    bridges = {ct: LabelBridge(text, class_text=ct) for ct in CLASS_TEXTS}

    def score(ct: str, t: float, k: int, split: str) -> dict[str, float]:
        b = bridges[ct]
        b.temperature, b.top_k = t, k
        out = {}
        for name, (logits, labels, splits, classes, tv) in data.items():
            joint = sum(b.project(lg) for lg in logits)
            joint = joint / np.linalg.norm(joint, axis=1, keepdims=True)
            keep = splits == split
            out[name] = zero_shot(joint[keep], labels[keep], tv, classes)
        return out

    print(f"encoders: {'+'.join(encoders)}; zero-shot top-1 on the TRAIN splits")
    print(f"{'class_text':16s} {'T':>4s} {'top_k':>5s} | caltech  cifar   mean")
    results = {}
    for ct, t, k in itertools.product(CLASS_TEXTS, TEMPERATURES, TOP_K):
        r = score(ct, t, k, "train")
        results[(ct, t, k)] = r
        mean = (r["caltech"] + r["cifar"]) / 2
        print(f"{ct:16s} {t:4.1f} {k or 'all':>5} | {r['caltech']:6.1f} {r['cifar']:6.1f} {mean:6.1f}", flush=True)
    best = max(results, key=lambda key: results[key]["caltech"] + results[key]["cifar"])
    print(f"\nchosen on train: class_text={best[0]} T={best[1]} top_k={best[2] or 'all'}")
    print(f"{'TEST split':40s} caltech  cifar")
    for what, key in (("today: class_text=name T=3 top_k=5", TODAY), ("chosen on train", best)):
        r = score(*key, "test")
        print(f"{what:40s} {r['caltech']:6.1f} {r['cifar']:6.1f}")


if __name__ == "__main__":
    main()
