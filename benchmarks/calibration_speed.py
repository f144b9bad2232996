"""Open-set calibration cost (the store stage of ``visrec index``): current numerics vs the previous ones, side by side.

Usage::

    python benchmarks/calibration_speed.py [--data ../shared/data/naruto_roboflow] [--repeat 5] [--rounds 3]
    python benchmarks/calibration_speed.py --data ../shared/data/caltech101_dev --split-field split --repeat 1
    python benchmarks/calibration_speed.py --synthetic 20000 --rounds 1

The index is built once without calibration (``--split-field``: its train side only; ``--repeat``: every image
that many times under distinct names, as ``benchmarks/indexing_speed.py`` indexes naruto_roboflow), then the
calibration the store stage runs (leave-one-group-out kNN and prototype calibrations sharing one set of held-out
novelty fits, plus the final novelty fit) is timed, alternating between:

- ``previous``: every fold's scatter summed from its own rows, eigenvectors from NumPy's ``eigh`` (which solves
  a float32 matrix in float64), the Gram-matrix route for any fold with fewer items than dimensions;
- ``current``: folds' scatters as the full set's minus the rows left out (``FoldScatter``), eigenvectors from
  SciPy's ``dsyevd`` (float64), the Gram route only below half as many items as dimensions.

The best round of each counts (other load only slows a round down). Printed: seconds, the ratio, and how far the
results moved: held-out novelty scores (relative difference, rank correlation) and each calibration's threshold,
precision, coverage and share of simulated unknowns rejected. On repeated images (``--repeat`` > 1) a fold has
fewer distinct images than PCA axes: the axes beyond the data's rank are arbitrary under either solver, so the
scores are compared on data without repeats. ``--synthetic N``: N generated items of 50 classes (each its own
group) instead of images, for index sizes beyond the data sets.
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


@contextmanager
def previous_numerics() -> Iterator[None]:
    """The fits as computed before: per-fold scatter from the fold's rows, NumPy ``eigh``."""
    from visrec.classify import novelty, openset_fit

    def numpy_eigh(matrix: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
        vals, vecs = np.linalg.eigh(np.asarray(matrix, np.float32))
        return vals[::-1][:dims].astype(np.float64), vecs[:, ::-1][:, :dims].astype(np.float64)

    def gram_below_d(n: int, d: int) -> bool:
        return n < d

    saved = novelty._leading_eigenvectors, openset_fit.FoldScatter, novelty.uses_gram, openset_fit.uses_gram
    novelty._leading_eigenvectors = numpy_eigh
    openset_fit.FoldScatter = lambda vectors: None  # type: ignore[assignment,misc,return-value]
    novelty.uses_gram = openset_fit.uses_gram = gram_below_d
    try:
        yield
    finally:
        novelty._leading_eigenvectors, openset_fit.FoldScatter, novelty.uses_gram, openset_fit.uses_gram = saved


def calibrate(vecs: np.ndarray, labels: list[Any], groups: list[Any]) -> tuple[float, dict[str, Any], Any]:
    """``(seconds, calibrations as dicts, held-out (known, novel) scores)``: what the store stage computes."""
    from visrec.classify import CalibrationOptions, calibrate_leave_one_group_out
    from visrec.classify.novelty import DEFAULT_NOVELTY
    from visrec.index.derived import CALIBRATED_MODES, novelty_files
    from visrec.index.recognize import make_classifier_from_params

    cache: dict[Any, Any] = {}
    opts = CalibrationOptions(novelty=DEFAULT_NOVELTY, held_out_cache=cache)
    t0 = time.perf_counter()
    cals = {}
    for mode in CALIBRATED_MODES:
        clf = make_classifier_from_params(mode, {})
        cals[mode] = calibrate_leave_one_group_out(vecs, labels, groups, clf, opts).to_dict()
    novelty_files(vecs, labels, cals)
    took = time.perf_counter() - t0
    held = next(iter(cache.values()))
    return took, cals, held


def compare(prev: tuple[float, dict[str, Any], Any], cur: tuple[float, dict[str, Any], Any]) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "naruto_roboflow")
    ap.add_argument("--repeat", type=int, default=5, help="index each image this many times")
    ap.add_argument("--split-field", default=None, help="calibrate on the train side of this split")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=0, help="N generated 1472-d items instead of --data")
    args = ap.parse_args()
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
    compare(prev, cur)
    print(f"RATIO calibration seconds previous/current = {prev[0]:.2f} / {cur[0]:.2f} = {prev[0] / cur[0]:.2f}x")


if __name__ == "__main__":
    main()
