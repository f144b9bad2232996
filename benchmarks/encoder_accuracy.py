"""Retrieval accuracy of encoder variants, side by side, plus the label bridge's zero-shot numbers.

Usage::

    python benchmarks/encoder_accuracy.py [--data ../shared/data] [--quick] [--speed]

Table 1 -- for each encoder variant, on naruto_roboflow's leak-free split (index ``grouped_split == train``,
query ``test``: 85 images) and on cifar10_subset (train 2000 / test 1000): kNN top-1 with k=1, top-1 with a
similarity-weighted vote of the 5 nearest, and mean average precision of the full ranking.
Table 2 -- the bridge (default encoder's logits): zero-shot top-1 on cifar10_subset test with the prompts
"a photo of a {class}", and text->image precision@10, for a grid of temperature / top-k / class prompt.
``--speed``: images per second of ONNX Runtime vs eager torch for the default graph (same batch, same
threads). Exports (first run only) go to the visrec cache folder.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from visrec.encoders import create_encoder  # noqa: E402
from visrec.encoders.bridge import DEFAULT_PROMPT, LabelBridge  # noqa: E402

BASE = {"crop": "none", "pooling": "avg", "stages": ("head",), "bridge": False}
DEFAULT: dict[str, Any] = {"bridge": False}
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("baseline: avg(head), squash", "efficientnet-lite0", BASE),
    ("+ GeM p=3", "efficientnet-lite0", {**BASE, "pooling": "gem"}),
    ("+ centre crop", "efficientnet-lite0", {**BASE, "crop": "center"}),
    ("GeM + crop", "efficientnet-lite0", {**BASE, "pooling": "gem", "crop": "center"}),
    ("GeM + crop + stage6 (DEFAULT)", "efficientnet-lite0", DEFAULT),
    ("  same, avg pooling", "efficientnet-lite0", {**DEFAULT, "pooling": "avg"}),
    ("  same, GeM p=4", "efficientnet-lite0", {**DEFAULT, "gem_p": 4.0}),
    ("  same, + stage7", "efficientnet-lite0", {**DEFAULT, "stages": ("head", "stage7", "stage6")}),
    ("  same, + flip TTA", "efficientnet-lite0", {**DEFAULT, "flip": True}),
    ("  same, bicubic", "efficientnet-lite0", {**DEFAULT, "resample": "bicubic"}),
    ("  same, 256 px", "efficientnet-lite0", {**DEFAULT, "input_size": 256}),
    ("  same, 288 px", "efficientnet-lite0", {**DEFAULT, "input_size": 288}),
    ("mobilenet-v2 baseline", "mobilenet-v2", BASE),
    ("mobilenet-v2 GeM+crop (DEFAULT)", "mobilenet-v2", DEFAULT),
    ("  same, + stage6", "mobilenet-v2", {**DEFAULT, "stages": ("head", "stage6")}),
]
QUICK = {0, 4, 12, 13}
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_split(root: Path, name: str, column: str) -> dict[str, tuple[list[Path], np.ndarray]]:
    """``{"train": (paths, labels), "test": (paths, labels)}`` from a data set's manifest.csv."""
    rows = list(csv.DictReader((root / name / "manifest.csv").open()))
    out = {}
    for split in ("train", "test"):
        chosen = [r for r in rows if r[column] == split]
        out[split] = ([root / name / r["path"] for r in chosen], np.array([r["label"] for r in chosen]))
    return out


def knn_metrics(query: np.ndarray, qlab: np.ndarray, index: np.ndarray, ilab: np.ndarray) -> tuple[float, ...]:
    """(top-1 k=1, top-1 weighted k=5, mAP) for unit-vector queries against an index, in percent."""
    sims = query @ index.T
    order = np.argsort(-sims, axis=1, kind="stable")
    top1 = float((ilab[order[:, 0]] == qlab).mean())
    classes = np.unique(ilab)
    votes = np.zeros((len(query), len(classes)))
    for j in range(5):
        cls = np.searchsorted(classes, ilab[order[:, j]])
        votes[np.arange(len(query)), cls] += sims[np.arange(len(query)), order[:, j]]
    top5 = float((classes[votes.argmax(axis=1)] == qlab).mean())
    rel = ilab[order] == qlab[:, None]
    precision = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    ap = (precision * rel).sum(axis=1) / np.maximum(rel.sum(axis=1), 1)
    return 100 * top1, 100 * top5, 100 * float(ap.mean())


def evaluate(encoder: Any, data: dict[str, tuple[list[Path], np.ndarray]]) -> tuple[float, ...]:
    index = encoder.encode_images(data["train"][0]).vectors
    query = encoder.encode_images(data["test"][0]).vectors
    return knn_metrics(query, data["test"][1], index, data["train"][1])


