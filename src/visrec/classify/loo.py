"""Leave-one-group-out predictions over an in-memory set of vectors (the engine of self-calibration).

Each query is predicted from all the other items EXCEPT its whole near-duplicate group (otherwise a frame of
the same video scene makes every score look perfect), and optionally with its whole class removed as well
(a simulated *unknown*: that prediction is wrong by construction). Neighbour search is exact, by numpy
matrix products over chunks of queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

from visrec.classify.blend import BlendClassifier
from visrec.classify.knn import KnnClassifier
from visrec.classify.linear import LinearClassifier
from visrec.classify.prototype import PrototypeClassifier, class_sums
from visrec.classify.zeroshot import ZeroShotClassifier
from visrec.errors import BadInput, DimensionMismatch
from visrec.types import Prediction

Classifier = Union[KnnClassifier, PrototypeClassifier, ZeroShotClassifier, BlendClassifier, LinearClassifier]

_CELLS_PER_CHUNK = 1 << 24  # query x item similarities held at once (64 MiB of float32)


@dataclass(frozen=True)
class LooData:
    """Items to predict from: vectors, label tuples, integer group codes, class sums and class incidence.

    ``incidence`` is a sparse ``(n, c)`` 0/1 matrix (item i carries class j); ``group_order`` lists the rows
    sorted by group code and ``group_start[g]`` is where group ``g`` starts in it.
    """

    vectors: np.ndarray
    labels: tuple[tuple[str, ...], ...]
    gid: np.ndarray
    classes: tuple[str, ...]
    sums: np.ndarray
    incidence: sparse.csr_matrix
    group_order: np.ndarray
    group_start: np.ndarray
    joint: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        labels: Sequence[Sequence[str]],
        groups: Sequence[str | None] | None,
        joint: np.ndarray | None = None,
    ) -> LooData:
        """Validate and index the inputs. ``groups[i]`` None (or ``groups`` None) = its own group."""
        n = vectors.shape[0]
        labs = tuple(tuple(str(x) for x in dict.fromkeys(row)) for row in labels)
        if len(labs) != n or (groups is not None and len(groups) != n):
            got = "None" if groups is None else str(len(groups))
            raise BadInput(
                f"need one label tuple and one group per vector: {n} vectors, {len(labs)} labels, {got} groups"
            )
        if joint is not None and joint.shape[0] != n:
            raise DimensionMismatch(f"joint vectors have {joint.shape[0]} rows, expected {n} (one per vector)")
        raw = [f"item:{i}" if groups is None or groups[i] is None else f"g:{groups[i]}" for i in range(n)]
        _, gid = np.unique(np.asarray(raw, dtype=object), return_inverse=True)
        gid = gid.astype(np.int64).ravel()
        order = np.argsort(gid, kind="stable")
        start = np.searchsorted(gid[order], np.arange(gid.max() + 2 if n else 1))
        classes, sums, _ = class_sums(vectors, labs)
        col = {c: j for j, c in enumerate(classes)}
        ii = [i for i, row in enumerate(labs) for _ in row]
        jj = [col[x] for row in labs for x in row]
        from scipy import sparse  # imported when a calibration is fitted (an update that keeps one needs none)

        inc = sparse.csr_matrix((np.ones(len(ii), np.float32), (ii, jj)), shape=(n, len(classes)))
        return cls(vectors, labs, gid, classes, sums, inc, order, start, joint)

    def members(self, g: int) -> np.ndarray:
        """Rows of group ``g``."""
        return self.group_order[self.group_start[g] : self.group_start[g + 1]]

    def own_classes(self, rows: np.ndarray) -> np.ndarray:
        """``(m, c)`` bool: the classes each of ``rows`` carries."""
        return self.incidence[rows].toarray() > 0

    def excluded(self, rows: np.ndarray, remove_class: bool) -> np.ndarray:
        """``(m, n)`` bool: items a query may not see (its group, and its classes when ``remove_class``)."""
        mask = self.gid[None, :] == self.gid[rows][:, None]
        if remove_class:
            shared = (self.incidence[rows] @ self.incidence.T).tocoo()
            mask[shared.row, shared.col] = True
        return mask


def sample_queries(
    labels: Sequence[tuple[str, ...]], max_queries: int, seed: int, eligible: np.ndarray | None = None
) -> np.ndarray:
    """Row numbers of the labeled items (among ``eligible``, a ``(n,)`` bool mask, when given), or a seeded
    sample of ``max_queries`` of them, ascending."""
    labeled = np.array([len(x) > 0 for x in labels], bool)
    rows = np.flatnonzero(labeled if eligible is None else labeled & np.asarray(eligible, bool))
    if rows.size > max_queries:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_queries, replace=False))
    return rows


def top_neighbours(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(columns (m, k) int, scores (m, k))`` of the ``k`` largest entries of each row of ``sims``, best first
    (``-inf`` entries are excluded items; they come last)."""
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_s = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_s, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_s, order, axis=1)


def _knn(clf: KnnClassifier, data: LooData, rows: np.ndarray, remove_class: bool) -> list[Prediction]:
    sims = data.vectors[rows] @ data.vectors.T
    sims[data.excluded(rows, remove_class)] = -np.inf
    top, top_s = top_neighbours(sims, clf.k)
    labels = [[data.labels[j] for j in row] for row in top]
    return clf.predict_from_neighbors(labels, top_s)


