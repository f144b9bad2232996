"""Which encoder (or ensemble) to use: every member and fusion on every dev set, weights chosen on train splits.

Usage::

    python benchmarks/embed_cache.py --cache /tmp/visrec-bench           # once: embeds every set per encoder
    python benchmarks/encoder_choice.py --cache /tmp/visrec-bench [--encoders a,b,c]

Reads the cached features of ``embed_cache.py`` and fuses them exactly as
:class:`visrec.encoders.ensemble.EnsembleEncoder` does (a weighted mean of the members' cosine similarities), so
no image is embedded twice. For each single encoder and each ensemble of two or three of them:

* ``naruto``: naruto_roboflow ``grouped_split`` (train gallery, 85 test queries): kNN raw top-1 and mAP@R;
* ``cifar``: cifar10_subset ``split`` (2000 / 1000): kNN raw top-1;
* ``caltech``: caltech101_dev ``split`` (15 per class / 1399): kNN raw top-1 (15-shot);
* ``x-domain``: the caltech101_dev test photos rendered as edge sketches and as posterised cartoons, queried
  against the photo train gallery: the 1000-point score (600 top-1 + 300 top-5 + 100 top-10), mean of the two.

kNN is the library's default vote (k=10, softmax weights at T=0.05, score = vote share x best cosine), raw =
before the unknown decision. An ensemble's weights come from a grid searched on the TRAIN splits only
(leave-one-out inside each train split, naruto excluding the query's near-duplicate group): the grid point with
the best mean of the three train top-1s. The test columns are then measured once. A set not yet embedded with
every listed encoder prints as nan (and is left out of the train score).
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
from raw_protocol import knn_predict  # noqa: E402

from visrec.eval.metrics import RetrievalMetrics  # noqa: E402

WEIGHT_GRID = (0.5, 1.0, 2.0)
SPLIT_COLUMN = {"naruto": "grouped_split", "cifar": "split", "caltech": "split"}


def knn_top1(sims: np.ndarray, gallery_labels: np.ndarray, query_labels: np.ndarray, k: int = 10) -> float:
    """Raw top-1 of the library's default kNN vote over ``(q, g)`` cosine similarities."""
    return 100 * float((knn_predict(sims, gallery_labels, k) == query_labels).mean())


def retrieval(sims: np.ndarray, gallery_labels: np.ndarray, query_labels: np.ndarray) -> dict[str, float]:
    """top-k, 1000-point score and mAP@R (``visrec.eval.metrics.RetrievalMetrics``) of a full ranking."""
    order = np.argsort(-sims, axis=1, kind="stable")
    rel = gallery_labels[order] == query_labels[:, None]
    m = RetrievalMetrics((1, 5, 10))
    m.update(rel, rel.sum(axis=1))
    return m.compute()


class DevSets:
    """Per data set, per encoder: gallery / query features, labels and groups (from the cached embeddings)."""

    def __init__(self, cache: Path, root: Path, encoders: list[str]) -> None:
        self.feats: dict[tuple[str, str], np.ndarray] = {}
        self.meta: dict[str, dict[str, np.ndarray]] = {}
        for name in ("naruto", "cifar", "caltech", "caltech_sketch", "caltech_cartoon"):
            try:
                for e in encoders:
                    self.feats[(e, name)] = load(cache, e, name)[0]
            except FileNotFoundError:
                continue  # not embedded (yet) with every encoder: its columns print as nan
            paths = load(cache, encoders[0], name)[2]
            base = "caltech" if name.startswith("caltech") else name
            folder = root / SETS[base]
            rows = {(folder / r["path"]).stem + r["label"]: r for r in csv.DictReader((folder / "manifest.csv").open())}
            chosen = [rows[Path(p).stem + Path(p).parent.name] for p in paths]
            self.meta[name] = {
                "label": np.array([r["label"] for r in chosen]),
                "split": np.array([r[SPLIT_COLUMN[base]] for r in chosen]),
                "group": np.array([r.get("dup_group", str(i)) for i, r in enumerate(chosen)]),
            }

    def sims(self, encoders: tuple[str, ...], weights: tuple[float, ...], query: str, gallery: str) -> np.ndarray:
        """Weighted mean of the members' cosine similarities: ``query`` test rows x ``gallery`` train rows (or
        train x train when ``query == "train:" + gallery``)."""
        loo = query.startswith("train:")
        qname = gallery if loo else query
        qsel = self.meta[qname]["split"] == ("train" if loo else "test")
        gsel = self.meta[gallery]["split"] == "train"
        total = sum(weights)
        out = sum(
            (w / total) * (self.feats[(e, qname)][qsel] @ self.feats[(e, gallery)][gsel].T)
            for e, w in zip(encoders, weights, strict=True)
        )
        if loo:  # leave the query and its near-duplicate group out of its own gallery
            g = self.meta[gallery]["group"]
            out[g[qsel][:, None] == g[gsel][None, :]] = -np.inf
        return np.asarray(out)

    def labels(self, name: str, split: str) -> np.ndarray:
        return self.meta[name]["label"][self.meta[name]["split"] == split]


