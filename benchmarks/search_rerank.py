"""Image search: plain cosine against the centred, query-expanded re-ranking (``visrec.index.rerank``), side by side.

Usage::

    python benchmarks/embed_cache.py --cache /tmp/visrec-bench --encoders efficientnet-lite0 --sets naruto,cifar,caltech
    python benchmarks/search_rerank.py --cache /tmp/visrec-bench [--data ../shared/data]

Per set (naruto_roboflow ``grouped_split``, cifar10_subset and caltech101_dev ``split``), mAP@R and top-1 of a
ranking as deep as the largest R, first on the TRAIN split (each train image queried against the other train
images, its near-duplicate group left out: where the settings are chosen) for a grid of candidate depths
(multiples of the ranking depth) and expansion counts, then on the TEST split (test images against the train
gallery) for plain cosine and the library's defaults (``DEPTH``, ``EXPAND``). The mean is the train split's, as the
library takes the index's. No test label is used to choose anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from encoder_choice import DevSets  # noqa: E402

from visrec.eval.metrics import RetrievalMetrics  # noqa: E402
from visrec.index.rerank import DEPTH, EXPAND, expanded_scores  # noqa: E402

ENCODER = "efficientnet-lite0"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ranking(
    q: np.ndarray, g: np.ndarray, mean: np.ndarray, depth: int, mult: int, expand: int, mask: np.ndarray | None
) -> np.ndarray:
    """``(q, depth)`` gallery positions per query; ``mult=0``: plain cosine, else re-ranked as the library does
    over the raw top ``mult * depth`` (``mask`` ``(q, n)``: pairs never ranked)."""
    sims = q @ g.T
    if mask is not None:
        sims[mask] = -np.inf
    raw = np.argsort(-sims, axis=1, kind="stable")
    if mult == 0:
        return raw[:, :depth]
    gc, qc = unit(g - mean), unit(q - mean)
    out = np.zeros((len(q), depth), np.int64)
    for i in range(len(q)):
        cand = raw[i, : min(mult * depth, g.shape[0])]
        if mask is not None:
            cand = cand[~mask[i, cand]]
        order = np.argsort(-expanded_scores(qc[i], gc[cand], expand), kind="stable")[:depth]
        out[i, : len(order)] = cand[order]
    return out


def figures(pos: np.ndarray, gl: np.ndarray, ql: np.ndarray, n_rel: np.ndarray) -> tuple[float, float]:
    m = RetrievalMetrics((1, 5, 10))
    m.update(gl[pos] == ql[:, None], n_rel)
    out = m.compute()
    return float(out["map_at_r"]), float(out["top1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/visrec-bench"))
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    args = parser.parse_args()
    dev = DevSets(args.cache, args.data, [ENCODER])
    sets = [s for s in ("naruto", "caltech", "cifar") if s in dev.meta]
    grid = [(0, 0)] + [(mult, e) for mult in (1, 2, 4) for e in (0, 1, 3, 5)]
    train: dict[tuple[int, int], list[float]] = {c: [] for c in grid}
    test: dict[tuple[int, int], list[tuple[float, float]]] = {(0, 0): [], (DEPTH, EXPAND): []}
    for name in sets:
        x, meta = dev.feats[(ENCODER, name)], dev.meta[name]
        tr, te = meta["split"] == "train", meta["split"] == "test"
        g, gl, groups = x[tr], meta["label"][tr], meta["group"][tr]
        mean = g.mean(axis=0)
        mask = groups[:, None] == groups[None, :]
        n_rel = ((gl[:, None] == gl[None, :]) & ~mask).sum(axis=1)
        depth = int(max(10, n_rel.max()))
        for mult, e in grid:
            train[(mult, e)].append(figures(ranking(g, g, mean, depth, mult, e, mask), gl, gl, n_rel)[0])
        q, ql = x[te], meta["label"][te]
        n_rel = (ql[:, None] == gl[None, :]).sum(axis=1)
        depth = int(max(10, n_rel.max()))
        for mult, e in test:
            test[(mult, e)].append(figures(ranking(q, g, mean, depth, mult, e, None), gl, ql, n_rel))
    print(f"train split, each image against the others (group left out): mAP@R per set ({', '.join(sets)})")
    for (mult, e), v in train.items():
        what = "plain cosine" if mult == 0 else f"candidates {mult} x depth, expand {e}"
        print(f"  {what:<42} " + "  ".join(f"{a:.3f}" for a in v) + f"   mean {np.mean(v):.3f}")
    print(f"test split against the train gallery: mAP@R / top-1 per set ({', '.join(sets)})")
    base = test[(0, 0)]
    for (mult, e), v in test.items():
        what = "plain cosine" if mult == 0 else f"library default ({mult} x depth, expand {e})"
        cells = "  ".join(f"{m:.3f} / {t:.3f}" for m, t in v)
        gains = (f"{m / b[0]:.2f}" for (m, _), b in zip(v, base, strict=True))
        ratio = "" if mult == 0 else "   mAP@R x" + " x".join(gains)
        print(f"  {what:<42} {cells}{ratio}")


if __name__ == "__main__":
    main()
