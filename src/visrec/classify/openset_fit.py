"""Held-out novelty scores of an index's own items: leave-classes-out for novel, leave-groups-out for known.

*Novel*: classes are dealt into ``F`` folds (``F = min(5, classes)``); the items of fold ``f``'s classes are
scored by a novelty score fitted on the other classes. *Known*: near-duplicate groups are dealt into
``KNOWN_FOLDS`` folds; each share is scored by a score fitted on every other item (all classes stay in), so
no statistic used to score an item was estimated from the item's own group, and the fit is nearly as large as
the final one fitted on every item at classify time.

Gaussian scores are refitted per fold (axes, shrunk covariance and class means) at one number of PCA axes shared
by every fold and by the final fit (what the smallest fold supports); a fold's scatter matrix is the full set's
minus that of the rows it leaves out (:class:`visrec.classify.novelty.FoldScatter`), the same matrix for a tenth
of the work. Keeping one full fit's covariance and
re-estimating only the class means made held-out items look more typical than new images, since their own
scatter was in the covariance: on the 306-image naruto index, with 301 axes, held-out known images sat at a
median distance of 174 against 236 for new images of the same classes, and thresholds set on them rejected
15 % of the known test images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.classify.base import NO_CANDIDATE
from visrec.classify.decision import HeldOut, fit_decision
from visrec.classify.loo import LooData
from visrec.classify.novelty import FoldScatter, GaussianNovelty, NoveltyScore, map_fits, uses_gram
from visrec.classify.target import NOVEL_IMAGES, target_verdict
from visrec.errors import BadInput
from visrec.types import Prediction

if TYPE_CHECKING:
    from visrec.classify.calibration import Calibration, CalibrationOptions


MAX_FOLDS = 5
KNOWN_FOLDS = 10


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
    queries: np.ndarray | None = None,
    novel: bool = True,
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """``(known (m,), novel (m,), dims)``: float64 novelty scores of items ``rows`` (see the module docstring)
    and, for Gaussian scores, the number of PCA axes every fold used (the final fit must use the same).

    ``vectors``: ``(n, d)`` unit rows of the labeled items; ``primary``: one class per item; ``gid``: ``(n,)``
    group codes; ``make``: builds an unfitted score; ``queries``: ``(m, d)`` vectors scored in place of
    ``vectors[rows]`` (the same items seen otherwise, e.g. rendered as small scene objects; default those rows);
    ``novel``: False skips the leave-classes-out fits (the novel scores are then all NaN).
    """
    scored_rows = vectors[rows] if queries is None else queries
    if scored_rows.shape[0] != rows.size:
        raise BadInput(f"got {scored_rows.shape[0]} query vectors for {rows.size} rows; give one per row")
    labs = np.asarray(primary, dtype=object)
    plans = [p for p in _fold_fits(labs, gid, seed) if novel or not p[2]]
    probe = make()
    dims = None
    if isinstance(probe, GaussianNovelty):
        sizes = [int(fit.sum()) - np.unique(labs[fit]).size - 1 for fit, _, _ in plans]
        dims = max(1, min([probe.dims, vectors.shape[1], *sizes]))
    known = np.full(rows.size, np.nan)
    novel_scores = np.full(rows.size, np.nan)
    # A fold fitted through its scatter matrix takes it from the full set's: O(items left out), not O(items).
    wide = [dims is not None and not uses_gram(int(fit.sum()), vectors.shape[1]) for fit, _, _ in plans]
    scatters = FoldScatter(vectors) if any(wide) else None

    def scored(plan: tuple[np.ndarray, np.ndarray, bool, bool]) -> np.ndarray | None:
        fit, held, _, by_scatter = plan
        if dims is None:
            score: NoveltyScore = make().fit(vectors[fit], labs[fit].tolist())
        else:
            scatter = scatters.of(fit) if scatters is not None and by_scatter else None
            gauss = GaussianNovelty(dims, relative=probe.name != "mahalanobis")
            score = gauss.fit(vectors[fit], labs[fit].tolist(), scatter=scatter)
        take = held[rows]
        return score.score(scored_rows[take]) if take.any() else None

    work = [(*plan, w) for plan, w in zip(plans, wide, strict=True)]
    for (_, held, as_novel), got in zip(plans, map_fits(scored, work, vectors.size * 8), strict=True):
        if got is not None:
            (novel_scores if as_novel else known)[held[rows]] = got
    return known, novel_scores, dims


def _fold_fits(labs: np.ndarray, gid: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """``[(fitted (n,) bool, held out (n,) bool, held out as novel)]`` per fold with enough items to fit.

    Novel: each class fold scored by a fit on the other classes. Known: each share of the near-duplicate groups
    scored by a fit on the rest (every class stays in), so the fit is nearly the final one in size."""
    class_fold, _ = fold_plan(labs.tolist(), gid, seed)
    groups = np.unique(gid)
    known_fold = np.random.default_rng(seed + 1).permutation(groups.size)[np.searchsorted(groups, gid)] % KNOWN_FOLDS
    plans = [(class_fold != f, class_fold == f, True) for f in range(int(class_fold.max()) + 1)]
    plans += [(known_fold != f, known_fold == f, False) for f in range(KNOWN_FOLDS)]
    return [(fit, held, nov) for fit, held, nov in plans if np.unique(labs[fit]).size + 2 <= fit.sum()]


def fit_open_set(
    data: LooData,
    rows: np.ndarray,
    known: Sequence[Prediction],
    unknown: Sequence[Prediction],
    opts: CalibrationOptions,
    params: dict[str, Any],
) -> Calibration | None:
    """A calibration with an open-set decision from leave-one-group-out predictions of ``rows``: ``known``
    (without the item's group) and ``unknown`` (without its class), plus held-out novelty scores; None when no
    held-out item could be scored (an index too small for leave-classes-out folds)."""
    from visrec.classify.calibration import Calibration, class_figures, confusions
    from visrec.classify.novelty import create_novelty

    labeled = np.flatnonzero([len(x) > 0 for x in data.labels])
    pos = np.full(len(data.labels), -1)
    pos[labeled] = np.arange(labeled.size)
    primary = [data.labels[i][0] for i in labeled]
    key = (str(opts.novelty), opts.seed, hashlib.sha1(rows.tobytes()).hexdigest(), data.vectors.shape)
    cache = opts.held_out_cache if opts.held_out_cache is not None else {}
    if key not in cache:
        cache[key] = held_out_novelty(lambda: create_novelty(str(opts.novelty)), data.vectors[labeled], primary,
                                      data.gid[labeled], pos[rows], opts.seed)  # fmt: skip
    k_nov, n_nov, dims = cache[key]
    if not (np.isfinite(k_nov).any() and np.isfinite(n_nov).any()):
        return None
    truths = [data.labels[i] for i in rows]
    kh = _held(known, k_nov, [p.candidate in t for p, t in zip(known, truths, strict=True)])
    nh = _held(unknown, n_nov, [False] * len(unknown))
    dec = fit_decision(kh, nh, str(opts.novelty), opts.shrink, novelty_dims=dims)
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
