"""Thread-safe reading of ``.npy`` / ``.npz`` files and parsing of Python expressions.

CPython 3.11 keeps the AST validator's recursion counter in state shared by all threads: two threads that parse
at the same moment (``np.load`` parses every ``.npy`` header with ``ast.literal_eval``; ``--where`` filters use
``ast.parse``) can fail with ``SystemError: AST constructor recursion depth mismatch``. A server answering
requests in threads, or a reader thread beside a writer, does exactly that. Every parse in visrec goes through
:data:`AST_LOCK`. It is re-entrant because a garbage-collection finaliser can run inside a parse on the same
thread.
"""

from __future__ import annotations

import ast
import threading
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

AST_LOCK = threading.RLock()


def load_npy(path: str | Path, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
    """``np.load`` of one ``.npy`` array (never pickled objects), safe to call from many threads."""
    with AST_LOCK:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read at once (each member's header is parsed under the lock).

    A damaged archive (cut short, not a zip) raises ``ValueError`` like a damaged ``.npy`` does, so that callers
    turn both into one typed error."""
    try:
        with AST_LOCK, np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"not a complete .npz archive: {e}") from e


def parse_expression(source: str) -> ast.Expression:
    """``ast.parse(source, mode="eval")`` under the same lock."""
    with AST_LOCK:
        return ast.parse(source, mode="eval")
