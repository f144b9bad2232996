"""Durable file helpers for index folders: fsync, atomic JSON, hard links, logged removal."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from visrec.errors import BadInput

log = logging.getLogger("visrec.index.folder")

TMP_PREFIX = ".tmp-"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Make every file and folder under ``root`` durable. Files with more than one hard link are immutable
    files of an earlier generation (segments), made durable when they were written: only their new folder
    entries need the folder's fsync."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.stat(path).st_nlink > 1:
                continue
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def write_json(folder: Path, name: str, obj: Any) -> None:
    """Write ``folder/name`` as JSON (inside a ``commit`` callback: the commit makes it durable)."""
    check_name(name)
    (Path(folder) / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BadInput(f"{name!r} is not a plain file name (letters, digits, '.', '_', '-')")


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links: copy instead
        shutil.copy2(src, dst)


def remove(path: Path) -> bool:
    """Delete a file or folder; logs and returns False when the OS refuses (e.g. a mapped file on Windows)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except OSError as e:
        log.warning("could not remove %s (%s); the next writer will try again", path, e)
        return False
