"""The final novelty fit of a calibration (``visrec.index.derived.novelty_files``) on every BLAS thread, on one,
and on the cores other processes leave free (what it does), side by side in one run.

Usage::

    python benchmarks/novelty_fit_threads.py [--items 2000 20000] [--rounds 7]

For each size, seeded synthetic items (1472-d unit rows of 50 classes with a decaying spectrum, as
``benchmarks/calibration_speed.py --synthetic`` makes) are fitted by the default Gaussian novelty score (512 PCA
axes) in turn with BLAS unlimited (``all``: NumPy's and SciPy's OpenBLAS on every core, as before), limited to one
thread (``one``, as the cross-validation folds run) and limited to :func:`visrec.blas.free_cores` counted at the
start of the fit (``free``, what ``novelty_files`` does; the count is timed with it); the eigensolve alone (SciPy
``dsyevd`` on the ``(d, d)`` scatter) is timed the same way. Printed per size: best and median seconds of each,
and the ratios to ``all`` (below 1: faster). Other load only slows a round down, so the best round is the closest
to an idle machine; the median shows what load does. The load average is printed before and after.
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
    t0 = time.perf_counter()
    with limit():
        fn()
    return time.perf_counter() - t0


def compare(name: str, fn: Callable[[], object], rounds: int) -> None:
    """The three settings in turn (order reversed every other round); prints best / median seconds and ratios."""
    from visrec.blas import blas_threads, free_cores

    modes: dict[str, Callable[[], AbstractContextManager[object]]] = {
        "all": nullcontext, "one": lambda: blas_threads(1), "free": lambda: blas_threads(free_cores()),
    }  # fmt: skip
    times: dict[str, list[float]] = {m: [] for m in modes}
    timed(fn, modes["one"])  # warm-up: imports, page faults
    for r in range(rounds):
        for m in list(modes)[:: 1 if r % 2 == 0 else -1]:
            times[m].append(timed(fn, modes[m]))
    best = {m: min(t) for m, t in times.items()}
    med = {m: float(np.median(t)) for m, t in times.items()}
    parts = [f"{m} best {best[m]:.3f} s / median {med[m]:.3f} s" for m in modes]
    ratios = [f"{m}/all best {best[m] / best['all']:.2f}x, median {med[m] / med['all']:.2f}x" for m in ("one", "free")]
    print(f"{name}: {'; '.join(parts)}; {'; '.join(ratios)}", flush=True)


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
    from visrec.blas import free_cores

    print(f"{os.cpu_count()} cores, BLAS {blas}, load average {os.getloadavg()[0]:.1f}, free cores {free_cores()}")
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
