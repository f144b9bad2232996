"""Zero-shot classifier cost, joint-space cosine vs concept scoring, side by side in one run.

Usage::

    python benchmarks/zeroshot_latency.py --cache /tmp/visrec-bench [--repeats 3]

For the label sets of caltech101_dev (101 classes) and cifar10_subset (10): the one-off cost of building the
classifier (encoding its prompts with MiniLM; concept scoring also reads the WordNet table, encodes the WordNet
texts and computes the weights over the ImageNet classes; "cached" = the weights read back from the cache folder,
as every later build with the same classes does) and the cost of scoring 1000 images whose joint vectors
and ImageNet logits are already computed (``embed_cache.py``); image encoding itself is the same for both and is
not timed here. Best of ``--repeats``; ratios are concepts / joint.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from embed_cache import load  # noqa: E402

from visrec.classify import DEFAULT_TEMPLATES, ZeroShotClassifier, prompt_vectors  # noqa: E402
from visrec.encoders.bridge import LabelBridge  # noqa: E402
from visrec.encoders.text import MiniLMTextEncoder  # noqa: E402
from visrec.encoders.wordnet import WordNetNouns  # noqa: E402
from visrec.index.recognize import concept_weights  # noqa: E402


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of ``repeats`` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(bridge: LabelBridge, classes: list[str], logits: np.ndarray, repeats: int) -> list[float]:
    """Seconds: build joint, build concepts (computed), build concepts (cached), score joint, score concepts."""
    joint = bridge.project(logits)
    build_j = best_of(repeats, lambda: prompt_vectors(classes, bridge.encode_texts))
    start = time.perf_counter()
    nouns = WordNetNouns()
    prompts = [[t.format(x) for t in DEFAULT_TEMPLATES for x in nouns.describe(c)] for c in classes]
    read = time.perf_counter() - start
    flat, sizes = [p for per in prompts for p in per], [len(p) for p in prompts]
    fresh = best_of(repeats, lambda: bridge._concept_weights(flat, sizes, 0.06, 50)) + read
    concept_weights(bridge, classes)
    cached = best_of(repeats, lambda: concept_weights(bridge, classes))
    clf = ZeroShotClassifier(
        classes, prompt_vectors(classes, bridge.encode_texts), concepts=cached_weights(bridge, classes)
    )
    plain = clf.joint_only()
    score_j = best_of(repeats, lambda: plain.predict(joint))
    score_c = best_of(repeats, lambda: clf.predict(joint, logits))
    return [build_j, build_j + fresh, build_j + cached, score_j, score_c]


def cached_weights(bridge: LabelBridge, classes: list[str]) -> np.ndarray:
    """The classifier's concept weights (read from the cache folder after :func:`measure`'s first build)."""
    return concept_weights(bridge, classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bridge = LabelBridge(MiniLMTextEncoder(), temperature=2.0, top_k=5, class_text="gloss")
    bridge.class_vectors()
    print(f"{'set':8s} {'classes':>7s} | {'build joint':>11s} {'+ concepts':>10s} {'ratio':>6s} {'cached':>7s} | "
          f"{'score 1000 joint':>16s} {'score 1000 concepts':>19s} {'ratio':>6s}")  # fmt: skip
    for name, folder in (("caltech", "caltech101_dev"), ("cifar", "cifar10_subset")):
        rows = (args.data / folder / "manifest.csv").read_text().splitlines()[1:]
        classes = sorted({r.split(",")[1] for r in rows})
        logits = load(args.cache, "efficientnet-lite0", name)[1][:1000]
        bj, bc, cached, sj, sc = measure(bridge, classes, logits, args.repeats)
        print(f"{name:8s} {len(classes):7d} | {bj:10.2f}s {bc:9.2f}s {bc / bj:6.2f} {cached:6.2f}s | "
              f"{sj * 1e3:14.1f}ms {sc * 1e3:17.1f}ms {sc / sj:6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
