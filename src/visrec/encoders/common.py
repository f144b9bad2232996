"""Small helpers shared by the encoder backends (ids, normalisation, progress, option parsing)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from visrec.errors import BadInput

C = TypeVar("C")


def resolve_ids(n: int, ids: Sequence[str] | None) -> tuple[str, ...]:
    """``ids`` as a tuple of str, or ``"0".."n-1"``; raises ``BadInput`` when the count differs from ``n``."""
    if ids is None:
        return tuple(str(i) for i in range(n))
    if isinstance(ids, str) or len(ids) != n:
        got = "a single string" if isinstance(ids, str) else f"{len(ids)} ids"
        raise BadInput(f"got {n} images but {got}; pass one id per image (or none)")
    return tuple(str(i) for i in ids)


def check_images(images: Sequence[Any]) -> None:
    """Refuse a lone image where a sequence of images is expected (a common slip).

    A 4-D ``(n, h, w, 3)`` uint8 array is a valid sequence of images.
    """
    lone_array = isinstance(images, np.ndarray) and images.ndim < 4
    if isinstance(images, (str, bytes)) or lone_array or hasattr(images, "getpixel"):
        raise BadInput(
            "encode_images() takes a sequence of images; wrap a single image in a list: encode_images([image])"
        )


def check_batch_size(batch_size: int | None, default: int) -> int:
    """``batch_size`` or ``default``; raises ``BadInput`` unless it is a positive int."""
    size = default if batch_size is None else batch_size
    if not isinstance(size, int) or size < 1:
        raise BadInput(f"batch_size must be a positive integer, got {batch_size!r}")
    return size


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@contextmanager
def progress_bar(total: int, enabled: bool, description: str) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a transient rich progress bar on stderr when ``enabled``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (description, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def options_from(cls: type[C], options: Mapping[str, Any], what: str) -> C:
    """Build the options dataclass ``cls`` from keyword options, naming unknown keys and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        raise BadInput(f"unknown option(s) {unknown} for the {what} encoder; known options: {sorted(known)}")
    values = dict(options)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if isinstance(values.get(field.name), list):
            values[field.name] = tuple(values[field.name])  # JSON round trip of a tuple option
    return cls(**values)
