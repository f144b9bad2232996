"""Open-set calibration cost (the store stage of ``visrec index``): current numerics vs the previous ones, side by side.

Usage::

    python benchmarks/calibration_speed.py [--data ../shared/data/naruto_roboflow] [--repeat 5] [--rounds 3]
    python benchmarks/calibration_speed.py --data ../shared/data/caltech101_dev --split-field split --repeat 1
    python benchmarks/calibration_speed.py --synthetic 20000 --rounds 1

The index is built once without calibration (``--split-field``: its train side only; ``--repeat``: every image
that many times under distinct names, as ``benchmarks/indexing_speed.py`` indexes naruto_roboflow), then what the
store stage computes from the vectors is timed (leave-one-group-out kNN, prototype and linear calibrations sharing
one set of held-out novelty fits, the final novelty fit and the final linear head), alternating between:

- ``previous``: eigenvectors from SciPy's ``dsyevd`` (all of them transformed back), shrunk covariances from
  scikit-learn's ``ledoit_wolf`` (three ``X^T X``-sized products) inverted through a Cholesky factor and a general
  solve, every linear-probe fold's scatter summed from its own rows, left-out prototype cosines one group at a time;
- ``current``: ``dsytrd`` + ``dstevd`` with only the leading eigenvectors transformed back (``dormqr``), the same
  shrunk covariances from one product (``ledoit_wolf_covariance``), a triangular inverse of the Cholesky factor
  (``dtrtri``), linear-probe folds' scatters as the full set's minus the rows left out (``FoldScatter``), left-out
  prototype cosines for every (group, class) pair at once.

Both run on this process's cores as ``visrec index`` runs them (folds side by side). The best round of each
counts (other load only slows a round down). Printed: seconds, the ratio, and how far the results moved: held-out
novelty scores (relative difference, rank correlation), each calibration's threshold, precision, coverage and
share of simulated unknowns rejected, the linear penalty, and the final novelty model's and linear head's
arrays. On repeated images (``--repeat`` > 1) a fold has fewer distinct images than PCA axes: the axes beyond the
data's rank are fixed by rounding under any computation, so the scores are compared on data without repeats.
``--synthetic N``: N generated items of 50 classes (each its own group) instead of images, for index sizes
beyond the data sets.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def synthetic_vectors(n: int, dim: int = 1472, classes: int = 50) -> tuple[np.ndarray, list[Any], list[Any]]:
    """``n`` seeded unit rows around ``classes`` centres with a decaying spectrum (like CNN features), one label and
    one group per row: the size of an index, without encoding images."""
    rng = np.random.default_rng(0)
    scales = (1.0 / np.sqrt(1.0 + np.arange(dim))).astype(np.float32)
    centres = rng.standard_normal((classes, dim), dtype=np.float32) * scales * 3
    lab = rng.integers(0, classes, n)
    x = centres[lab] + rng.standard_normal((n, dim), dtype=np.float32) * scales
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, [(f"c{c}",) for c in lab], [None] * n


def labeled_vectors(data: Path, repeat: int, split_field: str | None) -> tuple[np.ndarray, list[Any], list[Any]]:
    """``(vectors (n, d) float32, label tuples, near-duplicate groups)`` of an uncalibrated index of ``data``."""
    from indexing_speed import repeated_folder

    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.eval.splits import plan_split
    from visrec.index import Index
    from visrec.index.derived import _labels_and_groups
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    with tempfile.TemporaryDirectory(prefix="visrec-cal-") as tmp:
        if split_field:
            ds = plan_split(load_dataset(data), split_field, check_leakage=False).train
        else:
            ds = load_dataset(repeated_folder(data, repeat, Path(tmp) / "data") if repeat > 1 else data)
        build_index(ds, Path(tmp) / "i.vrx", create_encoder(), IndexConfig(calibrate=False))
        with Index(Path(tmp) / "i.vrx") as idx:
            _, vecs, labels, groups = _labels_and_groups(idx.store)
    return vecs, labels, groups


def _previous_leading(matrix: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.linalg import eigh

    vals, vecs = eigh(matrix, driver="evd", check_finite=False)
    return vals[::-1][:dims].astype(np.float64), vecs[:, ::-1][:, :dims].astype(np.float64)


def _previous_spd_inverse(matrix: np.ndarray) -> np.ndarray:
    try:
        factor = np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return np.asarray(np.linalg.pinv(matrix))
    inv_factor = np.linalg.solve(factor, np.eye(matrix.shape[0]))
    return np.asarray(inv_factor.T @ inv_factor)


def _previous_ledoit_wolf(rows: np.ndarray, assume_centered: bool = False) -> np.ndarray:
    from sklearn.covariance import ledoit_wolf

    return np.asarray(ledoit_wolf(rows, assume_centered=assume_centered)[0])


def _previous_prototype_cosines(data: Any, rows: np.ndarray, remove_class: bool) -> np.ndarray:
    """Left-out class-mean cosines, one group at a time."""
    q = data.vectors[rows].astype(np.float64)
    norms = np.linalg.norm(data.sums, axis=1)
    cos = (q @ data.sums.T) / np.where(norms > 0, norms, 1.0)
    for g in np.unique(data.gid[rows]):
        members = data.members(int(g))
        own = data.own_classes(members)
        cols = np.flatnonzero(own.any(axis=0))
        qi = np.flatnonzero(data.gid[rows] == g)
        rest = data.sums[cols] - own[:, cols].T.astype(np.float64) @ data.vectors[members]
        rest_norm = np.linalg.norm(rest, axis=1)
        sub = (q[qi] @ rest.T) / np.where(rest_norm > 1e-9, rest_norm, 1.0)
        sub[:, rest_norm <= 1e-9] = -np.inf
        cos[np.ix_(qi, cols)] = sub
    if remove_class:
        cos[data.own_classes(rows)] = -np.inf
    return cos


class _OwnRows:
    """A linear-probe fold scatter left to ``ridge_fit`` (summed from the fold's own rows)."""

    def __init__(self, vectors: np.ndarray) -> None:
        pass

    def of(self, keep: np.ndarray) -> None:
        return None


@contextmanager
def previous_numerics() -> Iterator[None]:
    """The fits as computed before: ``dsyevd`` for every eigenvector, LU-solved inverses, per-fold ridge scatters."""
    from visrec.classify import loo, novelty

    saved = (novelty._leading_eigenvectors, novelty._spd_inverse, novelty.FoldScatter,
             novelty.ledoit_wolf_covariance, loo._prototype_cosines)  # fmt: skip
    novelty._leading_eigenvectors = _previous_leading
    novelty._spd_inverse = _previous_spd_inverse
    # linear.fold_outputs imports FoldScatter from novelty when called; openset_fit keeps its own reference
    novelty.FoldScatter = _OwnRows  # type: ignore[assignment,misc]
    novelty.ledoit_wolf_covariance = _previous_ledoit_wolf
    loo._prototype_cosines = _previous_prototype_cosines
    try:
        yield
    finally:
        (novelty._leading_eigenvectors, novelty._spd_inverse, novelty.FoldScatter, novelty.ledoit_wolf_covariance,
         loo._prototype_cosines) = saved  # fmt: skip


def calibrate(vecs: np.ndarray, labels: list[Any], groups: list[Any]) -> tuple[float, dict[str, Any], Any]:
    """``(seconds, calibrations as dicts, (held-out known, novel, dims, saved files))``: what the store stage
    computes from the vectors."""
    from visrec.classify import CalibrationOptions, calibrate_leave_one_group_out
    from visrec.classify.novelty import DEFAULT_NOVELTY
    from visrec.index.derived import CALIBRATED_MODES, linear_files, novelty_files
    from visrec.index.recognize import make_classifier_from_params

    cache: dict[Any, Any] = {}
    opts = CalibrationOptions(novelty=DEFAULT_NOVELTY, held_out_cache=cache)
    t0 = time.perf_counter()
    cals = {}
    for mode in CALIBRATED_MODES:
        clf = make_classifier_from_params(mode, {})
        cals[mode] = calibrate_leave_one_group_out(vecs, labels, groups, clf, opts).to_dict()
    files = novelty_files(vecs, labels, cals) | linear_files(vecs, labels, cals)
    took = time.perf_counter() - t0
    held = next(iter(cache.values()))
    return took, cals, (*held, files)


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files}


