"""The rows ``raw_variants.py evaluate`` prints: kNN decisions, feature variants, ensembles, whitening.

Each row: per set, the train-protocol top-1 and the test top-1, then the means of the three train and of the
three test figures. Sections 1-3 use leave-one-out inside the train split; section 4 (a metric fitted on the
gallery's labels) uses 5 folds inside the train split, and prints the plain kNN on the same folds beside it.
Choices (best train mean) are printed at the end of each section. Rows whose variant is not embedded are skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from raw_protocol import (
    SET_NAMES,
    Cache,
    Decision,
    Feature,
    centred,
    expanded,
    folds_top1,
    plain,
    proto_mix,
    top1,
    whitened,
)

BASE = Feature((("lite0@224", 1.0),))
SINGLES = ("lite0@224", "lite0@224:none", "lite0@224:bicubic", "lite0@288", "lite1@256", "lite2@256")


def decisions() -> Iterator[tuple[str, Decision]]:
    yield "kNN k=10 T=0.05 vote x sim (default)", plain()
    for k in (1, 5, 20):
        yield f"kNN k={k}", plain(k=k)
    for t in (0.02, 0.1, 0.2):
        yield f"kNN T={t}", plain(t=t)
    yield "kNN vote share only", plain(score="vote")
    yield "centred on gallery mean", centred()
    yield "centred + QE 5", centred(expand=5)
    yield "centred + QE 5 on raw top 40", centred(expand=5, depth=40)
    yield "raw QE 5", expanded()
    for a in (0.3, 0.5, 0.7):
        yield f"prototype mix alpha={a}", proto_mix(a)


def single_features() -> Iterator[Feature]:
    for v in SINGLES:
        for flip in (False, True):
            yield Feature(((v, 1.0),), flip=flip)
    for stages in (("head",), ("head", "stage7", "stage6"), ("head", "stage6", "stage5")):
        for flip in (False, True):
            yield Feature((("lite0@224", 1.0),), stages=stages, flip=flip)


def ensembles() -> Iterator[Feature]:
    members = ("lite0@224", "lite1@256", "lite2@256")
    for flip in (False, True):
        for pair in itertools.combinations(members, 2):
            for w in (0.5, 1.0, 2.0):
                yield Feature(((pair[0], 1.0), (pair[1], w)), flip=flip)
        for w1, w2 in itertools.product((0.5, 1.0), repeat=2):
            yield Feature(((members[0], 2.0), (members[1], 2 * w1), (members[2], 2 * w2)), flip=flip)
        yield Feature(((members[0], 1.0), (members[1], 2.0), (members[2], 2.0)), flip=flip)


def row(cache: Cache, label: str, f: Feature, decide: Decision, folds: bool = False) -> tuple[float, float] | None:
    try:
        figs = [
            (folds_top1(cache, f, n, decide) if folds else top1(cache, f, n, decide, "train"),
             top1(cache, f, n, decide, "test"))
            for n in SET_NAMES
        ]  # fmt: skip
    except FileNotFoundError:
        return None
    cells = " | ".join(f"{tr:5.1f} {te:5.1f}" for tr, te in figs)
    mean_tr, mean_te = float(np.mean([a for a, _ in figs])), float(np.mean([b for _, b in figs]))
    print(f"{label:56s} {cells} | {mean_tr:5.1f} {mean_te:5.1f}", flush=True)
    return mean_tr, mean_te


def best_of(rows: dict[str, tuple[float, float] | None]) -> str:
    scored = {k: v[0] for k, v in rows.items() if v}
    return max(scored, key=lambda k: scored[k])


def run_grid(cache: Cache) -> None:
    head = " | ".join(f"{n:>11s}" for n in SET_NAMES)
    print(f"{'variant (train protocol, test)':56s} {head} | mean train/test")
    print("-- 1. kNN decisions on the default features (lite0 224 px, GeM head + stage6), train leave-one-out")
    rows = {label: row(cache, label, BASE, d) for label, d in decisions()}
    print(f"   chosen on train: {best_of(rows)}")
    print("-- 2. feature variants, default kNN decision, train leave-one-out")
    feats = {f.label(): (f, row(cache, f.label(), f, plain())) for f in single_features()}
    print(f"   chosen on train: {best_of({k: v[1] for k, v in feats.items()})}")
    print("-- 3. ensembles (weighted mean of member cosines), default kNN decision, train leave-one-out")
    ens = {f.label(): (f, row(cache, f.label(), f, plain())) for f in ensembles()}
    chosen = best_of({k: v[1] for k, v in ens.items()})
    print(f"   chosen on train: {chosen}")
    print("-- 4. within-class whitening fitted on the gallery's labels, train 5 folds")
    for f in (BASE, ens[chosen][0]):
        row(cache, f.label() + ", plain kNN", f, plain(), folds=True)
        for shrink in (0.1, 0.3, 1.0):
            row(cache, f.label() + f", whitened shrink={shrink}", f, whitened(shrink), folds=True)
