"""The final novelty fit of a calibration (``visrec.index.derived.novelty_files``) on every BLAS thread vs on one,
side by side in one run.

Usage::

    python benchmarks/novelty_fit_threads.py [--items 2000 20000] [--rounds 7]

For each size, seeded synthetic items (1472-d unit rows of 50 classes with a decaying spectrum, as
``benchmarks/calibration_speed.py --synthetic`` makes) are fitted by the default Gaussian novelty score (512 PCA
axes) alternately with BLAS unlimited (NumPy's and SciPy's OpenBLAS on every core, as before) and limited to one
thread (as the cross-validation folds run, :func:`visrec.classify.novelty.one_blas_thread`); the eigensolve alone
(SciPy ``dsyevd`` on the ``(d, d)`` scatter) is timed the same way. Printed per size: best and median seconds of
each, and the ratios one/all (below 1: one thread is faster). Other load only slows a round down, so the best
round is the closest to an idle machine; the median shows what load does. The load average is printed before and
after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def timed(fn: Callable[[], object], limit: Callable[[], AbstractContextManager[object]]) -> float:
    with limit():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def compare(name: str, fn: Callable[[], object], rounds: int) -> None:
    """Alternate the two settings (order swapped every round) and print best / median seconds and ratios."""
    from visrec.classify.novelty import one_blas_thread

    modes: dict[str, Callable[[], AbstractContextManager[object]]] = {"all": nullcontext, "one": one_blas_thread}
    times: dict[str, list[float]] = {m: [] for m in modes}
    timed(fn, one_blas_thread)  # warm-up: imports, page faults
    for r in range(rounds):
        for m in list(modes)[:: 1 if r % 2 == 0 else -1]:
            times[m].append(timed(fn, modes[m]))
    best = {m: min(t) for m, t in times.items()}
    med = {m: float(np.median(t)) for m, t in times.items()}
    print(
        f"{name}: all threads best {best['all']:.3f} s / median {med['all']:.3f} s; one thread best "
        f"{best['one']:.3f} s / median {med['one']:.3f} s; one/all best {best['one'] / best['all']:.2f}x, median "
        f"{med['one'] / med['all']:.2f}x",
        flush=True,
    )


def main() -> None:
    from calibration_speed import synthetic_vectors
    from scipy.linalg import eigh
    from threadpoolctl import threadpool_info

    from visrec.classify.novelty import GaussianNovelty

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    blas = sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"})
    print(f"{os.cpu_count()} cores, BLAS {blas}, load average {os.getloadavg()[0]:.1f}", flush=True)
    for n in args.items:
        x, labels, _ = synthetic_vectors(n)
        first = [lab[0] for lab in labels]
        compare(f"{n} items: final fit", lambda x=x, first=first: GaussianNovelty(512).fit(x, first), args.rounds)
        centred = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
        scatter = centred.T @ centred
        del centred
        compare(f"{n} items: eigensolve", lambda s=scatter: eigh(s, driver="evd", check_finite=False), args.rounds)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
