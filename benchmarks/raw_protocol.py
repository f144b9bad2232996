"""The train-split protocol of ``raw_variants.py evaluate``: features recombined from the cache, kNN decisions.

Every figure is raw top-1 (before any "unknown" decision) in percent. ``train``: each train image is queried
against the other train images (naruto: its near-duplicate group left out too). ``test``: test images against the
whole train gallery. Choices are made on ``train`` only; ``test`` is printed for the chosen rows.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SET_NAMES = ("naruto", "cifar", "caltech")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Feature:
    """A recombination of cached blocks: ``members`` = ((variant, weight), ...), ``stages``, ``flip``."""

    members: tuple[tuple[str, float], ...]
    stages: tuple[str, ...] = ("head", "stage6")
    flip: bool = False

    def label(self) -> str:
        names = "+".join(v if len(self.members) == 1 else f"{v}*{w:g}" for v, w in self.members)
        stages = "" if self.stages == ("head", "stage6") else f" [{','.join(self.stages)}]"
        return names + stages + (" +flip" if self.flip else "")


class Cache:
    """The cached blocks of every variant and set (loaded lazily)."""

    def __init__(self, root: Path, data: Path) -> None:
        from raw_variants import manifest

        self.root = root
        self.meta = {name: manifest(data, name) for name in SET_NAMES}
        self._npz: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def arrays(self, variant: str, name: str) -> dict[str, np.ndarray]:
        key = (variant, name)
        if key not in self._npz:
            with np.load(self.root / variant.replace(":", "-") / f"{name}.npz") as z:
                self._npz[key] = {k: z[k] for k in z.files}
        return self._npz[key]

    def single(self, variant: str, name: str, stages: tuple[str, ...], flip: bool) -> np.ndarray:
        """``(n, d)`` unit rows as the encoder would give them with these options."""
        z = self.arrays(variant, name)
        edges = np.cumsum([0, *z["widths"]])
        order = list(z["stages"])

        def pick(key: str) -> np.ndarray:
            i = [order.index(s) for s in stages]
            return unit(np.concatenate([z[key][:, edges[j] : edges[j + 1]] for j in i], axis=1))

        out = pick("orig")
        return unit(out + pick("flip")) if flip else out

    def features(self, f: Feature, name: str) -> np.ndarray:
        total = sum(w for _, w in f.members)
        blocks = [self.single(v, name, f.stages, f.flip) * np.float32(np.sqrt(w / total)) for v, w in f.members]
        return np.concatenate(blocks, axis=1)


def knn_predict(sims: np.ndarray, labels: np.ndarray, k: int = 10, t: float = 0.05, score: str = "vs") -> np.ndarray:
    """The library's kNN vote (``visrec.classify.knn``) over ``(q, g)`` similarities: predicted labels ``(q,)``.

    ``score``: ``"vs"`` vote share x best cosine (library default), ``"vote"`` share only."""
    k = min(k, sims.shape[1])
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, nn, axis=1)
    w = np.exp((s - s.max(axis=1, keepdims=True)) / t)
    classes, idx = np.unique(labels, return_inverse=True)
    lab = idx[nn]
    votes = np.zeros((len(sims), len(classes)))
    best = np.full((len(sims), len(classes)), -np.inf)
    rows = np.arange(len(sims))[:, None].repeat(k, axis=1)
    np.add.at(votes, (rows, lab), w)
    np.maximum.at(best, (rows, lab), s)
    share = votes / votes.sum(axis=1, keepdims=True)
    sc = share * np.maximum(best, 0) if score == "vs" else share + 1e-9 * best
    return np.asarray(classes[sc.argmax(axis=1)])


Decision = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


def masked_sims(q: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    s = q @ g.T
    if mask is not None:
        s[mask] = -np.inf
    return s


def plain(k: int = 10, t: float = 0.05, score: str = "vs") -> Decision:
    def run(q: np.ndarray, g: np.ndarray, gl: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return knn_predict(masked_sims(q, g, mask), gl, k, t, score)

    return run


def centred(k: int = 10, t: float = 0.05, expand: int = 0, depth: int = 0) -> Decision:
    """Centre on the gallery mean and renormalise; ``expand``: average query expansion with the best ``expand``
    neighbours; ``depth``: re-score only the raw top ``depth`` (the search re-rank's candidates; 0 = all)."""

    def run(q: np.ndarray, g: np.ndarray, gl: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        mean = g.mean(axis=0)
        qc, gc = unit(q - mean), unit(g - mean)
        s = masked_sims(qc, gc, mask)
        if depth:
            raw = masked_sims(q, g, mask)
            cut = np.partition(-raw, depth - 1, axis=1)[:, depth - 1 : depth]
            s[-raw > cut] = -np.inf
        if expand:
            top = np.argpartition(-s, expand - 1, axis=1)[:, :expand]
            qc = unit(qc + gc[top].sum(axis=1))
            s2 = masked_sims(qc, gc, mask)
            s = np.where(np.isfinite(s), s2, -np.inf)
        return knn_predict(s, gl, k, t)

    return run


def expanded(k: int = 10, t: float = 0.05, expand: int = 5) -> Decision:
    """Average query expansion in the raw space."""

    def run(q: np.ndarray, g: np.ndarray, gl: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        s = masked_sims(q, g, mask)
        top = np.argpartition(-s, expand - 1, axis=1)[:, :expand]
        return knn_predict(masked_sims(unit(q + g[top].sum(axis=1)), g, mask), gl, k, t)

    return run


def proto_mix(alpha: float, k: int = 10, t: float = 0.05) -> Decision:
    """``alpha`` x cosine to the class mean (unit) + (1 - alpha) x the kNN class score."""

    def run(q: np.ndarray, g: np.ndarray, gl: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        classes, idx = np.unique(gl, return_inverse=True)
        onehot = np.zeros((len(g), len(classes)), np.float32)
        onehot[np.arange(len(g)), idx] = 1
        s = masked_sims(q, g, mask)
        # Leave-one-out prototypes: the masked items do not count in their class mean.
        proto_sum = onehot.T @ g  # (c, d)
        counts = np.repeat(onehot.sum(axis=0)[None, :], len(q), axis=0)
        ps = q @ proto_sum.T
        if mask is not None:
            hidden = mask.astype(np.float32)
            ps = ps - (hidden * (q @ g.T)) @ onehot
            counts = counts - hidden @ onehot
        proto = ps / np.maximum(counts, 1)  # mean cosine to the class (== cosine to the unnormalised mean)
        k_eff = min(k, s.shape[1])
        nn = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
        sv = np.take_along_axis(s, nn, axis=1)
        w = np.exp((sv - sv.max(axis=1, keepdims=True)) / t)
        votes = np.zeros((len(q), len(classes)))
        best = np.zeros((len(q), len(classes)))
        rows = np.arange(len(q))[:, None].repeat(k_eff, axis=1)
        np.add.at(votes, (rows, idx[nn]), w)
        np.maximum.at(best, (rows, idx[nn]), sv)
        knn = votes / votes.sum(axis=1, keepdims=True) * np.maximum(best, 0)
        return np.asarray(classes[(alpha * proto + (1 - alpha) * knn).argmax(axis=1)])

    return run


def top1(cache: Cache, f: Feature, name: str, decide: Decision, split: str) -> float:
    m = cache.meta[name]
    x = cache.features(f, name)
    tr = m["split"] == "train"
    g, gl = x[tr], m["label"][tr]
    if split == "train":
        grp = m["group"][tr]
        mask = grp[:, None] == grp[None, :]
        pred, truth = decide(g, g, gl, mask), gl
    else:
        te = m["split"] == "test"
        pred, truth = decide(x[te], g, gl, None), m["label"][te]
    return 100 * float((pred == truth).mean())


def whitened(shrink: float, k: int = 10, t: float = 0.05) -> Decision:
    """kNN after within-class whitening fitted on the gallery's labels (:mod:`visrec.classify.whitening`)."""
    from visrec.classify.whitening import fit_within_class_whitening

    def run(q: np.ndarray, g: np.ndarray, gl: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        if mask is not None:
            raise ValueError("a metric fitted on the gallery's labels needs the k-fold protocol (folds_top1)")
        w = fit_within_class_whitening(g, gl, shrink)
        return knn_predict(w.transform(q) @ w.transform(g).T, gl, k, t)

    return run


def folds_top1(cache: Cache, f: Feature, name: str, decide: Decision, folds: int = 5) -> float:
    """Top-1 over ``folds`` folds of the train split (near-duplicate groups kept together, seeded): each fold is
    queried against the other folds, so a metric fitted on the gallery's labels never sees the query's label."""
    m = cache.meta[name]
    x = cache.features(f, name)
    rows = np.flatnonzero(m["split"] == "train")
    groups = m["group"][rows]
    uniq = np.unique(groups)
    fold_of = dict(zip(uniq, np.random.default_rng(0).integers(0, folds, len(uniq)), strict=True))
    fold = np.array([fold_of[g] for g in groups])
    hits = [decide(x[rows[fold == i]], x[rows[fold != i]], m["label"][rows[fold != i]], None)
            == m["label"][rows[fold == i]] for i in range(folds)]  # fmt: skip
    return 100 * float(np.concatenate(hits).mean())


def evaluate_main(args: argparse.Namespace) -> None:
    from raw_grid import run_grid

    run_grid(Cache(args.cache, args.data))
