"""Held-out novelty scores of an index's own items, by leave-classes-out folds that respect near-duplicates.

Classes are dealt into ``F`` folds (``F = min(5, classes)``). In fold ``f`` the novelty score is fitted on the
items of the other classes minus one share of their near-duplicate groups; it then scores (a) the items of fold
``f``'s classes, which play *novel* images, and (b) the held-out groups, which play *known* test images. Each
group is held out in exactly one fold whose classes are not its own, so every item gets one known and one novel
score, and no class location used to score an item was estimated from the item's group.

Gaussian scores keep the axes and shrunk covariances of one fit on every item and only re-estimate the class
means per fold: refitting the covariance on 64 % of the items shifted every held-out distance (by about 10 %
on synthetic mixtures), so thresholds set on them did not transfer to the full fit used at classify time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.classify.base import NO_CANDIDATE
from visrec.classify.decision import HeldOut, fit_decision
from visrec.classify.loo import LooData
from visrec.classify.novelty import GaussianNovelty, NoveltyScore
from visrec.classify.target import NOVEL_IMAGES, target_verdict
from visrec.errors import BadInput
from visrec.types import Prediction

if TYPE_CHECKING:
    from visrec.classify.calibration import Calibration, CalibrationOptions


MAX_FOLDS = 5


def fold_plan(primary: Sequence[str], gid: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(class_fold (n,), group_fold (n,))`` int arrays: the fold where each item is novel / held out as known.

    ``primary[i]``: item ``i``'s class; ``gid``: ``(n,)`` int group codes. The group fold differs from the class
    fold of every member of the group (its first member's class decides for mixed groups).
    """
    classes = np.unique(np.asarray(primary, dtype=object))
    if classes.size < 3:
        raise BadInput(f"leave-classes-out needs at least 3 classes, got {classes.size}")
    n_folds = min(MAX_FOLDS, classes.size)
    rng = np.random.default_rng(seed)
    cf_of = {c: i % n_folds for i, c in enumerate(rng.permutation(classes))}
    class_fold = np.asarray([cf_of[c] for c in primary], np.int64)
    first: dict[int, int] = {}
    for i, g in enumerate(gid.tolist()):
        first.setdefault(g, i)
    shift = {g: 1 + int(rng.integers(0, n_folds - 1)) for g in first}
    group_fold = np.asarray([(class_fold[first[g]] + shift[g]) % n_folds for g in gid.tolist()], np.int64)
    return class_fold, group_fold


def held_out_novelty(
    make: Callable[[], NoveltyScore],
    vectors: np.ndarray,
    primary: Sequence[str],
    gid: np.ndarray,
    rows: np.ndarray,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(known (m,), novel (m,))`` float64 novelty scores of items ``rows`` (see the module docstring).

    ``vectors``: ``(n, d)`` unit rows of the labeled items; ``primary``: one class per item; ``gid``: ``(n,)``
    group codes; ``make``: builds an unfitted score.
    """
    labs = np.asarray(primary, dtype=object)
    class_fold, group_fold = fold_plan(primary, gid, seed)
    known = np.full(rows.size, np.nan)
    novel = np.full(rows.size, np.nan)
    full = make()
    if isinstance(full, GaussianNovelty):
        full.fit(vectors, labs.tolist())
    for f in range(int(class_fold.max()) + 1):
        fit = (class_fold != f) & (group_fold != f)
        if isinstance(full, GaussianNovelty):
            score: NoveltyScore = full.with_means(vectors[fit], labs[fit].tolist())
        else:
            score = make().fit(vectors[fit], labs[fit].tolist())
        as_novel = class_fold[rows] == f
        as_known = (group_fold[rows] == f) & ~as_novel
        if as_novel.any():
            novel[as_novel] = score.score(vectors[rows[as_novel]])
        if as_known.any():
            known[as_known] = score.score(vectors[rows[as_known]])
    return known, novel


def fit_open_set(
    data: LooData,
    rows: np.ndarray,
    known: Sequence[Prediction],
    unknown: Sequence[Prediction],
    opts: CalibrationOptions,
    params: dict[str, Any],
) -> Calibration:
    """A calibration with an open-set decision from leave-one-group-out predictions of ``rows``: ``known``
    (without the item's group) and ``unknown`` (without its class), plus held-out novelty scores."""
    from visrec.classify.calibration import Calibration, class_figures, confusions
    from visrec.classify.novelty import create_novelty

    labeled = np.flatnonzero([len(x) > 0 for x in data.labels])
    pos = np.full(len(data.labels), -1)
    pos[labeled] = np.arange(labeled.size)
    primary = [data.labels[i][0] for i in labeled]
    k_nov, n_nov = held_out_novelty(lambda: create_novelty(str(opts.novelty)), data.vectors[labeled], primary,
                                    data.gid[labeled], pos[rows], opts.seed)  # fmt: skip
    truths = [data.labels[i] for i in rows]
    kh = _held(known, k_nov, [p.candidate in t for p, t in zip(known, truths, strict=True)])
    nh = _held(unknown, n_nov, [False] * len(unknown))
    dec = fit_decision(kh, nh, str(opts.novelty), opts.shrink)
    op = dec.operating_point(opts.target_precision, opts.novelty_prior)
    truth = [next(iter(t), "") for t, p, v in zip(truths, known, k_nov, strict=True) if _usable(p, v)]
    truth += [NOVEL_IMAGES] * nh.score.size
    conf = [np.prod(dec.confidence(h, opts.novelty_prior), axis=0) for h in (kh, nh)]
    cand = np.r_[kh.candidate, nh.candidate]
    acc, ok = np.r_[conf[0], conf[1]] >= op.tau, np.r_[kh.correct, nh.correct]
    w = np.r_[np.full(kh.score.size, 1.0), np.full(nh.score.size, opts.novelty_prior / (1 - opts.novelty_prior)
                                                  * kh.score.size / max(1, nh.score.size))]  # fmt: skip
    class_precision, answers = class_figures(cand, acc, ok, w)
    verdict = target_verdict(opts.target_precision, op.precision, class_precision, answers, dec.support,
                             confusions(cand.tolist(), truth, acc & ~ok, w), opts.min_support)  # fmt: skip
    return Calibration(
        mode=known[0].mode, method="leave-one-group-out", target_precision=opts.target_precision,
        thresholds={}, global_threshold=op.tau, confidence=dec.shared, n_held_out=len(known),
        n_unknown=len(unknown), unknown_weight=opts.unknown_weight, precision=op.precision,
        coverage=op.coverage, unknown_rejected=op.novel_rejected, target_met=verdict.met,
        below_target=verdict.below, params=params, reasons=verdict.reasons, class_precision=class_precision,
        novelty_prior=opts.novelty_prior, decision=dec,
    )  # fmt: skip


def _usable(p: Prediction, novelty: float) -> bool:
    return p.candidate != NO_CANDIDATE and bool(np.isfinite(novelty))


def _held(preds: Sequence[Prediction], novelty: np.ndarray, correct: Sequence[bool]) -> HeldOut:
    keep = [i for i, p in enumerate(preds) if _usable(p, novelty[i])]
    return HeldOut(
        np.array([preds[i].score for i in keep], np.float64),
        np.array([preds[i].candidate for i in keep], dtype=object),
        np.asarray(novelty, np.float64)[keep],
        np.array([correct[i] for i in keep], bool),
    )