def _prototype_cosines(data: LooData, rows: np.ndarray, remove_class: bool) -> np.ndarray:
    """``(m, c)`` cosine of each query to every class mean computed without the query's group.

    The class sums less a group's own items are formed once per (group, class) pair, all pairs at once: a
    Python loop over groups cost ~1 s per 1,500 queries when every image is its own group."""
    q = data.vectors[rows].astype(np.float64)
    norms = np.linalg.norm(data.sums, axis=1)
    cos = (q @ data.sums.T) / np.where(norms > 0, norms, 1.0)
    pair_group, pair_class, rest = _group_class_rests(data, np.unique(data.gid[rows]))
    rest_norm = np.linalg.norm(rest, axis=1)
    # every (query, pair of the query's group) combination; pairs are sorted by group
    first = np.searchsorted(pair_group, data.gid[rows], side="left")
    count = np.searchsorted(pair_group, data.gid[rows], side="right") - first
    qi = np.repeat(np.arange(rows.size), count)
    pi = np.repeat(first - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
    sub = np.einsum("ij,ij->i", q[qi], rest[pi]) / np.where(rest_norm[pi] > 1e-9, rest_norm[pi], 1.0)
    sub[rest_norm[pi] <= 1e-9] = -np.inf  # the class has no item outside this group
    cos[qi, pair_class[pi]] = sub
    if remove_class:
        cos[data.own_classes(rows)] = -np.inf
    return cos


def _group_class_rests(data: LooData, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group (p,), class (p,), rest (p, d) float64)`` for every (group, class) pair where a member of one of
    ``groups`` carries the class: the class's sum less those members' vectors; sorted by group, then class."""
    start, stop = data.group_start[groups], data.group_start[groups + 1]
    size = stop - start
    at = np.repeat(start - np.cumsum(size) + size, size) + np.arange(int(size.sum()))
    members = data.group_order[at]
    inc = data.incidence[members].tocoo()
    item, cls = members[inc.row], inc.col.astype(np.int64)
    order = np.lexsort((cls, data.gid[item]))
    item, cls = item[order], cls[order]
    grp = data.gid[item]
    new = np.r_[True, (grp[1:] != grp[:-1]) | (cls[1:] != cls[:-1])] if item.size else np.zeros(0, bool)
    heads = np.flatnonzero(new)
    d = data.vectors.shape[1]
    if heads.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, d))
    own = np.add.reduceat(data.vectors[item].astype(np.float64), heads, axis=0)
    return grp[heads], cls[heads], data.sums[cls[heads]] - own


def _to_columns(data: LooData, target: tuple[str, ...], cos: np.ndarray) -> np.ndarray:
    """Re-order ``(m, c_data)`` class columns into ``target`` order (``-inf`` for classes without items)."""
    missing = sorted(set(data.classes) - set(target))
    if missing:
        raise BadInput(f"labels {missing} are not among the classifier's classes {list(target)}")
    out = np.full((cos.shape[0], len(target)), -np.inf)
    out[:, [target.index(c) for c in data.classes]] = cos
    return out


def _class_removed(data: LooData, target: tuple[str, ...], rows: np.ndarray) -> np.ndarray:
    """``(m, len(target))`` bool: the target columns that hold one of each query's own labels."""
    pos = {c: j for j, c in enumerate(target)}
    out = np.zeros((rows.size, len(target)), bool)
    for r, i in enumerate(rows):
        out[r, [pos[x] for x in data.labels[i] if x in pos]] = True
    return out


def _text(clf: ZeroShotClassifier, data: LooData, rows: np.ndarray, remove_class: bool) -> np.ndarray:
    if data.joint is None:
        raise BadInput(f"{clf.mode} calibration needs the joint (image-text) vectors; pass joint=")
    cos = clf.cosines(data.joint[rows]).astype(np.float64)
    if remove_class:
        cos[_class_removed(data, clf.classes, rows)] = -np.inf
    return cos


def predict_left_out(clf: Classifier, data: LooData, rows: np.ndarray, remove_class: bool) -> list[Prediction]:
    """Predict items ``rows`` of ``data`` without their group (and their classes when ``remove_class``)."""
    if isinstance(clf, KnnClassifier):
        return _knn(clf, data, rows, remove_class)
    if isinstance(clf, PrototypeClassifier):
        fitted = PrototypeClassifier.from_arrays(data.classes, data.sums.astype(np.float32), clf.config.top_k)
        return fitted.predict_from_scores(_prototype_cosines(data, rows, remove_class))
    if isinstance(clf, ZeroShotClassifier):
        return clf.predict_from_scores(_text(clf, data, rows, remove_class))
    if isinstance(clf, BlendClassifier):
        img = _to_columns(data, clf.classes, _prototype_cosines(data, rows, remove_class))
        return clf.predict_from_scores(img, _text(clf.zeroshot, data, rows, remove_class))
    raise BadInput(f"cannot calibrate a {type(clf).__name__}; expected one of knn, prototype, zeroshot, blend")


def chunked_left_out(
    clf: Classifier, data: LooData, rows: np.ndarray, remove_class: bool, chunk_size: int
) -> list[Prediction]:
    """:func:`predict_left_out` over chunks of queries so that at most ~16M similarities are held at once."""
    n = max(1, data.vectors.shape[0])
    step = max(1, min(chunk_size, _CELLS_PER_CHUNK // n))
    out: list[Prediction] = []
    for start in range(0, rows.size, step):
        out.extend(predict_left_out(clf, data, rows[start : start + step], remove_class))
    return out