def compare(
    prev: tuple[float, dict[str, Any], Any], cur: tuple[float, dict[str, Any], Any], queries: np.ndarray | None = None
) -> None:
    for name, a, b in zip(("known", "novel"), prev[2][:2], cur[2][:2], strict=True):
        ok = np.isfinite(a) & np.isfinite(b)
        rel = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1e-12)
        ranks = np.corrcoef(np.argsort(np.argsort(a[ok])), np.argsort(np.argsort(b[ok])))[0, 1]
        print(f"held-out {name} novelty ({ok.sum()} items): max relative difference {rel.max():.2e}, median "
              f"{np.median(rel):.2e}, rank correlation {ranks:.6f}")  # fmt: skip
    keys = ("global_threshold", "precision", "coverage", "unknown_rejected", "target_met")
    for mode in prev[1]:
        row = ", ".join(f"{k} {prev[1][mode][k]} -> {cur[1][mode][k]}" for k in keys)
        print(f"{mode}: {row}")
    print(f"linear penalty {prev[1]['linear']['params']['penalty']} -> {cur[1]['linear']['params']['penalty']}")
    if "linear.npz" in prev[2][3] and "linear.npz" in cur[2][3]:
        a, b = _arrays(prev[2][3]["linear.npz"]), _arrays(cur[2][3]["linear.npz"])
        worst = max(float(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()) for k in ("weights", "bias"))
        print(f"linear head: largest difference, relative to the largest weight / bias: {worst:.2e}")
    if "novelty.npz" in prev[2][3] and "novelty.npz" in cur[2][3] and queries is not None:
        # axes of (nearly) equal variance may turn within their plane: compare what the model scores
        from visrec.classify.novelty import GaussianNovelty

        a_s, b_s = (GaussianNovelty.from_arrays(_arrays(r[2][3]["novelty.npz"])).score(queries) for r in (prev, cur))
        rel = np.abs(a_s - b_s) / np.maximum(np.abs(a_s), 1e-12)
        print(f"final novelty model, scores of the {len(queries)} items: max relative difference {rel.max():.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "naruto_roboflow")
    ap.add_argument("--repeat", type=int, default=5, help="index each image this many times")
    ap.add_argument("--split-field", default=None, help="calibrate on the train side of this split")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=0, help="N generated 1472-d items instead of --data")
    args = ap.parse_args()
    args.data = args.data.resolve()  # the repeated folder links to it
    if args.synthetic:
        vecs, labels, groups = synthetic_vectors(args.synthetic)
        source = f"{args.synthetic} generated items, each its own group"
    else:
        if not args.data.exists():
            sys.exit(f"{args.data} not found; pass --data DIR (a labeled image folder)")
        if args.split_field and args.repeat > 1:
            sys.exit("--split-field calibrates on a train side as it is: pass --repeat 1 with it")
        vecs, labels, groups = labeled_vectors(args.data, args.repeat, args.split_field)
        source = f"{args.data}, {len(set(groups))} near-duplicate groups"
    print(f"data: {source} ({vecs.shape[0]} items, {vecs.shape[1]} dims)")
    best: dict[str, Any] = {}
    for _ in range(args.rounds):
        for name in ("previous", "current"):
            if name == "previous":
                with previous_numerics():
                    res = calibrate(vecs, labels, groups)
            else:
                res = calibrate(vecs, labels, groups)
            print(f"  {name}: {res[0]:.2f} s", flush=True)
            if name not in best or res[0] < best[name][0]:
                best[name] = res
    prev, cur = best["previous"], best["current"]
    compare(prev, cur, vecs)
    print(f"RATIO calibration seconds previous/current = {prev[0]:.2f} / {cur[0]:.2f} = {prev[0] / cur[0]:.2f}x")


if __name__ == "__main__":
    main()