def train_score(dev: DevSets, encoders: tuple[str, ...], weights: tuple[float, ...]) -> float:
    """Mean leave-one-out kNN top-1 over the three train splits."""
    scores = []
    for name in [n for n in ("naruto", "cifar", "caltech") if n in dev.meta]:
        labels = dev.labels(name, "train")
        scores.append(knn_top1(dev.sims(encoders, weights, f"train:{name}", name), labels, labels))
    return float(np.mean(scores))


def test_row(dev: DevSets, encoders: tuple[str, ...], weights: tuple[float, ...]) -> dict[str, float]:
    """The test columns of one encoder / ensemble."""
    row = {"naruto": np.nan, "naruto_map": np.nan, "cifar": np.nan, "caltech": np.nan, "sketch": np.nan,
           "cartoon": np.nan}  # fmt: skip
    for name in [n for n in ("naruto", "cifar", "caltech") if n in dev.meta]:
        sims = dev.sims(encoders, weights, name, name)
        g, q = dev.labels(name, "train"), dev.labels(name, "test")
        row[name] = knn_top1(sims, g, q)
        if name == "naruto":
            row["naruto_map"] = 100 * retrieval(sims, g, q)["map_at_r"]
    for style in [s for s in ("sketch", "cartoon") if f"caltech_{s}" in dev.meta]:
        sims = dev.sims(encoders, weights, f"caltech_{style}", "caltech")
        row[style] = retrieval(sims, dev.labels("caltech", "train"), dev.labels(f"caltech_{style}", "test"))[
            "score_1000"
        ]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--encoders", default="efficientnet-lite0,mobilenet-v2,efficientnet-lite1,efficientnet-lite2")
    args = parser.parse_args()
    encoders = args.encoders.split(",")
    dev = DevSets(args.cache, args.data, encoders)
    combos = [c for n in (1, 2, 3) for c in itertools.combinations(encoders, n)]
    head = "naruto top1  mAP@R | cifar | caltech | sketch cartoon x-dom | train LOO"
    print(f"{'encoder (weights chosen on train)':52s} {head}")
    for combo in combos:
        grid = (
            [(1.0,)] if len(combo) == 1 else [(1.0, *w) for w in itertools.product(WEIGHT_GRID, repeat=len(combo) - 1)]
        )
        scored = {w: train_score(dev, combo, w) for w in grid}
        best = max(scored, key=lambda w: scored[w])
        r = test_row(dev, combo, best)
        xdom = (r["sketch"] + r["cartoon"]) / 2
        label = "+".join(combo) + ("" if len(combo) == 1 else f" w={list(best)}")
        print(
            f"{label:52s} {r['naruto']:11.1f} {r['naruto_map']:6.1f} | {r['cifar']:5.1f} | {r['caltech']:7.1f} |"
            f" {r['sketch']:6.0f} {r['cartoon']:7.0f} {xdom:5.0f} | {scored[best]:6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
