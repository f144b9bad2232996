"""A thread-pool map with an optional progress bar, shared by the file-reading helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_threads(fn: Callable[[T], R], items: Sequence[T], workers: int, progress: bool, what: str) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool, in order, with an optional rich progress bar (stderr)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fn, items)
        if not progress:
            return list(results)
        from rich.console import Console
        from rich.progress import Progress

        out = []
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(what, total=len(items))
            for res in results:
                out.append(res)
                bar.advance(task)
        return out
