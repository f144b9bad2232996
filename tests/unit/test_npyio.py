"""Array headers and filter expressions parse safely from many threads at once (a server, a reader beside a writer)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

from visrec.npyio import load_npy, load_npz, parse_expression


class _Finaliser:
    """Runs Python code when collected, so a thread switch can happen in the middle of another thread's parse."""

    def __del__(self) -> None:
        sum(range(50))


def _hammer(fn, errors: list[str], depth: int = 0) -> None:
    if depth < 100:  # parse from a deep stack, as a request handler does
        return _hammer(fn, errors, depth + 1)
    try:
        for _ in range(1500):
            fn()
            cycle: list[object] = [_Finaliser() for _ in range(5)]
            cycle.append(cycle)
    except Exception as e:  # the test reports whatever a parse raised
        errors.append(repr(e))


def test_concurrent_loads_and_filter_parses_never_raise(tmp_path: Path) -> None:
    npy = tmp_path / "facts.npy"
    np.save(npy, np.zeros(3, dtype=[("size", "<i8"), ("inode", "<u8")]))
    npz = tmp_path / "novelty.npz"
    np.savez(npz, mean=np.ones(4, np.float32), cov=np.eye(4, dtype=np.float32))
    calls = [
        lambda: load_npy(npy),
        lambda: load_npz(npz),
        lambda: parse_expression('label == "Sakura" and split in ("train", "val")'),
    ]
    errors: list[str] = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=_hammer, args=(fn, errors)) for fn in calls * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert load_npz(npz)["cov"].shape == (4, 4)
    assert load_npy(npy, mmap_mode="r")["inode"].tolist() == [0, 0, 0]
