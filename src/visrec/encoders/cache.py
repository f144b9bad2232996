"""The on-disk cache of derived model files (ONNX exports, extracted archives, text vectors).

Everything here is rebuilt from installed packages when missing or damaged, so deleting the cache folder is
always safe. Files are written atomically (temporary file + ``os.replace``) so a crash or a concurrent
process never leaves a half-written file under its final name; large files carry a ``.sha256`` sidecar
that is checked before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CACHE_ENV = "VISREC_CACHE_DIR"
_HASHES_FILE = "weights-sha256.json"


def cache_dir() -> Path:
    """The cache folder: ``$VISREC_CACHE_DIR`` if set, else the platform's user cache dir for ``visrec``.

    Created on first use (never at import time).
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("visrec"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold an inter-process lock named ``name`` in the cache folder (avoids two processes exporting at once)."""
    from filelock import FileLock

    with FileLock(str(cache_dir() / f"{name}.lock")):
        yield


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """Hex sha256 of a weights file, remembered in the cache keyed by (path, size, mtime).

    Hashing an 80 MB archive takes a noticeable fraction of a second; a changed file (new size or mtime)
    is hashed again.
    """
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    table_path = cache_dir() / _HASHES_FILE
    table = _read_json(table_path)
    known = table.get(key)
    if isinstance(known, str) and len(known) == 64:
        return known
    digest = sha256_file(path)
    with cache_lock("weights-sha256"):
        table = _read_json(table_path)
        table[key] = digest
        atomic_write_bytes(table_path, json.dumps(table, indent=1, sort_keys=True).encode())
    return digest


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or damaged: the table is only a memo, it is rebuilt on demand
    return data if isinstance(data, dict) else {}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_path_for(path: Path) -> Path:
    """A fresh temporary path beside ``path`` (same filesystem, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def sidecar(path: Path) -> Path:
    """The ``<file>.sha256`` companion of a cached file."""
    return path.with_name(path.name + ".sha256")


def publish(tmp: Path, path: Path) -> None:
    """Move a finished temporary file to ``path`` and record its sha256 in the sidecar.

    The sidecar is written first: a reader that sees the new file always finds its matching hash, and a
    reader that sees a stale pair finds a mismatch and rebuilds.
    """
    atomic_write_bytes(sidecar(path), (sha256_file(tmp) + "\n").encode())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; cached models are not secrets
    os.replace(tmp, path)


def is_intact(path: Path) -> bool:
    """True when ``path`` exists and its bytes match the sha256 recorded in its sidecar."""
    try:
        expected = sidecar(path).read_text().strip()
    except OSError:
        return False
    return path.is_file() and sha256_file(path) == expected


def fingerprint(name: str, weights_sha: str, config: Mapping[str, Any]) -> str:
    """``<name>-<16 hex>``: sha256 over the name, the weights hash and the JSON of ``config``.

    ``config`` must be JSON-serialisable; keys are sorted so the order of options never matters.
    """
    blob = json.dumps({"name": name, "weights": weights_sha, "config": config}, sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