def accuracy_table(root: Path, quick: bool) -> None:
    naruto = load_split(root, "naruto_roboflow", "grouped_split")
    cifar = load_split(root, "cifar10_subset", "split")
    print(f"{'variant':32s} {'dim':>5s} | naruto grouped: k=1   k=5w   mAP | cifar10_subset: k=1   k=5w   mAP | s")
    for i, (label, name, options) in enumerate(VARIANTS):
        if quick and i not in QUICK:
            continue
        start = time.perf_counter()
        encoder = create_encoder(name, **options)
        n = evaluate(encoder, naruto)
        c = evaluate(encoder, cifar)
        secs = time.perf_counter() - start
        print(
            f"{label:32s} {encoder.dim:5d} |       {n[0]:13.1f} {n[1]:6.1f} {n[2]:5.1f} |"
            f"       {c[0]:13.1f} {c[1]:6.1f} {c[2]:5.1f} | {secs:.0f}",
            flush=True,
        )


def bridge_table(root: Path) -> None:
    cifar = load_split(root, "cifar10_subset", "split")
    paths, labels = cifar["test"]
    encoder = create_encoder("efficientnet-lite0")
    logits = encoder.encode_logits(paths)  # type: ignore[attr-defined]
    truth = np.array([CIFAR_CLASSES.index(lab) for lab in labels])
    text = encoder.bridge.text  # type: ignore[attr-defined]
    queries = text.encode([f"a photo of a {c}" for c in CIFAR_CLASSES])
    print(f"\n{'bridge (cifar10_subset test, 1000 images)':54s} zero-shot top-1   text->image P@10")
    for prompt in (DEFAULT_PROMPT, "{}"):
        for temperature in (1.0, 2.0, 3.0, 4.0):
            for top_k in (0, 10, 5):
                bridge = LabelBridge(text, temperature=temperature, top_k=top_k, prompt=prompt)
                joint = bridge.project(logits)
                scores = joint @ queries.T
                zero_shot = 100 * float((scores.argmax(axis=1) == truth).mean())
                best = np.argsort(-scores, axis=0)[:10]  # (10, classes)
                p10 = 100 * float((truth[best] == np.arange(10)[None, :]).mean())
                label = f"prompt={prompt!r} T={temperature} top_k={top_k or 'all'}"
                if (prompt, temperature, top_k) == (DEFAULT_PROMPT, 3.0, 5):
                    label += " (DEFAULT)"
                print(f"{label:54s} {zero_shot:14.1f} {p10:18.1f}", flush=True)


def speed(root: Path) -> None:
    import onnxruntime
    import torch

    encoder = create_encoder("efficientnet-lite0", bridge=False)
    paths = load_split(root, "naruto_roboflow", "grouped_split")["train"][0][:64]
    batch = encoder.prep.fill(paths, np.empty((64, 3, 224, 224), np.float32))  # type: ignore[attr-defined]
    session = encoder.session()  # type: ignore[attr-defined]
    model = encoder.build_torch()  # type: ignore[attr-defined]
    torch.set_num_threads(os.cpu_count() or 1)
    timings = {}
    for name, run in (
        ("onnxruntime", lambda b: session.run(None, {"image": b})),
        ("torch eager", lambda b: model(torch.from_numpy(b))),
    ):
        with torch.no_grad():
            run(batch[:32])  # warm-up
            start = time.perf_counter()
            for s in (0, 32):
                run(batch[s : s + 32])
            timings[name] = 64 / (time.perf_counter() - start)
    start = time.perf_counter()
    encoder.encode_images(paths)
    end_to_end = 64 / (time.perf_counter() - start)
    versions = f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}"
    print(f"\nspeed, batch 32, {os.cpu_count()} threads, {versions}")
    for name, ips in timings.items():
        print(f"  {name:12s} {ips:7.1f} images/s (model only)")
    print(f"  ratio        {timings['onnxruntime'] / timings['torch eager']:7.2f}x")
    print(f"  end to end   {end_to_end:7.1f} images/s (decode + resize + normalise + ONNX, naruto JPEGs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="only the baseline, default and MobileNetV2 rows")
    parser.add_argument("--speed", action="store_true", help="also time ONNX Runtime vs eager torch")
    parser.add_argument("--no-bridge", action="store_true", help="skip the bridge table")
    args = parser.parse_args()
    accuracy_table(args.data, args.quick)
    if not args.no_bridge:
        bridge_table(args.data)
    if args.speed:
        speed(args.data)


if __name__ == "__main__":
    main()
