"""Reader leases: an opened index pins its generation so a writer does not delete it while it is read.

A reader that opens generation N writes ``leases/gen-NNNNNN.<token>`` (JSON: host, pid, time) into the index
folder and removes it when it moves on or closes. A writer deletes a superseded generation only when no live lease
names it; leases of processes that died on this host (``kill -9``) are stale and removed by the writer.

Pinning is race-free without a grace period: the reader takes the lease, then re-reads ``manifest.json``; if the
generation is still current, any later switch happens after the lease exists, and the writer lists leases after
its switch. If the generation moved on meanwhile, the reader drops the lease and pins the new one. A reader that
cannot write into the folder (read-only media) pins nothing and relies on POSIX semantics instead: the files it
opened (memory-mapped vectors, the SQLite metadata) stay readable after a writer unlinks them, and the small files
are read at open.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LEASES = "leases"
FOREIGN_LEASE_MAX_AGE_S = 24 * 3600.0  # a lease from another host (shared file system) older than this is stale


@dataclass
class Lease:
    """One reader's hold on a generation; :meth:`release` is idempotent."""

    path: Path
    generation: int

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:  # pragma: no cover - a folder that became read-only
            log.warning("could not remove the reader lease %s (%s); the next writer will", self.path, e)


def take(root: Path, generation: int) -> Lease | None:
    """Write a lease on ``generation`` of the index at ``root``; None when the folder is not writable."""
    folder = root / LEASES
    path = folder / f"gen-{generation:06d}.{uuid.uuid4().hex[:12]}"
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(body)
    except OSError:
        return None
    return Lease(path, generation)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live(path: Path, host: str, now: float) -> bool:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        pid, lease_host, t = int(info["pid"]), str(info["host"]), float(info["time"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return now - path.stat().st_mtime < 60.0  # being written right now, or garbage to drop soon
    if lease_host == host:
        return _alive(pid)
    return now - t < FOREIGN_LEASE_MAX_AGE_S


def held(root: Path) -> set[int]:
    """Generations some live reader holds; removes stale leases (dead processes) on the way."""
    folder = root / LEASES
    if not folder.is_dir():
        return set()
    host, now, out = socket.gethostname(), time.time(), set()
    for p in folder.iterdir():
        name = p.name
        if not name.startswith("gen-"):
            continue
        try:
            gen = int(name[4:].split(".", 1)[0])
        except ValueError:
            continue
        try:
            live = _live(p, host, now)
        except FileNotFoundError:
            continue
        if live:
            out.add(gen)
        else:
            Lease(p, gen).release()
    return out
