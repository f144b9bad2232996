"""The on-disk index folder (e.g. ``naruto.vrx/``): versioned, crash-safe generations behind one manifest.

Layout::

    naruto.vrx/
      manifest.json      format, schema_version, encoder, dim, store backend, count, current generation, ...
      gen-000007/        the current generation: the store's files plus any JSON other stages commit
      work/              persistent scratch (e.g. resumable encoding shards), kept until cleared
      leases/            one file per open reader: the generation it reads (see visrec.index.leases)
      .lock              the write lock (filelock)

A commit writes a complete new generation into a ``.tmp-*`` folder, fsyncs it, renames it to ``gen-NNNNNN``,
then atomically replaces ``manifest.json`` (the switch point), then deletes the other generations that no
reader holds (a reader's generation goes when its last reader moves on or closes). A crash
at any point leaves the previous generation current and readable; readers ignore leftovers (``.tmp-*``
entries and generations the manifest does not name) and the next writer removes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock

from visrec.encoders.runtime import PRECISION_VAR, recorded_precision
from visrec.errors import BadInput, IndexBusy, IndexCorrupt, ManifestMismatch, VisrecError
from visrec.index import leases
from visrec.index.manifest import MANIFEST, SCHEMA_VERSION, Manifest, check_manifest, read_manifest
from visrec.stores._files import (
    TMP_PREFIX,
    check_name,
    fsync_dir,
    fsync_tree,
    link_or_copy,
    remove,
    write_json,
    write_json_atomic,
)

__all__ = ["IndexFolder", "Manifest", "gen_name", "write_json", "write_json_atomic"]

LOCK = ".lock"
WRITER_WAIT = 2.0
"""Seconds a writer waits for the lock by default: a reader dropping its superseded generation holds it for
moments (see :meth:`IndexFolder.release`); another writer holds it for its whole run and is reported busy."""
WORK = "work"
_GEN_RE = re.compile(r"^gen-(\d{6,})$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def gen_name(generation: int) -> str:
    """Folder name of a generation: ``gen-000001``."""
    return f"gen-{generation:06d}"


class IndexFolder:
    """An index folder; build it with :meth:`create` or :meth:`open`.

    Reading needs no lock. Writing (``commit``, ``clear_work``) takes the folder's write lock, which
    :meth:`writer` can hold across a long job.
    """

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = Path(path)
        self._manifest = manifest
        self._lock = filelock.FileLock(str(self.path / LOCK))

    # ---- opening ------------------------------------------------------------------------------------------

    @staticmethod
    def is_index(path: str | Path) -> bool:
        """Whether ``path`` is a folder holding a ``manifest.json``."""
        return (Path(path) / MANIFEST).is_file()

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        encoder_info: Mapping[str, Any],
        dim: int,
        joint_dim: int | None,
        backend: str,
    ) -> IndexFolder:
        """Make a new, empty index folder (generation 0).

        ``encoder_info``: ``{"name", "fingerprint", "describe": {...}}``. Refuses (``BadInput``) a path that
        is a file, an existing index, or a non-empty folder.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise BadInput(f"{path} is a file; give a folder path for the index")
        if cls.is_index(path):
            raise BadInput(f"{path} is already a visrec index; open it, or delete it to start over")
        if path.exists() and any(p.name != LOCK for p in path.iterdir()):
            raise BadInput(f"{path} is not empty and not a visrec index; choose a new or empty folder")
        encoder = {"describe": {}, **dict(encoder_info)}
        try:
            json.dumps(encoder)
            manifest = Manifest(encoder=encoder, dim=dim, joint_dim=joint_dim, store=backend)
            check_manifest(manifest)
        except (TypeError, ValueError) as e:
            raise BadInput(f"cannot create an index at {path}: {e}") from None
        path.mkdir(parents=True, exist_ok=True)
        folder = cls(path, manifest)
        with folder.writer():
            if cls.is_index(path):
                raise BadInput(f"{path} was made an index by another process meanwhile; open it instead")
            write_json_atomic(path / MANIFEST, manifest.to_dict())
        return folder

    @classmethod
    def open(cls, path: str | Path) -> IndexFolder:
        """Open an existing index folder; ``BadInput`` if it is not one, ``IndexCorrupt`` if it is damaged."""
        path = Path(path)
        if not path.is_dir():
            raise BadInput(f"no index at {path}: {'not a folder' if path.exists() else 'it does not exist'}")
        folder = cls(path, read_manifest(path))
        folder._check_generation()
        return folder

    def refresh(self) -> Manifest:
        """Re-read ``manifest.json`` (another process may have committed) and return it."""
        self._manifest = read_manifest(self.path)
        return self._manifest

    def _check_generation(self) -> None:
        gen = self._manifest.generation
        if gen and not (self.path / gen_name(gen)).is_dir():
            self.refresh()  # a writer may have switched generations between our two reads
            gen = self._manifest.generation
            if gen and not (self.path / gen_name(gen)).is_dir():
                raise IndexCorrupt(
                    f"{self.path}: manifest.json names {gen_name(gen)}, which is missing; restore the folder "
                    "from a backup or re-index the images into a new folder"
                )

    # ---- reading ------------------------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        """The manifest as last read or committed by this object."""
        return self._manifest

    @property
    def generation_dir(self) -> Path | None:
        """Folder of the current generation, or None before the first commit."""
        self._check_generation()
        gen = self._manifest.generation
        return self.path / gen_name(gen) if gen else None

    @property
    def work_dir(self) -> Path:
        """Persistent scratch folder ``work/`` (created on first use), kept across runs until cleared."""
        work = self.path / WORK
        work.mkdir(exist_ok=True)
        return work

    def read_json(self, name: str) -> Any | None:
        """A JSON file of the current generation, or None when it has no such file."""
        check_name(name)
        gen = self.generation_dir
        if gen is None or not (gen / name).is_file():
            return None
        try:
            return json.loads((gen / name).read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise IndexCorrupt(f"{gen / name} cannot be read ({e}); re-index or restore the folder") from None

    def check_encoder(self, fingerprint: str, name: str, precision: str | None = None) -> None:
        """Raise ``ManifestMismatch`` unless the index was built by the encoder with this ``fingerprint``;
        ``precision`` (``"f32"`` | ``"bf16"``): the encoder's, named in the message when it is what differs."""
        m = self._manifest
        if fingerprint == m.encoder_fingerprint:
            return
        built = recorded_precision(m.encoder.get("describe") or {})
        if name == m.encoder_name and precision is not None and precision != built:
            raise ManifestMismatch(
                f"{self.path} was built with encoder {name!r} at precision {built}, but the encoder given runs at "
                f"{precision} (fingerprint {fingerprint}; vectors of the two precisions are not interchangeable). "
                f"Leave out --encoder to use the index's own encoder at {built}, set {PRECISION_VAR}={built}, or "
                f"re-index the images at {precision}."
            )
        same = " (same name, but its weights or preprocessing changed)" if name == m.encoder_name else ""
        # an earlier run that stored nothing (every image unreadable, or stopped before its first commit) still
        # fixed the encoder: nothing is lost by starting that folder over
        redo = (
            f"It holds no image yet: delete {self.path} and index again with {name!r}"
            if self.generation_dir is None
            else f"Index the images with {name!r} into a new folder (--out NEW.vrx)"
        )
        raise ManifestMismatch(
            f"{self.path} was built with encoder {m.encoder_name!r} (fingerprint {m.encoder_fingerprint}), "
            f"but encoder {name!r} (fingerprint {fingerprint}) was given{same}. {redo}, "
            f"or pass --encoder {m.encoder_name} to use the index's own encoder."
        )

    # ---- writing ------------------------------------------------------------------------------------------

    @contextmanager
    def writer(self, timeout: float = WRITER_WAIT) -> Iterator[IndexFolder]:
        """Hold the write lock (re-entrant); ``IndexBusy`` if another writer keeps it beyond ``timeout`` s.

        The default wait covers a reader that takes the lock for a moment to delete the generation it let go of.

        On first entry the manifest is re-read and leftovers of crashed writers are removed.
        """
        try:
            self._lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise IndexBusy(
                f"another process is writing the index {self.path} (it holds {self.path / LOCK}); "
                "wait for it to finish and try again"
            ) from None
        try:
            if self._lock.lock_counter == 1 and self.is_index(self.path):
                self.refresh()
                self.cleanup()
            yield self
        finally:
            self._lock.release()

    def cleanup(self) -> list[Path]:
        """Remove leftovers: ``.tmp-*`` entries and generations other than the current one that no live reader
        holds a lease on (see :mod:`visrec.index.leases`). Needs the lock."""
        with self.writer():
            current = gen_name(self._manifest.generation)
            pinned = {gen_name(g) for g in leases.held(self.path)}
            removed = []
            for p in self.path.iterdir():
                if _GEN_RE.match(p.name) and p.name != current and p.name not in pinned:
                    doomed = self.path / f"{TMP_PREFIX}old-{p.name}-{uuid.uuid4().hex[:8]}"
                    os.rename(p, doomed)  # gone for readers at once, however long the deletion takes
                    if remove(doomed):
                        removed.append(p)
                elif p.name.startswith(TMP_PREFIX) and remove(p):
                    removed.append(p)
            return removed

    def pin(self) -> tuple[Manifest, Path, leases.Lease | None]:
        """The current manifest and generation folder, with a reader lease on it (None: the folder is not
        writable, see :mod:`visrec.index.leases`). ``BadInput`` when nothing was committed yet."""
        for _ in range(100):
            m = self.refresh()
            if not m.generation:
                raise BadInput(
                    f"{self.path}: the index is empty; add images with: visrec index DATASET --out {self.path}"
                )
            lease = leases.take(self.path, m.generation)
            again = self.refresh()
            gen_dir = self.path / gen_name(m.generation)
            if again.generation == m.generation and gen_dir.is_dir():
                return m, gen_dir, lease
            if lease is not None:
                lease.release()
            if again.generation == m.generation:  # current but missing: damaged
                self._check_generation()
        raise IndexBusy(f"{self.path} changed 100 times while being opened; try again when writes settle")

    def release(self, lease: leases.Lease | None) -> None:
        """Drop a reader lease; deletes its generation when superseded, unheld and no writer is busy."""
        if lease is None:
            return
        lease.release()
        try:
            if read_manifest(self.path).generation != lease.generation:
                with self.writer(timeout=0):
                    pass  # taking the lock cleans up
        except (VisrecError, OSError):
            pass  # a writer is busy (it cleans up itself) or the folder is gone

    def commit(self, write: Callable[[Path], None], *, count: int, extra: Mapping[str, Any] | None = None) -> Path:
        """Write a new generation with ``write(folder)`` and switch to it atomically; returns its folder.

        ``write`` fills the empty ``folder`` (e.g. ``store.save``, :func:`write_json`, :meth:`carry_over`).
        If it raises, nothing changes. ``count`` is the number of stored items; ``extra`` keys are merged into
        the manifest's ``extra`` (a None value removes a key).
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadInput(f"count must be a non-negative integer, got {count!r}")
        with self.writer():
            old = self._manifest
            taken = [int(m.group(1)) for p in self.path.iterdir() if (m := _GEN_RE.match(p.name))]
            gen = max([old.generation, *taken]) + 1
            final = self.path / gen_name(gen)
            tmp = self.path / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                write(tmp)
                fsync_tree(tmp)
                os.rename(tmp, final)
            finally:
                if tmp.exists():
                    remove(tmp)
            fsync_dir(self.path)
            merged = {**old.extra, **(extra or {})}
            new = replace(old, generation=gen, count=count, updated=_now(), schema_version=SCHEMA_VERSION,
                          extra={k: v for k, v in merged.items() if v is not None})  # fmt: skip
            write_json_atomic(self.path / MANIFEST, new.to_dict())  # the switch point
            self._manifest = new
            self.cleanup()
            return final

    def carry_over(self, dst: Path, names: list[str]) -> list[str]:
        """Hard-link (or copy) files and folders of the current generation into ``dst``.

        Returns the names that existed. Use it in a ``commit`` callback to keep what the commit does not
        change (generations are immutable, so sharing their files is safe).
        """
        gen = self.generation_dir
        done = []
        for name in names:
            check_name(name)
            src = None if gen is None else gen / name
            if src is None or not src.exists():
                continue
            if src.is_dir():
                shutil.copytree(src, Path(dst) / name, copy_function=link_or_copy)
            else:
                link_or_copy(str(src), str(Path(dst) / name))
            done.append(name)
        return done

    def clear_work(self) -> None:
        """Delete the ``work/`` folder (under the write lock)."""
        with self.writer():
            work = self.path / WORK
            if work.exists():
                shutil.rmtree(work)
