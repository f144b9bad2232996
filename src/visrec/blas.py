"""How many BLAS threads a heavy solve gets: the cores that other processes leave free at that moment.

NumPy's and SciPy's OpenBLAS run one thread per core. When another process keeps a core busy, a multi-threaded
solve waits at every step for the thread that lost its core: the final novelty fit of a calibration took 2-4.5x
the time of a single-threaded one on a loaded 2-core machine, while on an idle one its second thread saved a third
of the time (``benchmarks/novelty_fit_threads.py``). :func:`free_cores` counts the runnable tasks of other
processes (Linux ``/proc``; elsewhere every core counts as free) and :func:`blas_threads` limits BLAS, process-wide,
while a block runs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity where the OS reports it, else the core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _others_running() -> int | None:
    """Runnable tasks of other processes right now: ``/proc/loadavg``'s running count less this process's running
    threads; None where ``/proc`` is not there."""
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = 0
        for task in Path("/proc/self/task").iterdir():
            own += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)


def free_cores(samples: int = 5, gap: float = 0.002) -> int:
    """Usable cores less those other processes keep busy (the median of ``samples`` looks ``gap`` s apart, so a
    passing task is not counted), at least 1; every usable core where that cannot be read."""
    cores = usable_cores()
    seen = []
    for i in range(samples):
        others = _others_running()
        if others is None:
            return cores
        seen.append(others)
        if i + 1 < samples:
            time.sleep(gap)
    return max(1, cores - int(statistics.median_low(seen)))


@contextmanager
def blas_threads(limit: int) -> Iterator[None]:
    """NumPy's and SciPy's BLAS on at most ``limit`` threads while the block runs (process-wide)."""
    import scipy.linalg  # noqa: F401  # loaded first, so that the limit covers SciPy's own BLAS too
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, limit), user_api="blas"):
        yield
